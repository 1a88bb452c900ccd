//! The audit trail: events written and dropped, and the syslog collector's connection.

use super::Metrics;

impl Metrics {
    /// An audit event was written.
    pub fn audit_event(&self) {
        self.audit_events.inc();
    }

    /// An audit event was dropped because the queue was full.
    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// An audit event reached the syslog collector's connection.
    pub fn audit_syslog_sent(&self) {
        self.audit_syslog_sent.inc();
    }

    /// Audit events that will not reach the syslog collector.
    pub fn audit_syslog_dropped(&self, n: u64) {
        self.audit_syslog_dropped.inc_by(n);
    }

    /// The connection to the syslog collector was lost.
    pub fn audit_syslog_reconnect(&self) {
        self.audit_syslog_reconnects.inc();
    }

    /// Connecting to the syslog collector failed.
    pub fn audit_syslog_connect_failure(&self) {
        self.audit_syslog_connect_failures.inc();
    }

    pub fn audit_syslog_connected(&self, connected: bool) {
        self.audit_syslog_connected.set(i64::from(connected));
    }
}
