//! Fail closed at the protocol level: the proxy's picture of prepared statements and portals
//! follows the server's (errors skip to Sync, names collide, Close is skipped), messages it
//! cannot read end the session instead of passing, a value that does not decrypt ends the
//! session, FunctionCall follows the role, and statement text is analysed only under
//! client_encoding UTF8 and standard_conforming_strings on.
//!
//! Raw sessions log in as `trust_user` and fixture sessions as `scram_user`: neither is a
//! superuser nor owns the protected tables (the fixture's admin creates them).

use pgshroud_integration_tests::protected::{
    code, proxy_with_rules, Fixture, MASTER_KEY, OTHER_KEY, RULES,
};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::build::{
    bind, close_statement, execute, parse, pipeline, query, sync,
};
use pgshroud_integration_tests::raw::{error_codes, message, Msg, RawClient};
use pgshroud_integration_tests::{cluster, users};

const INSERT_EMAIL: &str = "INSERT INTO customers (email) VALUES ($1)";

async fn raw(f: &Fixture) -> RawClient {
    RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await
}

/// Messages up to the next ReadyForQuery, as a list of type bytes and error codes.
async fn round(c: &mut RawClient) -> Vec<Msg> {
    c.recv_until_ready().await
}

/// The stored email values, read straight from PostgreSQL: none may be the plaintext.
async fn assert_stored_encrypted(f: &Fixture, plaintext: &str) {
    let stored = f
        .stored("SELECT email FROM customers WHERE email IS NOT NULL")
        .await;
    assert!(!stored.is_empty());
    for value in stored.into_iter().flatten() {
        assert!(
            !value
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes()),
            "plaintext stored"
        );
    }
}

/// The emails the app reads through the proxy.
async fn emails(f: &Fixture) -> Vec<String> {
    f.app()
        .await
        .query("SELECT email FROM customers ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The connection still answers a plain statement.
async fn still_works(c: &mut RawClient) {
    c.send(&query("SELECT 1")).await;
    let msgs = round(c).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(msgs.last().map(|m| m.kind), Some(b'Z'));
}

/// The proxy still serves new connections.
async fn proxy_serves(p: &TestProxy, db: &str) {
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, db)
        .await
        .expect("the proxy still serves");
    let n: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_second_parse_of_a_protected_insert_name_mid_pipeline_keeps_binds_encrypted() {
    let f = Fixture::new().await;
    let mut c = raw(&f).await;
    // s1 is the protected INSERT; then, mid-pipeline, a Parse of the same name with an
    // unprotected text (PostgreSQL refuses it with 42P05 and keeps the INSERT).
    c.send(&pipeline(&[
        parse("s1", INSERT_EMAIL),
        sync(),
        parse("s1", "SELECT $1::text"),
        bind("", "s1", &["first@secret.example"]),
        execute(""),
        sync(),
    ]))
    .await;
    let first = round(&mut c).await;
    assert!(error_codes(&first).is_empty(), "{first:?}");
    let second = round(&mut c).await;
    assert_eq!(error_codes(&second), ["42P05"], "{second:?}");
    // The Bind after the Sync runs the INSERT the server holds: its value is encrypted.
    c.send(&pipeline(&[
        bind("", "s1", &["second@secret.example"]),
        execute(""),
        sync(),
    ]))
    .await;
    let third = round(&mut c).await;
    assert!(error_codes(&third).is_empty(), "{third:?}");
    assert_stored_encrypted(&f, "second@secret.example").await;
    assert_eq!(emails(&f).await, ["second@secret.example"]);
    still_works(&mut c).await;
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn a_close_skipped_after_an_error_leaves_the_protected_statement_in_use() {
    let f = Fixture::new().await;
    let mut c = raw(&f).await;
    c.send(&pipeline(&[parse("s1", INSERT_EMAIL), sync()]))
        .await;
    assert!(error_codes(&round(&mut c).await).is_empty());
    // An error, then a Close of s1 the server skips, then Sync.
    c.send(&pipeline(&[
        parse("", "SELEC 1"),
        close_statement("s1"),
        sync(),
    ]))
    .await;
    assert_eq!(error_codes(&round(&mut c).await), ["42601"]);
    // Reuse of the name: s1 still exists (42P05), and a Bind of it runs the INSERT,
    // encrypted.
    c.send(&pipeline(&[parse("s1", "SELECT $1::text"), sync()]))
        .await;
    assert_eq!(error_codes(&round(&mut c).await), ["42P05"]);
    c.send(&pipeline(&[
        bind("", "s1", &["reuse@secret.example"]),
        execute(""),
        sync(),
    ]))
    .await;
    let msgs = round(&mut c).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_stored_encrypted(&f, "reuse@secret.example").await;
    assert_eq!(emails(&f).await, ["reuse@secret.example"]);
    // A confirmed Close does drop it: the name can be prepared again.
    c.send(&pipeline(&[
        close_statement("s1"),
        parse("s1", "SELECT $1::text"),
        bind("", "s1", &["x"]),
        execute(""),
        sync(),
    ]))
    .await;
    let msgs = round(&mut c).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    still_works(&mut c).await;
}

#[tokio::test]
async fn a_bind_of_a_statement_the_proxy_does_not_know_is_refused() {
    let f = Fixture::new().await;
    let mut c = raw(&f).await;
    // Prepared by SQL: the proxy did not read what the server holds under the name.
    c.send(&query("PREPARE by_sql AS SELECT $1::text")).await;
    assert!(error_codes(&round(&mut c).await).is_empty());
    c.send(&pipeline(&[
        bind("", "by_sql", &["x"]),
        execute(""),
        sync(),
    ]))
    .await;
    assert_eq!(error_codes(&round(&mut c).await), ["0A000"]);
    // Never prepared at all.
    c.send(&pipeline(&[
        bind("", "nowhere", &["x@secret.example"]),
        execute(""),
        sync(),
    ]))
    .await;
    assert_eq!(error_codes(&round(&mut c).await), ["26000"]);
    // Once deallocated, PREPARE can name it again (the proxy follows DEALLOCATE).
    c.send(&query("DEALLOCATE by_sql; PREPARE by_sql AS SELECT 2"))
        .await;
    assert!(error_codes(&round(&mut c).await).is_empty());
    assert!(f.stored("SELECT email FROM customers").await.is_empty());
    still_works(&mut c).await;
}

/// Sends `frame` on a fresh connection and expects FATAL 08P01 and the connection closed.
async fn assert_protocol_violation(f: &Fixture, frame: &[u8]) {
    let mut c = raw(f).await;
    c.send(frame).await;
    let msgs = c.recv_until_ready().await;
    let error = msgs
        .iter()
        .find(|m| m.kind == b'E')
        .unwrap_or_else(|| panic!("no error for {frame:?}: {msgs:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("08P01"), "{frame:?}");
    assert_eq!(error.field(b'S').as_deref(), Some("FATAL"));
    assert!(c.is_closed().await, "connection left open after {frame:?}");
}

#[tokio::test]
async fn malformed_parse_bind_and_close_end_the_session_with_08p01() {
    let f = Fixture::new().await;
    // 32768 declared parameter types (a count PostgreSQL reads unsigned) with none present.
    let mut body = format!("s\0{INSERT_EMAIL}\0").into_bytes();
    body.extend_from_slice(&0x8000u16.to_be_bytes());
    let mut too_many_types = message(b'P', &body);
    too_many_types.extend_from_slice(&sync());
    // A Bind whose parameter count runs past the message.
    let mut short_bind = pipeline(&[parse("", INSERT_EMAIL)]);
    let mut bind_body = b"\0\0\0\0".to_vec();
    bind_body.extend_from_slice(&5u16.to_be_bytes());
    bind_body.extend_from_slice(&4i32.to_be_bytes());
    short_bind.extend_from_slice(&message(b'B', &bind_body));
    short_bind.extend_from_slice(&sync());
    let frames = [
        too_many_types,
        short_bind,
        // Close and Describe without a target, Execute without its row limit, a Query
        // without its terminator.
        pipeline(&[message(b'C', b""), sync()]),
        pipeline(&[message(b'D', b"S"), sync()]),
        pipeline(&[message(b'E', b"\0"), sync()]),
        message(b'Q', b"SELECT 1"),
    ];
    for frame in &frames {
        assert_protocol_violation(&f, frame).await;
    }
    let protocol_errors = f
        .proxy
        .metrics_text()
        .lines()
        .find(|l| l.starts_with("pgshroud_connection_errors_total{reason=\"protocol\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(protocol_errors, Some(frames.len() as f64));
    assert!(
        f.stored("SELECT email FROM customers").await.is_empty(),
        "nothing may be written"
    );
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn names_and_text_that_are_not_utf8_are_refused_with_22021() {
    let f = Fixture::new().await;
    let mut c = raw(&f).await;
    c.send(&pipeline(&[
        message(b'P', b"\xff\xfe\0SELECT 1\0\0\0"),
        sync(),
    ]))
    .await;
    assert_eq!(error_codes(&round(&mut c).await), ["22021"]);
    c.send(&message(
        b'Q',
        b"INSERT INTO customers (email) VALUES ('caf\xe9@secret.example')\0",
    ))
    .await;
    assert_eq!(error_codes(&round(&mut c).await), ["22021"]);
    assert!(f.stored("SELECT email FROM customers").await.is_empty());
    still_works(&mut c).await;
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn a_value_that_does_not_decrypt_ends_the_session() {
    let f = Fixture::with_key(OTHER_KEY).await;
    f.app()
        .await
        .execute(INSERT_EMAIL, &[&"other@key.example"])
        .await
        .unwrap();
    let (_dir, proxy) = Fixture::proxy_for(MASTER_KEY).await;
    let c = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    let err = c
        .query("SELECT id, email FROM customers", &[])
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.severity(), "FATAL", "{err:?}");
    assert!(db.message().contains("public.customers.email"), "{err:?}");
    // Closed: client and server never disagree about what ran.
    assert!(c.query_one("SELECT 1", &[]).await.is_err());
    proxy_serves(&proxy, &f.db).await;
}

/// The rules of the fixture, with `trust_user` in a role that may only select.
fn select_only_rules() -> String {
    format!(
        "default_role = \"app\"\n{RULES}\n[[roles]]\nname = \"app\"\ntemplate = \"app\"\nusers = [\"{}\"]\n\n[[roles]]\nname = \"reader\"\ntemplate = \"app\"\nusers = [\"{}\"]\nstatements = [\"select\"]\n",
        users::SCRAM,
        users::TRUST
    )
}

/// A FunctionCall of `pg_backend_pid()` (no arguments, text result).
async fn function_call(db: &str) -> Vec<u8> {
    let admin = cluster().admin_client_for(db).await;
    let oid: u32 = admin
        .query_one("SELECT 'pg_backend_pid'::regproc::oid", &[])
        .await
        .unwrap()
        .get(0);
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    message(b'F', &body)
}

#[tokio::test]
async fn function_calls_follow_the_roles_statement_kinds() {
    let f = Fixture::new().await;
    let call = function_call(&f.db).await;
    let (_dir, proxy) = proxy_with_rules(&select_only_rules(), MASTER_KEY).await;
    let mut reader = RawClient::login_trust(proxy.port(), users::TRUST, &f.db).await;
    reader.send(&call).await;
    let msgs = round(&mut reader).await;
    assert_eq!(error_codes(&msgs), ["42501"], "{msgs:?}");
    still_works(&mut reader).await;
    // A role without a statements list runs it.
    let mut app = raw(&f).await;
    app.send(&call).await;
    let msgs = round(&mut app).await;
    assert!(msgs.iter().any(|m| m.kind == b'V'), "{msgs:?}");
    proxy_serves(&proxy, &f.db).await;
}

/// Runs `sql` through the proxy, returning the SQLSTATE and message of its error.
async fn refusal(c: &tokio_postgres::Client, sql: &str) -> Option<(String, String)> {
    let err = c.simple_query(sql).await.err()?;
    let message = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    Some((code(&err), message))
}

#[tokio::test]
async fn switching_encoding_and_string_settings_back_and_forth() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let insert = |n: u32| format!("INSERT INTO customers (email) VALUES ('s{n}@secret.example')");
    assert_eq!(refusal(&c, &insert(1)).await, None);

    // standard_conforming_strings off, by SET, set_config and inside a transaction.
    for (round, off) in [
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
    ]
    .into_iter()
    .enumerate()
    {
        c.simple_query(off).await.unwrap();
        let (code, message) = refusal(&c, &insert(2)).await.expect("refused");
        assert_eq!(code, "0A000");
        assert!(
            message.contains("SET standard_conforming_strings = on"),
            "{message}"
        );
        // Statements the proxy need not read still run.
        c.simple_query("SELECT 'a\\'b'").await.unwrap();
        c.simple_query("RESET standard_conforming_strings")
            .await
            .unwrap();
        assert_eq!(refusal(&c, &insert(3 + 10 * round as u32)).await, None);
    }

    // Another client_encoding: SET, then back; set_config, then RESET.
    c.simple_query("SET client_encoding = 'LATIN1'")
        .await
        .unwrap();
    let (code, message) = refusal(&c, &insert(4)).await.expect("refused");
    assert_eq!(code, "22021");
    assert!(
        message.contains("client_encoding LATIN1: SET client_encoding = 'UTF8'"),
        "{message}"
    );
    assert!(c.query("SELECT email FROM customers", &[]).await.is_err());
    c.simple_query("SET client_encoding = 'UTF8'")
        .await
        .unwrap();
    assert_eq!(refusal(&c, &insert(5)).await, None);
    c.simple_query("SELECT set_config('client_encoding', 'SQL_ASCII', false)")
        .await
        .unwrap();
    assert_eq!(
        refusal(&c, "COPY customers (email) FROM STDIN")
            .await
            .map(|(code, _)| code)
            .as_deref(),
        Some("22021")
    );
    c.simple_query("RESET client_encoding").await.unwrap();

    // A transaction-local change ends with the transaction.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("SET LOCAL standard_conforming_strings = off")
        .await
        .unwrap();
    assert!(refusal(&c, &insert(6)).await.is_some());
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(refusal(&c, &insert(7)).await, None);

    assert_stored_encrypted(&f, "@secret.example").await;
    let read: Vec<String> = emails(&f).await;
    assert_eq!(
        read,
        [1, 3, 13, 5, 7]
            .iter()
            .map(|n| format!("s{n}@secret.example"))
            .collect::<Vec<_>>()
    );
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn a_cursor_declared_in_sql_is_not_executed_through_the_protocol() {
    let f = Fixture::new().await;
    f.app()
        .await
        .execute(INSERT_EMAIL, &[&"cursor@secret.example"])
        .await
        .unwrap();
    let mut c = raw(&f).await;
    c.send(&query(
        "BEGIN; DECLARE c CURSOR FOR SELECT email FROM customers",
    ))
    .await;
    assert!(error_codes(&round(&mut c).await).is_empty());
    // Its rows would pass undecrypted; the proxy did not bind it, so it does not run it.
    c.send(&pipeline(&[execute("c"), sync()])).await;
    let msgs = round(&mut c).await;
    assert_eq!(error_codes(&msgs), ["34000"], "{msgs:?}");
    assert!(!msgs.iter().any(|m| m.kind == b'D'), "{msgs:?}");
    c.send(&query("ROLLBACK")).await;
    assert!(error_codes(&round(&mut c).await).is_empty());
    still_works(&mut c).await;
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn a_driver_pipelining_prepares_closes_and_binds_stays_encrypted() {
    // tokio-postgres pipelines concurrent requests on one connection, and closes a prepared
    // statement (Close + Sync) when it is dropped: the tracker follows all of it.
    let f = Fixture::new().await;
    let c = f.app().await;
    for round in 0..3 {
        let insert = c.prepare(INSERT_EMAIL).await.unwrap();
        let writes = (0..20).map(|i| {
            let (c, insert) = (&c, insert.clone());
            async move {
                let email = format!("p{round}-{i}@secret.example");
                c.execute(&insert, &[&email]).await
            }
        });
        for result in futures_util::future::join_all(writes).await {
            result.unwrap();
        }
        drop(insert);
        let n: i64 = c
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 20 * (round + 1));
    }
    assert_stored_encrypted(&f, "@secret.example").await;
    let read = emails(&f).await;
    assert_eq!(read.len(), 60);
    assert!(read.iter().all(|e| e.ends_with("@secret.example")));
    proxy_serves(&f.proxy, &f.db).await;
}
