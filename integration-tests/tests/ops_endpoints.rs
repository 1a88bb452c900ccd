//! The admin listener of a running proxy: `/healthz`, `/readyz` (503 with the reason when the
//! upstream is gone) and `/metrics`, whose counters move as statements run.

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::{cluster, proxy_with, users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET over HTTP/1.1: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("admin connects");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn with_admin() -> ConfigLayer {
    ConfigLayer {
        admin_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn health_and_readiness_answer_and_metrics_move_with_statements() {
    let db = cluster().fresh_database().await;
    let p = proxy_with(with_admin()).await;
    let admin = p.admin_addr().expect("admin listener");
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/readyz").await.0, 200);
    let select_ok = "pgshroud_statements_total{kind=\"select\",role=\"none\",outcome=\"ok\"}";
    let errors = "pgshroud_statements_total{kind=\"other\",role=\"none\",outcome=\"error\"}";
    let (_, before) = get(admin, "/metrics").await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    c.query("SELECT 1", &[]).await.unwrap();
    c.simple_query("SELECT 1; SELECT 2").await.unwrap();
    c.query("SELECT 1/0", &[]).await.unwrap_err();
    let (status, after) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        value(&after, select_ok) - value(&before, select_ok),
        3.0,
        "{after}"
    );
    assert_eq!(value(&after, errors) - value(&before, errors), 1.0);
    assert!(
        value(&after, "pgshroud_connections_total") > value(&before, "pgshroud_connections_total")
    );
    assert!(value(&after, "pgshroud_statement_duration_seconds_count") >= 4.0);
    assert!(
        value(
            &after,
            "pgshroud_bytes_total{direction=\"client_to_server\"}"
        ) > 0.0,
        "{after}"
    );
}

#[tokio::test]
async fn readiness_fails_with_the_reason_when_the_upstream_is_unreachable() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let p = pgshroud_integration_tests::proxy::TestProxy::start(
        format!("postgres://127.0.0.1:{port}?sslmode=disable"),
        with_admin(),
    )
    .await;
    let admin = p.admin_addr().unwrap();
    assert_eq!(get(admin, "/healthz").await.0, 200, "alive all the same");
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("unreachable"), "{body}");
}
