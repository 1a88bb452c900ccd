//! The Prometheus metrics pgshroud exports (all named `pgshroud_*`), and their text encoding.
//! Every series is registered up front; updates are single atomic adds on pre-resolved handles.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// `Content-Type` of [`Metrics::encode`]'s output: the Prometheus text format, which every
/// Prometheus version and `promtool check metrics` read.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the statement latency buckets: a cached pass-through statement
/// takes tens of microseconds, a slow report seconds; 10 s and beyond land in `+Inf`.
const DURATION_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// At most this many distinct `role` label values; later ones are counted as [`OVERFLOW_ROLE`].
/// Roles come from the rules file, so the cap only guards against a wiring mistake (passing
/// user names) turning into unbounded series.
const MAX_ROLES: usize = 64;

/// The `role` label value for roles beyond [`MAX_ROLES`].
pub const OVERFLOW_ROLE: &str = "_other";

/// Longest `role` label value kept (PostgreSQL's own identifier limit).
const MAX_ROLE_LEN: usize = 63;

/// Label values are fixed strings: a closed enum per label keeps series bounded.
trait LabelEnum: Copy + 'static {
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
    fn index(self) -> usize;
}

/// Declares a label enum with its `as_str` text and the [`LabelEnum`] plumbing.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value as it appears in the metrics text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl LabelEnum for $name {
            const ALL: &'static [Self] = $name::ALL;
            fn label(self) -> &'static str {
                self.as_str()
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// Why a client connection ended in error (`connection_errors_total{reason}`).
    ConnectionErrorReason {
        /// The TLS handshake with the client failed.
        Tls => "tls",
        /// The client sent no complete startup packet in time.
        StartupTimeout => "startup_timeout",
        /// The startup packet was malformed or asked for an unsupported protocol.
        InvalidStartup => "invalid_startup",
        /// `max_client_connections` was reached.
        TooManyConnections => "too_many_connections",
        /// Connecting to (or the TLS handshake with) the upstream server failed.
        UpstreamConnect => "upstream_connect",
        /// Upstream rejected the credentials.
        AuthFailed => "auth_failed",
        /// The caller's role does not allow its source network: 28000.
        NetworkDenied => "network_denied",
        /// A frame was malformed.
        Protocol => "protocol",
        /// A frame exceeded `max_message_size`.
        MessageTooLarge => "message_too_large",
        /// The connection sat idle past `idle_timeout_secs`.
        IdleTimeout => "idle_timeout",
        /// A socket read or write failed.
        Io => "io",
    }
}

label_enum! {
    /// What a statement does (`statements_total{kind}`).
    StatementKind {
        Select => "select",
        Insert => "insert",
        Update => "update",
        Delete => "delete",
        Copy => "copy",
        /// CREATE, ALTER, DROP, ...
        Ddl => "ddl",
        /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
        Transaction => "transaction",
        /// SET, SHOW, and other session commands.
        Utility => "utility",
        /// Anything not classified, e.g. statements that passed the pre-filter unparsed.
        Other => "other",
    }
}

label_enum! {
    /// How a statement ended (`statements_total{outcome}`).
    StatementOutcome {
        Ok => "ok",
        /// PostgreSQL answered with an error.
        Error => "error",
        /// pgshroud refused it before it reached PostgreSQL.
        Refused => "refused",
    }
}

label_enum! {
    /// The direction of a crypto operation (`crypto_operations_total{op}`).
    CryptoOp {
        Encrypt => "encrypt",
        Decrypt => "decrypt",
    }
}

label_enum! {
    /// What happened to a protected value (`protected_values_total{action}`); the same words as
    /// the audit event's column actions.
    ProtectedValueAction {
        /// Encrypted on the way in.
        Encrypted => "encrypted",
        /// Returned as plaintext.
        Decrypted => "decrypted",
        /// Returned masked.
        Masked => "masked",
        /// Returned as NULL.
        Nulled => "nulled",
        /// Returned as stored ciphertext.
        Ciphertext => "ciphertext",
    }
}

label_enum! {
    /// Why pgshroud refused a statement (`refusals_total{reason}`).
    RefusalReason {
        /// An operation deterministic encryption cannot support (LIKE, <, ORDER BY, ...): 0A000.
        UnsupportedOperation => "unsupported_operation",
        /// The statement mentions a protected table but does not parse: 42601.
        Unparseable => "unparseable",
        /// The caller's role has `deny` on a referenced column (or is `auditor`): 42501.
        ColumnDenied => "column_denied",
        /// The caller's role may not write a referenced protected column: 42501.
        WriteDenied => "write_denied",
        /// The caller's role may not compare a protected column with a value it supplies: 42501.
        CompareDenied => "compare_denied",
        /// Columns the role sees differently would meet in one result, comparison or copy: 42501.
        MixedActions => "mixed_actions",
        /// The statement kind is not in the role's `statements` list.
        StatementKindDenied => "statement_kind_denied",
        /// A result column could carry a protected value whose origin cannot be mapped.
        UnmappedOutput => "unmapped_output",
        /// The role's `max_rows` with `enforce = true` ended the statement.
        RowLimit => "row_limit",
        /// A write to a protected column that has no guard in the database: 55000.
        Unguarded => "unguarded_column",
    }
}

label_enum! {
    /// Which per-role limit raised an alert (`alerts_total{kind}`); named after the rules keys.
    AlertKind {
        /// One statement returned more rows than the role's `max_rows` (a bulk read).
        MaxRows => "max_rows",
        /// A session read more protected values per minute than the role allows (a bulk read).
        MaxProtectedValuesPerMinute => "max_protected_values_per_minute",
        /// The caller connected from outside the role's `networks`.
        Network => "network",
    }
}

label_enum! {
    /// How a rules reload ended (`rules_reloads_total{result}`).
    ReloadResult {
        /// The new rules are live.
        Ok => "ok",
        /// The new file was invalid; the old rules stay live.
        Rejected => "rejected",
    }
}

label_enum! {
    /// Which way bytes flowed through the proxy (`bytes_total{direction}`).
    Direction {
        ClientToServer => "client_to_server",
        ServerToClient => "server_to_client",
    }
}

/// One counter per value of a label enum, resolved at registration so an update is an index and
/// an atomic add.
struct CountersBy<E> {
    counters: Box<[Counter]>,
    label: std::marker::PhantomData<fn(E)>,
}

impl<E: LabelEnum> CountersBy<E> {
    fn register(registry: &mut Registry, name: &str, help: &str, key: &'static str) -> Self {
        let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let counters = E::ALL
            .iter()
            .map(|value| family.get_or_create_owned(&[(key, value.label())]))
            .collect();
        registry.register(name, help, family);
        Self {
            counters,
            label: std::marker::PhantomData,
        }
    }

    fn add(&self, value: E, n: u64) {
        if let Some(counter) = self.counters.get(value.index()) {
            counter.inc_by(n);
        }
    }
}

/// `statements_total`'s label set: `kind` and `outcome` from enums, `role` from the rules.
type StatementLabels = [(&'static str, Arc<str>); 3];

/// The `statements_total` counters of one role, for every kind × outcome.
///
/// Obtained once per session from [`Metrics::role`] (after the caller's role is known), so
/// counting a statement needs no map look-up. Cheap to clone.
#[derive(Clone)]
pub struct RoleStatements {
    role: Arc<str>,
    counters: Arc<[Counter]>,
}

impl RoleStatements {
    /// The `role` label value these counters carry (sanitised, maybe [`OVERFLOW_ROLE`]).
    pub fn role(&self) -> &str {
        &self.role
    }

    fn counter(&self, kind: StatementKind, outcome: StatementOutcome) -> Option<&Counter> {
        self.counters
            .get(kind.index() * StatementOutcome::ALL.len() + outcome.index())
    }
}

impl fmt::Debug for RoleStatements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleStatements")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

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
            // The literal borrows `registry` to register into it; it moves in once that is done.
            registry: Registry::default(),
        };
        register_build_info(reg);
        Self {
            registry,
            ..metrics
        }
    }

    /// A client connection was accepted. Pair with [`Metrics::connection_closed`], or use
    /// [`Metrics::track_connection`] so early returns cannot skip the pairing.
    pub fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections_active.inc();
    }

    /// A client connection ended (whatever the reason).
    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }

    /// Counts a connection as opened now and as closed when the guard drops.
    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connection_opened();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    /// A client connection ended in error.
    pub fn connection_error(&self, reason: ConnectionErrorReason) {
        self.connection_errors.add(reason, 1);
    }

    /// The statement counters of `role`, a role name from the rules (never a user name or other
    /// client-chosen text). Call once per session; creates the role's series on first use.
    pub fn role(&self, role: &str) -> RoleStatements {
        let name = sanitize_role(role);
        let mut roles = match self.roles.lock() {
            Ok(roles) => roles,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = roles.get(name.as_str()) {
            return existing.clone();
        }
        let name: Arc<str> = if roles.len() >= MAX_ROLES {
            Arc::from(OVERFLOW_ROLE)
        } else {
            Arc::from(name)
        };
        let handle = roles
            .entry(Arc::clone(&name))
            .or_insert_with(|| self.role_counters(name))
            .clone();
        handle
    }

    fn role_counters(&self, role: Arc<str>) -> RoleStatements {
        let mut counters =
            Vec::with_capacity(StatementKind::ALL.len() * StatementOutcome::ALL.len());
        for kind in StatementKind::ALL {
            for outcome in StatementOutcome::ALL {
                counters.push(self.statements.get_or_create_owned(&[
                    ("kind", Arc::from(kind.as_str())),
                    ("role", Arc::clone(&role)),
                    ("outcome", Arc::from(outcome.as_str())),
                ]));
            }
        }
        RoleStatements {
            role,
            counters: counters.into(),
        }
    }

    /// A statement completed: counts it and records its duration.
    pub fn statement(
        &self,
        kind: StatementKind,
        role: &RoleStatements,
        outcome: StatementOutcome,
        duration: Duration,
    ) {
        if let Some(counter) = role.counter(kind, outcome) {
            counter.inc();
        }
        self.statement_duration.observe(duration);
    }

    /// `n` values were encrypted or decrypted.
    pub fn crypto_operations(&self, op: CryptoOp, n: u64) {
        self.crypto_operations.add(op, n);
    }

    /// `n` protected values were handled with `action`.
    pub fn protected_values(&self, action: ProtectedValueAction, n: u64) {
        self.protected_values.add(action, n);
    }

    /// pgshroud refused a statement.
    pub fn refusal(&self, reason: RefusalReason) {
        self.refusals.add(reason, 1);
    }

    /// Talking to the upstream server failed (connect, I/O, or an unexpected message).
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    /// An audit event was written.
    pub fn audit_event(&self) {
        self.audit_events.inc();
    }

    /// An audit event was dropped because the queue was full.
    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// An audit event reached the syslog collector's connection.
    pub fn audit_syslog_sent(&self) {
        self.audit_syslog_sent.inc();
    }

    /// Audit events that will not reach the syslog collector.
    pub fn audit_syslog_dropped(&self, n: u64) {
        self.audit_syslog_dropped.inc_by(n);
    }

    /// The connection to the syslog collector was lost.
    pub fn audit_syslog_reconnect(&self) {
        self.audit_syslog_reconnects.inc();
    }

    /// Connecting to the syslog collector failed.
    pub fn audit_syslog_connect_failure(&self) {
        self.audit_syslog_connect_failures.inc();
    }

    pub fn audit_syslog_connected(&self, connected: bool) {
        self.audit_syslog_connected.set(i64::from(connected));
    }

    /// A per-role limit raised an alert.
    pub fn alert(&self, kind: AlertKind) {
        self.alerts.add(kind, 1);
    }

    /// A rules reload finished.
    /// The latest catalog look-up found `n` protected columns without their guard.
    pub fn unguarded_columns(&self, n: usize) {
        self.unguarded_columns.set(n as i64);
    }

    pub fn rules_reload(&self, result: ReloadResult) {
        self.rules_reloads.add(result, 1);
    }

    /// `n` bytes were forwarded. Called per chunk: one atomic add, no lock, no allocation.
    pub fn bytes(&self, direction: Direction, n: usize) {
        self.bytes
            .add(direction, u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The metrics in the Prometheus text format (serve with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut open_metrics = String::with_capacity(16 * 1024);
        if encode_registry(&mut open_metrics, &self.registry).is_err() {
            // Writing to a String cannot fail; an error here would be a bug in the encoder.
            tracing::error!("encoding metrics failed; the scrape will be partial");
        }
        to_prometheus_text(&open_metrics)
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

/// Marks a connection closed in the metrics when dropped (see [`Metrics::track_connection`]).
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connection_closed();
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

/// Label values are written unescaped by prometheus-client, so keep role names to characters
/// that need no escaping (anything else becomes `_`) and to a bounded length.
fn sanitize_role(role: &str) -> String {
    let clean: String = role
        .chars()
        .take(MAX_ROLE_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

/// Converts prometheus-client's OpenMetrics text to the Prometheus text format (0.0.4).
///
/// OpenMetrics names a counter family without `_total` (`# TYPE x counter`, sample `x_total`)
/// and ends with `# EOF`; the Prometheus format names the family after its samples and has no
/// EOF marker. `promtool check metrics` reads only the latter.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        match descriptor(line) {
            Some((keyword, name, rest)) if counters.contains(&name) => {
                text.push_str(keyword);
                text.push_str(name);
                text.push_str("_total");
                text.push_str(rest);
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Splits `# HELP name rest` / `# TYPE name rest` into (`# HELP `, `name`, ` rest`).
fn descriptor(line: &str) -> Option<(&'static str, &str, &str)> {
    let (keyword, after) = if let Some(after) = line.strip_prefix("# HELP ") {
        ("# HELP ", after)
    } else {
        ("# TYPE ", line.strip_prefix("# TYPE ")?)
    };
    let end = after.find(' ').unwrap_or(after.len());
    Some((keyword, &after[..end], &after[end..]))
}

/// A latency histogram on plain atomics: prometheus-client's own `Histogram` takes a write lock
/// per observation, which every session would contend on.
#[derive(Clone)]
struct DurationHistogram {
    inner: Arc<HistogramCells>,
}

struct HistogramCells {
    /// Upper bounds in seconds, ascending; an implicit `+Inf` bucket follows.
    bounds: &'static [f64],
    /// Non-cumulative counts, one per bound plus `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in nanoseconds: an integer add stays exact and lock-free.
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(HistogramCells {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    fn observe(&self, duration: Duration) {
        let cells = &self.inner;
        let seconds = duration.as_secs_f64();
        let bucket = cells.bounds.partition_point(|bound| *bound < seconds);
        if let Some(count) = cells.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let cells = &self.inner;
        let buckets: Vec<(f64, u64)> = cells
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX)) // prometheus-client's marker for `+Inf`
            .zip(cells.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the sum of the buckets read, so `_count` always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = cells.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl fmt::Debug for DurationHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurationHistogram").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `series ` (exact series, labels included).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn every_metric_is_exported_once_a_role_is_known() {
        let metrics = Metrics::new();
        metrics.role("app");
        let text = metrics.encode();
        for name in [
            "pgshroud_connections_active",
            "pgshroud_connections_total",
            "pgshroud_connection_errors_total",
            "pgshroud_statements_total",
            "pgshroud_statement_duration_seconds",
            "pgshroud_crypto_operations_total",
            "pgshroud_protected_values_total",
            "pgshroud_refusals_total",
            "pgshroud_upstream_errors_total",
            "pgshroud_audit_events_total",
            "pgshroud_audit_dropped_total",
            "pgshroud_audit_syslog_sent_total",
            "pgshroud_audit_syslog_dropped_total",
            "pgshroud_audit_syslog_reconnects_total",
            "pgshroud_audit_syslog_connect_failures_total",
            "pgshroud_audit_syslog_connected",
            "pgshroud_alerts_total",
            "pgshroud_rules_reloads_total",
            "pgshroud_bytes_total",
            "pgshroud_build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn statement_series_appear_only_for_roles_seen() {
        let text = Metrics::new().encode();
        assert!(!text.contains("pgshroud_statements_total"));
    }

    #[test]
    fn counter_families_are_named_after_their_samples() {
        let text = Metrics::new().encode();
        assert!(text.contains("# HELP pgshroud_connections_total Client connections accepted."));
        assert!(text.contains("# TYPE pgshroud_connections_total counter"));
        assert!(!text.contains("# TYPE pgshroud_connections counter"));
    }

    #[test]
    fn output_has_no_openmetrics_eof_marker() {
        assert!(!Metrics::new().encode().contains("# EOF"));
    }

    #[test]
    fn build_info_carries_the_crate_version() {
        let text = Metrics::new().encode();
        let series = format!(
            "pgshroud_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&text, &series), Some(1.0));
    }

    #[test]
    fn connection_guard_closes_the_connection_on_drop() {
        let metrics = Arc::new(Metrics::new());
        let guard = metrics.track_connection();
        let text = metrics.encode();
        assert_eq!(sample(&text, "pgshroud_connections_active"), Some(1.0));
        drop(guard);
        let text = metrics.encode();
        assert_eq!(sample(&text, "pgshroud_connections_active"), Some(0.0));
        assert_eq!(sample(&text, "pgshroud_connections_total"), Some(1.0));
    }

    #[test]
    fn bytes_are_added_per_direction() {
        let metrics = Metrics::new();
        metrics.bytes(Direction::ClientToServer, 100);
        metrics.bytes(Direction::ClientToServer, 23);
        metrics.bytes(Direction::ServerToClient, 7);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "pgshroud_bytes_total{direction=\"client_to_server\"}"
            ),
            Some(123.0)
        );
        assert_eq!(
            sample(
                &text,
                "pgshroud_bytes_total{direction=\"server_to_client\"}"
            ),
            Some(7.0)
        );
    }

    #[test]
    fn enum_labelled_series_start_at_zero() {
        let text = Metrics::new().encode();
        for reason in RefusalReason::ALL {
            let series = format!("pgshroud_refusals_total{{reason=\"{}\"}}", reason.as_str());
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
    }

    #[test]
    fn statement_is_counted_under_its_role_and_timed() {
        let metrics = Metrics::new();
        let support = metrics.role("support");
        metrics.statement(
            StatementKind::Select,
            &support,
            StatementOutcome::Refused,
            Duration::from_micros(70),
        );
        let text = metrics.encode();
        let series =
            "pgshroud_statements_total{kind=\"select\",role=\"support\",outcome=\"refused\"}";
        assert_eq!(sample(&text, series), Some(1.0));
        assert_eq!(
            sample(&text, "pgshroud_statement_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "pgshroud_statement_duration_seconds_bucket{le=\"0.00005\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "pgshroud_statement_duration_seconds_bucket{le=\"0.0001\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn same_role_shares_its_counters() {
        let metrics = Metrics::new();
        let a = metrics.role("app");
        let b = metrics.role("app");
        metrics.statement(
            StatementKind::Insert,
            &a,
            StatementOutcome::Ok,
            Duration::ZERO,
        );
        metrics.statement(
            StatementKind::Insert,
            &b,
            StatementOutcome::Ok,
            Duration::ZERO,
        );
        let text = metrics.encode();
        let series = "pgshroud_statements_total{kind=\"insert\",role=\"app\",outcome=\"ok\"}";
        assert_eq!(sample(&text, series), Some(2.0));
    }

    #[test]
    fn role_label_cannot_break_the_text_format() {
        let metrics = Metrics::new();
        let role = metrics.role("evil\"} 1\nx{");
        assert_eq!(role.role(), "evil___1_x_");
        assert!(metrics.encode().contains("role=\"evil___1_x_\""));
    }

    #[test]
    fn roles_beyond_the_cap_share_the_overflow_label() {
        let metrics = Metrics::new();
        for i in 0..MAX_ROLES {
            metrics.role(&format!("role{i}"));
        }
        assert_eq!(metrics.role("one_too_many").role(), OVERFLOW_ROLE);
        assert_eq!(metrics.role("role0").role(), "role0");
    }

    #[test]
    fn slow_statement_lands_in_the_infinity_bucket() {
        let metrics = Metrics::new();
        let app = metrics.role("app");
        metrics.statement(
            StatementKind::Select,
            &app,
            StatementOutcome::Ok,
            Duration::from_secs(30),
        );
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "pgshroud_statement_duration_seconds_bucket{le=\"10.0\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "pgshroud_statement_duration_seconds_bucket{le=\"+Inf\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "pgshroud_statement_duration_seconds_sum"),
            Some(30.0)
        );
    }

    #[test]
    fn label_values_are_lowercase_snake_case() {
        let all: Vec<&str> = ConnectionErrorReason::ALL
            .iter()
            .map(|v| v.as_str())
            .chain(StatementKind::ALL.iter().map(|v| v.as_str()))
            .chain(StatementOutcome::ALL.iter().map(|v| v.as_str()))
            .chain(CryptoOp::ALL.iter().map(|v| v.as_str()))
            .chain(ProtectedValueAction::ALL.iter().map(|v| v.as_str()))
            .chain(RefusalReason::ALL.iter().map(|v| v.as_str()))
            .chain(AlertKind::ALL.iter().map(|v| v.as_str()))
            .chain(ReloadResult::ALL.iter().map(|v| v.as_str()))
            .chain(Direction::ALL.iter().map(|v| v.as_str()))
            .collect();
        for value in all {
            assert!(
                value.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{value}"
            );
        }
    }
}
