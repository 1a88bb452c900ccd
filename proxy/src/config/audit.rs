//! The audit section: where audit events go (`audit_file`, `audit_syslog`), the chain key, and
//! what a full queue does. `audit::Audit::start` takes this section and nothing else.

use std::path::PathBuf;

use super::error::{positive, readable_file, ConfigError};
use super::layer::ConfigLayer;
use super::on_full::{on_full, OnFull};
use super::syslog::{self, SyslogSettings};

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
}

/// The validated audit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// `audit_file`: `None` when events go to syslog only, or nowhere.
    pub target: Option<AuditTarget>,
    /// The SIEM's syslog collector, beside (or instead of) `target`.
    pub syslog: Option<SyslogSettings>,
    /// File holding k_0 of the audit chain (else `$PGSHROUD_AUDIT_KEY`).
    pub key_file: Option<PathBuf>,
    pub on_full: OnFull,
    /// Events queued for the writer before `on_full` applies.
    pub queue_size: usize,
    /// Rotate the audit file once it reaches this size; `None`: never.
    pub rotate_bytes: Option<u64>,
}

impl AuditSettings {
    /// Whether any audit destination is configured.
    pub fn is_on(&self) -> bool {
        self.target.is_some() || self.syslog.is_some()
    }
}

pub(super) fn resolve(layer: &ConfigLayer) -> Result<AuditSettings, ConfigError> {
    let target = layer.audit_file.as_deref().map(|a| match a {
        "-" => AuditTarget::Stdout,
        path => AuditTarget::File(PathBuf::from(path)),
    });
    let on_full = on_full("audit_on_full", Some(&layer.audit_on_full()))?.unwrap_or(OnFull::Block);
    let queue_size = positive("audit_queue_size", layer.audit_queue_size())?;
    let rotate_bytes = Some(layer.audit_rotate_bytes()).filter(|b| *b > 0);
    if let Some(key) = &layer.audit_key_file {
        readable_file("audit_key_file", key)?;
    }
    let syslog = syslog::resolve(layer, on_full, queue_size)?;
    Ok(AuditSettings {
        target,
        syslog,
        key_file: layer.audit_key_file.clone(),
        on_full,
        queue_size,
        rotate_bytes,
    })
}
