//! Settings: read from a TOML file and from command-line flags (flags win over the file, the
//! file over defaults), then validated once into an immutable [`Settings`].
//!
//! `layer` declares every setting once (key, flag, default, help); the other files each
//! validate one section: `tls`, `auth`, `audit` (with `syslog`), `limits`.

pub mod audit;
pub mod auth;
mod error;
pub mod keys;
pub mod layer;
pub mod limits;
pub mod on_full;
pub mod syslog;
mod tenants;
pub mod tls;

#[cfg(test)]
mod readme;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::net::upstream_url::UpstreamUrl;

pub use self::audit::{AuditSettings, AuditTarget};
pub use self::auth::{AuthMode, ClientAuthMethod, SecretSettings};
pub use self::error::ConfigError;
pub use self::layer::{ConfigLayer, Setting, SettingDefault, SETTINGS};
pub use self::limits::Limits;
pub use self::on_full::OnFull;
pub use self::syslog::{MessageFormat, SyslogSettings, Transport};
pub use self::tls::{ClientCertMode, ClientSslMode, TlsFiles};

use self::error::{invalid, readable_file, socket_addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated settings, shared read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub upstream: UpstreamUrl,
    pub client_tls: Option<TlsFiles>,
    pub admin_listen: Option<SocketAddr>,
    pub rules: Option<PathBuf>,
    /// Audit file, syslog collector, chain key and queue.
    pub audit: AuditSettings,
    pub log_level: String,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub master_key_file: Option<PathBuf>,
    pub master_key_command: Option<String>,
    /// The key versions file, instead of one master key.
    pub keys_file: Option<PathBuf>,
    /// Policy: the active key is rotated within this many days.
    pub rotate_after_days: u64,
    /// Write to no protected column that lacks its guard in the database (default true).
    pub require_guard: bool,
    pub auth_mode: AuthMode,
    /// What proxy-side authentication asks clients for.
    pub auth_method: ClientAuthMethod,
    /// Users whose replication connections (`replication` in the startup packet) are relayed;
    /// everyone else's are refused: a base backup or logical slot streams every envelope.
    pub replication_users: Vec<String>,
    /// The cancel key shared with other instances (else one of this process only).
    pub cancel_key_file: Option<PathBuf>,
    /// Per-tenant keys: their directory and policies.
    pub tenant_keys: crate::crypto::tenant_keys::TenantKeysConfig,
}

impl Settings {
    /// Applies defaults and validates every setting.
    pub fn resolve(layer: ConfigLayer) -> Result<Settings, ConfigError> {
        let auth_mode = auth::mode(&layer)?;
        let auth_method = auth::method(&layer, &auth_mode)?;
        let audit = audit::resolve(&layer)?;
        let listen = socket_addr("listen", &layer.listen())?;
        let upstream = upstream(&layer)?;
        let client_tls = tls::resolve(&layer)?;
        let admin_listen = match layer.admin_listen().as_str() {
            "off" | "" => None,
            addr => Some(socket_addr("admin_listen", addr)?),
        };
        if let Some(rules) = &layer.rules {
            readable_file("rules", rules)?;
        }
        let log_level = layer.log_level();
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| {
            invalid(
                "log_level",
                format!("`{log_level}`: {e} (e.g. info, debug, pgshroud=debug)"),
            )
        })?;
        let log_format = match layer.log_format().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("`{other}` is not text or json"),
                ))
            }
        };
        let limits = limits::resolve(&layer)?;
        if layer.master_key_file.is_some() && layer.master_key_command.is_some() {
            return Err(invalid(
                "master_key_command",
                "give either master_key_file or master_key_command, not both",
            ));
        }
        if layer.keys_file.is_some()
            && (layer.master_key_file.is_some() || layer.master_key_command.is_some())
        {
            return Err(invalid(
                "keys_file",
                "give either keys_file (every key version) or master_key_file/master_key_command (one key), not both",
            ));
        }
        if let Some(keys) = &layer.keys_file {
            readable_file("keys_file", keys)?;
        }
        let tenant_keys = tenants::resolve(&layer)?;
        let rotate_after_days = layer.rotate_after_days();
        if rotate_after_days == 0 {
            return Err(invalid("rotate_after_days", "must be greater than 0"));
        }
        Ok(Settings {
            listen,
            upstream,
            client_tls,
            admin_listen,
            rules: layer.rules.clone(),
            audit,
            log_level,
            log_format,
            limits,
            require_guard: layer.require_guard(),
            master_key_file: layer.master_key_file,
            master_key_command: layer.master_key_command,
            keys_file: layer.keys_file,
            rotate_after_days,
            auth_mode,
            auth_method,
            replication_users: layer.replication_users.unwrap_or_default(),
            cancel_key_file: layer.cancel_key_file.clone(),
            tenant_keys,
        })
    }
}

/// `upstream`, with `upstream_ca_file` over the URL's `sslrootcert`.
fn upstream(layer: &ConfigLayer) -> Result<UpstreamUrl, ConfigError> {
    let text = layer.upstream.as_deref().ok_or_else(|| {
        invalid(
            "upstream",
            "missing; give --upstream postgres://host:port or `upstream = ...` in the config file",
        )
    })?;
    let mut upstream = UpstreamUrl::parse(text).map_err(|p| invalid("upstream", p))?;
    if let Some(ca) = &layer.upstream_ca_file {
        upstream.ca_file = Some(ca.clone());
    }
    if let Some(ca) = &upstream.ca_file {
        readable_file("upstream_ca_file", ca)?;
    }
    Ok(upstream)
}
