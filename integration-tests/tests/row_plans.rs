//! Result descriptions answered again: a session keeps the row plan of a RowDescription it
//! has seen (libpq's `PQexecPrepared` describes the portal on every execution; a simple
//! statement of one shape gets the same description every time). These tests run the same
//! prepared statement (Bind, Describe portal, Execute, Sync, as libpq sends them) and the same
//! simple-protocol shape before and after what the caller may see changes, on one live
//! connection of a non-superuser application role, and check the bytes returned.

use std::time::Duration;

use pgshroud::config::ConfigLayer;
use pgshroud::crypto::envelope::tenant_tag;
use pgshroud::crypto::tenant_keys;
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud_integration_tests::protected::{install_guards, proxy_with_rules, MASTER_KEY};
use pgshroud_integration_tests::raw::{build, message, Msg, RawClient};
use pgshroud_integration_tests::{cluster, proxy_with, users};

/// `customers.email` protected; the default role (the trust user's) decrypts it.
const DECRYPTS: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
"#;

/// The same column, masked for the default role.
const MASKS: &str = r#"
default_role = "masked"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"

[[roles]]
name = "masked"
template = "app"
  [roles.columns]
  "public.customers.email" = "mask:email"
"#;

/// A fresh database with `customers` guarded for `rules`, and a proxy serving them.
async fn customers_proxy(
    rules: &str,
) -> (
    String,
    tempfile::TempDir,
    pgshroud_integration_tests::proxy::TestProxy,
) {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, email bytea, name text); \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .expect("schema");
    install_guards(&db, rules).await;
    let (dir, proxy) = proxy_with_rules(rules, MASTER_KEY).await;
    (db, dir, proxy)
}

/// Describe of a portal.
fn describe_portal(portal: &str) -> Vec<u8> {
    message(b'D', format!("P{portal}\0").as_bytes())
}

/// One execution of prepared statement `q` as libpq's `PQexecPrepared` sends it; the
/// RowDescription's column types and the DataRows' first values.
async fn run_prepared(raw: &mut RawClient, params: &[&str]) -> (Vec<u32>, Vec<Option<Vec<u8>>>) {
    raw.send(&build::pipeline(&[
        build::bind("", "q", params),
        describe_portal(""),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    answer(raw.recv_until_ready().await)
}

/// A simple query's column types and first values.
async fn run_simple(raw: &mut RawClient, sql: &str) -> (Vec<u32>, Vec<Option<Vec<u8>>>) {
    raw.send(&build::query(sql)).await;
    answer(raw.recv_until_ready().await)
}

fn answer(msgs: Vec<Msg>) -> (Vec<u32>, Vec<Option<Vec<u8>>>) {
    if let Some(e) = msgs.iter().find(|m| m.kind == b'E') {
        panic!("error: {:?} {:?}", e.field(b'C'), e.field(b'M'));
    }
    let types = msgs
        .iter()
        .find(|m| m.kind == b'T')
        .map(|m| field_types(&m.body))
        .unwrap_or_default();
    let values = msgs
        .iter()
        .filter(|m| m.kind == b'D')
        .map(|m| first_value(&m.body))
        .collect();
    (types, values)
}

/// The type OIDs of a RowDescription's fields.
fn field_types(body: &[u8]) -> Vec<u32> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut types = Vec::new();
    for _ in 0..n {
        at += body[at..].iter().position(|&b| b == 0).expect("field name") + 1;
        let oid = &body[at + 6..at + 10];
        types.push(u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]]));
        at += 18;
    }
    types
}

/// The first value of a DataRow (`None`: NULL).
fn first_value(body: &[u8]) -> Option<Vec<u8>> {
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
    (len >= 0).then(|| body[6..6 + len as usize].to_vec())
}

const TEXT: u32 = 25;

/// Rewrites the rules file and waits (bounded) until a fresh connection sees `want` for
/// `sql`: the reload has happened.
async fn reload(dir: &tempfile::TempDir, port: u16, db: &str, rules: &str, sql: &str, want: &[u8]) {
    std::fs::write(dir.path().join("rules.toml"), rules).expect("rules file");
    for _ in 0..100 {
        let mut probe = RawClient::login_trust(port, users::TRUST, db).await;
        probe.send(&build::query(sql)).await;
        let msgs = probe.recv_until_ready().await;
        let got = msgs
            .iter()
            .find(|m| m.kind == b'D')
            .map(|m| first_value(&m.body));
        if got == Some(Some(want.to_vec())) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the reload was not picked up");
}

#[tokio::test]
async fn a_reload_between_two_executions_changes_what_the_same_statement_returns() {
    let (db, dir, proxy) = customers_proxy(DECRYPTS).await;
    let port = proxy.port();
    let mut raw = RawClient::login_trust(port, users::TRUST, &db).await;
    raw.send(&build::query(
        "INSERT INTO customers (email, name) VALUES ('alice@example.com', 'a'), ('bob@example.com', 'b')",
    ))
    .await;
    raw.recv_until_ready().await;
    raw.send(&build::pipeline(&[
        build::parse("q", "SELECT email FROM customers WHERE email = $1"),
        build::sync(),
    ]))
    .await;
    raw.recv_until_ready().await;

    // The same description twice (the second answered from what the session kept), for
    // two values: plaintext, typed text.
    let alice = || Some(b"alice@example.com".to_vec());
    for _ in 0..2 {
        assert_eq!(
            run_prepared(&mut raw, &["alice@example.com"]).await,
            (vec![TEXT], vec![alice()])
        );
        let (_, bob) = run_prepared(&mut raw, &["bob@example.com"]).await;
        assert_eq!(bob, [Some(b"bob@example.com".to_vec())]);
        let simple = "SELECT email FROM customers WHERE email = 'alice@example.com'";
        assert_eq!(
            run_simple(&mut raw, simple).await,
            (vec![TEXT], vec![alice()])
        );
    }

    // The caller's role now masks the column: the same statement on the same connection
    // returns the mask, never the plaintext the kept description would have given.
    reload(
        &dir,
        port,
        &db,
        MASKS,
        "SELECT email FROM customers WHERE email = 'alice@example.com'",
        b"a****@example.com",
    )
    .await;
    let masked = || Some(b"a****@example.com".to_vec());
    for _ in 0..2 {
        assert_eq!(
            run_prepared(&mut raw, &["alice@example.com"]).await,
            (vec![TEXT], vec![masked()])
        );
        let simple = "SELECT email FROM customers WHERE email = 'alice@example.com'";
        assert_eq!(
            run_simple(&mut raw, simple).await,
            (vec![TEXT], vec![masked()])
        );
    }

    // And back: plaintext again.
    reload(
        &dir,
        port,
        &db,
        DECRYPTS,
        "SELECT email FROM customers WHERE email = 'alice@example.com'",
        b"alice@example.com",
    )
    .await;
    assert_eq!(
        run_prepared(&mut raw, &["alice@example.com"]).await,
        (vec![TEXT], vec![alice()])
    );
}

/// Per-tenant `accounts.email`, the default role choosing its tenant.
const TENANT_RULES: &str = r#"
default_role = "pooled"

[[tables]]
name = "public.accounts"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true

[[roles]]
name = "pooled"
template = "app"
choose_tenant = true
"#;

#[tokio::test]
async fn a_tenant_switch_between_two_executions_opens_each_value_with_its_tenant_s_key() {
    let store = tempfile::tempdir().unwrap();
    let ring = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
    for tenant in ["acme", "globex"] {
        tenant_keys::add_tenant(store.path(), tenant, &ring).unwrap();
    }
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE accounts (id serial PRIMARY KEY, tenant_id text, email bytea); \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .expect("schema");
    install_guards(&db, TENANT_RULES).await;
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("rules.toml");
    std::fs::write(&rules, TENANT_RULES).unwrap();
    let key_file = rules_dir.path().join("master.key");
    std::fs::write(&key_file, MASTER_KEY).unwrap();
    let proxy = proxy_with(ConfigLayer {
        rules: Some(rules),
        master_key_file: Some(key_file),
        tenant_keys_dir: Some(store.path().to_owned()),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::login_trust(proxy.port(), users::TRUST, &db).await;
    for tenant in ["acme", "globex"] {
        for sql in [
            format!("SET pgshroud.tenant = '{tenant}'"),
            format!("INSERT INTO accounts (tenant_id, email) VALUES ('{tenant}', '{tenant}@x')"),
        ] {
            raw.send(&build::query(&sql)).await;
            let msgs = raw.recv_until_ready().await;
            assert!(msgs.iter().all(|m| m.kind != b'E'), "{msgs:?}");
        }
    }
    // Each row sealed under its own tenant's key (the tag in the envelope says whose).
    let tags: Vec<(String, Vec<u8>)> = admin
        .query(
            "SELECT tenant_id, substr(email, 10, 8) FROM accounts ORDER BY id",
            &[],
        )
        .await
        .expect("stored")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(String, Vec<u8>)> = ["acme", "globex"]
        .map(|t| (t.to_owned(), tenant_tag(t).to_vec()))
        .into();
    assert_eq!(tags, want);
    raw.send(&build::pipeline(&[
        build::parse("q", "SELECT email FROM accounts WHERE tenant_id = $1"),
        build::sync(),
    ]))
    .await;
    raw.recv_until_ready().await;

    // Each tenant's row read under each session tenant, the description kept in between:
    // every value opened with the key of the tenant that sealed it.
    for session_tenant in ["acme", "globex", "acme"] {
        raw.send(&build::query(&format!(
            "SET pgshroud.tenant = '{session_tenant}'"
        )))
        .await;
        raw.recv_until_ready().await;
        for tenant in ["acme", "globex"] {
            let want = Some(format!("{tenant}@x").into_bytes());
            assert_eq!(
                run_prepared(&mut raw, &[tenant]).await,
                (vec![TEXT], vec![want.clone()]),
                "session tenant {session_tenant}"
            );
            let simple = format!("SELECT email FROM accounts WHERE tenant_id = '{tenant}'");
            assert_eq!(
                run_simple(&mut raw, &simple).await,
                (vec![TEXT], vec![want]),
                "session tenant {session_tenant}"
            );
        }
    }
}
