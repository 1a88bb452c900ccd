//! What the session's unit tests share: a session under small rules, and the framed messages
//! a client and a server send (the session does no I/O, so no PostgreSQL is needed).

use std::sync::Arc;

use bytes::BytesMut;

use super::ProtectedSession;
use crate::ops::metrics::Metrics;
use crate::protect::codec;
use crate::protect::engine::Protection;
use crate::protect::live::LiveProtection;
use crate::protect::policy::Caller;
// What every part's tests use, so each test module needs only this and its own file's items.
pub(super) use crate::protect::catalog::Catalog;
pub(super) use crate::protect::wire;
pub(super) use crate::protocol::frame::message;
pub(super) use crate::protocol::verdict::Verdict;

/// A session under small rules (`public.customers.email` protected; user `reader` may run
/// only `select` statements), with no catalog: enough to drive the protocol state.
pub(crate) fn test_session(user: &str) -> ProtectedSession {
    const RULES: &str = r#"
default_role = "app"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"

[[roles]]
name = "app"
template = "app"
users = ["app"]

[[roles]]
name = "reader"
template = "app"
users = ["reader"]
statements = ["select"]
"#;
    let rules = pgshroud_rules::parse(RULES, "rules.toml").expect("rules");
    session(rules, user, Catalog::default())
}

/// A session of `user` under `rules` and a fixed key, guards not required.
pub(super) fn session(
    rules: pgshroud_rules::Rules,
    user: &str,
    catalog: Catalog,
) -> ProtectedSession {
    let key = crate::crypto::MasterKey::from_bytes(&[7; 32]).expect("key");
    let keys = Arc::new(crate::crypto::KeyRing::single(key));
    let protection = Arc::new(Protection::new(
        rules,
        keys,
        crate::protect::engine::GuardPolicy::NotRequired,
    ));
    let live = Arc::new(LiveProtection::new(
        std::path::Path::new("rules.toml"),
        protection,
    ));
    let caller = Caller {
        user: user.into(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: "127.0.0.1".parse().expect("address"),
    };
    ProtectedSession::new(live, caller, catalog, Arc::new(Metrics::new()))
}

/// A Parse of `sql` under `name`, no parameter types.
pub(super) fn parse(name: &str, sql: &str) -> BytesMut {
    message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}
/// A Bind with no parameters, text results.
pub(super) fn bind(portal: &str, statement: &str) -> BytesMut {
    message(
        b'B',
        format!("{portal}\0{statement}\0\0\0\0\0\0\0").as_bytes(),
    )
}
/// A Sync.
pub(super) fn sync() -> BytesMut {
    message(b'S', b"")
}
/// An ErrorResponse with SQLSTATE `code`.
pub(super) fn error(code: &str) -> BytesMut {
    message(b'E', format!("SERROR\0C{code}\0Mfailed\0\0").as_bytes())
}

/// The SQLSTATE the proxy's refusal in a verdict raises, if it is one.
pub(super) fn refusal_code(verdict: &Verdict) -> Option<String> {
    let Verdict::Replace(bytes) = verdict else {
        return None;
    };
    let text = String::from_utf8_lossy(bytes);
    let at = text.find("ERRCODE = '")? + "ERRCODE = '".len();
    Some(text[at..at + 5].to_owned())
}

/// Answers the server gives to a forwarded pipeline that succeeded.
pub(super) fn answer(s: &mut ProtectedSession, replies: &[&str]) {
    for reply in replies {
        let reply = reply.as_bytes();
        let frame = message(reply[0], &reply[1..]);
        assert!(
            !matches!(s.server_message(&frame), Verdict::End(_)),
            "{reply:?}"
        );
    }
}

/// A RowDescription of one text column named `name`, from `table_oid`'s `attnum`.
pub(super) fn row_description(name: &[u8], table_oid: u32, attnum: i16) -> BytesMut {
    wire::write_row_description(&[wire::Field {
        name: name.to_vec(),
        table_oid,
        attnum,
        type_oid: 17,
        type_len: -1,
        type_mod: -1,
        format: 0,
    }])
}

/// OID the catalog of [`catalog_session`] gives `public.customers`.
pub(super) const CUSTOMERS_OID: u32 = 16384;

/// Rules under which roles see `public.customers.email` differently: `app` decrypts it,
/// `support` sees it masked and may read at most 2 rows per statement (enforced).
const ROLE_RULES: &str = r#"
default_role = "app"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"

[[roles]]
name = "app"
template = "app"
users = ["app"]

[[roles]]
name = "support"
template = "support"
users = ["support"]
max_rows = 2
enforce = true
  [roles.columns]
  "public.customers.email" = "mask:email"
"#;

/// A session of `user` under [`ROLE_RULES`], with the catalog a look-up would give:
/// `customers (id int4, email bytea, name text, age bytea)` under [`CUSTOMERS_OID`], so result
/// columns map by origin as they do against PostgreSQL.
pub(super) fn catalog_session(user: &str) -> ProtectedSession {
    let rules = pgshroud_rules::parse(ROLE_RULES, "rules.toml").expect("rules");
    session(rules, user, customers_catalog())
}

/// The catalog look-up's rows for `public.customers` (as [`lookup_rows`] sends them).
pub(super) fn customers_catalog() -> Catalog {
    Catalog::from_rows(
        lookup_rows()
            .into_iter()
            .map(|row| row.into_iter().map(|v| v.map(str::to_owned)).collect())
            .collect(),
    )
}

/// `public.customers` as the catalog look-up reports it: OID, schema, table, attnum, name,
/// storage type, guards.
pub(super) fn lookup_rows() -> Vec<Vec<Option<&'static str>>> {
    let columns = [
        ("1", "id", "int4"),
        ("2", "email", "bytea"),
        ("3", "name", "text"),
        ("4", "age", "bytea"),
    ];
    columns
        .into_iter()
        .map(|(attnum, name, ty)| {
            vec![
                Some("16384"),
                Some("public"),
                Some("customers"),
                Some(attnum),
                Some(name),
                Some(ty),
                None,
            ]
        })
        .collect()
}

/// `value` sealed for `public.customers.email` as PostgreSQL stores it, in bytea's text
/// output (`\x` and hex), with this session's keys.
pub(super) fn stored_email(s: &mut ProtectedSession, value: &str) -> String {
    let spec = s
        .shared
        .spec_by_name("public", "customers", "email")
        .expect("email is protected")
        .clone();
    let cipher = s.ciphers.get(&spec.context);
    let sealed = codec::seal(&spec, cipher, wire::Format::Text, value.as_bytes()).expect("seal");
    format!("\\x{}", hex::encode(sealed))
}

/// A simple Query.
pub(super) fn query(sql: &str) -> BytesMut {
    message(b'Q', format!("{sql}\0").as_bytes())
}

/// A Bind of text parameters, text results.
pub(super) fn bind_params(portal: &str, statement: &str, params: &[&str]) -> BytesMut {
    wire::Bind {
        portal: portal.into(),
        statement: statement.into(),
        param_formats: Vec::new(),
        params: params.iter().map(|p| Some(p.as_bytes().to_vec())).collect(),
        result_formats: Vec::new(),
    }
    .write()
}

/// An Execute of `portal`, all rows.
pub(super) fn execute(portal: &str) -> BytesMut {
    message(b'E', format!("{portal}\0\0\0\0\0").as_bytes())
}

/// A DataRow of text values (`None`: NULL).
pub(super) fn data_row(values: &[Option<&str>]) -> BytesMut {
    let values: Vec<_> = values
        .iter()
        .map(|v| v.map(|v| v.as_bytes().to_vec()))
        .collect();
    wire::write_data_row(&values)
}

/// The bytes a verdict sends in the message's place; panics on any other verdict.
pub(super) fn replaced(verdict: Verdict) -> BytesMut {
    match verdict {
        Verdict::Replace(bytes) => bytes,
        other => panic!("expected a replacement, got {other:?}"),
    }
}

/// The messages in `bytes` as (type, body).
pub(super) fn messages(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        out.push((bytes[0], bytes[5..1 + len].to_vec()));
        bytes = &bytes[1 + len..];
    }
    out
}

/// The SQLSTATE a session-ending verdict carries.
pub(super) fn end_code(verdict: Verdict) -> String {
    match verdict {
        Verdict::End(error) => error.code.to_string(),
        other => panic!("expected the session to end, got {other:?}"),
    }
}

/// A session of `user` under `rules` (a rules file's text), with no catalog.
pub(super) fn session_under(rules: &str, user: &str) -> ProtectedSession {
    let rules = pgshroud_rules::parse(rules, "rules.toml").expect("rules");
    session(rules, user, Catalog::default())
}

/// A session of `user` under the rules file at `path` (reloadable), with no catalog.
pub(super) fn session_from_file(path: &std::path::Path, user: &str) -> ProtectedSession {
    let text = std::fs::read_to_string(path).expect("rules file");
    let rules = pgshroud_rules::parse(&text, "rules.toml").expect("rules");
    let key = crate::crypto::MasterKey::from_bytes(&[7; 32]).expect("key");
    let keys = Arc::new(crate::crypto::KeyRing::single(key));
    let protection = Arc::new(Protection::new(
        rules,
        keys,
        crate::protect::engine::GuardPolicy::NotRequired,
    ));
    let live = Arc::new(LiveProtection::new(path, protection));
    let caller = Caller {
        user: user.into(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: "127.0.0.1".parse().expect("address"),
    };
    ProtectedSession::new(live, caller, Catalog::default(), Arc::new(Metrics::new()))
}
