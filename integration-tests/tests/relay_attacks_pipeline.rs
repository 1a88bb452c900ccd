//! Attacks on the lean relay (issue 25) with long pipelines: each relay direction is polled
//! only when its own waker fired, so a lost wake-up shows as a pipeline never answered whole.
//! The client writes one message per write while reading at the same time; every wait has a
//! timeout that fails the test instead of hanging CI (none measures speed). Clients log in
//! as a non-superuser role.

use std::time::Duration;

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::Fixture;
use pgshroud_integration_tests::raw::{build, Msg, RawClient};
use pgshroud_integration_tests::{cluster, proxy_with, users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Long enough for anything here on a loaded 2-CPU machine; only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// The first field of each DataRow, as text.
fn first_fields(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.kind == b'D')
        .map(|m| {
            let len = i32::from_be_bytes([m.body[2], m.body[3], m.body[4], m.body[5]]);
            String::from_utf8_lossy(&m.body[6..6 + len as usize]).into_owned()
        })
        .collect()
}

/// Writes `messages` one per write on a trust user's connection while reading at the same
/// time, until `ready` ReadyForQuery have come; the ErrorResponses and the rows' first
/// fields read meanwhile.
async fn pipelined(
    port: u16,
    db: &str,
    messages: Vec<Vec<u8>>,
    ready: usize,
) -> (Vec<String>, Vec<String>) {
    let raw = RawClient::login_trust(port, users::TRUST, db).await;
    let (mut rd, mut wr) = raw.stream.into_split();
    let writer = tokio::spawn(async move {
        for (i, m) in messages.iter().enumerate() {
            wr.write_all(m).await.unwrap();
            if i % 97 == 0 {
                tokio::task::yield_now().await;
            }
        }
        wr
    });
    let reader = tokio::spawn(async move {
        let (mut seen, mut errors, mut fields) = (0, Vec::new(), Vec::new());
        while seen < ready {
            let kind = rd.read_u8().await.expect("connection open");
            let len = rd.read_u32().await.unwrap() as usize;
            let mut body = vec![0u8; len - 4];
            rd.read_exact(&mut body).await.unwrap();
            match kind {
                b'Z' => seen += 1,
                b'E' => errors.push(String::from_utf8_lossy(&body).into_owned()),
                b'D' => fields.extend(first_fields(&[Msg { kind, body }])),
                _ => {}
            }
        }
        (errors, fields)
    });
    let read = tokio::time::timeout(HANG, reader)
        .await
        .expect("the pipeline was not answered whole: the session hangs")
        .unwrap();
    drop(writer.await.unwrap());
    read
}

/// The same without rules, with sessions on the shared multi-threaded runtime
/// (`session_threads = 0`, wakes from other threads) and on one session thread, simple and
/// extended statements mixed: every Sync and Query answered, the values in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_mixed_pipeline_is_answered_whole_on_either_runtime() {
    const N: usize = 3000;
    let db = cluster().fresh_database().await;
    for threads in [0, 1] {
        let p = proxy_with(ConfigLayer {
            session_threads: Some(threads),
            ..ConfigLayer::default()
        })
        .await;
        let mut messages = Vec::new();
        for i in 0..N {
            match i % 3 {
                0 => messages.push(build::query(&format!("SELECT {i}"))),
                _ => messages.extend([
                    build::parse("", "SELECT $1::int"),
                    build::bind("", "", &[&i.to_string()]),
                    build::execute(""),
                    build::sync(),
                ]),
            }
        }
        let (errors, values) = pipelined(p.port(), &db, messages, N).await;
        assert!(errors.is_empty(), "session_threads = {threads}: {errors:?}");
        let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
        assert!(
            values == expected,
            "session_threads = {threads}: rows out of order or lost"
        );
    }
}

/// Many statements written one message per write by a client that reads at the same time,
/// with `SET search_path` every tenth statement (the catalog is then stale and the next
/// statement is held for a look-up while the client keeps sending): every statement is
/// answered, each protected value is sealed in the database and reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pipeline_with_look_ups_ahead_is_answered_whole_and_sealed() {
    const N: usize = 600;
    let f = Fixture::new().await;
    let statements = (0..N)
        .map(|i| match i % 10 {
            0 => build::query("SET search_path = public, pg_temp"),
            _ => build::query(&format!(
                "INSERT INTO customers (email, age, name) VALUES ('pipe{i}@example.com', {i}, 'n{i}')"
            )),
        })
        .collect();
    let (errors, _) = pipelined(f.proxy.port(), &f.db, statements, N).await;
    assert!(errors.is_empty(), "{errors:?}");
    let app = f.app().await;
    let rows = app
        .query(
            "SELECT email, age FROM customers WHERE email = $1",
            &[&"pipe457@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(1), 457);
    let n: i64 = app
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, (N - N / 10) as i64);
    for stored in f.stored("SELECT email FROM customers").await {
        let stored = stored.expect("a stored value");
        assert!(
            !stored.windows(4).any(|w| w == b"pipe"),
            "plaintext in the database"
        );
    }
}
