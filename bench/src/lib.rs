//! Benchmarks for pgshroud: criterion micro-benchmarks of the hot functions live in
//! `benches/`, the end-to-end runner (PostgreSQL, PgBouncer and pgshroud side by side under
//! pgbench) in `run.sh` and the `idle-conns` binary; see bench/README.md.
//!
//! This library holds only the fixtures the micro-benchmarks share.

pub mod fixture;
