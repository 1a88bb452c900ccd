//! The rules in force, swapped whole on reload (SIGHUP or a change of the rules file). A bad
//! new file keeps the old rules and says why in the log. Sessions pick up a new generation at
//! their next statement; statements already running finish under the rules they started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::engine::Protection;
use crate::crypto::KeyRing;
use crate::ops::metrics::{Metrics, ReloadResult};

/// How often the rules file's modification time is looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub struct LiveProtection {
    path: PathBuf,
    keys: Arc<KeyRing>,
    current: RwLock<Arc<Protection>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for LiveProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProtection")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl LiveProtection {
    pub fn new(path: &Path, first: Arc<Protection>) -> LiveProtection {
        LiveProtection {
            path: path.to_owned(),
            keys: first.keys.clone(),
            current: RwLock::new(first),
            generation: AtomicU64::new(0),
        }
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

    /// Loads the rules file again; on success the new rules replace the old at once.
    pub fn reload(&self) -> Result<(), String> {
        let rules = pgshroud_rules::load(&self.path).map_err(|e| e.to_string())?;
        let guards = self.current().guard_policy();
        let next = Arc::new(Protection::new(rules, self.keys.clone(), guards));
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Reloads and reports the outcome in the log and the metrics.
    pub fn reload_and_report(&self, metrics: &Metrics, why: &str) {
        match self.reload() {
            Ok(()) => {
                info!(file = %self.path.display(), "rules reloaded ({why})");
                metrics.rules_reload(ReloadResult::Ok);
            }
            Err(e) => {
                warn!("rules not reloaded ({why}), the previous rules stay in force: {e}");
                metrics.rules_reload(ReloadResult::Rejected);
            }
        }
    }

    /// Runs until the process ends: reloads on SIGHUP and when the file's modification time
    /// or size changes.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot listen for SIGHUP, rules reload on file change only: {e}");
                None
            }
        };
        let mut seen = stamp(&self.path);
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
                    seen = stamp(&self.path);
                    self.reload_and_report(&metrics, "SIGHUP");
                }
                _ = tick.tick() => {
                    let now = stamp(&self.path);
                    if now != seen {
                        seen = now;
                        self.reload_and_report(&metrics, "file changed");
                    }
                }
            }
        }
    }
}

/// What tells a changed file: modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
