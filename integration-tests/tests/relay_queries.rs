//! Queries through the proxy with tokio-postgres: simple and extended protocol, pipelining,
//! errors mid-pipeline and mid-transaction, COPY both ways, LISTEN/NOTIFY, cancel.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use pgshroud_integration_tests::{cluster, proxy, users};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

async fn client() -> (
    tokio_postgres::Client,
    pgshroud_integration_tests::proxy::TestProxy,
) {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .expect("login through proxy");
    (c, p)
}

#[tokio::test]
async fn several_statements_in_one_simple_query_all_answer() {
    let (c, _p) = client().await;
    let msgs = c
        .simple_query(
            "CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2); SELECT a FROM t ORDER BY a",
        )
        .await
        .unwrap();
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["1", "2"]);
    let completes = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 3);
}

#[tokio::test]
async fn extended_protocol_with_binary_parameters_and_results() {
    let (c, _p) = client().await;
    let stmt = c
        .prepare("SELECT $1::int8 * 2, $2::text || '!', $3::bytea")
        .await
        .unwrap();
    let row = c
        .query_one(&stmt, &[&21i64, &"hi", &vec![0u8, 255, 7]])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hi!");
    assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 255, 7]);
}

#[tokio::test]
async fn pipelined_queries_keep_their_order_and_an_error_stays_in_its_place() {
    let (c, _p) = client().await;
    let ok1 = c.query_one("SELECT 1::int4", &[]);
    let bad = c.query_one("SELECT 1/0", &[]);
    let ok2 = c.query_one("SELECT $1::int4", &[&3i32]);
    let (r1, r2, r3) = tokio::join!(ok1, bad, ok2);
    assert_eq!(r1.unwrap().get::<_, i32>(0), 1);
    assert_eq!(r2.unwrap_err().code().unwrap().code(), "22012");
    assert_eq!(r3.unwrap().get::<_, i32>(0), 3);
}

#[tokio::test]
async fn error_inside_a_transaction_aborts_it_until_rollback() {
    let (c, _p) = client().await;
    c.batch_execute("CREATE TABLE t (a int PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let dup = c
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(dup.code().unwrap().code(), "23505");
    let aborted = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(aborted.code().unwrap().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn many_pipelined_statements_before_one_sync_do_not_deadlock() {
    let (c, _p) = client().await;
    // 2,000 queries in flight at once: the proxy must read and write at the same time.
    let stmt = c.prepare("SELECT repeat('x', 1000)").await.unwrap();
    let futures = (0..2000).map(|_| c.query_one(&stmt, &[]));
    let rows = futures_util::future::try_join_all(futures).await.unwrap();
    assert_eq!(rows.len(), 2000);
    assert!(rows.iter().all(|r| r.get::<_, String>(0).len() == 1000));
}

#[tokio::test]
async fn copy_in_and_out_of_tens_of_megabytes() {
    let (c, _p) = client().await;
    c.batch_execute("CREATE TABLE big (id int, payload text)")
        .await
        .unwrap();
    let rows = 300_000;
    let line = "y".repeat(100);
    let sink = c.copy_in("COPY big FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut chunk = String::new();
    for i in 0..rows {
        chunk.push_str(&format!("{i}\t{line}\n"));
        if chunk.len() > 64 * 1024 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await.unwrap();
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, rows as u64);

    let stream = c.copy_out("COPY big TO STDOUT").await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let total: usize = chunks.iter().map(|b| b.len()).sum();
    let expected: usize = (0..rows)
        .map(|i: usize| i.to_string().len() + 1 + 100 + 1)
        .sum();
    assert!(total > 30_000_000, "{total} bytes is not tens of MB");
    assert_eq!(total, expected);
}

#[tokio::test]
async fn listen_notify_reaches_the_listening_client() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let (listener, mut connection) = tokio_postgres::connect(
        &p.conn_string(users::SCRAM, users::SCRAM_PASSWORD, &db),
        NoTls,
    )
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("LISTEN orders").await.unwrap();
    let notifier = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    notifier
        .batch_execute("NOTIFY orders, 'order 42 shipped'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification arrives");
    assert_eq!(
        got,
        Some(("orders".to_owned(), "order 42 shipped".to_owned()))
    );
}

#[tokio::test]
async fn notice_responses_pass_through() {
    let (c, _p) = client().await;
    // A notice in the middle of a result must not disturb the result.
    let row = c
        .query_one(
            "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$; ",
            &[],
        )
        .await;
    // DO returns no rows: query_one reports that, not a protocol error.
    assert!(row.is_err());
    assert!(row.unwrap_err().code().is_none());
    let n: i32 = c.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(n, 7);
}

#[tokio::test]
async fn cancel_request_through_the_proxy_stops_pg_sleep() {
    let (c, p) = client().await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = c.query("SELECT pg_sleep(30)", &[]).await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token
        .cancel_query(NoTls)
        .await
        .expect("cancel request sent to the proxy");
    let (result, c) = tokio::time::timeout(Duration::from_secs(20), sleeper)
        .await
        .expect("cancel took effect")
        .unwrap();
    assert_eq!(result.unwrap_err().code().unwrap().code(), "57014");
    // The session goes on after the cancel.
    let n: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    drop(p);
}

#[tokio::test]
async fn cancel_with_a_wrong_key_cancels_nothing() {
    let (c, p) = client().await;
    let sleeper = tokio::spawn(async move { c.query("SELECT pg_sleep(1)", &[]).await.map(|_| ()) });
    // A made-up key: the proxy must not forward it anywhere.
    let mut raw = pgshroud_integration_tests::raw::RawClient::connect(p.port()).await;
    let mut packet = 16u32.to_be_bytes().to_vec();
    packet.extend_from_slice(&80877102u32.to_be_bytes());
    packet.extend_from_slice(&1i32.to_be_bytes());
    packet.extend_from_slice(&2i32.to_be_bytes());
    raw.send(&packet).await;
    assert!(raw.is_closed().await);
    sleeper.await.unwrap().expect("query ran to completion");
}
