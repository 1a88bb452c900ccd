//! Key age: when the active key version became active (from the keys file), turned into its
//! age at each scrape, beside the policy, so an alert can fire when the key is overdue.

use std::sync::atomic::Ordering;

use super::Metrics;

impl Metrics {
    /// The active key version, when it became active (unix seconds; `None` when no keys file
    /// says), and the policy's rotation period in seconds.
    pub fn active_key(&self, version: u32, since_unix: Option<i64>, rotate_after_secs: u64) {
        self.key_active_version.set(i64::from(version));
        self.key_active_since
            .store(since_unix.unwrap_or(0), Ordering::Relaxed);
        self.key_rotate_after
            .set(i64::try_from(rotate_after_secs).unwrap_or(i64::MAX));
    }

    /// Tenants of the tenant key store by state: with keys, forgotten.
    pub fn tenant_keys(&self, live: usize, forgotten: usize) {
        self.tenant_keys_live
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        self.tenants_forgotten
            .set(i64::try_from(forgotten).unwrap_or(i64::MAX));
    }

    /// Sets the age gauge from the activation time, just before the metrics are encoded.
    pub(super) fn refresh_key_age(&self, now_unix: i64) {
        let since = self.key_active_since.load(Ordering::Relaxed);
        if since > 0 {
            self.key_active_age
                .set(now_unix.saturating_sub(since).max(0));
        }
    }
}
