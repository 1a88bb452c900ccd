//! Protected columns: crypto operations, values handled by action, refusals, per-role
//! alerts, unguarded columns and rules reloads.

use super::{
    AlertKind, CryptoOp, Metrics, PlanCacheResult, ProtectedValueAction, RefusalReason,
    ReloadResult,
};

impl Metrics {
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

    /// A statement was planned (from the exact-text cache, a shape's template, or in full).
    pub fn plan_lookup(&self, result: PlanCacheResult) {
        self.plan_cache.add(result, 1);
    }

    /// A per-role limit raised an alert.
    pub fn alert(&self, kind: AlertKind) {
        self.alerts.add(kind, 1);
    }

    /// The latest catalog look-up found `n` protected columns without their guard.
    pub fn unguarded_columns(&self, n: usize) {
        self.unguarded_columns.set(n as i64);
    }

    /// A rules reload finished.
    pub fn rules_reload(&self, result: ReloadResult) {
        self.rules_reloads.add(result, 1);
    }
}
