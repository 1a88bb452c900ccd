//! TLS towards clients: the certificate and key pgshroud offers, and whether clients must
//! present a certificate of their own.

use std::path::PathBuf;

use super::error::{invalid, readable_file, ConfigError};
use super::layer::ConfigLayer;

/// Certificate and key for TLS towards clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that client certificates are verified against; clients may then present one (its
    /// subject is what rules' `cert_subjects` match). Clients without one still connect,
    /// unless `client_cert` is `VerifyFull`.
    pub client_ca: Option<PathBuf>,
    pub client_cert: ClientCertMode,
    /// Whether clients must come over TLS (`tls_client_sslmode`).
    pub sslmode: ClientSslMode,
}

/// `tls_client_sslmode`, as PgBouncer's `client_tls_sslmode`. `disable` is accepted only without
/// a certificate (no TLS towards clients), so it never reaches [`TlsFiles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSslMode {
    /// TLS for clients that ask for it, plain TCP for the others.
    Allow,
    /// The same as `Allow` on the server side (the client decides).
    Prefer,
    /// Clients without TLS are refused with `28000` (the default with a certificate): a
    /// PostgreSQL that admits a user only over TLS (`hostssl`) must not see that user arrive
    /// over TLS from pgshroud when the client sent its password in the clear.
    Require,
}

impl ClientSslMode {
    pub fn accepts_plaintext(self) -> bool {
        self != ClientSslMode::Require
    }
}

/// Whether clients must present a certificate (`tls_client_cert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// A certificate is checked when presented, not required.
    Optional,
    /// Like pg_hba's `clientcert=verify-full`: a certificate chaining to `tls_client_ca_file`
    /// whose common name is the user name, in addition to the password.
    VerifyFull,
}

/// `tls_cert`, `tls_key` and the client certificate settings; `None`: no TLS towards clients.
pub(super) fn resolve(layer: &ConfigLayer) -> Result<Option<TlsFiles>, ConfigError> {
    let sslmode = match layer.tls_client_sslmode.as_deref() {
        None | Some("require") => Some(ClientSslMode::Require),
        Some("prefer") => Some(ClientSslMode::Prefer),
        Some("allow") => Some(ClientSslMode::Allow),
        Some("disable") => None,
        Some(other) => {
            return Err(invalid(
                "tls_client_sslmode",
                format!("`{other}` is not disable, allow, prefer or require"),
            ))
        }
    };
    let (cert, key) = match (&layer.tls_cert, &layer.tls_key) {
        (None, None) if sslmode.is_some() && layer.tls_client_sslmode.is_some() => {
            return Err(invalid(
                "tls_client_sslmode",
                "needs tls_cert and tls_key to offer TLS to clients",
            ))
        }
        (None, None) if layer.tls_client_cert.is_some() => {
            return Err(invalid(
                "tls_client_cert",
                "needs tls_cert and tls_key: client certificates come with TLS",
            ))
        }
        (None, None) if layer.tls_client_ca_file.is_some() => {
            return Err(invalid(
                "tls_client_ca_file",
                "needs tls_cert and tls_key: client certificates come with TLS",
            ))
        }
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (Some(_), None) => return Err(invalid("tls_key", "missing; tls_cert needs tls_key")),
        (None, Some(_)) => return Err(invalid("tls_cert", "missing; tls_key needs tls_cert")),
    };
    readable_file("tls_cert", &cert)?;
    readable_file("tls_key", &key)?;
    if let Some(ca) = &layer.tls_client_ca_file {
        readable_file("tls_client_ca_file", ca)?;
    }
    let client_cert = match layer.tls_client_cert().as_str() {
        "optional" => ClientCertMode::Optional,
        "verify-full" if layer.tls_client_ca_file.is_some() => ClientCertMode::VerifyFull,
        "verify-full" => {
            return Err(invalid(
                "tls_client_cert",
                "verify-full needs tls_client_ca_file to verify certificates with",
            ))
        }
        other => {
            return Err(invalid(
                "tls_client_cert",
                format!("`{other}` is not optional or verify-full"),
            ))
        }
    };
    let Some(sslmode) = sslmode else {
        return Err(invalid(
            "tls_client_sslmode",
            "disable turns TLS towards clients off: leave tls_cert and tls_key unset instead",
        ));
    };
    Ok(Some(TlsFiles {
        cert,
        key,
        client_ca: layer.tls_client_ca_file.clone(),
        client_cert,
        sslmode,
    }))
}
