//! Statement path: the pre-filter (substring scan for protected table names), the full
//! analysis of a typical statement (parse + resolve + agreement with PostgreSQL's reading,
//! uncached), its parts (sqlparser's analysis alone is what `analyze` cost before pg_query;
//! pg_query's parse, scan and fingerprint), and the plan a statement gets: an exact-text cache
//! hit (the same text again), a shape hit (the same statement with a new literal: matched
//! against the pattern of the text the scanner read first, then the template's literals
//! sealed) and a miss (a new shape: scan, full analysis, then the template).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pgshroud::analyze::{analyze, gates, pg_reading, ProtectedSchema};
use pgshroud::protect::catalog::Catalog;
use pgshroud_bench::fixture::{protection, INSERT_SQL, LOOKUP_SQL, PGBENCH_SELECT};

fn schema() -> ProtectedSchema {
    let mut schema = ProtectedSchema::new();
    schema.protect("public", "customers", "email", "public.customers.email");
    schema.protect("public", "customers", "age", "public.customers.age");
    schema
}

fn prefilter(c: &mut Criterion) {
    let schema = schema();
    let mut group = c.benchmark_group("prefilter");
    group.bench_function("miss_pgbench_select", |b| {
        b.iter(|| schema.mentions_protected_table(black_box(PGBENCH_SELECT)))
    });
    group.bench_function("hit_lookup", |b| {
        b.iter(|| schema.mentions_protected_table(black_box(LOOKUP_SQL)))
    });
    // The word gates a simple Query's full path asks of the whole text (the memory of
    // harmless shapes asks them of its literals only).
    group.bench_function("word_gates_pgbench_select", |b| {
        b.iter(|| gates::any_gate(black_box(PGBENCH_SELECT)))
    });
    group.finish();
}

fn analysis(c: &mut Criterion) {
    let schema = schema();
    let mut group = c.benchmark_group("analyze");
    group.bench_function("uncached/lookup", |b| {
        b.iter(|| analyze(black_box(LOOKUP_SQL), &schema))
    });
    group.bench_function("uncached/insert", |b| {
        b.iter(|| analyze(black_box(INSERT_SQL), &schema))
    });
    group.bench_function("pg_reading/lookup", |b| {
        b.iter(|| pg_reading::read(black_box(LOOKUP_SQL)))
    });
    group.finish();
    let mut group = c.benchmark_group("pg_query");
    group.bench_function("parse/lookup", |b| {
        b.iter(|| pg_query::parse(black_box(LOOKUP_SQL)))
    });
    group.bench_function("scan/lookup", |b| {
        b.iter(|| pg_query::scan(black_box(LOOKUP_SQL)))
    });
    group.bench_function("fingerprint/lookup", |b| {
        b.iter(|| pg_query::fingerprint(black_box(LOOKUP_SQL)))
    });
    group.bench_function("split_with_scanner/lookup", |b| {
        b.iter(|| pg_query::split_with_scanner(black_box(LOOKUP_SQL)))
    });
    group.finish();
}

fn plan_cache(c: &mut Criterion) {
    let protection = protection();
    let catalog = Catalog::default();
    let layout = protection.layout(&catalog);
    let mut group = c.benchmark_group("plan");
    // First call builds (analysis + literal encryption); every later one is a cache hit.
    protection.plan(LOOKUP_SQL, &layout, &catalog);
    group.bench_function("cached/lookup", |b| {
        b.iter(|| protection.plan(black_box(LOOKUP_SQL), &layout, &catalog))
    });
    // A new literal each time: the simple protocol's point lookup and insert.
    let mut n = 0u64;
    for (name, sql) in [("lookup", LOOKUP_SQL), ("insert", INSERT_SQL)] {
        group.bench_function(format!("shape_hit/{name}"), |b| {
            b.iter(|| {
                n += 1;
                let text = sql.replace("@example.com'", &format!("{n}@example.com'"));
                protection.plan(black_box(&text), &layout, &catalog)
            })
        });
    }
    // A new shape each time (a distinct column alias): full analysis plus deriving the
    // template, which is what a miss costs now.
    for (name, sql) in [("lookup", LOOKUP_SQL), ("insert", INSERT_SQL)] {
        group.bench_function(format!("miss/{name}"), |b| {
            b.iter(|| {
                n += 1;
                let text = format!("{sql} /* {n} */");
                protection.plan(black_box(&text), &layout, &catalog)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, prefilter, analysis, plan_cache);
criterion_main!(benches);
