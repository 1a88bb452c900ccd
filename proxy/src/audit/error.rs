//! Why the audit could not start, named by the setting to fix.

/// An audit destination or key that stops start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The chain key could not be read or decoded.
    #[error("invalid setting `audit_key_file`: {0}")]
    Key(String),
    /// The syslog collector's TLS configuration (or its thread) could not be set up.
    #[error("invalid setting `audit_syslog`: {0}")]
    Syslog(String),
    /// The audit file could not be opened (or the writer started).
    #[error("invalid setting `audit_file`: {0}")]
    File(String),
}
