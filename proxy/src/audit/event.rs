//! The audit event: one JSON object per line. Fields appear in this order and are left out
//! when they do not apply; no field ever holds a literal value, plaintext, key or password.

use serde::Serialize;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339, UTC, microseconds.
const TS_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The time now, as events write it.
pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(TS_FORMAT)
        .unwrap_or_default()
}

/// This process, as `tenant_forgotten` names it: the host name and the process id.
pub fn instance() -> String {
    format!("{}:{}", super::host::hostname(), std::process::id())
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ChainStart,
    ChainEnd,
    /// First event of each file after a rotation (links the file to the one before).
    FileStart,
    Connect,
    AuthOk,
    AuthFailed,
    Statement,
    Alert,
    Disconnect,
    /// A tenant's key was destroyed (`pgshroud forget`), or left this proxy instance's memory
    /// at the first reload that found its tombstone. Carries the tenant id (not a protected
    /// value), never key material.
    TenantForgotten,
    /// `pgshroud forget --delete-rows` deleted the rows holding a forgotten tenant's values.
    TenantRowsDeleted,
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
    Refused,
}

/// A protected column a statement touched, and what pgshroud did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnAction {
    /// `schema.table.column`.
    pub column: String,
    /// `encrypted`, `decrypted`, `masked`, `nulled`, `ciphertext` or `refused`.
    pub action: &'static str,
}

/// Connection totals, on `disconnect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub statements: u64,
    pub errors: u64,
    pub refused: u64,
    pub rows: u64,
    pub duration_us: u64,
}

/// One audit event. `seq` is set by the writer (so it follows the order of the file) and
/// `chain` is appended by it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub ts: String,
    pub seq: u64,
    pub event: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<ColumnAction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// `alert`: which limit (`max_rows`, `max_protected_values_per_minute`, `network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<&'static str>,
    /// `alert`: the limit and what was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<u64>,
    /// `alert`: the statement was ended (`enforce = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// `tenant_forgotten`, `tenant_rows_deleted`: the tenant id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `tenant_forgotten`: when the tombstone was written (as its file records it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgotten_at: Option<String>,
    /// `tenant_forgotten`: which process saw it (`host:pid`), and how (`reload`: the proxy
    /// dropped the key at a reload; `forget`: the command destroyed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// `chain_start`/`file_start`: the last chain value of the file this one follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_chain: Option<String>,
    /// `chain_start`: the pgshroud version; `chain_end`: events in the segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// Events dropped (queue full, `on_full = "drop"`) since the event before this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

impl Event {
    /// An event of `event` type at the current time, with no other fields.
    pub fn new(event: EventType) -> Event {
        Event {
            ts: now(),
            seq: 0,
            event,
            session: None,
            client_addr: None,
            tls: None,
            user: None,
            role: None,
            database: None,
            application_name: None,
            protocol: None,
            kind: None,
            class: None,
            statement: None,
            fingerprint: None,
            tables: None,
            columns: None,
            rows: None,
            duration_us: None,
            outcome: None,
            sqlstate: None,
            alert: None,
            limit: None,
            observed: None,
            enforced: None,
            totals: None,
            tenant: None,
            forgotten_at: None,
            instance: None,
            source: None,
            prev_chain: None,
            version: None,
            events: None,
            dropped: None,
        }
    }

    /// `tenant_forgotten` for `tenant`, seen by this process through `source`.
    pub fn tenant_forgotten(
        tenant: &str,
        forgotten_at: Option<String>,
        source: &'static str,
    ) -> Event {
        let mut e = Event::new(EventType::TenantForgotten);
        e.tenant = Some(tenant.to_owned());
        e.forgotten_at = forgotten_at;
        e.instance = Some(instance());
        e.source = Some(source);
        e
    }

    /// The compact JSON the chain covers (no `chain` member, no newline).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let ts = now();
        assert_eq!(ts.len(), "2026-01-01T00:00:00.000000Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert!(OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339).is_ok());
    }

    #[test]
    fn absent_fields_are_left_out() {
        let mut e = Event::new(EventType::Statement);
        e.outcome = Some(Outcome::Ok);
        let json = String::from_utf8(e.canonical()).unwrap();
        assert!(json.starts_with("{\"ts\":"), "{json}");
        assert!(json.contains("\"event\":\"statement\""));
        assert!(json.contains("\"outcome\":\"ok\""));
        assert!(!json.contains("sqlstate"));
    }
}
