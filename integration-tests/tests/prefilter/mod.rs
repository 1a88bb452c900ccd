//! What the pre-filter attack tests share (prefilter_attacks.rs, prefilter_binds.rs): a
//! database with a protected `customers.email` and `crm.leads.email` beside plain `notes` and
//! `public.leads`, a raw non-superuser session through the proxy, and readings of its answers.
// Each test file uses its own part of these helpers (and of the re-exports).
#![allow(dead_code, unused_imports)]

pub use std::time::Duration;

pub use pgshroud_integration_tests::protected::install_guards;
use pgshroud_integration_tests::protected::{proxy_with_rules, MASTER_KEY};
pub use pgshroud_integration_tests::proxy::TestProxy;
pub use pgshroud_integration_tests::raw::{build, error_codes, message, Msg, RawClient};
pub use pgshroud_integration_tests::{cluster, users};

pub const RULES: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"

[[tables]]
name = "crm.leads"
  [[tables.columns]]
  name = "email"
  type = "text"
"#;

/// `notes` and `public.leads` are plain tables whose texts the pre-filter finds harmless;
/// `crm.leads` is the protected table `leads` means once crm is first on the path.
pub const SCHEMA: &str = "
CREATE TABLE customers (id int PRIMARY KEY, email bytea);
CREATE TABLE notes (id int PRIMARY KEY, body bytea);
CREATE SCHEMA crm;
CREATE TABLE crm.leads (id int PRIMARY KEY, email bytea);
CREATE TABLE public.leads (id int PRIMARY KEY, email bytea);
GRANT USAGE, CREATE ON SCHEMA crm, public TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA crm, public TO PUBLIC;";

pub const SECRET: &str = "alice@secret.example";

pub async fn setup() -> (String, tempfile::TempDir, TestProxy) {
    let db = cluster().fresh_database().await;
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    install_guards(&db, RULES).await;
    let (dir, proxy) = proxy_with_rules(RULES, MASTER_KEY).await;
    (db, dir, proxy)
}

/// A proxy serving `rules` (with the master key), and the directory holding its files.
pub async fn proxy_with(rules: &str) -> (tempfile::TempDir, TestProxy) {
    proxy_with_rules(rules, MASTER_KEY).await
}

/// A non-superuser session through the proxy.
pub async fn login(proxy: &TestProxy, db: &str) -> RawClient {
    RawClient::login_trust(proxy.port(), users::TRUST, db).await
}

/// A non-superuser session through the proxy, with alice stored (sealed) in customers.
pub async fn session(proxy: &TestProxy, db: &str) -> RawClient {
    let mut c = login(proxy, db).await;
    let msgs = exchange(
        &mut c,
        &[build::query(&format!(
            "INSERT INTO customers (id, email) VALUES (1, '{SECRET}')"
        ))],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    c
}

/// Sends `msgs` as one write and reads the answers up to the ReadyForQuery of each Sync and
/// simple Query among them; a hang fails the test.
pub async fn exchange(c: &mut RawClient, msgs: &[Vec<u8>]) -> Vec<Msg> {
    c.send(&build::pipeline(msgs)).await;
    let ends = msgs.iter().filter(|m| matches!(m[0], b'S' | b'Q')).count();
    let mut out = Vec::new();
    for _ in 0..ends {
        let got = tokio::time::timeout(Duration::from_secs(20), c.recv_until_ready())
            .await
            .unwrap_or_else(|_| panic!("no ReadyForQuery: the proxy hung after {out:?}"));
        assert!(
            got.last().is_some_and(|m| m.kind == b'Z'),
            "closed: {got:?}"
        );
        out.extend(got);
    }
    out
}

/// Parse (unnamed), Bind with text `params`, Execute, Sync.
pub fn run(sql: &str, params: &[&str]) -> Vec<Vec<u8>> {
    vec![
        build::parse("", sql),
        build::bind("", "", params),
        build::execute(""),
        build::sync(),
    ]
}

/// The DataRows among `msgs`, as text.
pub fn data_rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.kind == b'D')
        .map(|m| {
            let b = &m.body;
            let n = u16::from_be_bytes([b[0], b[1]]) as usize;
            let mut at = 2;
            (0..n)
                .map(|_| {
                    let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                    at += 4;
                    (len >= 0).then(|| {
                        let v = String::from_utf8_lossy(&b[at..at + len as usize]).into_owned();
                        at += len as usize;
                        v
                    })
                })
                .collect()
        })
        .collect()
}

/// What PostgreSQL holds in the first column of `sql`, read without the proxy.
pub async fn stored(db: &str, sql: &str) -> Vec<Vec<u8>> {
    cluster()
        .admin_client_for(db)
        .await
        .query(sql, &[])
        .await
        .expect("direct query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every value stored in `sql`'s first column is an envelope, none holds the secret.
pub async fn all_sealed(db: &str, sql: &str) {
    for value in stored(db, sql).await {
        assert_eq!(value.first(), Some(&2), "not an envelope: {value:?}");
        assert!(!String::from_utf8_lossy(&value).contains("secret"));
    }
}

pub const LOOKUP: &str = "select id from notes where body = $1";
