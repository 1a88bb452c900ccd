//! What the session's unit tests share: a session under small rules, and the framed messages
//! a client and a server send (the session does no I/O, so no PostgreSQL is needed).

use std::sync::Arc;

use bytes::BytesMut;

use super::ProtectedSession;
use crate::ops::metrics::Metrics;
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
    ProtectedSession::new(live, caller, Catalog::default(), Arc::new(Metrics::new()))
}

pub(super) fn parse(name: &str, sql: &str) -> BytesMut {
    message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}
pub(super) fn bind(portal: &str, statement: &str) -> BytesMut {
    message(
        b'B',
        format!("{portal}\0{statement}\0\0\0\0\0\0\0").as_bytes(),
    )
}
pub(super) fn sync() -> BytesMut {
    message(b'S', b"")
}
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
