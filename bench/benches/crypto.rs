//! AES-256-SIV per value, through `ColumnCipher` (envelope included): seal and open of 16 B,
//! 32 B (the 1 M ops/s target), 256 B and 4 KiB plaintexts, and the cost of a cipher
//! that is rebuilt per value instead of cached per key.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgshroud::crypto::KeyContext;
use pgshroud_bench::fixture::key_ring;

const SIZES: [usize; 4] = [16, 32, 256, 4096];

fn seal_and_open(c: &mut Criterion) {
    let ring = key_ring();
    let context = KeyContext::for_column("public", "customers", "email");
    let mut cipher = ring.cipher_for(&context);
    let mut group = c.benchmark_group("aes_siv");
    for size in SIZES {
        let plaintext = vec![0x5a; size];
        let stored = cipher.seal(&plaintext);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("seal", size), &plaintext, |b, p| {
            b.iter(|| cipher.seal(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("open", size), &stored, |b, s| {
            b.iter(|| cipher.open(black_box(s)).expect("opens"))
        });
    }
    // What caching the cipher per key saves: a fresh clone rebuilds the AES-SIV key schedule.
    let plaintext = vec![0x5a; 32];
    group.bench_function("seal_uncached_cipher/32", |b| {
        b.iter(|| ring.cipher_for(&context).seal(black_box(&plaintext)))
    });
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
