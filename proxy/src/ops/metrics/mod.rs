//! The Prometheus metrics pgshroud exports (all named `pgshroud_*`), and their text encoding.
//! Every series is registered up front; updates are single atomic adds on pre-resolved handles.
//!
//! `mod.rs` registers every family (its order is the order of the text); each mechanism's
//! updates live beside it: `connections`, `statements` (per-role counters and the latency
//! histogram), `protection` (crypto, protected values, refusals, alerts, rules), `audit`, and
//! `text` (the Prometheus text format). The label enums are in `labels`.

mod audit;
mod connections;
mod keys;
mod kms;
mod labels;
mod protection;
mod statements;
#[cfg(test)]
mod tests;
mod text;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::connections::ConnectionGuard;
use self::labels::CountersBy;
pub use self::labels::{
    AlertKind, ConnectionErrorReason, CryptoOp, Direction, KmsCall, KmsFailureReason,
    PlanCacheResult, ProtectedValueAction, RefusalReason, ReloadResult, StatementKind,
    StatementOutcome,
};
use self::statements::{DurationHistogram, StatementLabels, DURATION_BUCKETS};
pub use self::statements::{RoleStatements, OVERFLOW_ROLE};
pub use self::text::CONTENT_TYPE;

/// All of pgshroud's metrics. Share one instance through an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    connections_active: Gauge,
    connections_total: Counter,
    connection_errors: CountersBy<ConnectionErrorReason>,
    statements: Family<StatementLabels, Counter>,
    roles: Mutex<HashMap<Arc<str>, RoleStatements>>,
    statement_duration: DurationHistogram,
    crypto_operations: CountersBy<CryptoOp>,
    protected_values: CountersBy<ProtectedValueAction>,
    refusals: CountersBy<RefusalReason>,
    plan_cache: CountersBy<PlanCacheResult>,
    upstream_errors: Counter,
    audit_events: Counter,
    audit_dropped: Counter,
    audit_syslog_sent: Counter,
    audit_syslog_dropped: Counter,
    audit_syslog_reconnects: Counter,
    audit_syslog_connect_failures: Counter,
    audit_syslog_connected: Gauge,
    alerts: CountersBy<AlertKind>,
    rules_reloads: CountersBy<ReloadResult>,
    bytes: CountersBy<Direction>,
    unguarded_columns: Gauge,
    key_active_version: Gauge,
    key_active_age: Gauge,
    key_rotate_after: Gauge,
    tenant_keys_live: Gauge,
    tenants_forgotten: Gauge,
    /// Unix seconds when the active key version became active; 0 when unknown.
    key_active_since: AtomicI64,
    kms_calls: CountersBy<KmsCall>,
    kms_failures: CountersBy<KmsFailureReason>,
}

impl Metrics {
    /// Registers every metric; all series of enum-labelled metrics start at zero, so rates and
    /// dashboards have data before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pgshroud");
        let reg = &mut registry;
        // Fields are initialised in order, which is also the order of the metrics text.
        let metrics = Self {
            connections_active: register(
                reg,
                "connections_active",
                "Client connections currently open",
                Gauge::default(),
            ),
            connections_total: counter(reg, "connections", "Client connections accepted"),
            connection_errors: CountersBy::register(
                reg,
                "connection_errors",
                "Client connections that ended in error, by reason",
                "reason",
            ),
            statements: register(
                reg,
                "statements",
                "Statements handled, by kind, role and outcome",
                Family::default(),
            ),
            roles: Mutex::new(HashMap::new()),
            statement_duration: register(
                reg,
                "statement_duration_seconds",
                "Time from a statement's arrival to its completion",
                DurationHistogram::new(&DURATION_BUCKETS),
            ),
            crypto_operations: CountersBy::register(
                reg,
                "crypto_operations",
                "Values encrypted or decrypted",
                "op",
            ),
            protected_values: CountersBy::register(
                reg,
                "protected_values",
                "Protected column values handled, by action taken",
                "action",
            ),
            refusals: CountersBy::register(
                reg,
                "refusals",
                "Statements refused by pgshroud, by reason",
                "reason",
            ),
            plan_cache: CountersBy::register(
                reg,
                "plan_cache_lookups",
                "Plans of statements that mention a protected table, by where they came from",
                "result",
            ),
            upstream_errors: counter(
                reg,
                "upstream_errors",
                "Failures talking to the upstream PostgreSQL server",
            ),
            audit_events: counter(reg, "audit_events", "Audit events written"),
            audit_dropped: counter(
                reg,
                "audit_dropped",
                "Audit events dropped because the audit queue was full",
            ),
            audit_syslog_sent: counter(
                reg,
                "audit_syslog_sent",
                "Audit events sent to the syslog collector",
            ),
            audit_syslog_dropped: counter(
                reg,
                "audit_syslog_dropped",
                "Audit events not sent to the syslog collector (its queue was full with on_full = drop, or it stayed away at shutdown)",
            ),
            audit_syslog_reconnects: counter(
                reg,
                "audit_syslog_reconnects",
                "Connections to the syslog collector that were lost",
            ),
            audit_syslog_connect_failures: counter(
                reg,
                "audit_syslog_connect_failures",
                "Attempts to connect to the syslog collector that failed (refused, unreachable, TLS handshake or certificate)",
            ),
            audit_syslog_connected: register(
                reg,
                "audit_syslog_connected",
                "1 while connected to the syslog collector",
                Gauge::default(),
            ),
            alerts: CountersBy::register(reg, "alerts", "Alerts raised, by kind", "kind"),
            rules_reloads: CountersBy::register(
                reg,
                "rules_reloads",
                "Rules reloads, by result",
                "result",
            ),
            bytes: CountersBy::register(reg, "bytes", "Bytes forwarded, by direction", "direction"),
            unguarded_columns: register(
                reg,
                "unguarded_columns",
                "Protected columns without a pgshroud guard in the database, as the latest catalog look-up found them",
                Gauge::default(),
            ),
            key_active_version: register(
                reg,
                "key_active_version",
                "The key version new values are sealed with",
                Gauge::default(),
            ),
            key_active_age: register(
                reg,
                "key_active_age_seconds",
                "Seconds since the active key version became active (its activated_at in the keys file); absent without a keys file",
                Gauge::default(),
            ),
            key_rotate_after: register(
                reg,
                "key_rotate_after_seconds",
                "The policy: seconds the active key may stay active (rotate_after_days)",
                Gauge::default(),
            ),
            tenant_keys_live: register(
                reg,
                "tenant_keys_live",
                "Tenants with a key in the tenant key store, as the latest start-up or reload read it",
                Gauge::default(),
            ),
            tenants_forgotten: register(
                reg,
                "tenants_forgotten",
                "Tenants whose key file is a tombstone (pgshroud forget), as the latest start-up or reload read it",
                Gauge::default(),
            ),
            key_active_since: AtomicI64::new(0),
            kms_calls: CountersBy::register(
                reg,
                "kms_calls",
                "AWS KMS calls made to unwrap master keys (start-up and reload only), by operation",
                "operation",
            ),
            kms_failures: CountersBy::register(
                reg,
                "kms_failures",
                "AWS KMS calls that failed, by reason",
                "reason",
            ),
            // The literal borrows `registry` to register into it; it moves in once that is done.
            registry: Registry::default(),
        };
        register_build_info(reg);
        Self {
            registry,
            ..metrics
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers `metric` and returns the handle that updates it (metrics share their cells).
fn register<M: Clone + prometheus_client::registry::Metric>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    register(registry, name, help, Counter::default())
}

/// `build_info{version}`: a constant 1 carrying the version as a label, to join on in queries.
fn register_build_info(registry: &mut Registry) {
    let build_info = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    build_info
        .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
    registry.register("build_info", "pgshroud build information", build_info);
}
