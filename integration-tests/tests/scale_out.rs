//! Several pgshroud instances in front of one PostgreSQL, as behind a Kubernetes Service:
//! clients spread over them get the same answers, a rules reload reaches each, and a
//! CancelRequest that lands on another instance than its session still cancels when the
//! instances share `cancel_key_file`.

use std::time::Duration;

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::{install_guards, MASTER_KEY, RULES, SCHEMA};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::build::query;
use pgshroud_integration_tests::raw::{error_codes, RawClient};
use pgshroud_integration_tests::{cluster, proxy_with, users};
use tokio::io::AsyncReadExt;

/// `n` proxies with the same rules, master key and (when `shared`) cancel key.
async fn instances(dir: &tempfile::TempDir, n: usize, shared: bool) -> Vec<TestProxy> {
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, MASTER_KEY).unwrap();
    let cancel = dir.path().join("cancel.key");
    // Any 32 bytes in base64, as `pgshroud keygen` prints.
    std::fs::write(&cancel, "c2NhbGUtb3V0IGNhbmNlbCBrZXkgZm9yIHRlc3RzISE=\n").unwrap();
    let mut proxies = Vec::new();
    for _ in 0..n {
        proxies.push(
            proxy_with(ConfigLayer {
                rules: Some(rules.clone()),
                master_key_file: Some(key.clone()),
                cancel_key_file: shared.then(|| cancel.clone()),
                ..ConfigLayer::default()
            })
            .await,
        );
    }
    proxies
}

async fn database() -> String {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin.batch_execute(SCHEMA).await.unwrap();
    install_guards(&db, RULES).await;
    db
}

/// Sends a CancelRequest for `(pid, secret)` to `port` and waits until the proxy closes it.
async fn send_cancel(port: u16, pid: i32, secret: &[u8]) {
    let mut cancel = RawClient::send_cancel(port, pid, secret).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), cancel.read_to_end(&mut rest)).await;
}

/// Waits until backend `pid` runs a statement (a cancel of an idle backend does nothing).
async fn wait_active(db: &str, pid: i32) {
    let admin = cluster().admin_client_for(db).await;
    for _ in 0..500 {
        let active: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if active == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("backend {pid} never became active");
}

#[tokio::test]
async fn a_cancel_sent_to_another_instance_sharing_the_cancel_key_cancels() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let proxies = instances(&dir, 2, true).await;
    let (mut c, pid, secret) =
        RawClient::login_trust_with_key(proxies[0].port(), users::TRUST, &db).await;
    c.send(&query("SELECT pg_sleep(60)")).await;
    wait_active(&db, pid).await;
    send_cancel(proxies[1].port(), pid, &secret).await;
    let msgs = tokio::time::timeout(Duration::from_secs(20), c.recv_until_ready())
        .await
        .expect("the statement was cancelled");
    assert_eq!(error_codes(&msgs), ["57014"], "{msgs:?}");
}

#[tokio::test]
async fn without_a_shared_cancel_key_another_instance_ignores_the_request() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let proxies = instances(&dir, 2, false).await;
    let (mut c, pid, secret) =
        RawClient::login_trust_with_key(proxies[0].port(), users::TRUST, &db).await;
    c.send(&query("SELECT pg_sleep(1)")).await;
    wait_active(&db, pid).await;
    send_cancel(proxies[1].port(), pid, &secret).await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    // The session's own instance still cancels.
    c.send(&query("SELECT pg_sleep(60)")).await;
    wait_active(&db, pid).await;
    send_cancel(proxies[0].port(), pid, &secret).await;
    let msgs = c.recv_until_ready().await;
    assert_eq!(error_codes(&msgs), ["57014"], "{msgs:?}");
}

#[tokio::test]
async fn clients_spread_over_instances_read_each_others_writes_and_reloads_reach_all() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let proxies = instances(&dir, 3, true).await;
    let mut clients = Vec::new();
    for p in &proxies {
        clients.push(
            p.connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
                .await
                .unwrap(),
        );
    }
    for (i, c) in clients.iter().enumerate() {
        c.execute(
            "INSERT INTO customers (email, age, name) VALUES ($1, $2, 'n')",
            &[&format!("user{i}@example.com"), &(30 + i as i32)],
        )
        .await
        .unwrap();
    }
    // Every instance finds every instance's rows by the protected column.
    for c in &clients {
        for i in 0..proxies.len() {
            let row = c
                .query_one(
                    "SELECT age FROM customers WHERE email = $1",
                    &[&format!("user{i}@example.com")],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, i32>(0), 30 + i as i32);
        }
    }
    // A rules file reloaded on each instance: `name` becomes protected everywhere (no guard
    // on it, so each refuses to write plaintext into it).
    let rules = dir.path().join("rules.toml");
    let with_name = RULES.replacen(
        "name = \"age\"\n  type = \"int4\"",
        "name = \"age\"\n  type = \"int4\"\n  [[tables.columns]]\n  name = \"name\"\n  type = \"text\"",
        1,
    );
    assert_ne!(with_name, RULES, "the fixture's rules changed shape");
    std::fs::write(&rules, with_name).unwrap();
    for (p, c) in proxies.iter().zip(&clients) {
        p.reload().unwrap();
        let refused = c
            .execute(
                "INSERT INTO customers (email, age, name) VALUES ($1, 1, 'x')",
                &[&"late@example.com"],
            )
            .await
            .unwrap_err();
        assert!(
            refused.as_db_error().is_some(),
            "instance on :{} still writes name as plaintext: {refused}",
            p.port()
        );
    }
}
