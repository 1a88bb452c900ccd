//! Client authentication: who checks passwords (`auth_mode`), where proxy-side authentication
//! finds users' verifiers (`auth_file`, or `auth_query` as `auth_user`), and what it asks for.

use std::path::PathBuf;

use super::error::{invalid, readable_file, ConfigError};
use super::layer::ConfigLayer;

/// How clients are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// PostgreSQL decides and the proxy passes the exchange through: the proxy holds no
    /// credentials, but SCRAM channel binding cannot cross its TLS.
    Relay,
    /// The proxy checks clients itself against the users' SCRAM verifiers and logs in upstream
    /// with the ClientKey the client's proof revealed (SCRAM pass-through): channel binding
    /// works on each TLS leg.
    Proxy(SecretSettings),
}

/// What proxy-side authentication asks clients for, with pg_hba's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `scram-sha-256`: SCRAM (PLUS over TLS); users with md5 secrets cannot log in.
    ScramSha256,
    /// `md5`: the md5 challenge for everyone; only users with md5 secrets can pass it.
    Md5,
    /// `password`: the cleartext password (only over TLS is that sensible), checked against
    /// either kind of secret.
    Password,
}

/// Where proxy-side authentication reads verifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSettings {
    /// `auth_file`: `"user" "SCRAM-SHA-256$..."` lines.
    File(PathBuf),
    /// `auth_query` as `auth_user` on database `auth_dbname`.
    Query {
        user: String,
        /// `auth_user`'s password; without it, `$PGSHROUD_AUTH_PASSWORD` (or none).
        password_file: Option<PathBuf>,
        dbname: String,
        query: String,
    },
}

/// `auth_method`, which only proxy-side authentication uses.
pub(super) fn method(
    layer: &ConfigLayer,
    mode: &AuthMode,
) -> Result<ClientAuthMethod, ConfigError> {
    match layer.auth_method().as_str() {
        "scram-sha-256" => Ok(ClientAuthMethod::ScramSha256),
        _ if *mode == AuthMode::Relay => Err(invalid(
            "auth_method",
            "applies to auth_mode = proxy only; in relay mode pg_hba.conf decides",
        )),
        "md5" => Ok(ClientAuthMethod::Md5),
        "password" => Ok(ClientAuthMethod::Password),
        other => Err(invalid(
            "auth_method",
            format!("`{other}` is not scram-sha-256, md5 or password"),
        )),
    }
}

/// `auth_mode` and its sources. Unset, it follows the settings: proxy-side authentication when
/// a verifier source is configured (the mode that works with TLS and channel binding on both
/// legs), else relay (which needs no credentials in the proxy).
pub(super) fn mode(layer: &ConfigLayer) -> Result<AuthMode, ConfigError> {
    if layer.auth_user.is_none() {
        for (name, set) in [
            ("auth_password_file", layer.auth_password_file.is_some()),
            ("auth_dbname", layer.auth_dbname.is_some()),
            ("auth_query", layer.auth_query.is_some()),
        ] {
            if set {
                return Err(invalid(
                    name,
                    "needs auth_user (the role auth_query runs as)",
                ));
            }
        }
    }
    let secrets = match (&layer.auth_file, &layer.auth_user) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "auth_file",
                "give either auth_file or auth_user (auth_query), not both",
            ))
        }
        (Some(file), None) => {
            readable_file("auth_file", file)?;
            Some(SecretSettings::File(file.clone()))
        }
        (None, Some(user)) => {
            if let Some(file) = &layer.auth_password_file {
                readable_file("auth_password_file", file)?;
            }
            Some(SecretSettings::Query {
                user: user.clone(),
                password_file: layer.auth_password_file.clone(),
                dbname: layer.auth_dbname(),
                query: layer.auth_query(),
            })
        }
        (None, None) => None,
    };
    match (layer.auth_mode.as_deref(), secrets) {
        (None | Some("proxy"), Some(secrets)) => Ok(AuthMode::Proxy(secrets)),
        (None | Some("relay"), None) => Ok(AuthMode::Relay),
        (Some("proxy"), None) => Err(invalid(
            "auth_mode",
            "proxy needs auth_user (with auth_query) or auth_file to find users' SCRAM verifiers",
        )),
        (Some("relay"), Some(_)) => Err(invalid(
            "auth_mode",
            "relay passes logins to PostgreSQL; remove auth_file/auth_user or use proxy",
        )),
        (Some(other), _) => Err(invalid(
            "auth_mode",
            format!("`{other}` is not relay or proxy"),
        )),
    }
}
