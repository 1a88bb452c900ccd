//! Fail closed on the connection side, against the real cluster and as non-superuser roles:
//! replication connections are refused unless the user is listed in `replication_users`.

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{build, startup_packet, Msg, RawClient};
use pgshroud_integration_tests::{cluster, protected, proxy_with, users};

// ---------------------------------------------------------------------------------------------
// Replication connections

/// Opens a connection to `port` as the replicator with `replication=value` and returns what the
/// server said up to ReadyForQuery or the end, and the connection.
async fn replication_login(port: u16, value: &str) -> (Vec<Msg>, RawClient) {
    let mut c = RawClient::connect(port).await;
    c.send(&startup_packet(
        3 << 16,
        &[
            ("user", users::REPLICATOR),
            ("database", "postgres"),
            ("replication", value),
        ],
    ))
    .await;
    let msgs = c.recv_until_ready().await;
    (msgs, c)
}

/// A proxy with the protected-column rules and key, letting `replicators` replicate.
async fn proxy_with_rules(replicators: &[&str]) -> (tempfile::TempDir, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, protected::RULES).unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, protected::MASTER_KEY).unwrap();
    let p = proxy_with(ConfigLayer {
        rules: Some(rules),
        master_key_file: Some(key),
        replication_users: Some(replicators.iter().map(|u| u.to_string()).collect()),
        ..ConfigLayer::default()
    })
    .await;
    (dir, p)
}

fn ready(msgs: &[Msg]) -> bool {
    msgs.last().is_some_and(|m| m.kind == b'Z')
}

/// `IDENTIFY_SYSTEM`, the first command of a base backup or a logical slot's stream: answered
/// with a row only on a walsender.
async fn identify_system(c: &mut RawClient) -> Vec<Msg> {
    c.send(&build::query("IDENTIFY_SYSTEM")).await;
    c.recv_until_ready().await
}

#[tokio::test]
async fn replication_connections_are_refused_in_every_spelling_postgresql_accepts() {
    // PostgreSQL itself lets the replicator stream: the refusal below is pgshroud's.
    let (msgs, mut direct) = replication_login(cluster().port(), "database").await;
    assert!(ready(&msgs), "{msgs:?}");
    let rows = identify_system(&mut direct).await;
    assert!(rows.iter().any(|m| m.kind == b'D'), "{rows:?}");

    let (_dir, p) = proxy_with_rules(&[]).await;
    for spelling in [
        "database", "true", "on", "1", "yes", "TRUE", "t", "Tr", "Y", "On", "maybe",
    ] {
        let (msgs, mut c) = replication_login(p.port(), spelling).await;
        let error = msgs.last().expect("an answer");
        assert_eq!(error.kind, b'E', "replication={spelling}: {msgs:?}");
        assert_eq!(error.field(b'C').as_deref(), Some("28000"), "{spelling}");
        assert_eq!(
            error.field(b'M').unwrap(),
            format!(
                "pgshroud does not relay replication connections for user \"{}\"",
                users::REPLICATOR
            )
        );
        assert!(c.is_closed().await, "{spelling}");
    }
    // What PostgreSQL reads as false is an ordinary session.
    for spelling in ["false", "off", "0", "no", "F"] {
        let (msgs, _c) = replication_login(p.port(), spelling).await;
        assert!(ready(&msgs), "replication={spelling}: {msgs:?}");
    }
}

#[tokio::test]
async fn a_user_listed_in_replication_users_may_replicate() {
    let (_dir, p) = proxy_with_rules(&[users::REPLICATOR]).await;
    for spelling in ["database", "on"] {
        let (msgs, mut c) = replication_login(p.port(), spelling).await;
        assert!(ready(&msgs), "replication={spelling}: {msgs:?}");
        let rows = identify_system(&mut c).await;
        assert!(rows.iter().any(|m| m.kind == b'D'), "{rows:?}");
    }
    // Listing one user lets no other replicate.
    let mut c = RawClient::connect(p.port()).await;
    c.send(&startup_packet(
        3 << 16,
        &[("user", users::TRUST), ("replication", "database")],
    ))
    .await;
    let msgs = c.recv_until_ready().await;
    assert_eq!(
        msgs.last().and_then(|m| m.field(b'C')).as_deref(),
        Some("28000")
    );
}
