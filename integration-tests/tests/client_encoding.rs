//! Server output in a client_encoding other than UTF8 (LATIN9, WIN1252) passes through the
//! proxy byte for byte: column names, notices and errors, notifications, parameter reports and
//! COPY data are compared with what the same exchange gives on a direct connection, and the
//! session goes on. Statements on protected tables stay refused in such a session (22021,
//! `fail_closed_protocol.rs`); a protected result column is still mapped by its origin.
//!
//! Raw sessions log in as `trust_user`: not a superuser, not the owner of the tables, and the
//! rules' default (app) role.

use pgshroud_integration_tests::protected::Fixture;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::build::{query, sync};
use pgshroud_integration_tests::raw::{error_codes, message, Msg, RawClient};
use pgshroud_integration_tests::{cluster, users};

/// A client encoding and how it writes the two non-ASCII characters the tests use.
#[derive(Clone, Copy)]
struct Encoding {
    name: &'static str,
    euro: u8,
    e_acute: u8,
}

const LATIN9: Encoding = Encoding {
    name: "LATIN9",
    euro: 0xa4,
    e_acute: 0xe9,
};
const WIN1252: Encoding = Encoding {
    name: "WIN1252",
    euro: 0x80,
    e_acute: 0xe9,
};

impl Encoding {
    /// `text` in this encoding: `€` and `é` become their bytes, the rest is ASCII.
    fn bytes(self, text: &str) -> Vec<u8> {
        text.chars()
            .map(|c| match c {
                '€' => self.euro,
                'é' => self.e_acute,
                c if c.is_ascii() => c as u8,
                c => panic!("{c} is not in the test alphabet"),
            })
            .collect()
    }
}

/// A simple Query of `sql` written in `enc`.
fn query_in(enc: Encoding, sql: &str) -> Vec<u8> {
    let mut body = enc.bytes(sql);
    body.push(0);
    message(b'Q', &body)
}

/// Parse, Bind, Describe and Execute of `sql` (written in `enc`) on statement `name` and the
/// unnamed portal, then Sync.
fn extended_in(enc: Encoding, name: &str, sql: &str) -> Vec<u8> {
    let mut parse = format!("{name}\0").into_bytes();
    parse.extend(enc.bytes(sql));
    parse.extend_from_slice(b"\0\0\0");
    let mut bind = format!("\0{name}\0").into_bytes();
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    [
        message(b'P', &parse),
        message(b'D', format!("S{name}\0").as_bytes()),
        message(b'B', &bind),
        message(b'D', b"P\0"),
        message(b'E', b"\0\0\0\0\0"),
        sync(),
    ]
    .concat()
}

/// A session on `port` with `client_encoding` set to `enc`.
async fn session(port: u16, db: &str, enc: Encoding) -> RawClient {
    let mut c = RawClient::login_trust(port, users::TRUST, db).await;
    c.send(&query(&format!("SET client_encoding TO {}", enc.name)))
        .await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    c
}

/// A message as compared between connections: a notification's sender PID is left out (each
/// connection has its own backend).
fn comparable(m: &Msg) -> (char, Vec<u8>) {
    let body = match m.kind {
        b'A' => m.body[4..].to_vec(),
        _ => m.body.clone(),
    };
    (m.kind as char, body)
}

/// The answers to each request of `requests`, in a fresh `enc` session directly and then
/// through the proxy (one after the other, so neither sees the other's notifications): they
/// must be the same bytes. Returns the proxy's answers and its session.
async fn same_as_direct(
    f: &Fixture,
    enc: Encoding,
    requests: &[Vec<u8>],
) -> (Vec<Vec<Msg>>, RawClient) {
    let mut direct = session(cluster().port(), &f.db, enc).await;
    let mut expected = Vec::new();
    for request in requests {
        direct.send(request).await;
        expected.push(direct.recv_until_ready().await);
    }
    let mut proxied = session(f.proxy.port(), &f.db, enc).await;
    let mut answers = Vec::new();
    for (request, expected) in requests.iter().zip(&expected) {
        proxied.send(request).await;
        let got = proxied.recv_until_ready().await;
        assert_eq!(
            got.iter().map(comparable).collect::<Vec<_>>(),
            expected.iter().map(comparable).collect::<Vec<_>>(),
            "{} answers differ from a direct connection",
            enc.name
        );
        assert_eq!(got.last().map(|m| m.kind), Some(b'Z'), "{got:?}");
        answers.push(got);
    }
    (answers, proxied)
}

/// The connection still answers a plain statement.
async fn still_works(c: &mut RawClient) {
    c.send(&query("SELECT 1")).await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.kind == b'D'), "{msgs:?}");
    assert_eq!(msgs.last().map(|m| m.kind), Some(b'Z'));
}

/// The proxy still serves new connections.
async fn proxy_serves(p: &TestProxy, db: &str) {
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, db)
        .await
        .expect("the proxy still serves");
    let n: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

/// An unprotected table whose name, column names and values are not ASCII.
async fn unprotected_table(f: &Fixture) {
    let admin = cluster().admin_client_for(&f.db).await;
    admin
        .batch_execute(
            "CREATE TABLE \"tarifé\" (id int, \"prix€\" text, \"libellé\" text);
             INSERT INTO \"tarifé\" VALUES (1, '5 €', 'café'), (2, 'é€', NULL);
             GRANT ALL ON \"tarifé\" TO PUBLIC;",
        )
        .await
        .expect("unprotected table");
}

fn has_byte(msgs: &[Msg], kind: u8, byte: u8) -> bool {
    msgs.iter()
        .any(|m| m.kind == kind && m.body.contains(&byte))
}

#[tokio::test]
async fn column_names_in_another_encoding_pass_untouched() {
    let f = Fixture::new().await;
    unprotected_table(&f).await;
    for enc in [LATIN9, WIN1252] {
        let requests = [
            // The psycopg suite's case: an alias that is the euro sign alone.
            query_in(enc, "select 'x' as \"€\""),
            query_in(enc, "select 'café' as \"é\", 1 as \"€uro\""),
            // Columns of a real (unprotected) table: an origin the proxy looks up.
            query_in(enc, "select * from \"tarifé\" order by id"),
            extended_in(enc, "", "select 'é' as \"€\""),
            extended_in(enc, "named", "select \"prix€\" from \"tarifé\" order by id"),
        ];
        let (answers, mut c) = same_as_direct(&f, enc, &requests).await;
        assert!(has_byte(&answers[0], b'T', enc.euro), "{:?}", answers[0]);
        assert!(has_byte(&answers[2], b'D', enc.euro), "{:?}", answers[2]);
        assert!(has_byte(&answers[4], b'T', enc.euro), "{:?}", answers[4]);
        for answer in &answers {
            assert!(error_codes(answer).is_empty(), "{answer:?}");
        }
        still_works(&mut c).await;
    }
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn notices_errors_and_settings_in_another_encoding_pass_untouched() {
    let f = Fixture::new().await;
    for enc in [LATIN9, WIN1252] {
        let requests = [
            query_in(
                enc,
                "DO $$ BEGIN RAISE NOTICE 'café € C:\\x0a' USING DETAIL = 'détail €', HINT = 'é'; END $$",
            ),
            query_in(
                enc,
                "DO $$ BEGIN RAISE EXCEPTION 'échec €' USING DETAIL = 'Key (n)=(é) already exists.'; END $$",
            ),
            query_in(enc, "select 1/0 as \"€\""),
            query_in(enc, "SET application_name TO 'café €'"),
            extended_in(enc, "", "select pg_catalog.set_config('application_name', 'é', false)"),
        ];
        let (answers, mut c) = same_as_direct(&f, enc, &requests).await;
        assert!(has_byte(&answers[0], b'N', enc.euro), "{:?}", answers[0]);
        assert_eq!(error_codes(&answers[1]), ["P0001"]);
        assert!(has_byte(&answers[1], b'E', enc.e_acute), "{:?}", answers[1]);
        assert_eq!(error_codes(&answers[2]), ["22012"]);
        // PostgreSQL 15 reports application_name with '?' for what is not ASCII: the
        // report itself passes as sent (non-UTF-8 reports are a unit test of the session).
        for answer in &answers[3..] {
            assert!(answer.iter().any(|m| m.kind == b'S'), "{answer:?}");
        }
        still_works(&mut c).await;
    }
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn notifications_in_another_encoding_pass_untouched() {
    let f = Fixture::new().await;
    for enc in [LATIN9, WIN1252] {
        let requests = [
            query_in(enc, "LISTEN \"canal€\""),
            query_in(enc, "NOTIFY \"canal€\", 'payé 5 €'"),
            extended_in(enc, "", "select pg_catalog.pg_notify('canal€', 'é')"),
        ];
        let (answers, mut c) = same_as_direct(&f, enc, &requests).await;
        for answer in &answers[1..] {
            assert!(has_byte(answer, b'A', enc.e_acute), "{answer:?}");
        }
        still_works(&mut c).await;
    }
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn copy_to_of_an_unprotected_table_in_another_encoding_passes_untouched() {
    let f = Fixture::new().await;
    unprotected_table(&f).await;
    for enc in [LATIN9, WIN1252] {
        let requests = [
            query_in(enc, "COPY \"tarifé\" TO STDOUT"),
            query_in(enc, "COPY \"tarifé\" TO STDOUT WITH (FORMAT csv, HEADER)"),
            query_in(enc, "COPY (select \"libellé\" from \"tarifé\") TO STDOUT"),
            extended_in(enc, "", "COPY \"tarifé\" (\"prix€\") TO STDOUT"),
        ];
        let (answers, mut c) = same_as_direct(&f, enc, &requests).await;
        for answer in &answers {
            assert!(error_codes(answer).is_empty(), "{answer:?}");
            assert!(has_byte(answer, b'd', enc.euro) || has_byte(answer, b'd', enc.e_acute));
        }
        // The header line carries the column names in the client's encoding.
        assert!(has_byte(&answers[1], b'd', enc.euro), "{:?}", answers[1]);
        still_works(&mut c).await;
    }
    proxy_serves(&f.proxy, &f.db).await;
}

#[tokio::test]
async fn a_protected_column_named_in_another_encoding_is_still_mapped() {
    let f = Fixture::new().await;
    f.app()
        .await
        .execute(
            "INSERT INTO customers (email, name) VALUES ($1, 'x')",
            &[&"a@example.com"],
        )
        .await
        .unwrap();
    let mut c = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    // Declared while the session reads UTF8; fetched after the switch to LATIN9.
    c.send(&query(
        "BEGIN; DECLARE c CURSOR FOR SELECT email AS \"courriel€\", name AS \"nomé\" FROM customers",
    ))
    .await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    c.send(&query("SET client_encoding TO LATIN9")).await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    c.send(&query("FETCH ALL c")).await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let description = msgs
        .iter()
        .find(|m| m.kind == b'T')
        .expect("RowDescription");
    // Names as the server sent them (LATIN9), the protected column shown as text (OID 25).
    assert!(description.body.windows(10).any(|w| w == b"courriel\xa4\0"));
    assert!(description.body.windows(5).any(|w| w == b"nom\xe9\0"));
    let email_type = {
        // After the field count, the first name and its terminator: table OID, attnum, type.
        let at = 2 + description.body[2..].iter().position(|&b| b == 0).unwrap() + 1;
        u32::from_be_bytes(description.body[at + 6..at + 10].try_into().unwrap())
    };
    assert_eq!(email_type, 25);
    let row = msgs.iter().find(|m| m.kind == b'D').expect("DataRow");
    assert!(
        row.body.windows(13).any(|w| w == b"a@example.com"),
        "{row:?}"
    );
    // A statement on the protected table itself is refused in this encoding.
    c.send(&query("SELECT email FROM customers")).await;
    assert_eq!(error_codes(&c.recv_until_ready().await), ["22021"]);
    c.send(&query("ROLLBACK")).await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    still_works(&mut c).await;
    proxy_serves(&f.proxy, &f.db).await;
}

/// A protected value is decrypted to its UTF-8 plaintext; a client that reads LATIN9 (a
/// cursor declared under UTF8 and FETCHed after the `SET`) would read `josé` as "josÃ©".
/// pgshroud does not convert it: the value is refused with 22P05 (the session ends, as for a
/// value that does not decrypt), while ASCII values still pass.
#[tokio::test]
async fn a_protected_value_is_not_sent_in_utf8_to_a_latin9_client() {
    let f = Fixture::new().await;
    f.app()
        .await
        .execute(
            "INSERT INTO customers (email) VALUES ($1), ($2)",
            &[&"ascii@example.com", &"josé@example.com"],
        )
        .await
        .unwrap();
    let mut c = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    c.send(&query(
        "BEGIN; DECLARE c CURSOR FOR SELECT email FROM customers ORDER BY id",
    ))
    .await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    c.send(&query("SET client_encoding TO LATIN9")).await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    c.send(&query("FETCH 1 FROM c")).await;
    let msgs = c.recv_until_ready().await;
    assert!(
        error_codes(&msgs).is_empty(),
        "an ASCII value passes: {msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.kind == b'D'), "{msgs:?}");
    c.send(&query("FETCH ALL c")).await;
    let msgs = c.recv_until_ready().await;
    let utf8 = "josé".as_bytes();
    assert!(
        !msgs
            .iter()
            .any(|m| m.kind == b'D' && m.body.windows(utf8.len()).any(|w| w == utf8)),
        "UTF-8 plaintext sent to a LATIN9 client: {msgs:?}"
    );
    assert_eq!(error_codes(&msgs), ["22P05"], "{msgs:?}");
    proxy_serves(&f.proxy, &f.db).await;
}
