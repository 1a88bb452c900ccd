//! Failure handling: dead or dying upstream, malformed and oversized client messages,
//! connection limits, timeouts, protocol versions, graceful shutdown. Each failure ends only
//! the connection concerned, with a PostgreSQL error the client understands.

use std::time::Duration;

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::faults::CuttableRelay;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{message, startup_packet, RawClient};
use pgshroud_integration_tests::{cluster, proxy, proxy_with, users};

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

async fn still_serves(p: &TestProxy, db: &str) {
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, db)
        .await
        .expect("proxy still serves");
    let n: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn upstream_down_gives_08006_at_login() {
    // A port nothing listens on.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = TestProxy::start(
        format!("postgres://127.0.0.1:{unused}?sslmode=disable"),
        ConfigLayer::default(),
    )
    .await;
    let err = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, "postgres")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "08006");
    assert!(
        err.as_db_error().unwrap().message().contains("upstream"),
        "{err:?}"
    );
}

#[tokio::test]
async fn upstream_dying_mid_query_gives_08006_and_closes() {
    let db = cluster().fresh_database().await;
    let relay = CuttableRelay::start(([127, 0, 0, 1], cluster().port()).into()).await;
    let p = TestProxy::start(
        format!("postgres://{}?sslmode=disable", relay.addr),
        ConfigLayer::default(),
    )
    .await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    let query = tokio::spawn(async move { c.query("SELECT pg_sleep(30)", &[]).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut();
    let err = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&err), "08006");
}

#[tokio::test]
async fn backend_terminated_by_admin_reaches_client_as_the_servers_own_error() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let admin = cluster().admin_client().await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = c.query_one("SELECT 1", &[]).await.unwrap_err();
    // PostgreSQL's FATAL 57P01 when it got to say it, else our 08006; never a hang.
    let code = err.as_db_error().map(|d| d.code().code().to_owned());
    assert!(
        matches!(code.as_deref(), Some("57P01") | Some("08006") | None),
        "{err}"
    );
    assert!(c.is_closed() || c.query_one("SELECT 1", &[]).await.is_err());
    still_serves(&p, &db).await;
}

#[tokio::test]
async fn unknown_message_type_closes_only_that_connection_with_08p01() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    raw.send(&message(b'!', b"garbage")).await;
    let error = raw.recv().await.expect("an error before close");
    assert_eq!(error.kind, b'E');
    assert_eq!(error.field(b'C').as_deref(), Some("08P01"));
    assert!(raw.is_closed().await);
    still_serves(&p, &db).await;
}

#[tokio::test]
async fn impossible_message_length_gives_08p01() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    raw.send(&[b'Q', 0, 0, 0, 2]).await;
    let error = raw.recv().await.expect("an error before close");
    assert_eq!(error.field(b'C').as_deref(), Some("08P01"));
    assert!(raw.is_closed().await);
    still_serves(&p, &db).await;
}

#[tokio::test]
async fn oversized_message_gives_54000_without_buffering_it() {
    let db = cluster().fresh_database().await;
    let p = proxy_with(ConfigLayer {
        max_message_size: Some(64 * 1024),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    // Only the header of a 100 MB message is sent: the proxy must answer from the header.
    raw.send(&[b'Q', 0x06, 0, 0, 0]).await;
    let error = raw.recv().await.expect("an error before close");
    assert_eq!(error.field(b'C').as_deref(), Some("54000"));
    assert!(error.field(b'M').unwrap().contains("max_message_size"));
    assert!(raw.is_closed().await);
    still_serves(&p, &db).await;
}

#[tokio::test]
async fn garbage_instead_of_a_startup_packet_is_dropped_and_the_proxy_lives_on() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0, 0, 0, 1][..],
        &[0xff; 64][..],
    ] {
        let mut raw = RawClient::connect(p.port()).await;
        raw.send(garbage).await;
        assert!(raw.is_closed().await);
    }
    still_serves(&p, &db).await;
}

#[tokio::test]
async fn protocol_2_is_refused_with_0a000() {
    let p = proxy().await;
    let mut raw = RawClient::connect(p.port()).await;
    raw.send(&startup_packet(2 << 16, &[("user", users::TRUST)]))
        .await;
    let error = raw.recv().await.expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("0A000"));
    assert!(error
        .field(b'M')
        .unwrap()
        .contains("unsupported frontend protocol 2.0"));
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn newer_minor_version_is_negotiated_down_to_3_0() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let mut raw = RawClient::connect(p.port()).await;
    raw.send(&startup_packet(
        (3 << 16) | 2,
        &[
            ("user", users::TRUST),
            ("database", &db),
            ("_pq_.test_option", "1"),
        ],
    ))
    .await;
    let msgs = raw.recv_until_ready().await;
    let negotiate = msgs
        .iter()
        .find(|m| m.kind == b'v')
        .expect("NegotiateProtocolVersion");
    assert_eq!(&negotiate.body[..4], &0i32.to_be_bytes());
    assert!(String::from_utf8_lossy(&negotiate.body).contains("_pq_.test_option"));
    assert_eq!(msgs.last().unwrap().kind, b'Z');
    let key = msgs
        .iter()
        .find(|m| m.kind == b'K')
        .expect("BackendKeyData");
    assert_eq!(key.body.len(), 8, "protocol 3.0 keys are 4 bytes");
}

#[tokio::test]
async fn missing_user_name_is_refused_with_28000() {
    let p = proxy().await;
    let mut raw = RawClient::connect(p.port()).await;
    raw.send(&startup_packet(3 << 16, &[("database", "postgres")]))
        .await;
    let error = raw.recv().await.expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("28000"));
}

#[tokio::test]
async fn clients_over_the_limit_get_53300() {
    let db = cluster().fresh_database().await;
    let p = proxy_with(ConfigLayer {
        max_client_connections: Some(2),
        ..Default::default()
    })
    .await;
    let a = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    let b = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    let err = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "53300");
    drop(a);
    // The freed slot is usable again once the first session has ended.
    let mut admitted = false;
    for _ in 0..50 {
        if p.connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "a slot freed by a closed session is reused");
    drop(b);
}

#[tokio::test]
async fn idle_client_is_disconnected_with_57p05() {
    let db = cluster().fresh_database().await;
    let p = proxy_with(ConfigLayer {
        idle_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    let error = tokio::time::timeout(Duration::from_secs(10), raw.recv())
        .await
        .expect("disconnected")
        .expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("57P05"));
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn a_running_query_is_not_idle() {
    let db = cluster().fresh_database().await;
    let p = proxy_with(ConfigLayer {
        idle_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    c.query("SELECT pg_sleep(2.5)", &[])
        .await
        .expect("a 2.5 s query outlives a 1 s idle timeout");
}

#[tokio::test]
async fn slow_startup_is_cut_off() {
    let p = proxy_with(ConfigLayer {
        startup_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::connect(p.port()).await;
    raw.send(&[0, 0]).await; // half a length word, then nothing
    assert!(
        tokio::time::timeout(Duration::from_secs(10), raw.is_closed())
            .await
            .expect("closed in time")
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_the_running_query_finish() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    let query = tokio::spawn(async move {
        let r = c
            .query_one("SELECT pg_sleep(1)::text || 'done'", &[])
            .await
            .map(|r| r.get::<_, String>(0));
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.begin_shutdown();
    let (result, c) = query.await.unwrap();
    assert_eq!(result.unwrap(), "done");
    // After the statement the session ends with 57P01, and no new client is accepted.
    let after = c.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(
        after
            .as_db_error()
            .is_none_or(|d| d.code().code() == "57P01"),
        "{after}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .is_err());
}

#[tokio::test]
async fn shutdown_waits_for_an_open_transaction_to_end() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    c.batch_execute("CREATE TABLE t (a int)").await.unwrap();
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    p.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still inside the transaction: the session is kept until COMMIT.
    c.batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .expect("transaction can finish");
    let admin = cluster().admin_client_for(&db).await;
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

/// Sessions handed to different session threads each keep their own transaction, and the
/// drain waits for every thread's sessions before the proxy stops.
#[tokio::test]
async fn sessions_on_several_session_threads_drain_before_the_proxy_stops() {
    let db = cluster().fresh_database().await;
    let p = proxy_with(ConfigLayer {
        session_threads: Some(2),
        shutdown_timeout_secs: Some(20),
        ..ConfigLayer::default()
    })
    .await;
    let setup = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    setup.batch_execute("CREATE TABLE t (a int)").await.unwrap();
    let mut clients = Vec::new();
    for i in 0..5 {
        let c = p
            .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
            .await
            .unwrap();
        c.batch_execute(&format!("BEGIN; INSERT INTO t VALUES ({i})"))
            .await
            .unwrap();
        clients.push(c);
    }
    drop(setup);
    let stopping = tokio::spawn(p.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "stopped with transactions open");
    for (i, c) in clients.iter().enumerate() {
        c.batch_execute(&format!("INSERT INTO t VALUES ({}); COMMIT", i + 10))
            .await
            .expect("each session keeps its transaction through the drain");
    }
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the proxy stops once every session has ended")
        .unwrap();
    let admin = cluster().admin_client_for(&db).await;
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
}
