//! Audit end to end: every statement through the proxy leaves one event with no value in it,
//! connections leave connect/auth/disconnect events, the chain verifies and breaks where the
//! file was changed, and per-role limits raise alerts.

use std::path::PathBuf;

use pgshroud::audit::chain::ChainKey;
use pgshroud::audit::verify;
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::{
    code, install_guards, MASTER_KEY, OTHER_KEY, RULES, SCHEMA,
};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::{cluster, proxy_with, users};
use serde_json::Value;

/// The audit chain key of these tests.
const AUDIT_KEY: &str = OTHER_KEY;

/// A database with the protected tables, a proxy auditing to a file, and the files' directory.
struct Audited {
    db: String,
    proxy: TestProxy,
    dir: tempfile::TempDir,
}

impl Audited {
    async fn start(rules: Option<&str>) -> Audited {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(SCHEMA).await.expect("schema");
        install_guards(&db, RULES).await;
        admin
            .batch_execute(
                "CREATE TABLE plain (id int, name text, tags text[]);
                 GRANT ALL ON plain TO PUBLIC;",
            )
            .await
            .expect("plain table");
        let dir = tempfile::tempdir().expect("temp dir");
        let proxy = start_proxy(dir.path(), rules).await;
        Audited { db, proxy, dir }
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    async fn client(&self) -> tokio_postgres::Client {
        self.proxy
            .connect(users::SCRAM, users::SCRAM_PASSWORD, &self.db)
            .await
            .expect("login through the proxy")
    }

    /// Stops the proxy (which flushes the audit queue and writes chain_end) and reads the file.
    async fn finish(self) -> Finished {
        let path = self.audit_path();
        self.proxy.shutdown().await;
        let text = std::fs::read_to_string(&path).expect("audit file");
        let events = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        Finished {
            text,
            events,
            path,
            _dir: self.dir,
        }
    }
}

async fn start_proxy(dir: &std::path::Path, rules: Option<&str>) -> TestProxy {
    start_proxy_with(dir, rules, ConfigLayer::default()).await
}

/// A proxy auditing to `dir/audit.log`, with `extra` settings over the test's.
async fn start_proxy_with(
    dir: &std::path::Path,
    rules: Option<&str>,
    extra: ConfigLayer,
) -> TestProxy {
    let rules_path = dir.join("rules.toml");
    std::fs::write(&rules_path, rules.unwrap_or(RULES)).expect("rules file");
    let master = dir.join("master.key");
    std::fs::write(&master, MASTER_KEY).expect("master key");
    let audit_key = dir.join("audit.key");
    std::fs::write(&audit_key, AUDIT_KEY).expect("audit key");
    proxy_with(extra.over(ConfigLayer {
        rules: Some(rules_path),
        master_key_file: Some(master),
        audit_file: Some(dir.join("audit.log").display().to_string()),
        audit_key_file: Some(audit_key),
        ..Default::default()
    }))
    .await
}

struct Finished {
    text: String,
    events: Vec<Value>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Finished {
    fn of_type(&self, event: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }

    fn statements(&self) -> Vec<&Value> {
        self.of_type("statement")
    }

    /// The statement event whose normalised text is `text`.
    fn statement(&self, text: &str) -> &Value {
        self.statements()
            .into_iter()
            .find(|e| e["statement"] == text)
            .unwrap_or_else(|| panic!("no event for {text:?} in\n{}", self.text))
    }

    fn assert_absent(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !self.text.contains(secret),
                "{secret:?} leaked into the audit log:\n{}",
                self.text
            );
        }
    }
}

fn audit_key() -> ChainKey {
    ChainKey::from_base64(AUDIT_KEY).unwrap()
}

#[tokio::test]
async fn every_statement_kind_leaves_one_event_with_the_required_fields() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    c.simple_query("INSERT INTO plain VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    c.simple_query("UPDATE plain SET name = 'uno' WHERE id = 1")
        .await
        .unwrap();
    c.simple_query("SELECT * FROM plain ORDER BY id")
        .await
        .unwrap();
    c.simple_query("DELETE FROM plain WHERE id = 2")
        .await
        .unwrap();
    c.simple_query("CREATE TABLE made_here (a int)")
        .await
        .unwrap();
    c.simple_query("BEGIN; SELECT 1; COMMIT").await.unwrap();
    let sink = c.copy_in("COPY plain (id, name) FROM STDIN").await.unwrap();
    {
        use futures_util::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"3\tthree\n4\tfour\n"))
            .await
            .unwrap();
        sink.as_mut().finish().await.unwrap();
    }
    drop(c);
    let f = a.finish().await;

    let insert = f.statement("INSERT INTO plain VALUES (?, ?), (?, ?)");
    assert_eq!(insert["kind"], "insert");
    assert_eq!(insert["class"], "WRITE");
    assert_eq!(insert["rows"], 2);
    assert_eq!(insert["outcome"], "ok");
    assert_eq!(insert["tables"], serde_json::json!(["plain"]));
    for field in [
        "ts",
        "seq",
        "session",
        "client_addr",
        "user",
        "role",
        "database",
        "application_name",
        "kind",
        "class",
        "statement",
        "fingerprint",
        "tables",
        "columns",
        "rows",
        "duration_us",
        "outcome",
        "chain",
    ] {
        assert!(insert.get(field).is_some(), "no {field} in {insert}");
    }
    assert_eq!(insert["user"], users::SCRAM);
    assert_eq!(insert["role"], "app");
    assert_eq!(insert["client_addr"], "127.0.0.1");
    assert_eq!(
        f.statement("UPDATE plain SET name = ? WHERE id = ?")["rows"],
        1
    );
    let select = f.statement("SELECT * FROM plain ORDER BY id");
    assert_eq!(
        (select["kind"].as_str(), select["rows"].as_u64()),
        (Some("select"), Some(2))
    );
    assert_eq!(
        f.statement("DELETE FROM plain WHERE id = ?")["kind"],
        "delete"
    );
    let ddl = f.statement("CREATE TABLE made_here (a int)");
    assert_eq!(
        (ddl["kind"].as_str(), ddl["class"].as_str()),
        (Some("ddl"), Some("DDL"))
    );
    assert_eq!(f.statement("BEGIN")["kind"], "transaction");
    assert_eq!(f.statement("SELECT ?")["protocol"], "simple");
    assert_eq!(f.statement("COMMIT")["kind"], "transaction");
    let copy = f.statement("COPY plain (id, name) FROM STDIN");
    assert_eq!(
        (copy["kind"].as_str(), copy["rows"].as_u64()),
        (Some("copy"), Some(2))
    );
    f.assert_absent(&["three", "four", "'one'", "uno"]);

    // One session id for the connection's events; connection events around them.
    let session = insert["session"].as_str().unwrap();
    assert!(f.statements().iter().all(|e| e["session"] == session));
    let types: Vec<&str> = f
        .events
        .iter()
        .filter(|e| e["session"] == session)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"connect"));
    assert_eq!(types.get(1), Some(&"auth_ok"));
    assert_eq!(types.last(), Some(&"disconnect"));
    let disconnect = f.of_type("disconnect")[0];
    assert_eq!(disconnect["totals"]["statements"], f.statements().len());
    let seqs: Vec<u64> = f
        .events
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..f.events.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn extended_protocol_leaves_one_event_per_execute_with_the_parse_text() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    let insert = c
        .prepare("INSERT INTO plain (id, name) VALUES ($1, $2)")
        .await
        .unwrap();
    for i in 0..3 {
        c.execute(&insert, &[&i, &"param-secret"]).await.unwrap();
    }
    let rows = c
        .query("SELECT name FROM plain WHERE id < $1", &[&10i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    // Pipelined: two executes before one Sync.
    let (x, y) = tokio::join!(
        c.query("SELECT 1 WHERE $1::int = 1", &[&1i32]),
        c.query("SELECT 2 WHERE $1::int = 1", &[&1i32]),
    );
    x.unwrap();
    y.unwrap();
    drop(c);
    let f = a.finish().await;
    let inserts: Vec<_> = f
        .statements()
        .into_iter()
        .filter(|e| e["statement"] == "INSERT INTO plain (id, name) VALUES ($1, $2)")
        .collect();
    assert_eq!(inserts.len(), 3, "{}", f.text);
    assert!(inserts
        .iter()
        .all(|e| e["protocol"] == "extended" && e["rows"] == 1));
    assert_eq!(
        f.statement("SELECT name FROM plain WHERE id < $1")["rows"],
        3
    );
    f.statement("SELECT ? WHERE $1::int = ?");
    f.assert_absent(&["param-secret"]);
}

#[tokio::test]
async fn literals_of_every_kind_stay_out_of_the_log() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    let statements = [
        "SELECT 'string-secret'",
        "SELECT 31337424242",
        "SELECT 2718281828.459045",
        "SELECT $q$dollar-secret$q$, $$plain-dollar-secret$$",
        "SELECT E'escape\\'d-secret'",
        "SELECT ARRAY['array-secret-1', 'array-secret-2'], '{brace-secret}'::text[]",
        "SELECT U&'unicode-secret', X'DEADBEEF' IS NULL",
        "INSERT INTO plain (id, name, tags) VALUES (99, 'insert-secret', ARRAY['tag-secret'])",
        "SELECT 1 /* comment-secret */ -- line-comment-secret",
    ];
    for sql in statements {
        c.simple_query(sql).await.unwrap();
    }
    c.query("SELECT 'extended-secret'::text", &[])
        .await
        .unwrap();
    let e = c
        .simple_query("SELECT 'unterminated-secret")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42601");
    drop(c);
    let f = a.finish().await;
    f.assert_absent(&[
        "string-secret",
        "31337424242",
        "2718281828",
        "459045",
        "dollar-secret",
        "escape",
        "array-secret",
        "brace-secret",
        "unicode-secret",
        "DEADBEEF",
        "insert-secret",
        "tag-secret",
        "comment-secret",
        "extended-secret",
        "unterminated-secret",
        users::SCRAM_PASSWORD,
    ]);
    assert_eq!(
        f.statement("SELECT ?, ?")["kind"],
        "select",
        "dollar-quoted strings are literals"
    );
    let unreadable = f.statement(pgshroud::audit::normalize::UNREADABLE);
    assert_eq!(unreadable["outcome"], "error");
    assert_eq!(unreadable["sqlstate"], "42601");
}

#[tokio::test]
async fn fingerprints_are_equal_for_the_same_shape_only() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    for sql in [
        "SELECT name FROM plain WHERE id = 1",
        "select name  from plain where id = 2",
        "SELECT name FROM plain WHERE name = 'x'",
    ] {
        c.simple_query(sql).await.unwrap();
    }
    drop(c);
    let f = a.finish().await;
    let prints: Vec<&str> = f
        .statements()
        .iter()
        .map(|e| e["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(prints.len(), 3);
    assert_eq!(prints[0], prints[1]);
    assert_ne!(prints[0], prints[2]);
}

#[tokio::test]
async fn protected_columns_are_listed_with_their_action_and_refusals_are_audited() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    c.simple_query(
        "INSERT INTO customers (email, age, name) VALUES ('alice@example.com', 42, 'Alice')",
    )
    .await
    .unwrap();
    c.query(
        "SELECT email FROM customers WHERE email = $1",
        &[&"alice@example.com"],
    )
    .await
    .unwrap();
    let refused = c
        .simple_query("SELECT * FROM customers WHERE email LIKE 'ali%'")
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "0A000");
    let refused = c
        .query("SELECT id FROM customers ORDER BY email", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "0A000");
    // In one simple query, each statement lists only its own columns.
    c.simple_query(
        "BEGIN; SELECT email FROM customers; SELECT age FROM customers WHERE id > 0; COMMIT",
    )
    .await
    .unwrap();
    let error = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(code(&error), "22012");
    // The session is still in step after all of that.
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    let f = a.finish().await;
    f.assert_absent(&["alice", "ali%"]);

    let insert = f.statement("INSERT INTO customers (email, age, name) VALUES (?, ?, ?)");
    assert_eq!(
        insert["columns"],
        serde_json::json!([
            {"column": "public.customers.email", "action": "encrypted"},
            {"column": "public.customers.age", "action": "encrypted"},
        ])
    );
    assert_eq!(insert["tables"], serde_json::json!(["public.customers"]));
    let select = f.statement("SELECT email FROM customers WHERE email = $1");
    let columns = select["columns"].as_array().unwrap();
    assert!(columns
        .contains(&serde_json::json!({"column": "public.customers.email", "action": "decrypted"})));
    assert!(columns
        .contains(&serde_json::json!({"column": "public.customers.email", "action": "encrypted"})));

    let only = |text: &str, column: &str| {
        assert_eq!(
            f.statement(text)["columns"],
            serde_json::json!([{"column": column, "action": "decrypted"}]),
            "{text}"
        );
    };
    only("SELECT email FROM customers", "public.customers.email");
    only(
        "SELECT age FROM customers WHERE id > ?",
        "public.customers.age",
    );
    assert_eq!(f.statement("BEGIN")["columns"], serde_json::json!([]));

    let like = f.statement("SELECT * FROM customers WHERE email LIKE ?");
    assert_eq!(like["outcome"], "refused");
    assert_eq!(like["sqlstate"], "0A000");
    let order = f.statement("SELECT id FROM customers ORDER BY email");
    assert_eq!(
        (order["outcome"].as_str(), order["protocol"].as_str()),
        (Some("refused"), Some("extended"))
    );
    let division = f.statement("SELECT ?/?");
    assert_eq!(
        (division["outcome"].as_str(), division["sqlstate"].as_str()),
        (Some("error"), Some("22012"))
    );
    let totals = &f.of_type("disconnect")[0]["totals"];
    assert_eq!(
        (totals["refused"].as_u64(), totals["errors"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn psql_statements_are_audited_one_event_each() {
    let a = Audited::start(None).await;
    let out = tokio::process::Command::new(cluster().program("psql"))
        .arg(
            a.proxy
                .conn_string(users::SCRAM, users::SCRAM_PASSWORD, &a.db),
        )
        .args(["-X", "-A", "-t", "-c"])
        .arg("SELECT 'psql-secret'; SELECT count(*) FROM plain")
        .env("PGAPPNAME", "audit-test")
        .output()
        .await
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = a.finish().await;
    let first = f.statement("SELECT ?");
    assert_eq!(first["application_name"], "audit-test");
    assert_eq!(first["protocol"], "simple");
    f.statement("SELECT count(*) FROM plain");
    f.assert_absent(&["psql-secret"]);
}

#[tokio::test]
async fn failed_logins_are_audited_without_the_password() {
    let a = Audited::start(None).await;
    let e = a
        .proxy
        .connect(users::SCRAM, "wrong-password-secret", &a.db)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "28P01");
    let f = a.finish().await;
    let failed = f.of_type("auth_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["sqlstate"], "28P01");
    assert_eq!(failed[0]["user"], users::SCRAM);
    assert_eq!(f.of_type("disconnect").len(), 1);
    f.assert_absent(&["wrong-password-secret", users::SCRAM_PASSWORD]);
}

#[tokio::test]
async fn the_log_verifies_and_each_kind_of_tampering_names_its_line() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    for i in 0..5 {
        c.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
    drop(c);
    let f = a.finish().await;
    let checked = verify::verify(std::slice::from_ref(&f.path), &audit_key()).unwrap();
    assert_eq!(checked.events as usize, f.events.len());
    assert!(checked.unterminated.is_empty());
    assert_eq!(f.events.first().unwrap()["event"], "chain_start");
    assert_eq!(f.events.last().unwrap()["event"], "chain_end");

    let lines: Vec<String> = f.text.lines().map(|l| format!("{l}\n")).collect();
    let check = |name: &str, lines: &[String]| {
        let path = f.path.with_file_name(name);
        std::fs::write(&path, lines.concat()).unwrap();
        verify::verify(&[path], &audit_key())
    };
    let broken_at = |name: &str, lines: &[String]| {
        let b = check(name, lines).expect_err(name);
        b.at.rsplit(':').next().unwrap().parse::<usize>().unwrap()
    };
    let mut edited = lines.clone();
    edited[4] = edited[4].replace("\"outcome\":\"ok\"", "\"outcome\":\"error\"");
    assert_ne!(edited[4], lines[4]);
    assert_eq!(broken_at("edited", &edited), 5);
    let mut reordered = lines.clone();
    reordered.swap(4, 5);
    assert_eq!(broken_at("reordered", &reordered), 5);
    let mut deleted = lines.clone();
    deleted.remove(4);
    assert_eq!(broken_at("deleted", &deleted), 5);
    let truncated = &lines[..lines.len() - 2];
    assert_eq!(check("truncated", truncated).unwrap().unterminated.len(), 1);
    assert!(verify::verify(std::slice::from_ref(&f.path), &ChainKey::new([0; 32])).is_err());
}

#[tokio::test]
async fn a_restart_appends_a_linked_segment_and_a_deleted_segment_is_caught() {
    let a = Audited::start(None).await;
    let c = a.client().await;
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    let path = a.audit_path();
    a.proxy.shutdown().await;
    let first = std::fs::read_to_string(&path).unwrap();
    // The same file, a new process: a new segment that names the last chain value before it.
    let p = start_proxy(a.dir.path(), None).await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &a.db)
        .await
        .unwrap();
    c.simple_query("SELECT 2").await.unwrap();
    drop(c);
    p.shutdown().await;
    let both = std::fs::read_to_string(&path).unwrap();
    let checked = verify::verify(std::slice::from_ref(&path), &audit_key()).unwrap();
    assert_eq!(checked.events as usize, both.lines().count());
    assert!(checked.unterminated.is_empty());
    let second = &both[first.len()..];
    let p = start_proxy(a.dir.path(), None).await;
    p.shutdown().await;
    let all = std::fs::read_to_string(&path).unwrap();
    // Delete the middle segment: the third names a chain value that is no longer there.
    let without_second = format!("{first}{}", &all[first.len() + second.len()..]);
    let cut = path.with_file_name("cut");
    std::fs::write(&cut, &without_second).unwrap();
    let b = verify::verify(&[cut], &audit_key()).unwrap_err();
    assert_eq!(
        b.at.rsplit(':').next().unwrap(),
        (first.lines().count() + 1).to_string()
    );
    assert!(b.reason.contains("missing"), "{b}");
}

/// A rules file whose `app` role allows 2 rows per statement and 3 protected values a minute,
/// and whose `remote` role (md5_user) may connect only from 10.0.0.0/8.
fn limited_rules() -> String {
    format!(
        "default_role = \"app\"\n{RULES}\n[[roles]]\nname = \"remote\"\ntemplate = \"app\"\n\
         users = [\"md5_user\"]\nnetworks = [\"10.0.0.0/8\"]\n\
         [[roles]]\nname = \"app\"\ntemplate = \"app\"\n\
         users = [\"*\"]\nmax_rows = 2\nmax_protected_values_per_minute = 3\n"
    )
}

#[tokio::test]
async fn bulk_reads_and_unexpected_networks_raise_alerts() {
    let rules = limited_rules();
    let a = Audited::start(Some(&rules)).await;
    // Outside its role's networks: refused (28000) and an alert.
    let refused = a
        .proxy
        .connect(users::MD5, users::MD5_PASSWORD, &a.db)
        .await
        .expect_err("refused");
    assert_eq!(code(&refused), "28000");
    let c = a.client().await;
    c.simple_query("INSERT INTO plain VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    c.simple_query("SELECT * FROM plain WHERE id <= 2")
        .await
        .unwrap();
    c.simple_query("SELECT * FROM plain").await.unwrap();
    c.simple_query(
        "INSERT INTO customers (email) VALUES ('a@x.org'), ('b@x.org'), ('c@x.org'), ('d@x.org')",
    )
    .await
    .unwrap();
    // 2 protected values, then 2 more: over 3 in the minute.
    c.simple_query("SELECT email FROM customers WHERE id <= 2")
        .await
        .unwrap();
    c.query("SELECT email FROM customers WHERE id <= 2", &[])
        .await
        .unwrap();
    drop(c);
    let f = a.finish().await;
    let alerts = f.of_type("alert");
    let kinds: Vec<&str> = alerts
        .iter()
        .map(|e| e["alert"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"network"), "{}", f.text);
    let max_rows: Vec<_> = alerts.iter().filter(|e| e["alert"] == "max_rows").collect();
    assert_eq!(max_rows.len(), 1, "{}", f.text);
    assert_eq!(
        (
            max_rows[0]["limit"].as_u64(),
            max_rows[0]["observed"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(
        max_rows[0]["fingerprint"],
        f.statement("SELECT * FROM plain")["fingerprint"]
    );
    let values: Vec<_> = alerts
        .iter()
        .filter(|e| e["alert"] == "max_protected_values_per_minute")
        .collect();
    assert_eq!(values.len(), 1, "{}", f.text);
    assert_eq!(
        (values[0]["limit"].as_u64(), values[0]["observed"].as_u64()),
        (Some(3), Some(4))
    );
}

#[tokio::test]
async fn rotated_files_verify_in_order_with_the_chain_running_across_them() {
    let db = cluster().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let p = start_proxy_with(
        dir.path(),
        None,
        ConfigLayer {
            audit_rotate_bytes: Some(2_000),
            audit_queue_size: Some(4),
            ..Default::default()
        },
    )
    .await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    for i in 0..40 {
        c.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
    drop(c);
    p.shutdown().await;
    let current = dir.path().join("audit.log");
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("audit.log."))
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 2, "{rotated:?}");
    let mut files = rotated.clone();
    files.push(current.clone());
    let checked = verify::verify(&files, &audit_key()).unwrap();
    assert!(checked.unterminated.is_empty());
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert_eq!(checked.events as usize, lines);
    // Every statement is there (block policy: nothing dropped).
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(all.matches("\"event\":\"statement\"").count(), 40);
    assert!(!all.contains("\"dropped\""));
    // A rotated file dropped from the middle of the set is caught.
    let mut missing = files.clone();
    missing.remove(1);
    let b = verify::verify(&missing, &audit_key()).unwrap_err();
    assert!(b.reason.contains("missing"), "{b}");
}

#[tokio::test]
async fn an_enforced_row_limit_ends_the_session_and_is_an_enforced_alert() {
    let rules = format!(
        "default_role = \"app\"\n{RULES}\n[[roles]]\nname = \"app\"\ntemplate = \"app\"\n\
         users = [\"*\"]\nmax_rows = 1\nenforce = true\n"
    );
    let a = Audited::start(Some(&rules)).await;
    let c = a.client().await;
    c.simple_query("INSERT INTO plain VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let err = c.simple_query("SELECT * FROM plain").await.unwrap_err();
    assert_eq!(code(&err), "54000");
    drop(c);
    let f = a.finish().await;
    let alerts = f.of_type("alert");
    assert_eq!(alerts.len(), 1, "{}", f.text);
    assert_eq!(alerts[0]["alert"], "max_rows");
    assert_eq!(alerts[0]["enforced"], true);
    assert_eq!(alerts[0]["limit"], 1);
    assert_eq!(f.of_type("disconnect").len(), 1, "{}", f.text);
}
