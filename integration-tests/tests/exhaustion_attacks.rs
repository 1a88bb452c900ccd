//! Inputs built to exhaust the proxy's stack, memory or time, sent as the non-superuser
//! application role. A stack overflow aborts the whole process (every session), so each test
//! first of all proves the proxy is still up afterwards; where pgshroud must refuse, it answers
//! with an ErrorResponse as PostgreSQL would (54000, 54001, 53200) and the session lives on.

use pgshroud_integration_tests::protected::{code, rows, Fixture};

/// The session still answers, and the proxy still accepts new sessions.
async fn still_up(f: &Fixture, c: &tokio_postgres::Client) {
    let r = c.simple_query("SELECT 41 + 1").await.expect("same session");
    assert_eq!(rows(&r), vec![vec![Some("42".to_string())]]);
    let fresh = f.app().await;
    fresh.simple_query("SELECT 1").await.expect("new session");
}

/// A statement on a protected table nesting just under the analysis' bound (so it is analysed,
/// not refused) whose sealed literal sits where a template may be derived for its shape:
/// deriving the template read the parse tree as JSON, recursively, on the session thread's
/// 2 MiB stack, and `|| 'b'` nine hundred times aborted the whole proxy ("thread
/// 'pgshroud-session-0' has overflowed its stack"). Fixed: the reading runs on the stack sized
/// for the text (`sql_limits::pg::parse_with`).
#[tokio::test]
async fn a_statement_just_under_the_nesting_bound_is_planned_without_overflowing() {
    let f = Fixture::new().await;
    let c = f.app().await;
    for n in [500, 900, 990] {
        let sql = format!(
            "SELECT id FROM customers WHERE email = 'x' AND name = 'a'{}",
            " || 'b'".repeat(n)
        );
        let r = c.simple_query(&sql).await.expect("analysed and answered");
        assert!(rows(&r).is_empty(), "n = {n}");
        // The same shape again, now from the template.
        let again = sql.replace("email = 'x'", "email = 'y'");
        c.simple_query(&again)
            .await
            .expect("answered from the shape");
        still_up(&f, &c).await;
    }
}

/// The check of SQL texts handed to server functions (`query_to_xml`, ...) reads the parse
/// tree's serde form recursively; for roles that may not see stored values it runs on every
/// text naming such a function, protected table or not. Just under the nesting bound it
/// overflowed the session thread's stack. Every role, and the proxy lives on.
#[tokio::test]
async fn sql_text_calls_just_under_the_nesting_bound_leave_the_proxy_up() {
    let f = pgshroud_integration_tests::roles::RolesFixture::new().await;
    let chain = " || 'b'".repeat(985);
    let sql = format!("SELECT query_to_xml('SELECT 1', true, false, '') WHERE 'a'{chain} <> ''");
    for suffix in ["app", "auditor", "analyst", "dba"] {
        let c = f.connect(suffix).await;
        // Answered or refused: either way the session and the proxy stand.
        let _ = c.simple_query(&sql).await;
        let _ = c.query(sql.as_str(), &[]).await;
        c.simple_query("SELECT 1").await.expect("same session");
        f.connect(suffix)
            .await
            .simple_query("SELECT 1")
            .await
            .expect("new session");
    }
}

/// This process's virtual memory size (the proxy runs inside it), from /proc.
fn vm_size_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// A message header claiming 200 MiB (under `max_message_size`), then silence: the relay
/// reserved the whole claimed length at once, per connection, before a byte of the body came
/// (PostgreSQL's pq_getmessage does the same, but for one backend; here every session shares
/// the process). Sixteen such connections reserved over 3 GiB; the reservation now grows with
/// the bytes that arrive.
#[tokio::test]
async fn claimed_message_lengths_are_not_reserved_ahead_of_the_bytes() {
    use pgshroud_integration_tests::raw::RawClient;
    use pgshroud_integration_tests::users;
    let f = Fixture::new().await;
    let claimed: u32 = 200 << 20;
    let before = vm_size_bytes();
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut raw = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
        let mut header = vec![b'Q'];
        header.extend_from_slice(&claimed.to_be_bytes());
        header.extend_from_slice(b"SELECT ");
        raw.send(&header).await;
        held.push(raw);
    }
    // Let every session read its header.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let grown = vm_size_bytes().saturating_sub(before);
    assert!(
        grown < 1 << 30,
        "{} MiB reserved for {} MiB of claims",
        grown >> 20,
        (16 * claimed as usize) >> 20
    );
    drop(held);
    let c = f.app().await;
    still_up(&f, &c).await;
}

/// Large statements still pass (the relay's buffer grows with the bytes), and distinct large
/// texts on a protected table are each answered (the exact-text plan cache keeps none over
/// 1 MiB and at most 64 MiB in all: `plan_cache.rs`).
#[tokio::test]
async fn large_distinct_statements_on_a_protected_table_are_answered() {
    let f = Fixture::new().await;
    let c = f.app().await;
    for i in 0..4 {
        let big = "y".repeat(3 << 20);
        let sql = format!("SELECT id FROM customers WHERE email = 'x{i}' AND name = '{big}'");
        let r = c.simple_query(&sql).await.expect("answered");
        assert!(rows(&r).is_empty());
        let r = c
            .query(sql.as_str(), &[])
            .await
            .expect("answered through Parse");
        assert!(r.is_empty());
    }
    still_up(&f, &c).await;
}

/// Many statements in one Query, on a protected table and not: each is read once (no work per
/// statement that grows with the text). Measured, not timed: the assertion is that it is
/// answered, statement for statement.
#[tokio::test]
async fn a_query_of_many_statements_is_answered() {
    let f = Fixture::new().await;
    let c = f.app().await;
    for (n, one) in [
        (20_000, "SELECT 1"),
        (5_000, "SELECT id FROM customers WHERE email = 'x'"),
    ] {
        let sql = vec![one; n].join("; ");
        let started = std::time::Instant::now();
        let r = c.simple_query(&sql).await.expect("answered");
        eprintln!("{n} x {one:?}: {:?}", started.elapsed());
        let completes = r
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_)))
            .count();
        assert_eq!(completes, n);
    }
    still_up(&f, &c).await;
}

/// 30,000 parameters (PostgreSQL allows 65,535; fewer keeps the test cheap), each compared
/// with a protected column: every one is sealed; an IN list of 20,000 literals on a protected column likewise. The analysis' checks
/// of `$n` anchors and sites were pairwise (quadratic): the Parse alone took 62 s for 65,535
/// (4 s for 16,384) in a debug build, its session thread starving every other session on it.
/// Now linear (16,384: 0.6 s); measured here, asserted only to be answered.
#[tokio::test]
async fn the_most_parameters_and_a_long_in_list_on_a_protected_column_are_answered() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let n = 30_000;
    let placeholders: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id FROM customers WHERE email IN ({})",
        placeholders.join(", ")
    );
    let values: Vec<String> = (0..n).map(|i| format!("user{i}@example.com")).collect();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let started = std::time::Instant::now();
    let r = c.query(sql.as_str(), &params).await.expect("answered");
    eprintln!("{n} parameters: {:?}", started.elapsed());
    assert!(r.is_empty());
    let list: Vec<String> = (0..20_000).map(|i| format!("'u{i}@example.com'")).collect();
    let sql = format!(
        "SELECT id FROM customers WHERE email IN ({})",
        list.join(", ")
    );
    let started = std::time::Instant::now();
    let r = c.simple_query(&sql).await.expect("answered");
    eprintln!("IN list of 20,000: {:?}", started.elapsed());
    assert!(rows(&r).is_empty());
    still_up(&f, &c).await;
}

/// Values written to or compared with protected columns are parsed by pgshroud before
/// sealing: a jsonb document nested 100,000 deep and an array literal of 100,000 nested braces
/// are refused with an error (the jsonb parser stops at 256 levels, the array parser is a
/// loop and takes one dimension), never recursed into, as literals and as bound text values.
#[tokio::test]
async fn deeply_nested_values_for_protected_columns_are_refused_not_recursed_into() {
    use pgshroud_integration_tests::raw::{build, error_codes, RawClient};
    use pgshroud_integration_tests::users;
    let f = Fixture::new().await;
    let c = f.app().await;
    let mut raw = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    let n = 100_000;
    let array = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let object = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    for doc in [array, object] {
        let sql = format!("INSERT INTO typed (v_jsonb) VALUES ('{doc}')");
        let e = c.simple_query(&sql).await.expect_err("refused");
        assert_eq!(code(&e), "22P02", "{e}");
        raw.send(&build::pipeline(&[
            build::parse("", "INSERT INTO typed (v_jsonb) VALUES ($1)"),
            build::bind("", "", &[&doc]),
            build::execute(""),
            build::sync(),
        ]))
        .await;
        let replies = raw.recv_until_ready().await;
        assert_eq!(error_codes(&replies), ["22P02"], "{replies:?}");
        still_up(&f, &c).await;
    }
    let braces = format!("{}a{}", "{".repeat(n), "}".repeat(n));
    let sql = format!("SELECT id FROM customers WHERE email = ANY('{braces}')");
    let e = c.simple_query(&sql).await.expect_err("refused");
    assert_eq!(code(&e), "0A000", "{e}");
    raw.send(&build::pipeline(&[
        build::parse("", "SELECT id FROM customers WHERE email = ANY($1)"),
        build::bind("", "", &[&braces]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let replies = raw.recv_until_ready().await;
    assert_eq!(error_codes(&replies), ["22P02"], "{replies:?}");
    still_up(&f, &c).await;
}

/// This process's resident memory (the proxy runs inside it), from /proc.
fn vm_rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A client that asks for a large result and never reads it: pgshroud forwards with
/// backpressure (each pump writes what it read before reading more), so the server ends up
/// blocked writing to it (`ClientWrite`) while the proxy holds little; buffering without limit
/// would hold the stream (2 GB here) in memory.
#[tokio::test]
async fn a_client_that_never_reads_a_large_result_holds_back_the_server_not_the_proxy() {
    use pgshroud_integration_tests::raw::{build, RawClient};
    use pgshroud_integration_tests::{cluster, users};
    let f = Fixture::new().await;
    let admin = cluster().admin_client_for(&f.db).await;
    let before = vm_rss_bytes();
    let mut raw = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    raw.send(&build::query(
        "SELECT repeat('x', 1000) AS pgshroud_flood FROM generate_series(1, 2000000)",
    ))
    .await;
    let mut blocked = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = admin
            .query(
                "SELECT wait_event FROM pg_stat_activity WHERE query LIKE '%pgshroud_flood%' \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("activity");
        let event: Option<String> = r.first().and_then(|row| row.get(0));
        if event.as_deref() == Some("ClientWrite") {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the server never waited on the proxy");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let grown = vm_rss_bytes().saturating_sub(before);
    eprintln!("resident memory grew {} MiB", grown >> 20);
    assert!(grown < 256 << 20, "{} MiB held", grown >> 20);
    drop(raw);
    let c = f.app().await;
    still_up(&f, &c).await;
}

/// Named prepared statements are the server's to bound (it keeps each too, with its plan):
/// pgshroud keeps one entry per name the server holds, and forgets it on Close. Measured:
/// the proxy's resident memory per statement held, printed; asserted: 50,000 distinct names in
/// one pipeline without Sync are each answered, and closing them all is answered too.
#[tokio::test]
async fn many_named_statements_in_one_pipeline_are_answered_and_forgotten() {
    use pgshroud_integration_tests::raw::{build, error_codes, RawClient};
    use pgshroud_integration_tests::users;
    let f = Fixture::new().await;
    let mut raw = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    let n = 50_000;
    let sql = "SELECT id FROM customers WHERE email = $1";
    let before = vm_rss_bytes();
    let mut parses: Vec<Vec<u8>> = (0..n)
        .map(|i| build::parse(&format!("s{i}"), sql))
        .collect();
    parses.push(build::sync());
    // Read while sending: the replies must not fill the socket while the client still writes.
    let (mut rd, mut wr) = raw.stream.split();
    let send = async {
        use tokio::io::AsyncWriteExt;
        wr.write_all(&build::pipeline(&parses)).await.expect("sent");
    };
    let receive = async {
        use tokio::io::AsyncReadExt;
        let (mut complete, mut errors) = (0, 0);
        loop {
            let kind = rd.read_u8().await.expect("reply");
            let len = rd.read_u32().await.expect("length") as usize;
            let mut body = vec![0; len - 4];
            rd.read_exact(&mut body).await.expect("body");
            match kind {
                b'1' => complete += 1,
                b'E' => errors += 1,
                b'Z' => break (complete, errors),
                _ => {}
            }
        }
    };
    let ((), (complete, errors)) = tokio::join!(send, receive);
    assert_eq!((complete, errors), (n, 0));
    let grown = vm_rss_bytes().saturating_sub(before);
    eprintln!(
        "{n} named statements: resident memory grew {} MiB ({} bytes each)",
        grown >> 20,
        grown / n
    );
    let mut closes: Vec<Vec<u8>> = (0..n)
        .map(|i| build::close_statement(&format!("s{i}")))
        .collect();
    closes.push(build::sync());
    raw.send(&build::pipeline(&closes)).await;
    let replies = raw.recv_until_ready().await;
    assert!(error_codes(&replies).is_empty());
    assert_eq!(replies.iter().filter(|m| m.kind == b'3').count(), n);
    let c = f.app().await;
    still_up(&f, &c).await;
}

/// Texts full of look-alikes of protected names and of the words that send a text to
/// PostgreSQL's grammar (the pre-filter's and the tracker's substring tests): one pass each,
/// linear (measured: 40,000 words in 50 to 220 ms in a debug build, twice 20,000's).
#[tokio::test]
async fn texts_full_of_protected_name_look_alikes_are_answered() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let n = 40_000;
    for word in ["customersx", "email", "prepare"] {
        let sql = format!("SELECT 1 WHERE '{}' <> ''", vec![word; n].join(" "));
        let started = std::time::Instant::now();
        let r = c.simple_query(&sql).await.expect("answered");
        eprintln!("{n} x {word} in a string: {:?}", started.elapsed());
        assert_eq!(rows(&r), vec![vec![Some("1".to_string())]]);
    }
    still_up(&f, &c).await;
}

/// COPY FROM STDIN into a protected table with one 4 MiB line sent in 64 KiB CopyData
/// messages: the row's end is found incrementally (no rescan of what is buffered, so linear:
/// measured 0.8 s, 1.5 s, 3.0 s for 2, 4, 8 MiB in a debug build, sealing included),
/// the line is held once (PostgreSQL's own bound on a COPY line, 1 GiB, is pgshroud's), and
/// the value is sealed and reads back whole.
#[tokio::test]
async fn a_copy_line_of_many_chunks_into_a_protected_table_is_sealed_whole() {
    use bytes::Bytes;
    use futures_util::SinkExt;
    let f = Fixture::new().await;
    let c = f.app().await;
    let value = "v".repeat(4 << 20);
    let line = format!("{value}\n");
    let started = std::time::Instant::now();
    let sink = c
        .copy_in("COPY typed (v_text) FROM STDIN")
        .await
        .expect("COPY started");
    futures_util::pin_mut!(sink);
    for chunk in line.as_bytes().chunks(64 << 10) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .expect("sent");
    }
    assert_eq!(sink.finish().await.expect("COPY done"), 1);
    eprintln!("4 MiB COPY line: {:?}", started.elapsed());
    let r = c
        .query_one("SELECT v_text FROM typed", &[])
        .await
        .expect("read back");
    assert_eq!(r.get::<_, String>(0).len(), value.len());
    still_up(&f, &c).await;
}
