//! Protected columns on the wire: the per-session catalog of protected tables, statement
//! plans (analysis plus literal encryption), parameter and result rewriting, and refusals
//! that keep the session in step.

pub mod catalog;
pub mod codec;
pub mod copy;
pub mod engine;
pub mod live;
pub mod policy;
pub mod refusal;
pub mod reveal;
pub mod session;
pub mod tracker;
pub mod wire;

use std::sync::Arc;

use tracing::warn;

use crate::config::Settings;
use crate::crypto::{KeyRing, MasterKeySource};
use engine::Protection;
use live::LiveProtection;

/// Loads the rules file and the master key, when a rules file is configured.
pub fn load(settings: &Settings) -> Result<Option<Arc<LiveProtection>>, String> {
    let Some(path) = &settings.rules else {
        return Ok(None);
    };
    let rules = pgshroud_rules::load(path).map_err(|e| format!("invalid rules file: {e}"))?;
    let source = MasterKeySource::from_settings(
        settings.master_key_file.as_deref(),
        settings.master_key_command.as_deref(),
    );
    let loaded = source
        .load()
        .map_err(|e| format!("master key ({source}): {e}"))?;
    if let Some(warning) = &loaded.warning {
        warn!("{warning}");
    }
    let keys = Arc::new(KeyRing::single(loaded.key));
    let first = Arc::new(Protection::new(rules, keys));
    Ok(Some(Arc::new(LiveProtection::new(path, first))))
}
