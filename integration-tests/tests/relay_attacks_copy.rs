//! Attacks on the lean relay (issue 25) with COPY, graceful and forced shutdown, and the idle
//! timeout: a direction that always has data, a drain that must wait for a COPY to end (the
//! server pump now reads a `draining` flag after each write, and the session watches the
//! shutdown stage once), and a forced stop that must not hang. Every wait has a timeout that
//! fails the test instead of hanging CI; none measures speed. Clients are non-superusers.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::Fixture;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{build, RawClient};
use pgshroud_integration_tests::{cluster, proxy_with, users};

const HANG: Duration = Duration::from_secs(120);

/// A table the application role may fill, made by the superuser in `db`.
async fn bulk_table(db: &str) {
    cluster()
        .admin_client_for(db)
        .await
        .batch_execute(
            "CREATE TABLE bulk (id int, payload text);
             GRANT ALL ON bulk TO PUBLIC;",
        )
        .await
        .unwrap();
}

async fn rows_in_bulk(db: &str) -> i64 {
    cluster()
        .admin_client_for(db)
        .await
        .query_one("SELECT count(*) FROM bulk", &[])
        .await
        .unwrap()
        .get(0)
}

/// `rows` lines of COPY text, in chunks of about 64 KiB.
fn copy_chunks(first: usize, rows: usize) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut chunk = String::new();
    for i in first..first + rows {
        chunk.push_str(&format!("{i}\t{}\n", "y".repeat(90)));
        if chunk.len() > 64 * 1024 {
            chunks.push(Bytes::from(std::mem::take(&mut chunk)));
        }
    }
    if !chunk.is_empty() {
        chunks.push(Bytes::from(chunk));
    }
    chunks
}

/// Copies `rows` rows into `bulk` on `c`; the row count the server reported.
async fn copy_in(c: &tokio_postgres::Client, rows: usize) -> u64 {
    let sink = c.copy_in("COPY bulk FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    for chunk in copy_chunks(0, rows) {
        sink.send(chunk).await.unwrap();
    }
    sink.as_mut().finish().await.unwrap()
}

/// Reads a COPY TO STDOUT whole; the number of lines and bytes it held.
async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> (usize, usize) {
    let stream = c.copy_out(sql).await.unwrap();
    let mut stream = Box::pin(stream);
    let (mut lines, mut bytes) = (0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        bytes += chunk.len();
    }
    (lines, bytes)
}

const BIG_OUT: &str =
    "COPY (SELECT i, repeat('x', 100) FROM generate_series(1, 150000) AS i) TO STDOUT";

/// One session copies ~15 MB in while another copies ~16 MB out, both through protected
/// sessions (rules loaded) sharing the proxy's session threads (one on a 2-CPU machine): both
/// complete whole, and a third session is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_in_and_out_side_by_side_on_one_session_thread_complete_whole() {
    let f = Fixture::new().await;
    bulk_table(&f.db).await;
    let writer = f.app().await;
    let reader = f.app().await;
    let third = f.app().await;
    let work = async {
        let (copied, (lines, bytes), one) = tokio::join!(
            copy_in(&writer, 150_000),
            copy_out(&reader, BIG_OUT),
            third.query_one("SELECT 1", &[]),
        );
        (copied, lines, bytes, one.map(|r| r.get::<_, i32>(0)))
    };
    let (copied, lines, bytes, one) = tokio::time::timeout(HANG, work)
        .await
        .expect("a COPY through the proxy hangs");
    assert_eq!(copied, 150_000);
    assert_eq!(lines, 150_000);
    assert!(bytes > 15_000_000, "{bytes} bytes");
    assert_eq!(one.unwrap(), 1);
    assert_eq!(rows_in_bulk(&f.db).await, 150_000);
}

/// A proxy whose drain is forced after one second.
async fn forcing_proxy() -> TestProxy {
    proxy_with(ConfigLayer {
        shutdown_timeout_secs: Some(1),
        ..ConfigLayer::default()
    })
    .await
}

/// The application role's (SCRAM, non-superuser) session through `p`.
async fn app_client(p: &TestProxy, db: &str) -> tokio_postgres::Client {
    p.connect(users::SCRAM, users::SCRAM_PASSWORD, db)
        .await
        .unwrap()
}

/// A proxy on one session thread whose drain waits up to a minute.
async fn draining_proxy() -> TestProxy {
    proxy_with(ConfigLayer {
        session_threads: Some(1),
        shutdown_timeout_secs: Some(60),
        ..ConfigLayer::default()
    })
    .await
}

/// Graceful shutdown in the middle of a COPY FROM STDIN: the COPY is running, so the session
/// is kept until it ends (every row lands), and is closed with 57P01 after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_during_a_copy_in_lets_it_finish_then_closes() {
    let db = cluster().fresh_database().await;
    bulk_table(&db).await;
    let p = draining_proxy().await;
    let c = app_client(&p, &db).await;
    let work = async {
        let sink = c.copy_in("COPY bulk FROM STDIN").await.unwrap();
        let mut sink = Box::pin(sink);
        let mut chunks = copy_chunks(0, 40_000).into_iter();
        for chunk in chunks.by_ref().take(5) {
            sink.send(chunk).await.unwrap();
        }
        p.begin_shutdown();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for chunk in chunks {
            sink.send(chunk).await.unwrap();
        }
        sink.as_mut().finish().await
    };
    let copied = tokio::time::timeout(HANG, work)
        .await
        .expect("the COPY hangs through the drain");
    assert_eq!(copied.expect("the COPY runs to its end"), 40_000);
    let after = tokio::time::timeout(HANG, c.query_one("SELECT 1", &[]))
        .await
        .expect("the session hangs after its COPY")
        .unwrap_err();
    assert!(
        after
            .as_db_error()
            .is_none_or(|d| d.code().code() == "57P01"),
        "{after}"
    );
    assert_eq!(rows_in_bulk(&db).await, 40_000);
}

/// Graceful shutdown in the middle of a large COPY TO STDOUT: every line reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_during_a_copy_out_delivers_every_line() {
    let db = cluster().fresh_database().await;
    let p = draining_proxy().await;
    let c = app_client(&p, &db).await;
    let work = async {
        let stream = c.copy_out(BIG_OUT).await.unwrap();
        let mut stream = Box::pin(stream);
        let first = stream.next().await.expect("a first chunk").unwrap();
        p.begin_shutdown();
        let mut lines = first.iter().filter(|&&b| b == b'\n').count();
        while let Some(chunk) = stream.next().await {
            lines += chunk.unwrap().iter().filter(|&&b| b == b'\n').count();
        }
        lines
    };
    let lines = tokio::time::timeout(HANG, work)
        .await
        .expect("the COPY hangs through the drain");
    assert_eq!(lines, 150_000);
    assert!(c.query_one("SELECT 1", &[]).await.is_err(), "closed after");
}

/// A forced shutdown (the drain's time is up) during a COPY FROM STDIN the client never
/// finishes: the proxy stops, the client's connection ends, and none of the rows is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_shutdown_during_an_unfinished_copy_in_ends_it_without_a_hang() {
    let db = cluster().fresh_database().await;
    bulk_table(&db).await;
    let p = forcing_proxy().await;
    let c = app_client(&p, &db).await;
    let sink = c.copy_in("COPY bulk FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    for chunk in copy_chunks(0, 5_000) {
        sink.send(chunk).await.unwrap();
    }
    tokio::time::timeout(HANG, p.shutdown())
        .await
        .expect("the proxy never stopped: the session held it");
    let rest = tokio::time::timeout(HANG, async {
        for chunk in copy_chunks(5_000, 5_000) {
            sink.send(chunk).await?;
        }
        sink.as_mut().finish().await
    })
    .await
    .expect("the client hangs after the forced stop");
    assert!(rest.is_err(), "a COPY finished through a stopped proxy");
    let admin = cluster().admin_client_for(&db).await;
    tokio::time::timeout(HANG, async {
        while admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1",
                &[&users::SCRAM],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the upstream connection outlived the proxy");
    assert_eq!(rows_in_bulk(&db).await, 0, "an unfinished COPY kept rows");
}

/// The idle timeout with a transaction open: no statement runs, so the session is closed with
/// 57P05, and what the transaction wrote is rolled back, not committed on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_in_an_open_transaction_closes_it_and_rolls_back() {
    let db = cluster().fresh_database().await;
    bulk_table(&db).await;
    let p = proxy_with(ConfigLayer {
        idle_timeout_secs: Some(1),
        ..ConfigLayer::default()
    })
    .await;
    let c = app_client(&p, &db).await;
    c.batch_execute("BEGIN; INSERT INTO bulk VALUES (1, 'uncommitted')")
        .await
        .unwrap();
    tokio::time::timeout(HANG, async {
        while !c.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("an idle transaction's session stayed open");
    assert!(c.batch_execute("COMMIT").await.is_err());
    assert_eq!(
        rows_in_bulk(&db).await,
        0,
        "the open transaction was committed"
    );
}

/// A drain while a transaction is open and a COPY runs inside it: the COPY ends, the
/// transaction is still open so the session stays, COMMIT is served, then the session closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_during_a_copy_inside_a_transaction_waits_for_the_commit() {
    let db = cluster().fresh_database().await;
    bulk_table(&db).await;
    let p = draining_proxy().await;
    let c = app_client(&p, &db).await;
    let work = async {
        c.batch_execute("BEGIN").await.unwrap();
        let sink = c.copy_in("COPY bulk FROM STDIN").await.unwrap();
        let mut sink = Box::pin(sink);
        let mut chunks = copy_chunks(0, 20_000).into_iter();
        sink.send(chunks.next().unwrap()).await.unwrap();
        p.begin_shutdown();
        for chunk in chunks {
            sink.send(chunk).await.unwrap();
        }
        let copied = sink.as_mut().finish().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.batch_execute("COMMIT").await.map(|()| copied)
    };
    let copied = tokio::time::timeout(HANG, work)
        .await
        .expect("the session hangs through the drain");
    assert_eq!(copied.expect("COMMIT is served during the drain"), 20_000);
    assert_eq!(rows_in_bulk(&db).await, 20_000);
    let after = tokio::time::timeout(HANG, c.query_one("SELECT 1", &[]))
        .await
        .expect("the session hangs after its COMMIT");
    assert!(
        after.is_err(),
        "the session is closed after the transaction"
    );
}

/// A client that starts a large COPY TO STDOUT and then stops reading: the drain cannot end
/// it (the COPY never finishes), so the stop is forced once `shutdown_timeout_secs` is up.
/// The forced end must not wait on that client: telling it "shutting down" cannot be
/// written into a socket it does not read, and the proxy must stop anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_shutdown_stops_even_when_the_client_stopped_reading_a_copy_out() {
    let db = cluster().fresh_database().await;
    let p = forcing_proxy().await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    raw.send(&build::query(BIG_OUT)).await;
    // Let the proxy fill the socket the client does not read.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tokio::time::timeout(Duration::from_secs(60), p.shutdown())
        .await
        .expect("the proxy never stopped: a forced session waits on a client that does not read");
    drop(raw);
}

/// A drain between an Execute answered after a Flush and the Sync that would commit it: the
/// server holds an implicit transaction the proxy's record reads as idle (everything asked
/// was answered, the last ReadyForQuery said `I`). Whatever the proxy does then, it must be
/// all or nothing: either the session lives to the Sync and the row is committed, or the
/// client is told 57P01 and the row is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_inside_an_unsynced_pipeline_commits_all_or_nothing() {
    let db = cluster().fresh_database().await;
    bulk_table(&db).await;
    let p = draining_proxy().await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    raw.send(&build::pipeline(&[
        build::parse("", "INSERT INTO bulk VALUES (1, 'pipelined')"),
        build::bind("", "", &[]),
        build::execute(""),
        pgshroud_integration_tests::raw::message(b'H', b""),
    ]))
    .await;
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let m = tokio::time::timeout(HANG, raw.recv())
            .await
            .expect("the flushed Execute is answered")
            .expect("connection open");
        kinds.push(m.kind);
    }
    assert_eq!(kinds, b"12C");
    p.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send(&build::sync()).await;
    let rest = tokio::time::timeout(HANG, raw.recv_until_ready())
        .await
        .expect("the session hangs");
    let told_57p01 = rest
        .iter()
        .any(|m| m.kind == b'E' && m.field(b'C').as_deref() == Some("57P01"));
    let committed = rest.last().map(|m| m.kind) == Some(b'Z');
    assert!(told_57p01 != committed, "{rest:?}");
    // The backend ends once the proxy has closed its connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rows_in_bulk(&db).await,
        i64::from(committed),
        "committed: {committed}, answered {rest:?}"
    );
}
