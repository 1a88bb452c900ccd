//! What a full queue does (`audit_on_full`, `audit_syslog_on_full`): shared by the audit and
//! syslog sections, so it stands below both.

use super::error::{invalid, ConfigError};

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room: no statement goes unaudited.
    Block,
    /// Drop the event; counted in `pgshroud_audit_dropped_total` and in the next event.
    Drop,
}

/// `block` or `drop`; `None` when unset.
pub(super) fn on_full(setting: &str, value: Option<&str>) -> Result<Option<OnFull>, ConfigError> {
    match value {
        None => Ok(None),
        Some("block") => Ok(Some(OnFull::Block)),
        Some("drop") => Ok(Some(OnFull::Drop)),
        Some(other) => Err(invalid(setting, format!("`{other}` is not block or drop"))),
    }
}
