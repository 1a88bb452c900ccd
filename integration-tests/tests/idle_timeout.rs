//! `idle_timeout_secs` reads the session's one record of what the server still owes. A COPY
//! FROM STDIN sent the way tokio-postgres sends it (Bind, Execute, Sync, data, CopyDone, Sync)
//! has two Syncs but one ReadyForQuery, because the server ignores a Sync during COPY; a count
//! of Syncs stayed one short after it and the session was never idle again.

use std::time::Duration;

use futures_util::SinkExt;
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{build, error_codes, message, RawClient};
use pgshroud_integration_tests::{cluster, proxy_with, users};

async fn proxy_idle_after_one_second() -> TestProxy {
    proxy_with(ConfigLayer {
        idle_timeout_secs: Some(1),
        ..Default::default()
    })
    .await
}

const TABLE: &str = "CREATE TABLE t (id int, name text)";

fn copy_in_pipeline() -> Vec<u8> {
    build::pipeline(&[
        build::parse("", "COPY t FROM STDIN"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
        message(b'd', b"1\tone\n2\ttwo\n"),
        message(b'c', b""),
        build::sync(),
    ])
}

#[tokio::test]
async fn a_session_idle_after_a_copy_in_with_two_syncs_is_closed_with_57p05() {
    let db = cluster().fresh_database().await;
    let p = proxy_idle_after_one_second().await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    raw.send(&build::query(TABLE)).await;
    assert!(error_codes(&raw.recv_until_ready().await).is_empty());
    raw.send(&copy_in_pipeline()).await;
    let answer = raw.recv_until_ready().await;
    let kinds: Vec<u8> = answer.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, b"12GCZ", "one ReadyForQuery for two Syncs");
    let error = tokio::time::timeout(Duration::from_secs(10), raw.recv())
        .await
        .expect("closed once idle")
        .expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("57P05"));
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn a_tokio_postgres_session_idle_after_copy_in_is_closed() {
    let db = cluster().fresh_database().await;
    let p = proxy_idle_after_one_second().await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    c.batch_execute(TABLE).await.unwrap();
    let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from_static(b"1\tone\n"))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while !c.is_closed() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the session stayed open after going idle");
    assert!(p.metrics_text().lines().any(|l| l
        .starts_with("pgshroud_connection_errors_total{reason=\"idle_timeout\"}")
        && l.ends_with(" 1")));
}

#[tokio::test]
async fn a_copy_in_waiting_for_its_data_is_not_idle() {
    let db = cluster().fresh_database().await;
    let p = proxy_idle_after_one_second().await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    c.batch_execute(TABLE).await.unwrap();
    let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    // The server owes the COPY's completion for longer than the idle timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sink.send(bytes::Bytes::from_static(b"1\tone\n"))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_second_pipelined_sync_still_owed_is_not_idle() {
    let db = cluster().fresh_database().await;
    let p = proxy_idle_after_one_second().await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    raw.send(&build::pipeline(&[
        build::parse("", "SELECT 1"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
        build::parse("", "SELECT pg_sleep(2.5)"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let first = raw.recv_until_ready().await;
    assert_eq!(first.last().map(|m| m.kind), Some(b'Z'));
    let second = raw.recv_until_ready().await;
    let kinds: Vec<u8> = second.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, b"12DCZ", "the slow batch ran to its end");
    // Then the session is idle, and closed.
    let error = tokio::time::timeout(Duration::from_secs(10), raw.recv())
        .await
        .expect("closed once idle")
        .expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("57P05"));
}
