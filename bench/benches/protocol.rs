//! Message path: framing and forwarding of a pipelined pgbench transaction (check, split,
//! statement path, rejoin: what the relay does per read), and the DataRow rewrite of a
//! protected result (decrypt two columns, re-encode the row).

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
use pgshroud::session::statement_path::{StatementPath, Verdict};
use pgshroud_bench::fixture::{
    data_row, prepared_select_answer, prepared_select_pipeline, protection, LOOKUP_SQL,
};

/// Which way a read goes through the statement path.
#[derive(Clone, Copy)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// The relay's per-read loop (`session::relay::take_client_messages` and its server twin)
/// over public pieces: check each frame, split it off without copying, ask the statement path,
/// rejoin.
fn forward_all(buf: &mut BytesMut, path: &mut StatementPath, direction: Direction) -> BytesMut {
    let mut out = BytesMut::new();
    while let FrameCheck::Complete(n) = check_frame(buf, 1 << 30) {
        let frame = buf.split_to(n);
        let verdict = match direction {
            Direction::ClientToServer => path.client_message(&frame),
            Direction::ServerToClient => path.server_message(&frame),
        };
        match verdict {
            Verdict::Forward => {
                if out.is_empty() {
                    out = frame;
                } else {
                    out.unsplit(frame);
                }
            }
            Verdict::Replace(bytes) => out.extend_from_slice(&bytes),
            Verdict::Drop | Verdict::End(_) => {}
        }
    }
    out
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    let pipeline = prepared_select_pipeline(4242);
    let answer = prepared_select_answer();
    let mut path = StatementPath::passthrough();
    // One transaction both ways (3 client messages, 4 server messages), so the session's
    // record of owed replies is balanced after every iteration, as in a real session.
    group.throughput(Throughput::Elements(7));
    group.bench_function("passthrough/bind_execute_sync_and_answer", |b| {
        b.iter_batched(
            || (pipeline.clone(), answer.clone()),
            |(mut request, mut reply)| {
                let sent = forward_all(
                    black_box(&mut request),
                    &mut path,
                    Direction::ClientToServer,
                );
                let received =
                    forward_all(black_box(&mut reply), &mut path, Direction::ServerToClient);
                (sent, received)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A protected session that has sent the lookup as a simple query and seen its
/// RowDescription (fields without table OID, so the plan's outputs say which are protected).
fn session_in_results() -> (ProtectedSession, BytesMut) {
    let live = LiveProtection::new(Path::new("bench-rules.toml"), protection());
    let caller = Caller {
        user: "bench".into(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: IpAddr::from([127, 0, 0, 1]),
    };
    // No roles in the rules file: every caller gets the `app` template (decrypt).
    let metrics = Arc::new(Metrics::new());
    let mut session = ProtectedSession::new(Arc::new(live), caller, Catalog::default(), metrics);
    let mut sql = LOOKUP_SQL.as_bytes().to_vec();
    sql.push(0);
    let _ = session.client_message(&message(b'Q', &sql));
    let field = |name: &str, type_oid: u32| Field {
        name: name.into(),
        table_oid: 0,
        attnum: 0,
        type_oid,
        type_len: -1,
        type_mod: -1,
        format: 0,
    };
    let fields = [
        field("id", 23),
        field("email", 17),
        field("age", 17),
        field("name", 25),
    ];
    let _ = session.server_message(&write_row_description(&fields));
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
    let mut path = StatementPath::passthrough();
    group.bench_function("passthrough/four_columns", |b| {
        b.iter(|| path.server_message(black_box(&row)))
    });
    group.finish();
}

criterion_group!(benches, framing, data_row_rewrite);
criterion_main!(benches);
