//! Benchmarks for pgshroud live in `benches/`; see bench/README.md.
