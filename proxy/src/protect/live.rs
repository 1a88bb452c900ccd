//! The rules and key ring in force, swapped whole on reload (SIGHUP or a change of the rules
//! file or the keys file). A bad new file, or a key that does not load, keeps the old rules
//! and keys and says why in the log. Sessions pick up a new generation at
//! their next statement; statements already running finish under the rules they started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use tracing::{info, warn};

use super::engine::Protection;
use crate::audit::{Audit, Event};
use crate::config::keys::KeysConfig;
use crate::crypto::kms::{KmsObserver, NoKmsObserver};
use crate::ops::metrics::{Metrics, ReloadResult};

/// How often the rules file's modification time is looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub struct LiveProtection {
    path: PathBuf,
    keys_config: KeysConfig,
    /// When the active key version became active (from the keys file), for the key age gauge.
    active_since: Mutex<Option<OffsetDateTime>>,
    current: RwLock<Arc<Protection>>,
    generation: AtomicU64,
    /// Bumped when a session's transaction that ran DDL through pgshroud ends: every session
    /// looks its catalog up again before its next statement (a view made or replaced in one
    /// session is mapped in all).
    catalog_changes: AtomicU64,
    /// The key age policy, kept for the metrics after a reload.
    rotate_after_days: AtomicU64,
    /// Why the latest reload failed, until one succeeds (for `/readyz`'s detail).
    last_reload_failure: Mutex<Option<String>>,
    /// The rules in force less the migrating columns held in plaintext (see
    /// `protect::session::migrating`), built once per generation and set of such columns, so
    /// the sessions serving them share one plan cache.
    served: Mutex<Vec<Served>>,
    /// Where a reload reports tenants whose keys it dropped (`tenant_forgotten`), when the
    /// proxy audits.
    audit: OnceLock<Arc<Audit>>,
}

/// One served variant of a rules generation.
struct Served {
    full: Arc<Protection>,
    plain: Vec<String>,
    served: Arc<Protection>,
}

/// Variants kept: a migration moves each column from one form to the other once.
const SERVED_KEPT: usize = 8;

impl std::fmt::Debug for LiveProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProtection")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl LiveProtection {
    /// Rules from `path` over `first`'s key ring, which reloads keep (one key, read once).
    pub fn new(path: &Path, first: Arc<Protection>) -> LiveProtection {
        LiveProtection {
            path: path.to_owned(),
            keys_config: KeysConfig::Single(crate::crypto::MasterKeySource::Env {
                var: crate::crypto::MASTER_KEY_ENV.to_owned(),
            }),
            active_since: Mutex::new(None),
            current: RwLock::new(first),
            generation: AtomicU64::new(0),
            catalog_changes: AtomicU64::new(0),
            rotate_after_days: AtomicU64::new(90),
            last_reload_failure: Mutex::new(None),
            served: Mutex::new(Vec::new()),
            audit: OnceLock::new(),
        }
    }

    /// Reloads report forgotten tenants to `audit` from now on.
    pub fn set_audit(&self, audit: Arc<Audit>) {
        let _ = self.audit.set(audit);
    }

    /// The rules in force now.
    pub fn current(&self) -> Arc<Protection> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Bumped by every successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `full` (a rules generation) without the migrating columns in `plain`, which the
    /// database holds in plaintext: the same `Arc` for every session asking the same.
    pub fn served(&self, full: &Arc<Protection>, plain: &[String]) -> Arc<Protection> {
        let mut kept = match self.served.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(found) = kept
            .iter()
            .find(|s| Arc::ptr_eq(&s.full, full) && s.plain == plain)
        {
            return found.served.clone();
        }
        let served = Arc::new(build_served(full, plain));
        if kept.len() >= SERVED_KEPT {
            kept.remove(0);
        }
        kept.push(Served {
            full: full.clone(),
            plain: plain.to_vec(),
            served: served.clone(),
        });
        served
    }

    /// Counts committed (or ended) transactions that ran DDL through any session.
    pub fn catalog_changes(&self) -> u64 {
        self.catalog_changes.load(Ordering::Acquire)
    }

    /// A session's transaction that ran DDL ended: the others look up again.
    pub fn catalog_changed(&self) -> u64 {
        self.catalog_changes.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Keys from `keys_config`: a keys file is read again on every reload.
    pub fn with_keys(
        mut self,
        keys_config: KeysConfig,
        active_since: Option<OffsetDateTime>,
    ) -> LiveProtection {
        self.keys_config = keys_config;
        self.active_since = Mutex::new(active_since);
        self
    }

    /// When the active key version became active, if the keys file says.
    pub fn active_key_since(&self) -> Option<OffsetDateTime> {
        match self.active_since.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Loads the rules file (and the keys file, when keys come from one) again; on success
    /// the new rules and key ring replace the old at once. Blocking: a key's source may be
    /// a command.
    pub fn reload(&self) -> Result<(), String> {
        self.reload_observed(&NoKmsObserver)
    }

    /// [`Self::reload`], telling `kms` of every KMS call (the metrics).
    pub fn reload_observed(&self, kms: &dyn KmsObserver) -> Result<(), String> {
        let rules = pgshroud_rules::load(&self.path).map_err(|e| e.to_string())?;
        let current = self.current();
        let guards = current.guard_policy();
        let keys = match &self.keys_config {
            KeysConfig::File(_) => {
                let loaded = self.keys_config.load_observed(kms)?;
                for warning in &loaded.warnings {
                    warn!("{warning}");
                }
                match self.active_since.lock() {
                    Ok(mut guard) => *guard = loaded.active_since,
                    Err(poisoned) => *poisoned.into_inner() = loaded.active_since,
                }
                Arc::new(loaded.ring)
            }
            // One key from the environment, a file or a command: read once at start-up.
            KeysConfig::Single(_) => current.keys.clone(),
        };
        // Tenant keys are read again too: a forgotten tenant's key leaves memory here.
        let tenants = current
            .tenant_store()
            .reloaded(keys.clone())
            .map_err(|e| format!("tenant keys: {e}"))?;
        let forgotten = tenants.forgotten_since(current.tenant_store());
        let next = Arc::new(Protection::new(rules, keys, guards).with_tenant_store(tenants));
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Once per instance: the swap above happens once, and the next reload compares with
        // a store that already holds the tenant as forgotten.
        for (tenant, at) in forgotten {
            info!(%tenant, "tenant forgotten: its key left this instance's memory");
            if let Some(audit) = self.audit.get() {
                audit.emit(Event::tenant_forgotten(&tenant, at, "reload"));
            }
        }
        Ok(())
    }

    /// The active key version and its age policy, in the metrics.
    pub fn report_keys(&self, metrics: &Metrics, rotate_after_days: u64) {
        self.rotate_after_days
            .store(rotate_after_days, Ordering::Relaxed);
        let (live, forgotten) = self.current().tenant_store().counts();
        metrics.tenant_keys(live, forgotten);
        metrics.active_key(
            self.current().keys.active_version().get(),
            self.active_key_since().map(|t| t.unix_timestamp()),
            rotate_after_days.saturating_mul(86_400),
        );
    }

    /// Reloads and reports the outcome in the log and the metrics (and to the caller).
    pub fn reload_and_report(&self, metrics: &Metrics, why: &str) -> Result<(), String> {
        let result = self.reload_observed(metrics);
        let failure = result.as_ref().err().map(|e| {
            let now = OffsetDateTime::now_utc();
            let at = now
                .replace_nanosecond(0)
                .unwrap_or(now)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            format!("the last reload ({why}, {at}) failed; the previous rules and keys stay in force: {e}")
        });
        match self.last_reload_failure.lock() {
            Ok(mut guard) => *guard = failure,
            Err(poisoned) => *poisoned.into_inner() = failure,
        }
        match &result {
            Ok(()) => {
                let keys = &self.current().keys;
                info!(
                    file = %self.path.display(),
                    active_key_version = %keys.active_version(),
                    live_key_versions = keys.versions().len(),
                    "rules and keys reloaded ({why})"
                );
                metrics.rules_reload(ReloadResult::Ok);
                self.report_keys(metrics, self.rotate_after_days.load(Ordering::Relaxed));
            }
            Err(e) => {
                warn!("rules and keys not reloaded ({why}), the previous ones stay in force: {e}");
                metrics.rules_reload(ReloadResult::Rejected);
            }
        }
        result
    }

    /// Why the latest reload failed, while no later one has succeeded. Names files, key
    /// versions and KMS keys, never key material.
    pub fn last_reload_failure(&self) -> Option<String> {
        match self.last_reload_failure.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs until the process ends: reloads on SIGHUP and when the rules file's or the keys
    /// file's modification time or size changes.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot listen for SIGHUP, rules reload on file change only: {e}");
                None
            }
        };
        let stamps = |me: &Self| {
            (
                stamp(&me.path),
                me.keys_config.watched_file().and_then(stamp),
            )
        };
        let mut seen = stamps(&self);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signalled => {
                    seen = stamps(&self);
                    self.clone().reload_off_thread(&metrics, "SIGHUP").await;
                }
                _ = tick.tick() => {
                    let now = stamps(&self);
                    if now != seen {
                        seen = now;
                        self.clone().reload_off_thread(&metrics, "file changed").await;
                    }
                }
            }
        }
    }
}

impl LiveProtection {
    /// A reload away from the runtime's workers: a key command may take its time.
    async fn reload_off_thread(self: Arc<Self>, metrics: &Arc<Metrics>, why: &'static str) {
        let metrics = metrics.clone();
        let done = tokio::task::spawn_blocking(move || drop(self.reload_and_report(&metrics, why)));
        if let Err(e) = done.await {
            warn!("reload did not finish ({why}): {e}");
        }
    }
}

/// What tells a changed file: modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A served protection for `plain` columns of `full`'s rules (shared across sessions through
/// [`LiveProtection::served`], so they share its plan cache).
pub(crate) fn build_served(full: &Protection, plain: &[String]) -> Protection {
    Protection::new(
        rules_without(&full.rules, plain),
        full.keys.clone(),
        full.guard_policy(),
    )
    .with_tenant_store(full.tenant_store().clone())
}

/// The rules without the columns in `plain` (a table left without columns stays listed, so
/// its catalog is still looked up).
pub(crate) fn rules_without(
    rules: &pgshroud_rules::Rules,
    plain: &[String],
) -> pgshroud_rules::Rules {
    let mut served = rules.clone();
    for table in &mut served.tables {
        let qualified = table.qualified();
        table
            .columns
            .retain(|c| !plain.contains(&format!("{qualified}.{}", c.name)));
    }
    served
}
