//! Message path: framing and forwarding of a pipelined pgbench transaction (check, statement
//! path, what goes on: what the relay does per read), the same with a rules file loaded and a
//! statement on a table that is not protected, and the DataRow rewrite of a protected result
//! (decrypt two columns, re-encode the row).

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgshroud::ops::metrics::Metrics;
use pgshroud::protect::catalog::Catalog;
use pgshroud::protect::live::LiveProtection;
use pgshroud::protect::policy::Caller;
use pgshroud::protect::session::ProtectedSession;
use pgshroud::protect::wire::{write_row_description, Field};
use pgshroud::protocol::frame::{check_frame, message, FrameCheck};
use pgshroud::session::outgoing::Outgoing;
use pgshroud::session::statement_path::{StatementPath, Verdict};
use pgshroud_bench::fixture::{
    data_row, extended_select_answer, extended_select_pipeline, prepared_select_answer,
    prepared_select_pipeline, protection, LOOKUP_SQL, PGBENCH_SELECT,
};

/// Which way a read goes through the statement path.
#[derive(Clone, Copy)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// The relay's per-read loop (`session::relay::take_client_messages` and its server twin)
/// over public pieces: check each frame, ask the statement path (locked once per read), and
/// collect what goes on (`session::outgoing`: the read buffer itself while all is forwarded).
/// Returns the number of bytes sent.
fn forward_all(buf: &mut BytesMut, path: &StatementPath, direction: Direction) -> usize {
    let mut out = Outgoing::default();
    {
        let mut guard = path.lock().expect("an unpoisoned path");
        let read = &buf[..];
        loop {
            let at = out.taken();
            let FrameCheck::Complete(n) = check_frame(&read[at..], 1 << 30) else {
                break;
            };
            let frame = &read[at..at + n];
            if let Direction::ClientToServer = direction {
                // The relay asks first whether a catalog look-up must go ahead of the message.
                assert!(guard.hold_before(frame).is_none(), "held");
            }
            let verdict = match direction {
                Direction::ClientToServer => guard.client_message(frame),
                Direction::ServerToClient => guard.server_message(frame),
            };
            match verdict {
                Verdict::Forward => out.forward(read, at, at + n),
                Verdict::Replace(bytes) => out.replace(read, at, at + n, &bytes),
                Verdict::Drop | Verdict::End(_) => out.replace(read, at, at + n, &[]),
            }
        }
    }
    let sent = black_box(out.bytes(buf)).len();
    out.sent(buf);
    sent
}

/// A protected session of the bench's rules (`customers`), before any statement.
fn protected_path() -> StatementPath {
    let live = LiveProtection::new(Path::new("bench-rules.toml"), protection());
    let metrics = Arc::new(Metrics::new());
    let session = ProtectedSession::new(Arc::new(live), caller(), Catalog::default(), metrics);
    StatementPath::protected(session)
}

fn caller() -> Caller {
    Caller {
        user: "bench".into(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: IpAddr::from([127, 0, 0, 1]),
    }
}

/// Parses pgbench's select as the statement `P0_1` (what `-M prepared` does once per
/// connection), answered.
fn prepare_pgbench_select(path: &StatementPath) {
    let mut parse = b"P0_1\0".to_vec();
    parse.extend_from_slice(PGBENCH_SELECT.as_bytes());
    parse.extend_from_slice(b"\0\0\0");
    let request = [message(b'P', &parse), message(b'S', b"")].concat();
    let answer = [message(b'1', b""), message(b'Z', b"I")].concat();
    round_trip(
        path,
        &BytesMut::from(&request[..]),
        &BytesMut::from(&answer[..]),
    );
}

/// One transaction both ways through `path`, asserting that it passed unchanged.
fn round_trip(path: &StatementPath, request: &BytesMut, answer: &BytesMut) {
    let (mut sent, mut received) = (request.clone(), answer.clone());
    let n = forward_all(black_box(&mut sent), path, Direction::ClientToServer);
    let m = forward_all(black_box(&mut received), path, Direction::ServerToClient);
    assert_eq!((n, m), (request.len(), answer.len()), "changed on the way");
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    let pipeline = prepared_select_pipeline(4242);
    let answer = prepared_select_answer();
    let path = StatementPath::passthrough();
    // One transaction both ways (3 client messages, 4 server messages), so the session's
    // record of owed replies is balanced after every iteration, as in a real session.
    group.throughput(Throughput::Elements(7));
    group.bench_function("passthrough/bind_execute_sync_and_answer", |b| {
        b.iter(|| round_trip(&path, &pipeline, &answer))
    });
    group.finish();

    // Rules loaded, the statement on a table that is not protected (pgbench -S in extended
    // mode: Parse, Bind, Describe, Execute, Sync and six answers): the pre-filter on the
    // Parse, the protected session's tracking of every message, against pass-through.
    let mut group = c.benchmark_group("rules_loaded_unprotected_table");
    let (request, answer) = (extended_select_pipeline(4242), extended_select_answer());
    group.throughput(Throughput::Elements(11));
    let path = StatementPath::passthrough();
    group.bench_function("passthrough/extended_select", |b| {
        b.iter(|| round_trip(&path, &request, &answer))
    });
    let path = protected_path();
    group.bench_function("rules/extended_select", |b| {
        b.iter(|| round_trip(&path, &request, &answer))
    });
    // Simple protocol: the same select with its literal in a Query; the same answer
    // without ParseComplete and BindComplete.
    let request = message(
        b'Q',
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 4242;\0",
    );
    let answer = BytesMut::from(&answer[10..]);
    group.throughput(Throughput::Elements(5));
    let path = StatementPath::passthrough();
    group.bench_function("passthrough/simple_select", |b| {
        b.iter(|| round_trip(&path, &request, &answer))
    });
    let path = protected_path();
    group.bench_function("rules/simple_select", |b| {
        b.iter(|| round_trip(&path, &request, &answer))
    });
    // pgbench -S -M simple as it really is: a new literal in every Query (the memory of
    // exact texts never hits; the memory of harmless shapes does).
    let requests: Vec<BytesMut> = (0..1024u32)
        .map(|i| {
            let sql = format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};\0",
                1 + i * 977
            );
            message(b'Q', sql.as_bytes())
        })
        .collect();
    for (name, path) in [
        (
            "passthrough/simple_select_new_literal",
            StatementPath::passthrough(),
        ),
        ("rules/simple_select_new_literal", protected_path()),
    ] {
        let mut next = requests.iter().cycle();
        group.bench_function(name, |b| {
            b.iter(|| round_trip(&path, next.next().expect("cycles"), &answer))
        });
    }
    // Prepared (`-M prepared`): Bind, Execute, Sync of a statement parsed once.
    let (request, answer) = (prepared_select_pipeline(4242), prepared_select_answer());
    group.throughput(Throughput::Elements(7));
    for (name, path) in [
        ("passthrough/prepared_select", StatementPath::passthrough()),
        ("rules/prepared_select", protected_path()),
    ] {
        prepare_pgbench_select(&path);
        group.bench_function(name, |b| b.iter(|| round_trip(&path, &request, &answer)));
    }
    group.finish();
}

/// A protected session that has sent the lookup as a simple query and seen its
/// RowDescription (fields without table OID, so the plan's outputs say which are protected).
fn session_in_results() -> (ProtectedSession, BytesMut) {
    let live = LiveProtection::new(Path::new("bench-rules.toml"), protection());
    let caller = caller();
    // No roles in the rules file: every caller gets the `app` template (decrypt).
    let metrics = Arc::new(Metrics::new());
    let mut session = ProtectedSession::new(Arc::new(live), caller, Catalog::default(), metrics);
    let mut sql = LOOKUP_SQL.as_bytes().to_vec();
    sql.push(0);
    let _ = session.client_message(&message(b'Q', &sql));
    let _ = session.server_message(&write_row_description(&result_fields()));
    // Stored values as the server sends bytea in text format.
    let ring = pgshroud_bench::fixture::key_ring();
    let seal_hex = |context: &str, canonical: &[u8]| {
        let mut cipher = ring.cipher_for(&pgshroud::crypto::KeyContext::new(context));
        format!("\\x{}", hex_encode(&cipher.seal(canonical)))
    };
    let email = seal_hex("public.customers.email", b"user42@example.com");
    let age = seal_hex("public.customers.age", &42i32.to_be_bytes());
    let row = data_row(&[
        Some(b"42"),
        Some(email.as_bytes()),
        Some(age.as_bytes()),
        Some(b"Customer 42"),
    ]);
    (session, row)
}

/// The lookup's result columns as the server describes them (no table OID, so the plan's
/// outputs say which are protected).
fn result_fields() -> [Field; 4] {
    let field = |name: &str, type_oid: u32| Field {
        name: name.into(),
        table_oid: 0,
        attnum: 0,
        type_oid,
        type_len: -1,
        type_mod: -1,
        format: 0,
    };
    [
        field("id", 23),
        field("email", 17),
        field("age", 17),
        field("name", 25),
    ]
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn data_row_rewrite(c: &mut Criterion) {
    let (mut session, row) = session_in_results();
    match session.server_message(&row) {
        Verdict::Replace(_) => {}
        other => panic!("the protected row was not rewritten: {other:?}"),
    }
    let mut group = c.benchmark_group("data_row");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rewrite/two_protected_of_four", |b| {
        b.iter(|| session.server_message(black_box(&row)))
    });
    // The same simple statement's RowDescription again (each statement of one shape gets
    // it): what the role sees of each column, answered from what the session kept.
    let description = write_row_description(&result_fields());
    group.bench_function("row_description/simple_again", |b| {
        b.iter(|| session.server_message(black_box(&description)))
    });
    let path = StatementPath::passthrough();
    group.bench_function("passthrough/four_columns", |b| {
        b.iter(|| path.lock().map(|mut p| p.server_message(black_box(&row))))
    });
    group.finish();
}

criterion_group!(benches, framing, data_row_rewrite);
criterion_main!(benches);
