//! What operators watch: the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`), the
//! Prometheus metrics registry, and the per-statement meter that feeds it.

pub mod admin;
pub mod metrics;
pub mod statement_metrics;
