//! Who sees what: each caller's role decides, per protected column, plaintext, a mask, NULL,
//! the stored ciphertext or a refusal, and whether it may write. Through the proxy against
//! real PostgreSQL, in text (simple protocol) and binary (tokio-postgres) formats.

use std::time::Duration;

use pgshroud_integration_tests::protected::{code, rows};
use pgshroud_integration_tests::roles::{RolesFixture, RULES};

/// One customer written through the proxy by the app role.
async fn with_customer() -> RolesFixture {
    let f = RolesFixture::new().await;
    let app = f.connect("app").await;
    let birthday = time::Date::from_calendar_date(1990, time::Month::June, 15).unwrap();
    app.execute(
        "INSERT INTO customers (email, age, birthday, name) VALUES ($1, $2, $3, 'Alice')",
        &[&"alice@example.com", &42i32, &birthday],
    )
    .await
    .expect("app writes");
    f
}

/// The server's message of an error (tokio-postgres shows only "db error").
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

const SELECT: &str = "SELECT email, age, birthday, name FROM customers";

async fn simple_row(c: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    rows(&c.simple_query(sql).await.expect("simple query")).remove(0)
}

#[tokio::test]
async fn app_role_reads_plaintext_in_text_and_binary() {
    let f = with_customer().await;
    let app = f.connect("app").await;
    let row = app.query_one(SELECT, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "alice@example.com");
    assert_eq!(row.get::<_, i32>(1), 42);
    assert_eq!(row.get::<_, time::Date>(2).year(), 1990);
    let text = simple_row(&app, SELECT).await;
    assert_eq!(
        text,
        vec![
            Some("alice@example.com".into()),
            Some("42".into()),
            Some("1990-06-15".into()),
            Some("Alice".into())
        ]
    );
}

#[tokio::test]
async fn support_role_sees_masked_email_null_age_and_birth_year_as_text() {
    let f = with_customer().await;
    let support = f.connect("support").await;
    let row = support.query_one(SELECT, &[]).await.unwrap();
    // Masked values are text, and RowDescription says so (a String decodes only from text).
    assert_eq!(row.columns()[0].type_(), &tokio_postgres::types::Type::TEXT);
    assert_eq!(row.get::<_, String>(0), "a****@example.com");
    assert_eq!(row.get::<_, Option<i32>>(1), None);
    assert_eq!(row.columns()[2].type_(), &tokio_postgres::types::Type::TEXT);
    assert_eq!(row.get::<_, String>(2), "1990");
    assert_eq!(
        row.get::<_, String>(3),
        "Alice",
        "unprotected columns are untouched"
    );
    let text = simple_row(&support, SELECT).await;
    assert_eq!(
        text,
        vec![
            Some("a****@example.com".into()),
            None,
            Some("1990".into()),
            Some("Alice".into())
        ]
    );
    // Equality still works for support: the literal is encrypted as for every role.
    let n: i64 = support
        .query_one(
            "SELECT count(*) FROM customers WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn dba_role_sees_the_stored_ciphertext_as_bytea() {
    let f = with_customer().await;
    let stored: Vec<u8> = f
        .direct()
        .await
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    let dba = f.connect("dba").await;
    let row = dba.query_one(SELECT, &[]).await.unwrap();
    assert_eq!(
        row.columns()[0].type_(),
        &tokio_postgres::types::Type::BYTEA
    );
    assert_eq!(row.get::<_, Vec<u8>>(0), stored);
    assert_eq!(stored[0], 2, "an envelope, not plaintext");
    let text = simple_row(&dba, SELECT).await;
    let shown = text[0].clone().unwrap();
    assert!(shown.starts_with("\\x02"), "{shown}");
    assert!(!shown.contains("alice"));
}

#[tokio::test]
async fn unmatched_user_gets_the_default_role() {
    let f = with_customer().await;
    // scram_user matches no role's users: default_role = "dba" applies.
    let other = f
        .proxy
        .connect(
            pgshroud_integration_tests::users::SCRAM,
            pgshroud_integration_tests::users::SCRAM_PASSWORD,
            &f.db,
        )
        .await
        .unwrap();
    let row = other.query_one(SELECT, &[]).await.unwrap();
    assert_eq!(
        row.columns()[0].type_(),
        &tokio_postgres::types::Type::BYTEA
    );
    assert_eq!(row.get::<_, Vec<u8>>(0)[0], 2);
}

#[tokio::test]
async fn auditor_is_refused_with_42501_also_through_star_and_returning() {
    let f = with_customer().await;
    let auditor = f.connect("auditor").await;
    for sql in [
        "SELECT email FROM customers",
        "SELECT * FROM customers",
        "SELECT name FROM customers WHERE age = 42",
        "DELETE FROM customers WHERE id = 0 RETURNING *",
    ] {
        let err = auditor.query(sql, &[]).await.unwrap_err();
        assert_eq!(code(&err), "42501", "{sql}");
        assert!(
            message(&err).contains("public.customers."),
            "names the column: {err}"
        );
        let err = auditor.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&err), "42501", "{sql} (simple)");
    }
    // What touches no protected column is allowed, and the session goes on.
    let n: i64 = auditor
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn writes_by_roles_without_write_are_refused_and_nothing_is_written() {
    let f = with_customer().await;
    for suffix in ["support", "dba", "auditor"] {
        let c = f.connect(suffix).await;
        let err = c
            .execute(
                "INSERT INTO customers (email, name) VALUES ($1, 'x')",
                &[&"new@example.com"],
            )
            .await
            .unwrap_err();
        assert_eq!(code(&err), "42501", "{suffix}");
        assert!(message(&err).contains("public.customers.email"), "{err}");
        let err = c
            .simple_query("UPDATE customers SET age = 7")
            .await
            .unwrap_err();
        assert_eq!(code(&err), "42501", "{suffix} update");
        // Unprotected columns stay writable, and the session goes on.
        c.execute("UPDATE customers SET name = 'Alicia'", &[])
            .await
            .unwrap();
    }
    let direct = f.direct().await;
    let n: i64 = direct
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "nothing was inserted");
    let app = f.connect("app").await;
    let age: i32 = app
        .query_one("SELECT age FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(age, 42, "nothing was updated");
}

#[tokio::test]
async fn refusal_inside_a_transaction_aborts_it_like_an_error() {
    let f = with_customer().await;
    let support = f.connect("support").await;
    support.batch_execute("BEGIN").await.unwrap();
    support
        .execute("UPDATE customers SET name = 'Bob'", &[])
        .await
        .unwrap();
    let err = support
        .execute("UPDATE customers SET email = $1", &[&"b@x.org"])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501");
    let err = support.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(code(&err), "25P02", "the transaction is aborted");
    support.batch_execute("ROLLBACK").await.unwrap();
    let name: String = support
        .query_one("SELECT name FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Alice");
}

#[tokio::test]
async fn pg_role_membership_selects_the_analyst_role_with_hash_pseudonyms() {
    let f = with_customer().await;
    let app = f.connect("app").await;
    app.execute(
        "INSERT INTO customers (email, age) VALUES ('bob@example.com', 42)",
        &[],
    )
    .await
    .unwrap();
    let analyst = f.connect("analyst").await;
    let rows = analyst
        .query("SELECT email, age FROM customers ORDER BY id", &[])
        .await;
    // ORDER BY id is fine (id is not protected).
    let rows = rows.unwrap();
    let pseudonym = |i: usize, c: usize| rows[i].get::<_, String>(c);
    assert_ne!(pseudonym(0, 0), pseudonym(1, 0), "different emails differ");
    assert_eq!(pseudonym(0, 1), pseudonym(1, 1), "equal ages are equal");
    assert!(!pseudonym(0, 0).contains("alice"));
    assert_ne!(pseudonym(0, 1), "42");
    // Stable across sessions: analysts can count and join on pseudonyms.
    let again = f.connect("analyst").await;
    let first: String = again
        .query_one("SELECT email FROM customers ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, pseudonym(0, 0));
}

#[tokio::test]
async fn statement_kinds_outside_the_role_list_are_refused() {
    let f = with_customer().await;
    let analyst = f.connect("analyst").await;
    // `statements = ["select"]`: also for tables with no protected column.
    let err = analyst
        .execute("INSERT INTO notes (body) VALUES ('x')", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501");
    let err = analyst.simple_query("DELETE FROM notes").await.unwrap_err();
    assert_eq!(code(&err), "42501");
    // Transaction control and session settings are always allowed.
    analyst
        .batch_execute("BEGIN; SET LOCAL statement_timeout = 0; SELECT count(*) FROM notes; COMMIT")
        .await
        .unwrap();
    let n: i64 = f
        .direct()
        .await
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_connection_from_outside_the_role_networks_is_refused_with_28000() {
    let f = RolesFixture::new().await;
    let err = f.try_connect("remote").await.expect_err("refused");
    assert_eq!(code(&err), "28000");
    assert_eq!(
        series(
            &f.proxy.metrics_text(),
            "pgshroud_connection_errors_total{reason=\"network_denied\"}"
        ),
        1.0
    );
    assert!(message(&err).contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn copy_to_applies_the_role_actions_and_copy_from_needs_write() {
    use futures_util::{SinkExt, StreamExt};
    let f = with_customer().await;
    let support = f.connect("support").await;
    let stream = support
        .copy_out("COPY customers (email, age, birthday, name) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let text: String = chunks
        .into_iter()
        .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(text, "a****@example.com\t\\N\t1990\tAlice\n");
    let copied = async {
        let sink = support
            .copy_in::<_, bytes::Bytes>("COPY customers (email) FROM STDIN")
            .await?;
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"x@y.org\n")).await?;
        sink.finish().await
    };
    let err = copied.await.unwrap_err();
    assert_eq!(code(&err), "42501");
}

#[tokio::test]
async fn psql_sessions_see_what_each_role_promises() {
    let f = with_customer().await;
    // tokio's Command: a blocking wait would stall the proxy, which runs on this runtime.
    let psql = async |suffix: &str| {
        let out = tokio::process::Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-c",
                "SELECT email, age FROM customers",
                &f.proxy.conn_string(
                    &f.user(suffix),
                    pgshroud_integration_tests::roles::PASSWORD,
                    &f.db,
                ),
            ])
            .output()
            .await
            .expect("psql runs");
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    assert_eq!(psql("app").await.0, "alice@example.com|42");
    assert_eq!(psql("support").await.0, "a****@example.com|");
    assert!(psql("dba").await.0.starts_with("\\x02"));
    let (out, err) = psql("auditor").await;
    assert_eq!(out, "");
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        !err.contains("inline_code_block") && !err.contains("CONTEXT"),
        "the refusal reads as pgshroud's own, not as a DO block's: {err}"
    );
}

/// Polls a live connection until `sql` returns `want` (the reload is picked up by the file
/// watcher within about a second); bounded, so a broken reload fails instead of hanging.
async fn eventually(c: &tokio_postgres::Client, sql: &str, want: &str) -> bool {
    for _ in 0..100 {
        let got = simple_row(c, sql).await[0].clone();
        if got.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_reload_changes_what_a_live_connection_sees_and_a_bad_file_keeps_the_old_rules() {
    let f = with_customer().await;
    let support = f.connect("support").await;
    assert_eq!(
        simple_row(&support, "SELECT email FROM customers").await[0].as_deref(),
        Some("a****@example.com")
    );
    let decrypting = RULES.replace(
        "\"public.customers.email\" = \"mask:email\"",
        "\"public.customers.email\" = \"decrypt\"",
    );
    std::fs::write(f.rules_path(), decrypting).unwrap();
    assert!(
        eventually(&support, "SELECT email FROM customers", "alice@example.com").await,
        "the same connection sees the new rules"
    );
    // A broken file is rejected; the rules in force stay.
    std::fs::write(f.rules_path(), "[[tables]]\nname = \n").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        simple_row(&support, "SELECT email FROM customers").await[0].as_deref(),
        Some("alice@example.com")
    );
    let fresh = f.connect("support").await;
    assert_eq!(
        simple_row(&fresh, "SELECT email FROM customers").await[0].as_deref(),
        Some("alice@example.com")
    );
}

#[tokio::test]
async fn check_prints_every_role_and_column_and_fails_on_a_bad_file() {
    let f = RolesFixture::new().await;
    let report = pgshroud::cli::operator::check(&f.rules_path()).expect("valid rules");
    for needle in [
        "support",
        "mask:email",
        "ciphertext",
        "deny",
        "public.customers.age",
    ] {
        assert!(report.contains(needle), "{needle} in\n{report}");
    }
    let bad = f.dir.path().join("bad.toml");
    std::fs::write(&bad, "[[roles]]\nname = \"x\"\ntemplate = \"nope\"\n").unwrap();
    let err = pgshroud::cli::operator::check(&bad).unwrap_err();
    assert!(err.contains("bad.toml"), "{err}");
}

#[tokio::test]
async fn a_client_certificate_subject_selects_its_role() {
    use pgshroud_integration_tests::certs::TestCa;
    use pgshroud_integration_tests::users;
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write_to(certs.path(), "proxy");
    let f = RolesFixture::with_settings(pgshroud::config::ConfigLayer {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_ca_file: Some(ca.write_ca(certs.path())),
        // The fixture's own connections come without TLS.
        tls_client_sslmode: Some("prefer".into()),
        ..Default::default()
    })
    .await;
    f.connect("app")
        .await
        .execute(
            "INSERT INTO customers (email) VALUES ('alice@example.com')",
            &[],
        )
        .await
        .unwrap();
    let conn = format!(
        "host=localhost port={} user={} password={} dbname={} sslmode=require",
        f.proxy.port(),
        users::SCRAM,
        users::SCRAM_PASSWORD,
        f.db
    );
    let email_as = async |config: rustls::ClientConfig| {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
        let (c, connection) = tokio_postgres::connect(&conn, tls)
            .await
            .expect("TLS login");
        tokio::spawn(connection);
        simple_row(&c, "SELECT email FROM customers").await[0]
            .clone()
            .unwrap()
    };
    // scram_user matches no role by name: the certificate decides.
    let service = ca.issue_client("api.svc.example.test");
    assert_eq!(
        email_as(ca.client_config_with_identity(&service)).await,
        "alice@example.com"
    );
    let stranger = ca.issue_client("laptop.example.test");
    assert!(email_as(ca.client_config_with_identity(&stranger))
        .await
        .starts_with("\\x02"));
    assert!(
        email_as(ca.client_config()).await.starts_with("\\x02"),
        "no certificate: default role"
    );
}

/// The value of one series in the metrics text (0 when absent).
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_protected_values_by_action_and_refusals_by_reason() {
    let f = with_customer().await;
    let before = f.proxy.metrics_text();
    assert_eq!(
        series(
            &before,
            "pgshroud_protected_values_total{action=\"encrypted\"}"
        ),
        3.0,
        "the app's insert sealed three values\n{before}"
    );
    f.connect("support").await.query(SELECT, &[]).await.unwrap();
    f.connect("app").await.query(SELECT, &[]).await.unwrap();
    let auditor = f.connect("auditor").await;
    auditor.query(SELECT, &[]).await.unwrap_err();
    let after = f.proxy.metrics_text();
    assert_eq!(
        series(&after, "pgshroud_protected_values_total{action=\"masked\"}"),
        2.0
    );
    assert_eq!(
        series(&after, "pgshroud_protected_values_total{action=\"nulled\"}"),
        1.0
    );
    assert_eq!(
        series(
            &after,
            "pgshroud_protected_values_total{action=\"decrypted\"}"
        ),
        3.0
    );
    assert_eq!(
        series(&after, "pgshroud_crypto_operations_total{op=\"decrypt\"}"),
        5.0
    );
    assert_eq!(
        series(&after, "pgshroud_refusals_total{reason=\"column_denied\"}"),
        1.0
    );
}

/// Every logical type under a read action of its own, for a caller who gets the default role.
const TYPED_RULES: &str = r#"
default_role = "viewer"

[[tables]]
name = "typed"
  [[tables.columns]]
  name = "v_text"
  type = "text"
  [[tables.columns]]
  name = "v_varchar"
  type = "varchar"
  [[tables.columns]]
  name = "v_int2"
  type = "int2"
  [[tables.columns]]
  name = "v_int4"
  type = "int4"
  [[tables.columns]]
  name = "v_int8"
  type = "int8"
  [[tables.columns]]
  name = "v_bool"
  type = "bool"
  [[tables.columns]]
  name = "v_numeric"
  type = "numeric"
  [[tables.columns]]
  name = "v_date"
  type = "date"
  [[tables.columns]]
  name = "v_timestamp"
  type = "timestamp"
  [[tables.columns]]
  name = "v_timestamptz"
  type = "timestamptz"
  [[tables.columns]]
  name = "v_uuid"
  type = "uuid"
  [[tables.columns]]
  name = "v_bytea"
  type = "bytea"
  [[tables.columns]]
  name = "v_jsonb"
  type = "jsonb"

[[roles]]
name = "writer"
template = "app"
users = ["scram_user"]

[[roles]]
name = "viewer"
template = "support"
users = ["md5_user"]
  [roles.columns]
  "public.typed.v_text" = "mask:partial(1,1)"
  "public.typed.v_varchar" = "mask:last4"
  "public.typed.v_int4" = "mask:range(10)"
  "public.typed.v_int8" = "mask:hash"
  "public.typed.v_bool" = "null"
  "public.typed.v_numeric" = "mask:range(100)"
  "public.typed.v_bytea" = "ciphertext"
  "public.typed.v_jsonb" = "decrypt"
"#;

#[tokio::test]
async fn every_logical_type_is_masked_nulled_or_decrypted_in_text_and_binary() {
    use pgshroud_integration_tests::protected::{proxy_with_rules, Fixture, MASTER_KEY};
    use pgshroud_integration_tests::users;
    let f = Fixture::new().await;
    let (_dir, proxy) = proxy_with_rules(TYPED_RULES, MASTER_KEY).await;
    let writer = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    writer
        .simple_query(
            "INSERT INTO typed (v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_numeric, v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb)
             VALUES ('Johnson', '555-0123', 7, 34, 9000000000, true, 1234.5, '2000-02-03', '2024-01-02 03:04:05', '2024-01-02 03:04:05+00',
                     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', '{\"k\": 1}')",
        )
        .await
        .unwrap();
    let viewer = proxy
        .connect(users::MD5, users::MD5_PASSWORD, &f.db)
        .await
        .unwrap();
    let all = "SELECT v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_numeric, v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb FROM typed";
    let text = simple_row(&viewer, all).await;
    let stored_bytea: Vec<u8> = f
        .stored("SELECT v_bytea FROM typed")
        .await
        .remove(0)
        .unwrap();
    let shown = |i: usize| text[i].clone();
    assert_eq!(shown(0).as_deref(), Some("J*****n"), "partial(1,1)");
    assert_eq!(shown(1).as_deref(), Some("****0123"), "last4");
    assert_eq!(shown(2).as_deref(), Some("****"), "support redacts int2");
    assert_eq!(shown(3).as_deref(), Some("30-39"), "range(10)");
    let pseudonym = shown(4).unwrap();
    assert!(!pseudonym.contains("9000000000"), "hash: {pseudonym}");
    assert_eq!(shown(5), None, "null");
    assert_eq!(shown(6).as_deref(), Some("1200-1299"), "range(100)");
    assert_eq!(
        shown(7).as_deref(),
        Some("2000"),
        "support shows the year of a date"
    );
    assert_eq!(shown(8).as_deref(), Some("2024"));
    assert_eq!(shown(9).as_deref(), Some("2024"));
    assert_eq!(shown(10).as_deref(), Some("****"), "support redacts uuid");
    assert_eq!(
        shown(11),
        Some(format!(
            "\\x{}",
            pgshroud_integration_tests::protected::hex(&stored_bytea)
        ))
    );
    assert_eq!(shown(12).as_deref(), Some("{\"k\": 1}"), "decrypt");

    // Binary format: masks arrive as text, NULL as NULL, ciphertext as bytea, plaintext typed.
    let row = viewer.query_one(all, &[]).await.unwrap();
    use tokio_postgres::types::Type;
    for masked in [0, 1, 2, 3, 4, 6, 7, 8, 9, 10] {
        assert_eq!(
            row.columns()[masked].type_(),
            &Type::TEXT,
            "column {masked}"
        );
        assert_eq!(
            Some(row.get::<_, String>(masked)),
            shown(masked),
            "column {masked}"
        );
    }
    assert_eq!(row.get::<_, Option<bool>>(5), None);
    assert_eq!(row.columns()[5].type_(), &Type::BOOL);
    assert_eq!(row.get::<_, Vec<u8>>(11), stored_bytea);
    assert_eq!(
        row.get::<_, serde_json::Value>(12),
        serde_json::json!({"k": 1})
    );
}

#[tokio::test]
async fn audit_events_name_the_role_and_what_it_got_of_each_column() {
    use pgshroud_integration_tests::protected::OTHER_KEY;
    let files = tempfile::tempdir().unwrap();
    let audit_log = files.path().join("audit.log");
    let audit_key = files.path().join("audit.key");
    std::fs::write(&audit_key, OTHER_KEY).unwrap();
    let f = RolesFixture::with_settings(pgshroud::config::ConfigLayer {
        audit_file: Some(audit_log.display().to_string()),
        audit_key_file: Some(audit_key),
        ..Default::default()
    })
    .await;
    f.connect("app")
        .await
        .execute(
            "INSERT INTO customers (email, age) VALUES ('a@x.org', 1)",
            &[],
        )
        .await
        .unwrap();
    f.connect("support")
        .await
        .query("SELECT email, age FROM customers", &[])
        .await
        .unwrap();
    f.connect("dba")
        .await
        .query("SELECT email FROM customers", &[])
        .await
        .unwrap();
    f.connect("auditor")
        .await
        .query("SELECT email FROM customers", &[])
        .await
        .unwrap_err();
    // A comparison without the compare right: refused, and the event says so.
    f.connect("analyst")
        .await
        .query("SELECT name FROM customers WHERE age = $1", &[&1i32])
        .await
        .unwrap_err();
    let RolesFixture {
        proxy, dir: _dir, ..
    } = f;
    proxy.shutdown().await;
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&audit_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "statement")
        .collect();
    let by_role = |role: &str| {
        events
            .iter()
            .find(|e| e["role"] == role)
            .unwrap_or_else(|| panic!("no statement event for {role}: {events:?}"))
    };
    let actions = |role: &str| -> Vec<(String, String)> {
        by_role(role)["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["column"].as_str().unwrap().to_owned(),
                    c["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let col = |c: &str, a: &str| (format!("public.customers.{c}"), a.to_owned());
    assert_eq!(
        actions("app"),
        vec![col("email", "encrypted"), col("age", "encrypted")]
    );
    assert_eq!(
        actions("support"),
        vec![col("email", "masked"), col("age", "nulled")]
    );
    assert_eq!(actions("dba"), vec![col("email", "ciphertext")]);
    assert_eq!(actions("auditor"), vec![col("email", "refused")]);
    assert_eq!(by_role("auditor")["outcome"], "refused");
    assert_eq!(by_role("auditor")["sqlstate"], "42501");
    assert_eq!(actions("analyst"), vec![col("age", "refused")]);
    assert_eq!(by_role("analyst")["outcome"], "refused");
    assert_eq!(by_role("analyst")["sqlstate"], "42501");
}

#[tokio::test]
async fn a_table_protected_by_a_reload_is_encrypted_on_a_live_connection() {
    let f = with_customer().await;
    let app = f.connect("app").await;
    app.batch_execute("CREATE TABLE vault (id int, secret bytea)")
        .await
        .unwrap();
    let with_vault = RULES.replacen(
        "[[roles]]",
        "[[tables]]\nname = \"public.vault\"\n  [[tables.columns]]\n  name = \"secret\"\n  type = \"text\"\n\n[[roles]]",
        1,
    );
    pgshroud_integration_tests::protected::install_guards(&f.db, &with_vault).await;
    std::fs::write(f.rules_path(), with_vault).unwrap();
    // The same connection picks the new table up (its catalog is looked up again).
    let mut protected = false;
    for i in 0..100 {
        let inserted = app
            .execute("INSERT INTO vault VALUES ($1, $2)", &[&i, &"s3cret"])
            .await;
        if inserted.is_ok() {
            let stored: Vec<u8> = f
                .direct()
                .await
                .query_one("SELECT secret FROM vault WHERE id = $1", &[&i])
                .await
                .unwrap()
                .get(0);
            if stored.first() == Some(&2) {
                protected = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(protected, "writes after the reload are encrypted");
    let row = app
        .query_one("SELECT * FROM vault WHERE secret = $1", &[&"s3cret"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("secret"), "s3cret");
}

/// Rewrites the rules file and waits (bounded) until a fresh connection as `suffix` sees
/// `want` for `sql`: the reload has happened.
async fn reload_and_wait(
    f: &RolesFixture,
    rules: &str,
    suffix: &str,
    sql: &str,
    want: Option<&str>,
) {
    std::fs::write(f.rules_path(), rules).unwrap();
    for _ in 0..100 {
        let c = f.connect(suffix).await;
        let got = c.simple_query(sql).await.ok().map(|m| rows(&m));
        if got.and_then(|r| r.first().cloned()).map(|r| r[0].clone())
            == Some(want.map(str::to_owned))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the reload was not picked up");
}

#[tokio::test]
async fn prepared_statements_follow_a_reload_or_must_be_prepared_again() {
    let f = with_customer().await;
    let support = f.connect("support").await;
    let select = support
        .prepare("SELECT email FROM customers")
        .await
        .unwrap();
    let email: String = support.query_one(&select, &[]).await.unwrap().get(0);
    assert_eq!(email, "a****@example.com");
    let app = f.connect("app").await;
    let insert_note = app
        .prepare("INSERT INTO notes (body) VALUES ($1)")
        .await
        .unwrap();

    // support may now decrypt email, and notes.body becomes protected.
    let reloaded = RULES
        .replace(
            "\"public.customers.email\" = \"mask:email\"",
            "\"public.customers.email\" = \"decrypt\"",
        )
        .replacen(
            "[[roles]]",
            "[[tables]]\nname = \"public.notes\"\n  [[tables.columns]]\n  name = \"body\"\n  type = \"text\"\n\n[[roles]]",
            1,
        );
    reload_and_wait(
        &f,
        &reloaded,
        "support",
        "SELECT email FROM customers",
        Some("alice@example.com"),
    )
    .await;

    // The statement prepared before the reload shows what the new rules say.
    let email: String = support.query_one(&select, &[]).await.unwrap().get(0);
    assert_eq!(email, "alice@example.com");
    // One whose server-side form is wrong under the new rules must be prepared again: never a
    // plaintext write into a column that is now protected.
    let err = app
        .execute(&insert_note, &[&"secret note"])
        .await
        .unwrap_err();
    // 0A000 ("prepare it again", or not stored as bytea) or, while this session has not looked
    // the new table up yet, 55000 (its guard cannot be seen): refused either way.
    assert!(["0A000", "55000"].contains(&code(&err).as_str()), "{err:?}");
    let direct = f.direct().await;
    let n: i64 = direct
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // A reload that denies the column refuses the prepared statement's next run.
    let denied = RULES.replace(
        "\"public.customers.email\" = \"mask:email\"",
        "\"public.customers.email\" = \"deny\"",
    );
    std::fs::write(f.rules_path(), &denied).unwrap();
    let mut refused = false;
    for _ in 0..100 {
        match support.query(&select, &[]).await {
            Err(e) if code(&e) == "42501" => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        refused,
        "the prepared statement is refused once the column is denied"
    );
}

#[tokio::test]
async fn max_rows_with_enforce_stops_the_statement_and_closes_the_connection() {
    use pgshroud_integration_tests::protected::{proxy_with_rules, Fixture, MASTER_KEY};
    use pgshroud_integration_tests::users;
    let f = Fixture::new().await;
    let rules = "default_role = \"capped\"\n[[tables]]\nname = \"customers\"\n  [[tables.columns]]\n  name = \"email\"\n  type = \"text\"\n\n\
         [[roles]]\nname = \"capped\"\ntemplate = \"app\"\nusers = [\"*\"]\nmax_rows = 2\nenforce = true\n";
    let (_dir, proxy) = proxy_with_rules(rules, MASTER_KEY).await;
    let c = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    c.batch_execute("INSERT INTO customers (email) VALUES ('a@x.org'), ('b@x.org'), ('c@x.org')")
        .await
        .unwrap();
    let two = c
        .query("SELECT email FROM customers ORDER BY id LIMIT 2", &[])
        .await
        .unwrap();
    assert_eq!(two.len(), 2, "at the limit is fine");
    let err = c
        .query("SELECT email FROM customers", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "54000");
    assert!(message(&err).contains("at most 2 rows"), "{err}");
    assert!(
        c.is_closed() || c.simple_query("SELECT 1").await.is_err(),
        "the connection is closed"
    );
    let again = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    let n: i64 = again
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "nothing was lost: only the read was stopped");
    assert_eq!(
        series(
            &proxy.metrics_text(),
            "pgshroud_refusals_total{reason=\"row_limit\"}"
        ),
        1.0
    );
}

// ---- compare rights, merged outputs, whole-table writes (issue 14) ------------------------

/// Asserts a 42501 refusal naming `column` and `what`, then that the session still works.
async fn refused_42501(
    c: &tokio_postgres::Client,
    err: tokio_postgres::Error,
    column: &str,
    what: &str,
) {
    assert_eq!(code(&err), "42501", "{err:?}");
    let shown = message(&err);
    assert!(shown.contains(column), "names the column: {shown}");
    assert!(shown.contains(what), "says what is missing: {shown}");
    let one: i32 = c
        .query_one("SELECT 1", &[])
        .await
        .expect("session usable")
        .get(0);
    assert_eq!(one, 1);
}

/// The proxy still accepts connections and answers.
async fn proxy_is_up(f: &RolesFixture) {
    let app = f.connect("app").await;
    app.simple_query("SELECT 1").await.expect("proxy answers");
}

#[tokio::test]
async fn compare_right_follows_each_template_with_literals_and_parameters_in_both_protocols() {
    let f = with_customer().await;
    let ages = vec![41i32, 42];
    for (suffix, may_compare) in [
        ("app", true),
        ("support", true),
        ("analyst", false),
        ("dba", false),
    ] {
        let c = f.connect(suffix).await;
        for sql in [
            "SELECT count(*) FROM customers WHERE age = 42",
            "SELECT count(*) FROM customers WHERE age IN (41, 42)",
            "SELECT count(*) FROM customers WHERE email <> 'alice@example.com'",
        ] {
            match c.simple_query(sql).await {
                Ok(_) => assert!(may_compare, "{suffix}: {sql} ran"),
                Err(e) => {
                    assert!(!may_compare, "{suffix}: {sql}: {e:?}");
                    refused_42501(&c, e, "public.customers.", "compare right").await;
                }
            }
        }
        let extended = [
            c.query_one(
                "SELECT count(*) FROM customers WHERE email = $1",
                &[&"alice@example.com"],
            )
            .await,
            c.query_one(
                "SELECT count(*) FROM customers WHERE age = ANY($1)",
                &[&ages],
            )
            .await,
            c.query_one(
                "SELECT count(*) FROM customers WHERE age IN ($1, 43)",
                &[&42i32],
            )
            .await,
        ];
        for result in extended {
            match result {
                Ok(row) => {
                    assert!(may_compare, "{suffix}: parameter comparison ran");
                    assert_eq!(row.get::<_, i64>(0), 1, "{suffix}: found by its value");
                }
                Err(e) => {
                    assert!(!may_compare, "{suffix}: {e:?}");
                    refused_42501(&c, e, "public.customers.", "compare right").await;
                }
            }
        }
    }
    // The auditor may not even name the column.
    let auditor = f.connect("auditor").await;
    let err = auditor
        .query(
            "SELECT count(*) FROM customers WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap_err();
    refused_42501(&auditor, err, "public.customers.email", "may not use it").await;
    // The refusals are counted by reason.
    let metrics = f.proxy.metrics_text();
    assert!(
        series(
            &metrics,
            "pgshroud_refusals_total{reason=\"compare_denied\"}"
        ) >= 12.0,
        "{metrics}"
    );
    proxy_is_up(&f).await;
}

#[tokio::test]
async fn analyst_and_dba_still_join_group_and_deduplicate_protected_columns() {
    let f = with_customer().await;
    for suffix in ["analyst", "dba"] {
        let c = f.connect(suffix).await;
        for sql in [
            "SELECT count(*) FROM customers a JOIN customers b ON a.email = b.email",
            "SELECT count(*) FROM customers a JOIN customers b USING (age)",
            "SELECT count(*) FROM customers WHERE email IN (SELECT email FROM customers)",
            "SELECT age, count(*) FROM customers GROUP BY age",
            "SELECT DISTINCT email FROM customers",
            "SELECT count(*) FROM customers WHERE birthday IS NOT NULL",
        ] {
            let rows = c
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{suffix}: {sql}: {e:?}"));
            assert_eq!(rows.len(), 1, "{suffix}: {sql}");
        }
    }
    proxy_is_up(&f).await;
}

#[tokio::test]
async fn delete_truncate_and_ddl_on_a_protected_table_need_the_write_right() {
    let f = with_customer().await;
    let direct = f.direct().await;
    // The app user owns the table, so PostgreSQL itself would allow its ALTER.
    direct
        .batch_execute(&format!("ALTER TABLE customers OWNER TO {}", f.user("app")))
        .await
        .unwrap();
    for suffix in ["support", "dba", "auditor"] {
        let c = f.connect(suffix).await;
        for sql in [
            "DELETE FROM customers WHERE id > 0",
            "WITH d AS (DELETE FROM customers RETURNING id) SELECT count(*) FROM d",
            "TRUNCATE customers",
            "ALTER TABLE customers ADD COLUMN extra int",
            "DROP TABLE customers",
        ] {
            let err = c.simple_query(sql).await.expect_err(sql);
            refused_42501(
                &c,
                err,
                "public.customers.",
                "may not delete rows of, truncate",
            )
            .await;
        }
        let err = c
            .execute("DELETE FROM customers WHERE id = $1", &[&1i32])
            .await
            .unwrap_err();
        refused_42501(&c, err, "public.customers.", "may not delete rows").await;
        // Tables without protected columns are not affected.
        c.simple_query("DELETE FROM notes")
            .await
            .expect("plain table");
    }
    let n: i64 = direct
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "nothing was deleted");
    // With the write right all of it runs.
    let app = f.connect("app").await;
    app.simple_query("ALTER TABLE customers ADD COLUMN extra int")
        .await
        .expect("alter");
    let deleted = app
        .execute("DELETE FROM customers WHERE id > $1", &[&0i32])
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    app.simple_query("TRUNCATE customers")
        .await
        .expect("truncate");
    proxy_is_up(&f).await;
}

/// Two tables whose `email` columns share a key context, and roles that see them differently.
const SHARED_CONTEXT_RULES: &str = r#"
default_role = "dba"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "email"

[[tables]]
name = "public.leads"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "email"

[[roles]]
name = "app"
template = "app"
users = ["*_app"]

# Reads leads in plaintext, customers redacted; may write.
[[roles]]
name = "sales"
template = "app"
users = ["*_support"]
  [roles.columns]
  "public.customers.email" = "mask:redact"

# Two different masks: no order between them.
[[roles]]
name = "marketing"
template = "support"
users = ["*_analyst"]
  [roles.columns]
  "public.leads.email" = "mask:email"
  "public.customers.email" = "mask:redact"

# Reads leads in plaintext, customers as ciphertext; no compare right.
[[roles]]
name = "dba"
template = "dba"
users = ["*_dba"]
  [roles.columns]
  "public.leads.email" = "decrypt"

[[roles]]
name = "auditor"
template = "auditor"
users = ["*_auditor"]
"#;

const SHARED_CONTEXT_SCHEMA: &str = "\
CREATE TABLE customers (id serial PRIMARY KEY, email bytea);
CREATE TABLE leads (id serial PRIMARY KEY, email bytea);";

async fn shared_context() -> RolesFixture {
    let f = RolesFixture::with_rules(
        SHARED_CONTEXT_RULES,
        SHARED_CONTEXT_SCHEMA,
        pgshroud::config::ConfigLayer::default(),
    )
    .await;
    let app = f.connect("app").await;
    app.batch_execute(
        "INSERT INTO customers (email) VALUES ('cust@example.com'); \
         INSERT INTO leads (email) VALUES ('lead@example.com')",
    )
    .await
    .expect("app writes");
    f
}

#[tokio::test]
async fn outputs_fed_by_columns_seen_differently_get_the_strictest_action() {
    let f = shared_context().await;
    let sales = f.connect("support").await;
    let lead = simple_row(&sales, "SELECT email FROM leads").await;
    assert_eq!(
        lead,
        vec![Some("lead@example.com".to_owned())],
        "leads decrypt"
    );
    for sql in [
        "SELECT email FROM leads UNION ALL SELECT email FROM customers",
        "SELECT email FROM customers UNION SELECT email FROM leads",
        "WITH x AS (SELECT email FROM leads UNION ALL SELECT email FROM customers) SELECT email FROM x",
        "SELECT e FROM (SELECT email AS e FROM leads UNION ALL SELECT email FROM customers) s",
        "SELECT email FROM leads WHERE id > 0 INTERSECT SELECT email FROM customers",
    ] {
        let text: Vec<Option<String>> = rows(&sales.simple_query(sql).await.expect(sql))
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
        let binary: Vec<String> = sales
            .query(sql, &[])
            .await
            .expect(sql)
            .iter()
            .map(|r| r.get(0))
            .collect();
        for shown in text.iter().flatten().chain(&binary) {
            assert_eq!(shown, "****", "{sql}: redacted");
        }
    }
    // Copying the redacted column into the plaintext one would launder it.
    let err = sales
        .simple_query("INSERT INTO leads (email) SELECT email FROM customers")
        .await
        .unwrap_err();
    refused_42501(&sales, err, "public.customers.email", "differently").await;
    let n: i64 = f
        .direct()
        .await
        .query_one("SELECT count(*) FROM leads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "nothing was copied");

    // Two different masks have no order: refused.
    let marketing = f.connect("analyst").await;
    let err = marketing
        .query(
            "SELECT email FROM leads UNION ALL SELECT email FROM customers",
            &[],
        )
        .await
        .unwrap_err();
    refused_42501(&marketing, err, "public.leads.email", "differently").await;

    // Plaintext and ciphertext: both rows come back as the stored ciphertext.
    let dba = f.connect("dba").await;
    let rows = dba
        .query(
            "SELECT email FROM leads UNION ALL SELECT email FROM customers",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            row.columns()[0].type_(),
            &tokio_postgres::types::Type::BYTEA
        );
        assert_eq!(row.get::<_, Vec<u8>>(0)[0], 2, "an envelope");
    }
    proxy_is_up(&f).await;
}

#[tokio::test]
async fn joining_a_column_read_in_plaintext_with_one_read_as_ciphertext_needs_the_compare_right() {
    let f = shared_context().await;
    let dba = f.connect("dba").await;
    let err = dba
        .query(
            "SELECT count(*) FROM leads l JOIN customers c ON l.email = c.email",
            &[],
        )
        .await
        .unwrap_err();
    refused_42501(&dba, err, "public.leads.email", "compare right").await;
    // Within one column (one action) joins still work.
    let n: i64 = dba
        .query_one(
            "SELECT count(*) FROM customers a JOIN customers b ON a.email = b.email",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A role with the compare right may join (it could supply the values itself).
    let sales = f.connect("support").await;
    let n: i64 = sales
        .query_one(
            "SELECT count(*) FROM leads l JOIN customers c ON l.email = c.email",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    proxy_is_up(&f).await;
}

// ---- stored values through server functions and FunctionCall (issue 14) -------------------

#[tokio::test]
async fn server_functions_running_sql_text_are_refused_to_roles_that_may_not_see_stored_values() {
    let f = with_customer().await;
    let leaking = [
        "SELECT query_to_xml('select email from customers', true, false, '')",
        "SELECT query_to_xml_and_xmlschema('SELECT * FROM public.customers', true, false, '')",
        "SELECT query_to_xml('select email from cust' || 'omers', true, false, '')",
        "SELECT table_to_xml('customers'::regclass, true, false, '')",
        "SELECT table_to_xml('customers'::regclass::oid::int::regclass, true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        "SELECT U&\"query\\005fto\\005fxml\"('select age from custom' || 'ers', true, false, '')",
        "DO $$ BEGIN EXECUTE 'select 1'; END $$",
    ];
    for suffix in ["auditor", "support", "analyst"] {
        let c = f.connect(suffix).await;
        for sql in leaking {
            let err = c.simple_query(sql).await.expect_err(sql);
            refused_42501(
                &c,
                err,
                "public.customers.",
                "may not receive its stored values",
            )
            .await;
        }
        // Extended protocol, with the SQL text as a parameter: refused too.
        let err = c
            .query(
                "SELECT query_to_xml($1, true, false, '')::text",
                &[&"select email from customers"],
            )
            .await
            .unwrap_err();
        refused_42501(&c, err, "public.customers.", "not a string literal").await;
        // What reads no protected table still runs.
        let xml = c
            .query_one(
                "SELECT query_to_xml('select body from notes', true, false, '')::text",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{suffix}: {e:?}"));
        assert!(xml.get::<_, String>(0).contains("table"), "{suffix}");
    }
    // The app reads more than the stored ciphertext and may write, so the text may run.
    let c = f.connect("app").await;
    let sql = "SELECT query_to_xml('select email from customers', true, false, '')::text";
    let xml: String = c
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("app: {e:?}"))
        .get(0);
    assert!(!xml.contains("alice"), "app: no plaintext in {xml}");
    // The dba reads ciphertext anyway, but may not write: an SQL text can hold a
    // data-modifying WITH the proxy would not see, so it is refused too.
    let c = f.connect("dba").await;
    let err = c.query_one(sql, &[]).await.unwrap_err();
    refused_42501(&c, err, "public.customers.", "may not change it").await;
    proxy_is_up(&f).await;
}

#[tokio::test]
async fn function_calls_are_refused_to_roles_that_may_not_see_stored_values() {
    use pgshroud_integration_tests::raw::{error_codes, message, RawClient};
    use pgshroud_integration_tests::users;
    let rules = format!(
        "{RULES}\n[[roles]]\nname = \"ops_auditor\"\ntemplate = \"auditor\"\nusers = [\"{}\"]\n",
        users::TRUST
    );
    let f = RolesFixture::with_rules(
        &rules,
        pgshroud_integration_tests::roles::SCHEMA,
        pgshroud::config::ConfigLayer::default(),
    )
    .await;
    let direct = f.direct().await;
    direct
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            f.db,
            users::TRUST
        ))
        .await
        .unwrap();
    let oid: u32 = direct
        .query_one("SELECT 'pg_backend_pid'::regproc::oid", &[])
        .await
        .unwrap()
        .get(0);
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let call = message(b'F', &body);

    let mut auditor = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    auditor.send(&call).await;
    let msgs = auditor.recv_until_ready().await;
    assert_eq!(error_codes(&msgs), ["42501"], "{msgs:?}");
    let shown = msgs.iter().find_map(|m| m.field(b'M')).unwrap_or_default();
    assert!(shown.contains("function calls"), "{shown}");
    // The session goes on.
    auditor
        .send(&message(b'Q', b"SELECT count(*) FROM customers\0"))
        .await;
    let msgs = auditor.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.kind == b'D'), "{msgs:?}");
    proxy_is_up(&f).await;
}
