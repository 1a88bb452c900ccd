//! Errors that reach a PostgreSQL client, built in one place so that SQLSTATEs and wording stay
//! consistent. Messages never carry protected values, keys or passwords.

use bytes::BytesMut;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::Message;

/// SQLSTATE codes pgshroud itself raises.
pub mod sqlstate {
    /// The client broke the wire protocol (bad length, unknown message type).
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// The upstream server could not be reached or went away.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// Connection limit reached.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// A message larger than `max_message_size`.
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// Unsupported protocol version or authentication method.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// Startup packet without a user name, or a source network not allowed.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// The proxy is shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// A client idle for longer than `idle_timeout_secs`.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// A client too slow to finish its startup.
    pub const CONNECTION_EXCEPTION: &str = "08000";
    /// Wrong password (or unknown user) under proxy-side authentication, as PostgreSQL says.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// A role without the right it needs for a protected column or statement kind.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// A statement pgshroud cannot read exactly as the server will.
    pub const SYNTAX_ERROR: &str = "42601";
    pub const NAME_TOO_LONG: &str = "42622";
    /// A statement nested too deeply to analyse safely.
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    /// Not enough resources to analyse a statement safely.
    pub const INSUFFICIENT_RESOURCES: &str = "53000";
    /// A value that is not of its protected column's logical type.
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    /// A value longer than its protected column's type modifier allows.
    pub const STRING_DATA_RIGHT_TRUNCATION: &str = "22001";
    /// A number outside its protected column's type modifier.
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    /// A protected value that cannot be sent in the client's encoding.
    pub const UNTRANSLATABLE_CHARACTER: &str = "22P05";
    /// A character the client encoding cannot hold, or text pgshroud cannot read.
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    /// A COPY row pgshroud cannot read.
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    /// A stored value that does not decrypt (forged, or another key).
    pub const DATA_CORRUPTED: &str = "XX001";
    /// A protected column without its guard in the database.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    /// pgshroud's own state is inconsistent: the session ends rather than guess.
    pub const INTERNAL_ERROR: &str = "XX000";
    /// A prepared statement name already in use.
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    /// A portal name already in use.
    pub const DUPLICATE_CURSOR: &str = "42P03";
    /// A prepared statement that does not exist.
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    /// A portal that does not exist.
    pub const INVALID_CURSOR_NAME: &str = "34000";
    /// A statement cancelled (CancelRequest, statement_timeout).
    pub const QUERY_CANCELED: &str = "57014";
    /// A lock not obtained within lock_timeout (or NOWAIT).
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// A statement sent inside a transaction block that already failed.
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
}

/// How bad an error is: `Fatal` closes the connection after it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An `ErrorResponse` pgshroud sends on its own behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            severity: Severity::Error,
            ..PgError::fatal(code, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Appends the wire form of this error to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let severity = self.severity.as_str().to_owned();
        let mut fields = vec![
            (b'S', severity.clone()),
            (b'V', severity),
            (b'C', self.code.to_owned()),
            (b'M', self.message.clone()),
        ];
        if let Some(detail) = &self.detail {
            fields.push((b'D', detail.clone()));
        }
        if let Some(hint) = &self.hint {
            fields.push((b'H', hint.clone()));
        }
        // Encoding an ErrorResponse cannot fail: its size limit is i32::MAX.
        let _ = ErrorResponse::new(fields).encode(buf);
    }

    pub fn to_bytes(&self) -> BytesMut {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf
    }

    // Common errors, worded once.

    pub fn too_many_clients() -> Self {
        PgError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        )
    }

    pub fn upstream_unreachable(reason: &str) -> Self {
        PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("pgshroud could not connect to the upstream server: {reason}"),
        )
    }

    pub fn upstream_lost(reason: &str) -> Self {
        PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("upstream server connection lost: {reason}"),
        )
        .with_hint("The query may not have completed; retry on a new connection.")
    }

    pub fn shutting_down() -> Self {
        PgError::fatal(
            sqlstate::ADMIN_SHUTDOWN,
            "terminating connection due to administrator command",
        )
        .with_detail("pgshroud is shutting down.")
    }

    pub fn idle_timeout() -> Self {
        PgError::fatal(
            sqlstate::IDLE_SESSION_TIMEOUT,
            "terminating connection due to idle-session timeout",
        )
    }

    pub fn message_too_large(size: usize, limit: usize) -> Self {
        PgError::fatal(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("message of {size} bytes exceeds pgshroud's max_message_size of {limit} bytes"),
        )
    }

    pub fn protocol_violation(message: impl Into<String>) -> Self {
        PgError::fatal(sqlstate::PROTOCOL_VIOLATION, message)
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_carries_severity_code_and_message() {
        let bytes = PgError::too_many_clients().to_bytes();
        assert_eq!(bytes[0], b'E');
        let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len + 1, bytes.len());
        let body = String::from_utf8_lossy(&bytes[5..]);
        assert!(body.contains("SFATAL\0"));
        assert!(body.contains("C53300\0"));
        assert!(body.contains("Msorry, too many clients already\0"));
        assert!(body.ends_with("\0\0"));
    }
}
