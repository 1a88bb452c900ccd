//! Protected columns on the wire: the per-session catalog of protected tables, statement
//! plans (analysis plus literal encryption), parameter and result rewriting, and refusals
//! that keep the session in step.

pub mod backstop;
pub mod catalog;
pub mod codec;
pub mod copy;
pub mod detail;
pub mod engine;
pub mod every_version;
pub mod guard;
pub mod live;
mod opaque;
pub mod policy;
pub mod refusal;
pub mod reveal;
pub mod session;
pub mod spec;
pub mod tenancy;
pub mod views;
pub mod wire;

use std::sync::Arc;

use tracing::warn;

use crate::config::keys::KeysConfig;
use crate::config::Settings;
use engine::{GuardPolicy, Protection};
use live::LiveProtection;

/// Loads the rules file and the master key, when a rules file is configured; `kms` hears of
/// every KMS call (the metrics).
pub fn load(
    settings: &Settings,
    kms: &dyn crate::crypto::kms::KmsObserver,
) -> Result<Option<Arc<LiveProtection>>, String> {
    let Some(path) = &settings.rules else {
        return Ok(None);
    };
    let rules = pgshroud_rules::load(path).map_err(|e| format!("invalid rules file: {e}"))?;
    let keys_config = KeysConfig::from_settings(
        settings.keys_file.as_deref(),
        settings.master_key_file.as_deref(),
        settings.master_key_command.as_deref(),
    );
    let loaded = keys_config.load_observed(kms)?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let keys = Arc::new(loaded.ring);
    let guards = if settings.require_guard {
        GuardPolicy::Required
    } else {
        warn!("require_guard is off: pgshroud writes to protected columns that have no guard in the database, so plaintext written around pgshroud (views, functions, triggers, other clients) would be stored there. Use this only for a migration window, then run `pgshroud setup`.");
        GuardPolicy::NotRequired
    };
    let tenants =
        crate::crypto::tenant_keys::TenantStore::open(settings.tenant_keys.clone(), keys.clone())
            .map_err(|e| format!("tenant keys: {e}"))?;
    let first = Arc::new(Protection::new(rules, keys, guards).with_tenant_store(tenants));
    let live = LiveProtection::new(path, first).with_keys(keys_config, loaded.active_since);
    Ok(Some(Arc::new(live)))
}
