//! Tests of the identity settings gate of a protected session (`identity.rs`).

use super::super::testing::*;
use super::ProtectedSession;

const RULES: &str = r#"
default_role = "app"

[[roles]]
name = "app"
template = "app"
users = ["acme_app"]

[[roles]]
name = "pooled"
template = "app"
users = ["web"]
choose_tenant = true

[[tenants]]
id = "acme"
users = ["acme_app", "web"]
"#;

fn ready(status: u8) -> BytesMut {
    message(b'Z', &[status])
}

use bytes::BytesMut;

#[test]
fn the_rules_tenant_is_the_sessions_until_a_switch_is_answered() {
    let mut s = session_under(RULES, "web");
    assert_eq!(s.tenant(), Some("acme"));
    let verdict = s.client_message(&query("SET pgshroud.tenant = 'globex'"));
    assert!(matches!(verdict, Verdict::Forward), "{verdict:?}");
    assert_eq!(s.tenant(), Some("acme"), "not before the server answered");
    // Nothing else may be sent while the switch is unanswered.
    let verdict = s.client_message(&query("SELECT 1"));
    assert_eq!(refusal_code(&verdict).as_deref(), Some("25001"));
    answer(&mut s, &["CSET\0"]);
    assert!(matches!(s.server_message(&ready(b'I')), Verdict::Forward));
    // The refused SELECT's answer.
    s.server_message(&error("25001"));
    s.server_message(&ready(b'I'));
    assert_eq!(s.tenant(), Some("globex"));
    // RESET puts back the rules' tenant.
    s.client_message(&query("RESET pgshroud.tenant"));
    answer(&mut s, &["CRESET\0"]);
    s.server_message(&ready(b'I'));
    assert_eq!(s.tenant(), Some("acme"));
}

#[test]
fn a_switch_that_fails_changes_nothing_and_one_in_a_block_ends_the_session() {
    let mut s = session_under(RULES, "web");
    for m in [
        parse("", "SET pgshroud.tenant = 'globex'"),
        bind("", ""),
        execute(""),
        sync(),
    ] {
        let verdict = s.client_message(&m);
        assert!(refusal_code(&verdict).is_none(), "{verdict:?}");
    }
    // The proxy's own Describe follows the Parse (ParameterDescription, NoData).
    answer(&mut s, &["1", "t\0\0", "n", "2", "CSET\0"]);
    s.server_message(&error("40001"));
    s.server_message(&ready(b'I'));
    assert_eq!(s.tenant(), Some("acme"));
    // Inside a transaction block: refused before it is sent.
    s.client_message(&query("BEGIN"));
    answer(&mut s, &["CBEGIN\0"]);
    s.server_message(&ready(b'T'));
    let verdict = s.client_message(&query("SET pgshroud.tenant = 'globex'"));
    assert_eq!(refusal_code(&verdict).as_deref(), Some("25001"));
    s.server_message(&error("25001"));
    s.server_message(&ready(b'E'));
    s.client_message(&query("ROLLBACK"));
    answer(&mut s, &["CROLLBACK\0"]);
    s.server_message(&ready(b'I'));
    // A switch the server answers inside a block (a BEGIN answered but its ReadyForQuery
    // not yet in): pgshroud cannot tell, so the session ends.
    s.client_message(&query("SET pgshroud.tenant = 'globex'"));
    answer(&mut s, &["CSET\0"]);
    assert_eq!(end_code(s.server_message(&ready(b'T'))), "08P01");
}

#[test]
fn roles_that_may_not_choose_and_bad_ids_are_refused() {
    let mut app = session_under(RULES, "acme_app");
    let verdict = app.client_message(&query("SET pgshroud.tenant = 'globex'"));
    assert_eq!(refusal_code(&verdict).as_deref(), Some("42501"));
    let mut web = session_under(RULES, "web");
    let verdict = web.client_message(&query("SET pgshroud.tenant = '../x'"));
    assert_eq!(refusal_code(&verdict).as_deref(), Some("22023"));
    // A FunctionCall of set_config by OID.
    let mut call = 2078u32.to_be_bytes().to_vec();
    call.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let verdict = web.client_message(&message(b'F', &call));
    assert_eq!(refusal_code(&verdict).as_deref(), Some("42501"));
    assert_eq!(web.tenant(), Some("acme"));
}

/// A Parse of `sql` as `s`, then `binds` of it in the same pipeline: the refusal codes of
/// the Binds (the proxy judges each as it arrives).
fn bound(
    s: &mut ProtectedSession,
    sql: &str,
    types: &[u32],
    binds: &[BytesMut],
) -> Vec<Option<String>> {
    let parse = wire::Parse {
        name: "s".into(),
        query: sql.as_bytes().to_vec(),
        param_types: types.to_vec(),
    };
    let verdict = s.client_message(&parse.write());
    assert_eq!(refusal_code(&verdict), None, "{sql}");
    binds
        .iter()
        .map(|b| refusal_code(&s.client_message(b)))
        .collect()
}

fn names(values: &[&str]) -> BytesMut {
    bind_params("", "s", values)
}

#[test]
fn a_set_config_name_bound_as_a_parameter_is_read_from_each_bind() {
    let mut s = session_under(RULES, "web");
    let sql = "SELECT set_config($1, $2, false)";
    let codes = bound(
        &mut s,
        sql,
        &[],
        &[
            names(&["search_path", "public"]),
            names(&["pgshroud.tenant", "globex"]),
            names(&["PgShroud.Role", "admin"]),
            names(&["pgshroud.user ", "x"]),
            names(&["DateStyle", "ISO"]),
        ],
    );
    let refused = Some("42501".to_owned());
    assert_eq!(
        codes,
        [None, refused.clone(), refused.clone(), refused, None]
    );
    assert_eq!(s.tenant(), Some("acme"));
}

#[test]
fn a_bound_name_the_proxy_cannot_read_as_the_server_does_is_refused() {
    let mut s = session_under(RULES, "web");
    let binary = wire::Bind {
        portal: String::new(),
        statement: "s".into(),
        param_formats: vec![1],
        params: vec![Some(b"search_path".to_vec()), Some(b"x".to_vec())],
        result_formats: Vec::new(),
    }
    .write();
    let not_utf8 = wire::Bind {
        portal: String::new(),
        statement: "s".into(),
        param_formats: Vec::new(),
        params: vec![Some(b"search_path\xff".to_vec()), Some(b"x".to_vec())],
        result_formats: Vec::new(),
    }
    .write();
    let null = wire::Bind {
        portal: String::new(),
        statement: "s".into(),
        param_formats: Vec::new(),
        params: vec![None, Some(b"x".to_vec())],
        result_formats: Vec::new(),
    }
    .write();
    let codes = bound(
        &mut s,
        "SELECT set_config($1, $2, false)",
        &[],
        &[binary, not_utf8, null],
    );
    // PostgreSQL raises its own error for a NULL name: nothing is set.
    assert_eq!(codes, [Some("42501".into()), Some("42501".into()), None]);
    // Declared of a type other than text or varchar: a cast could compute the name.
    let mut s = session_under(RULES, "web");
    let codes = bound(
        &mut s,
        "SELECT set_config($1, $2, false)",
        &[19, 25],
        &[names(&["search_path", "x"])],
    );
    assert_eq!(codes, [Some("42501".into())]);
    let mut s = session_under(RULES, "web");
    let codes = bound(
        &mut s,
        "SELECT set_config($1, $2, false)",
        &[1043, 25],
        &[names(&["search_path", "x"])],
    );
    assert_eq!(codes, [None]);
}

#[test]
fn a_bound_setting_name_is_refused_where_its_value_is_not_the_binds() {
    // A simple query has no parameters; PREPARE's are EXECUTE's arguments.
    for sql in [
        "SELECT set_config($1, 'x', false)",
        "PREPARE p AS SELECT set_config($1, 'x', false)",
    ] {
        let mut s = session_under(RULES, "web");
        let verdict = s.client_message(&query(sql));
        assert_eq!(refusal_code(&verdict).as_deref(), Some("42501"), "{sql}");
        let mut s = session_under(RULES, "web");
        let verdict = s.client_message(&parse("", sql));
        let expected = sql.starts_with("PREPARE").then(|| "42501".to_owned());
        assert_eq!(refusal_code(&verdict), expected, "{sql}");
    }
}

#[test]
fn each_bind_is_judged_by_the_statement_the_name_holds_now() {
    // Parse once, Bind many; then the name prepared again with another text: its Binds
    // follow the new text's reading, not the old one's.
    let mut s = session_under(RULES, "web");
    let codes = bound(&mut s, "SELECT 1", &[], &[names(&[]), names(&[])]);
    assert_eq!(codes, [None, None]);
    s.client_message(&message(b'C', b"Ss\0"));
    let codes = bound(
        &mut s,
        "SELECT set_config($1, 'x', false)",
        &[],
        &[names(&["pgshroud.tenant"]), names(&["work_mem"])],
    );
    assert_eq!(codes, [Some("42501".into()), None]);
    // A tenant switch prepared once starts a switch at its Bind, and nothing else may be
    // bound until its answer is in.
    let mut s = session_under(RULES, "web");
    let parse = parse("t", "SET pgshroud.tenant = 'globex'");
    assert_eq!(refusal_code(&s.client_message(&parse)), None);
    s.client_message(&sync());
    answer(&mut s, &["1", "t\0\0", "n", "ZI"]);
    assert_eq!(refusal_code(&s.client_message(&bind("", "t"))), None);
    let again = s.client_message(&bind("", "t"));
    assert_eq!(refusal_code(&again).as_deref(), Some("25001"));
}

#[test]
fn the_same_identity_change_is_refused_in_simple_and_extended_protocol() {
    for sql in [
        "SELECT set_config('pgshroud.tenant', 'x', false)",
        "SET pgshroud.role = 'admin'",
        "SELECT set_config($1::text, 'x', false)",
        "SET pgshroud.tenant = 'globex'",
    ] {
        let mut app = session_under(RULES, "acme_app");
        let simple = app.client_message(&query(sql));
        assert_eq!(refusal_code(&simple).as_deref(), Some("42501"), "{sql}");
        let mut app = session_under(RULES, "acme_app");
        let extended = app.client_message(&parse("", sql));
        assert_eq!(refusal_code(&extended).as_deref(), Some("42501"), "{sql}");
    }
}
