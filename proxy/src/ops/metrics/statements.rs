//! Statements: the `statements_total` counters of each role (resolved once per session) and
//! the `statement_duration_seconds` histogram.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;

use super::labels::LabelEnum;
use super::{Metrics, StatementKind, StatementOutcome};

/// Upper bounds (seconds) of the statement latency buckets: a cached pass-through statement
/// takes tens of microseconds, a slow report seconds; 10 s and beyond land in `+Inf`.
pub(super) const DURATION_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// At most this many distinct `role` label values; later ones are counted as [`OVERFLOW_ROLE`].
/// Roles come from the rules file, so the cap only guards against a wiring mistake (passing
/// user names) turning into unbounded series.
pub(super) const MAX_ROLES: usize = 64;

/// The `role` label value for roles beyond [`MAX_ROLES`].
pub const OVERFLOW_ROLE: &str = "_other";

/// Longest `role` label value kept (PostgreSQL's own identifier limit).
const MAX_ROLE_LEN: usize = 63;

/// `statements_total`'s label set: `kind` and `outcome` from enums, `role` from the rules.
pub(super) type StatementLabels = [(&'static str, Arc<str>); 3];

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

impl Metrics {
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

/// A latency histogram on plain atomics: prometheus-client's own `Histogram` takes a write lock
/// per observation, which every session would contend on.
#[derive(Clone)]
pub(super) struct DurationHistogram {
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
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(HistogramCells {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    pub(super) fn observe(&self, duration: Duration) {
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
