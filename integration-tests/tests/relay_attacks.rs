//! Attacks on the lean relay (issue 25): each relay direction is polled only when its own
//! waker fired, shutdown is watched once per session, and a statement held for a catalog
//! look-up waits on the statement path's `Notify` alone. A lost wake-up shows as a hang, so
//! every wait here has a timeout that fails the test instead of hanging CI (none of them
//! measures speed). Clients log in as non-superuser roles; the tables are the superuser's.
//!
//! A statement is held for as long as we like by a migrating column: its look-up ahead runs
//! under `ACCESS SHARE` on the table (see `protect::session::ahead`), so a superuser's open
//! `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` keeps the look-up, and the statement behind it,
//! waiting until that transaction ends. Long pipelines are in `relay_attacks_pipeline.rs`,
//! COPY and shutdown in `relay_attacks_copy.rs`.

use std::time::Duration;

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::keys::write_keys;
use pgshroud_integration_tests::protected::{MASTER_KEY, MIGRATING_PEOPLE};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{build, error_codes, Msg, RawClient};
use pgshroud_integration_tests::{cluster, proxy_with, users};

/// Long enough for anything this suite does on a loaded 2-CPU machine; only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// A database whose `people.email` is migrating (still plaintext), and a proxy serving it
/// with `layer`'s settings on top.
async fn migrating_proxy(layer: ConfigLayer) -> (String, tempfile::TempDir, TestProxy) {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE people (id serial PRIMARY KEY, email text NOT NULL);
             INSERT INTO people (email) VALUES ('a@example.com'), ('b@example.com');
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), MIGRATING_PEOPLE).unwrap();
    write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
    let proxy = proxy_with(ConfigLayer {
        rules: Some(dir.path().join("rules.toml")),
        keys_file: Some(dir.path().join("keys.toml")),
        ..layer
    })
    .await;
    (db, dir, proxy)
}

/// The superuser's open transaction holding `people` in ACCESS EXCLUSIVE mode.
async fn lock_people(db: &str) -> tokio_postgres::Client {
    let locker = cluster().admin_client_for(db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE people IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    locker
}

/// Waits until a session of `user` waits for a lock (its look-up is held by ours).
async fn until_waiting_for_a_lock(db: &str, user: &str) {
    let admin = cluster().admin_client_for(db).await;
    tokio::time::timeout(HANG, async {
        loop {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND usename = $1 AND wait_event_type = 'Lock'",
                    &[&user],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the look-up ahead of the statement never waited for the lock");
}

async fn answers(raw: &mut RawClient, what: &str) -> Vec<Msg> {
    tokio::time::timeout(HANG, raw.recv_until_ready())
        .await
        .unwrap_or_else(|_| panic!("no answer to {what}: the session hangs"))
}

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

/// A statement held behind a look-up waiting for a lock, with more statements sent after it
/// (simple and extended) and an idle timeout shorter than the wait: nothing is answered while
/// the look-up waits, nothing is timed out as idle (the client is waiting for an answer),
/// and once the lock goes every statement is answered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_sent_behind_a_held_one_are_answered_in_order_once_it_goes_on() {
    let (db, _dir, p) = migrating_proxy(ConfigLayer {
        idle_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    let locker = lock_people(&db).await;
    raw.send(&build::pipeline(&[
        build::query("SELECT email FROM people WHERE id = 1"),
        build::query("SELECT 'second'"),
        build::parse("", "SELECT email FROM people WHERE id = $1"),
        build::bind("", "", &["2"]),
        build::execute(""),
        build::sync(),
        build::query("SELECT 'fourth'"),
    ]))
    .await;
    until_waiting_for_a_lock(&db, users::TRUST).await;
    // Longer than the idle timeout: a held statement is owed an answer, not idle.
    let early = tokio::time::timeout(Duration::from_millis(2500), raw.recv()).await;
    assert!(
        early.is_err(),
        "answered while the look-up waited: {early:?}"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    let mut got = Vec::new();
    for what in [
        "the held SELECT",
        "SELECT 'second'",
        "the pipeline",
        "'fourth'",
    ] {
        let msgs = answers(&mut raw, what).await;
        assert!(error_codes(&msgs).is_empty(), "{what}: {msgs:?}");
        got.extend(first_fields(&msgs));
    }
    assert_eq!(
        got,
        ["a@example.com", "second", "b@example.com", "fourth"],
        "every statement answered once, in the order sent"
    );
    // Then idle: closed with 57P05.
    let closing = tokio::time::timeout(HANG, raw.recv())
        .await
        .expect("an idle session is closed")
        .expect("with an error");
    assert_eq!(closing.field(b'C').as_deref(), Some("57P05"));
}

/// A CancelRequest sent while the client's statement is held behind the look-up: the client
/// meant its statement, and with PostgreSQL alone that statement would end now with 57014.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_held_statement_ends_that_statement() {
    let (db, _dir, p) = migrating_proxy(ConfigLayer::default()).await;
    let (mut raw, pid, secret) = RawClient::login_trust_with_key(p.port(), users::TRUST, &db).await;
    let locker = lock_people(&db).await;
    raw.send(&build::query("SELECT email FROM people WHERE id = 1"))
        .await;
    until_waiting_for_a_lock(&db, users::TRUST).await;
    let _cancel = RawClient::send_cancel(p.port(), pid, &secret).await;
    let answer = tokio::time::timeout(Duration::from_secs(15), raw.recv_until_ready()).await;
    // Release the lock whatever happened, so a failure does not leave the backend waiting.
    locker.batch_execute("ROLLBACK").await.unwrap();
    let msgs = answer.expect("the cancelled statement is still waiting for the lock");
    assert_eq!(error_codes(&msgs), ["57014"], "{msgs:?}");
    // The session goes on.
    raw.send(&build::query("SELECT email FROM people WHERE id = 2"))
        .await;
    let msgs = answers(&mut raw, "the next statement").await;
    assert_eq!(first_fields(&msgs), ["b@example.com"]);
}

/// A cancel during a held statement must at least not break the session: whatever the
/// cancel hit, the statement is answered (or refused) once the lock goes, and the session
/// serves the next statement with the right row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_held_statement_leaves_the_session_usable() {
    let (db, _dir, p) = migrating_proxy(ConfigLayer::default()).await;
    let (mut raw, pid, secret) = RawClient::login_trust_with_key(p.port(), users::TRUST, &db).await;
    let locker = lock_people(&db).await;
    raw.send(&build::query(
        "INSERT INTO people (email) VALUES ('c@example.com')",
    ))
    .await;
    until_waiting_for_a_lock(&db, users::TRUST).await;
    let _cancel = RawClient::send_cancel(p.port(), pid, &secret).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    let msgs = answers(&mut raw, "the held INSERT").await;
    let codes = error_codes(&msgs);
    assert!(codes.is_empty() || codes == ["57014"], "{msgs:?}");
    let admin = cluster().admin_client_for(&db).await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM people WHERE email = 'c@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(codes.is_empty()), "inserted iff it succeeded");
    raw.send(&build::query("SELECT email FROM people WHERE id = 2"))
        .await;
    let msgs = answers(&mut raw, "the next statement").await;
    assert_eq!(first_fields(&msgs), ["b@example.com"], "{msgs:?}");
}

/// Graceful shutdown while a statement is held: the statement has not started, so the
/// session is at a safe point; the client is told 57P01 and the statement never runs, even
/// after the lock goes (the proxy must not send it on its way out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_while_a_statement_is_held_closes_the_session_without_running_it() {
    let (db, _dir, p) = migrating_proxy(ConfigLayer::default()).await;
    let mut raw = RawClient::login_trust(p.port(), users::TRUST, &db).await;
    let locker = lock_people(&db).await;
    raw.send(&build::query(
        "INSERT INTO people (email) VALUES ('drained@example.com')",
    ))
    .await;
    until_waiting_for_a_lock(&db, users::TRUST).await;
    p.begin_shutdown();
    let told = tokio::time::timeout(HANG, raw.recv())
        .await
        .expect("the held session hangs through the drain");
    locker.batch_execute("ROLLBACK").await.unwrap();
    let told = told.expect("an error before the close");
    assert_eq!(told.field(b'C').as_deref(), Some("57P01"), "{told:?}");
    assert!(raw.is_closed().await);
    // The look-up's backend goes on once the lock is free, then reads our Terminate.
    let admin = cluster().admin_client_for(&db).await;
    tokio::time::timeout(HANG, async {
        loop {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1",
                    &[&users::TRUST],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the upstream connection ends");
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM people WHERE email = 'drained@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "the held statement ran after the client was told 57P01"
    );
}

/// The real binary and a real SIGTERM, with one session's statement held behind its look-up
/// and another session in the middle of a COPY FROM STDIN: the COPY runs to its end and its
/// rows are kept, the held session is told 57P01 without its statement running, and the
/// process exits once both sessions are over (no forced stop needed: the timeout is long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_held_statement_and_a_running_copy_exits_cleanly() {
    use futures_util::SinkExt;
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE people (id serial PRIMARY KEY, email text NOT NULL);
             CREATE TABLE bulk (id int, payload text);
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), MIGRATING_PEOPLE).unwrap();
    let keys = write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
    let mut serve = pgshroud_integration_tests::kms::serve(
        &pgshroud_integration_tests::proxy::pgshroud_bin(),
        dir.path(),
        &cluster().url(),
        &dir.path().join("rules.toml"),
        &keys,
        |c| c,
    );
    serve.wait_listening().expect("pgshroud serves");
    let port = serve.listen.port();
    let copier = {
        let url = format!(
            "host=127.0.0.1 port={port} user={} password={} dbname={db} sslmode=disable",
            users::SCRAM,
            users::SCRAM_PASSWORD
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let mut held = RawClient::login_trust(port, users::TRUST, &db).await;
    let locker = lock_people(&db).await;
    held.send(&build::query(
        "INSERT INTO people (email) VALUES ('sigterm@example.com')",
    ))
    .await;
    until_waiting_for_a_lock(&db, users::TRUST).await;
    let sink = copier.copy_in("COPY bulk FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    let line = |i: usize| bytes::Bytes::from(format!("{i}\tpayload {i}\n"));
    for i in 0..1000 {
        sink.send(line(i)).await.unwrap();
    }
    serve.signal("TERM");
    let told = tokio::time::timeout(HANG, held.recv())
        .await
        .expect("the held session hangs through SIGTERM")
        .expect("an error before the close");
    assert_eq!(told.field(b'C').as_deref(), Some("57P01"), "{told:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 1000..2000 {
        sink.send(line(i)).await.unwrap();
    }
    let copied = tokio::time::timeout(HANG, sink.as_mut().finish())
        .await
        .expect("the COPY hangs through SIGTERM");
    assert_eq!(copied.expect("the running COPY ends normally"), 2000);
    locker.batch_execute("ROLLBACK").await.unwrap();
    let status = tokio::time::timeout(HANG, async {
        loop {
            if let Some(status) = serve.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pgshroud did not exit: {}", serve.log_text()));
    assert!(status.success(), "{status}: {}", serve.log_text());
    let count = |sql: &'static str| {
        let admin = &admin;
        async move { admin.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM bulk").await, 2000);
    assert_eq!(
        count("SELECT count(*) FROM people WHERE email = 'sigterm@example.com'").await,
        0,
        "the held statement ran after its client was told 57P01"
    );
}

/// The swap `pgshroud migrate` commits, raced by a cancel: the look-up ahead of a statement
/// on a migrating table runs under the table's lock precisely so that the swap commits
/// before the look-up or after the statement, never between them. A CancelRequest that lands
/// while the look-up waits for the swap's lock fails the look-up. The held statement used to
/// go on planned against the catalog from before the swap (`email` still plaintext), wait
/// for the lock itself and run once the swap had committed: its literal reached a column
/// whose values are now sealed, in plaintext (found by this round's attack pass). It is now
/// answered with the look-up's error and never sent. Here the swap is simulated by the owner
/// turning the column into bytea under ACCESS EXCLUSIVE (no guard, so the bytes can be read
/// back); a real swap's guard would refuse the row, but the plaintext would still have been
/// sent to the server (and its log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_fails_the_locked_look_up_does_not_let_plaintext_past_a_swap() {
    let (leaked, msgs) = insert_across_a_swap(Fails::ByCancel).await;
    assert_eq!(
        leaked, 0,
        "plaintext stored in the swapped column; the client was answered {msgs:?}"
    );
}

/// The same hole without a hostile client: an application's own `lock_timeout` ends the
/// look-up waiting for the swap's lock, and the statement goes on as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_timeout_that_fails_the_locked_look_up_does_not_let_plaintext_past_a_swap() {
    let (leaked, msgs) = insert_across_a_swap(Fails::ByLockTimeout).await;
    assert_eq!(
        leaked, 0,
        "plaintext stored in the swapped column; the client was answered {msgs:?}"
    );
}

/// How the look-up ahead of the INSERT fails, if it does.
#[derive(PartialEq)]
enum Fails {
    Not,
    ByCancel,
    ByLockTimeout,
}

/// The same race without the cancel: the look-up waits for the swap and reads the new form,
/// so the statement is planned for a sealed column: refused here (55000, the simulated swap
/// installs no guard), never sent with its plaintext (proof the hole's check can pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_held_across_a_swap_is_sealed_by_its_look_up() {
    let (leaked, msgs) = insert_across_a_swap(Fails::Not).await;
    assert_eq!(error_codes(&msgs), ["55000"], "{msgs:?}");
    assert_eq!(leaked, 0, "plaintext stored in the swapped column");
}

/// An INSERT on the migrating column held behind its look-up while the owner's transaction
/// turns the column into bytea; the look-up fails first as `fails` says. Returns how many
/// rows hold the literal in plaintext, and the client's answer.
async fn insert_across_a_swap(fails: Fails) -> (i64, Vec<Msg>) {
    let (db, _dir, p) = migrating_proxy(ConfigLayer::default()).await;
    let (mut raw, pid, secret) = RawClient::login_trust_with_key(p.port(), users::TRUST, &db).await;
    if fails == Fails::ByLockTimeout {
        raw.send(&build::query("SET lock_timeout = '2s'")).await;
        assert!(error_codes(&answers(&mut raw, "SET").await).is_empty());
    }
    let swapper = lock_people(&db).await;
    swapper
        .batch_execute(
            "ALTER TABLE people ALTER COLUMN email TYPE bytea USING convert_to(email, 'UTF8')",
        )
        .await
        .unwrap();
    raw.send(&build::query(
        "INSERT INTO people (email) VALUES ('leak@example.com')",
    ))
    .await;
    until_waiting_for_a_lock(&db, users::TRUST).await;
    let admin = cluster().admin_client_for(&db).await;
    if fails != Fails::Not {
        let _cancel = match fails {
            Fails::ByCancel => Some(RawClient::send_cancel(p.port(), pid, &secret).await),
            _ => None,
        };
        // The look-up fails; wait until what the proxy sends next waits for the lock too
        // (the statement itself, if it was sent on), or a while if nothing does.
        let _ = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1
                          AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO people%'",
                        &[&users::TRUST],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    swapper.batch_execute("COMMIT").await.unwrap();
    let msgs = answers(&mut raw, "the INSERT").await;
    let leaked: i64 = admin
        .query_one(
            "SELECT count(*) FROM people WHERE position('leak@'::bytea IN email) > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (leaked, msgs)
}
