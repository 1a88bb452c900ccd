//! The guard: PostgreSQL itself rejects any value in a protected column that is not a
//! pgshroud envelope of that column's key context, on every write path the server has, and
//! the proxy writes to no protected column without it. `pgshroud setup` installs it.
//!
//! Writes here go straight to PostgreSQL as a non-superuser role that does not own the
//! tables (`scram_user`): the guard must hold for code the proxy never sees.

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::{
    code, install_guards, owner_url, proxy_with_rules, Fixture, MASTER_KEY, RULES, SCHEMA,
};
use pgshroud_integration_tests::{cluster, users};

/// A valid format-2 envelope of `alice@example.com` in `public.customers.email` (FORMAT.md).
const ALICE_V2: &str =
    "020000000117ab4a2f0426a3a8dc43861b13757213432d1083abf262bed95604425c2b58637f58ea75cc";
/// The same value in format 1, as pgshroud wrote it before the context tag existed.
const ALICE_V1: &str =
    "01000000010426a3a8dc43861b13757213432d1083abf262bed95604425c2b58637f58ea75cc";

/// A direct connection as the application role (not a superuser, not the tables' owner).
async fn app_direct(db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &cluster().conn_string(users::SCRAM, users::SCRAM_PASSWORD, db),
        tokio_postgres::NoTls,
    )
    .await
    .expect("direct login as the app role");
    tokio::spawn(connection);
    client
}

/// A database with the fixture's tables, guarded.
async fn guarded_db() -> String {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin.batch_execute(SCHEMA).await.expect("schema");
    install_guards(&db, RULES).await;
    db
}

async fn rules_file(rules: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules).unwrap();
    (dir, path)
}

#[tokio::test]
async fn setup_guards_every_column_and_running_it_again_changes_nothing() {
    let db = cluster().fresh_database().await;
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(&format!(
            "{SCHEMA} CREATE VIEW customer_emails AS SELECT id, email FROM customers;"
        ))
        .await
        .unwrap();
    let (_dir, rules) = rules_file(RULES).await;
    let first = pgshroud::cli::setup::setup(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(first.ok, "{}", first.text);
    assert!(
        first
            .text
            .contains("public.customers.email: guard pgshroud_guard_email added"),
        "{}",
        first.text
    );
    assert!(
        first.text.contains("public.customer_emails.email: a view"),
        "{}",
        first.text
    );
    let second = pgshroud::cli::setup::setup(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(second.ok, "{}", second.text);
    assert!(
        second
            .text
            .contains("public.customers.email: already guarded (pgshroud_guard_email)"),
        "{}",
        second.text
    );
    assert!(!second.text.contains("added"), "{}", second.text);
    let admin = cluster().admin_client_for(&db).await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'pgshroud_guard_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // customers.email, customers.age, orders, people, driver_check x2, typed x13.
    assert_eq!(n, 19);
    let check = pgshroud::cli::setup::database_report(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(check.ok, "{}", check.text);
    assert!(
        check.text.contains("guarded (pgshroud_guard_email)"),
        "{}",
        check.text
    );
}

#[tokio::test]
async fn guard_rejects_plaintext_on_every_write_path_inside_the_server() {
    let db = guarded_db().await;
    let admin = cluster().admin_client_for(&db).await;
    // Server-side code an application (or an attacker with its login) could have set up: the
    // owner creates what needs ownership; the app role writes through it.
    admin
        .batch_execute(
            "CREATE VIEW v_customers AS SELECT id, email, age FROM customers;
             CREATE TABLE inbox (id int, email bytea);
             CREATE RULE inbox_copy AS ON INSERT TO inbox DO ALSO INSERT INTO customers (email) VALUES (NEW.email);
             CREATE TABLE audit_src (id int, email text);
             CREATE FUNCTION copy_email() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO customers (email) VALUES (convert_to(NEW.email, 'UTF8')); RETURN NEW; END $$;
             CREATE TRIGGER t_copy AFTER INSERT ON audit_src FOR EACH ROW EXECUTE FUNCTION copy_email();
             CREATE FUNCTION put_sql(e text) RETURNS void LANGUAGE sql AS
               $$ INSERT INTO customers (email) VALUES (convert_to(e, 'UTF8')) $$;
             CREATE FUNCTION put_plpgsql(e text) RETURNS void LANGUAGE plpgsql AS
               $$ BEGIN EXECUTE 'INSERT INTO cust' || 'omers (email) VALUES ($1)' USING convert_to(e, 'UTF8'); END $$;
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .expect("server-side objects");
    let app = app_direct(&db).await;
    app.batch_execute(&format!(
        "INSERT INTO customers (email, age) VALUES ('\\x{ALICE_V2}', NULL)"
    ))
    .await
    .expect("a real envelope of the column's context is accepted");
    let attempts = [
        "INSERT INTO customers (email) VALUES ('alice@example.com')",
        "INSERT INTO customers (email) VALUES (convert_to('alice@example.com', 'UTF8'))",
        "UPDATE customers SET email = 'plain'::bytea",
        "INSERT INTO v_customers (email) VALUES ('plain'::bytea)",
        "INSERT INTO inbox VALUES (1, 'plain'::bytea)",
        "INSERT INTO audit_src VALUES (1, 'bob@example.com')",
        "SELECT put_sql('bob@example.com')",
        "SELECT put_plpgsql('bob@example.com')",
        "DO $$ BEGIN INSERT INTO customers (email) VALUES ('plain'::bytea); END $$",
        "DO $$ BEGIN EXECUTE 'INSERT INTO ' || 'customers (age) VALUES (''\\x00000001''::bytea)'; END $$",
        // A real envelope, but of another column (customers.email's value into age).
        &format!("INSERT INTO customers (age) VALUES ('\\x{ALICE_V2}')"),
        // Format 1: no context tag, so not admitted by the guard.
        &format!("INSERT INTO customers (email) VALUES ('\\x{ALICE_V1}')"),
        // An envelope's prefix without the minimum length.
        "INSERT INTO customers (email) VALUES ('\\x020000000117ab4a2f'::bytea)",
    ];
    for sql in attempts {
        let err = app.batch_execute(sql).await.expect_err(sql);
        assert_eq!(code(&err), "23514", "{sql}: {err}");
    }
    let mut copy_in = std::pin::pin!(app
        .copy_in::<_, bytes::Bytes>("COPY customers (email) FROM STDIN")
        .await
        .unwrap());
    use futures_util::SinkExt;
    copy_in
        .send(bytes::Bytes::from_static(b"plain-from-copy\n"))
        .await
        .unwrap();
    let err = copy_in
        .as_mut()
        .finish()
        .await
        .expect_err("COPY of plaintext");
    assert_eq!(code(&err), "23514", "{err}");
    let stored: Vec<Vec<u8>> = admin
        .query("SELECT email FROM customers WHERE email IS NOT NULL", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        stored,
        vec![hex_bytes(ALICE_V2)],
        "only the envelope was stored"
    );
}

#[tokio::test]
async fn guard_holds_for_defaults_child_tables_partitions_and_renames() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE vault (id int, secret bytea);
             CREATE TABLE events (id int, at date, secret bytea) PARTITION BY RANGE (at);
             CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT CREATE ON SCHEMA public TO PUBLIC;",
        )
        .await
        .unwrap();
    let rules = r#"
[[tables]]
name = "public.vault"
  [[tables.columns]]
  name = "secret"
  type = "text"
[[tables]]
name = "public.events"
  [[tables.columns]]
  name = "secret"
  type = "text"
"#;
    install_guards(&db, rules).await;
    let app = app_direct(&db).await;
    // A partition made after setup gets the parent's guard too.
    admin
        .batch_execute(
            "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
             GRANT ALL ON events_2027 TO PUBLIC",
        )
        .await
        .unwrap();
    // A child table inherits the guard, and it cannot be dropped from the child alone.
    admin
        .batch_execute(
            "CREATE TABLE vault_child (note text) INHERITS (vault); GRANT ALL ON vault_child TO PUBLIC",
        )
        .await
        .unwrap();
    let err = admin
        .batch_execute("ALTER TABLE vault_child DROP CONSTRAINT pgshroud_guard_secret")
        .await
        .expect_err("an inherited guard cannot be dropped from the child");
    assert_eq!(code(&err), "42P16", "{err}");
    // A default that is plaintext.
    admin
        .batch_execute("ALTER TABLE vault ALTER COLUMN secret SET DEFAULT 'plain'::bytea")
        .await
        .unwrap();
    for sql in [
        "INSERT INTO vault (id) VALUES (1)",
        "INSERT INTO vault_child (id, secret) VALUES (1, 'plain'::bytea)",
        "INSERT INTO events VALUES (1, '2026-05-01', 'plain'::bytea)",
        "INSERT INTO events_2026 VALUES (1, '2026-05-01', 'plain'::bytea)",
        "INSERT INTO events_2027 VALUES (1, '2027-05-01', 'plain'::bytea)",
    ] {
        let err = app.batch_execute(sql).await.expect_err(sql);
        assert_eq!(code(&err), "23514", "{sql}: {err}");
    }
    // Renamed table and column: the constraint follows them.
    admin
        .batch_execute(
            "ALTER TABLE vault RENAME TO strongbox; ALTER TABLE strongbox RENAME COLUMN secret TO s",
        )
        .await
        .unwrap();
    let err = app
        .batch_execute("INSERT INTO strongbox (id, s) VALUES (2, 'plain'::bytea)")
        .await
        .expect_err("renamed");
    assert_eq!(code(&err), "23514", "{err}");
}

#[tokio::test]
async fn proxy_refuses_writes_to_an_unguarded_column_and_says_why() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin.batch_execute(SCHEMA).await.unwrap();
    let (_dir, proxy) = proxy_with_rules(RULES, MASTER_KEY).await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO customers (email) VALUES ('alice@example.com')",
        "UPDATE customers SET age = 42",
    ] {
        let err = app.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&err), "55000", "{sql}: {err}");
        let text = err.as_db_error().unwrap().message().to_owned();
        assert!(text.contains("public.customers."), "{text}");
        assert!(text.contains("guard"), "{text}");
        assert!(!text.contains("alice"), "{text}");
    }
    let err = app
        .execute(
            "INSERT INTO customers (email) VALUES ($1)",
            &[&"bob@example.com"],
        )
        .await
        .expect_err("extended protocol too");
    assert_eq!(code(&err), "55000", "{err}");
    // The session is still usable, and reads are not affected.
    let rows = app
        .query("SELECT count(*) FROM customers WHERE email = 'x'", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("pgshroud_unguarded_columns 19"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("unguarded"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        metrics.contains("pgshroud_refusals_total{reason=\"unguarded_column\"} 3"),
        "refusals counted"
    );
    let stored = admin
        .query("SELECT count(*) FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(stored[0].get::<_, i64>(0), 0, "nothing was written");
    // Once guarded, new sessions write.
    install_guards(&db, RULES).await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    app.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"bob@example.com"],
    )
    .await
    .expect("guarded now");
}

#[tokio::test]
async fn require_guard_off_writes_without_a_guard() {
    let db = cluster().fresh_database().await;
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, MASTER_KEY).unwrap();
    let proxy = pgshroud_integration_tests::proxy_with(ConfigLayer {
        rules: Some(rules),
        master_key_file: Some(key),
        require_guard: Some(false),
        ..Default::default()
    })
    .await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    app.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"bob@example.com"],
    )
    .await
    .expect("written without a guard");
    let stored = cluster()
        .admin_client_for(&db)
        .await
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap()
        .get::<_, Vec<u8>>(0);
    assert_eq!(stored[0], 0x02, "still encrypted");
}

#[tokio::test]
async fn setup_rewrites_format_1_values_and_refuses_a_column_holding_plaintext() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin.batch_execute(SCHEMA).await.unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO customers (email) VALUES ('\\x{ALICE_V1}');
             INSERT INTO people (email) VALUES ('zebra-secret'::bytea);"
        ))
        .await
        .unwrap();
    let (_dir, rules) = rules_file(RULES).await;
    let report = pgshroud::cli::setup::setup(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(!report.ok, "{}", report.text);
    assert!(
        report.text.contains(
            "public.customers.email: guard pgshroud_guard_email added (1 format-1 values rewritten to format 2)"
        ),
        "{}",
        report.text
    );
    assert!(
        report.text.contains(
            "public.people.email: FAILED: the column holds values that are not pgshroud envelopes"
        ),
        "{}",
        report.text
    );
    assert!(!report.text.contains("zebra"), "no value in the report");
    let stored: Vec<u8> = admin
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, hex_bytes(ALICE_V2));
    // The people column stays unguarded (and unchanged); the check says so.
    let check = pgshroud::cli::setup::database_report(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(!check.ok);
    assert!(check.text.contains("NOT GUARDED"), "{}", check.text);
    // The rewritten value reads back through the proxy.
    let (_dir, proxy) = proxy_with_rules(RULES, MASTER_KEY).await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    let email: String = app
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "alice@example.com");
}

#[tokio::test]
async fn values_written_through_the_proxy_pass_the_guard() {
    let f = Fixture::new().await;
    let app = f.app().await;
    app.execute(
        "INSERT INTO customers (email, age) VALUES ($1, $2)",
        &[&"carol@example.net", &33i32],
    )
    .await
    .unwrap();
    app.simple_query("INSERT INTO customers (email, age) VALUES ('dan@example.net', 44)")
        .await
        .unwrap();
    let rows = app
        .query("SELECT email FROM customers ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].get::<_, String>(0), "dan@example.net");
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}
