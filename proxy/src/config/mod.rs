//! Settings: read from a TOML file and from command-line flags (flags win over the file, the
//! file over defaults), then validated once into an immutable [`Settings`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::audit::syslog::{self, MessageFormat, SyslogSettings, Transport};
use crate::audit::OnFull;
use crate::net::upstream_url::UpstreamUrl;

/// One source of settings: the config file, or the flags. Every field is optional so layers
/// can be merged; the names are the config file's keys.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub upstream_ca_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca_file: Option<PathBuf>,
    pub tls_client_cert: Option<String>,
    pub tls_client_sslmode: Option<String>,
    pub admin_listen: Option<String>,
    pub rules: Option<PathBuf>,
    pub audit_file: Option<String>,
    pub audit_key_file: Option<PathBuf>,
    pub audit_on_full: Option<String>,
    pub audit_queue_size: Option<usize>,
    pub audit_rotate_bytes: Option<u64>,
    pub audit_syslog: Option<String>,
    pub audit_syslog_ca_file: Option<PathBuf>,
    pub audit_syslog_cert: Option<PathBuf>,
    pub audit_syslog_key: Option<PathBuf>,
    pub audit_syslog_server_name: Option<String>,
    pub audit_syslog_facility: Option<String>,
    pub audit_syslog_app_name: Option<String>,
    pub audit_syslog_format: Option<String>,
    pub audit_syslog_on_full: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub max_client_connections: Option<usize>,
    pub max_message_size: Option<usize>,
    pub startup_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
    pub master_key_file: Option<PathBuf>,
    pub master_key_command: Option<String>,
    pub require_guard: Option<bool>,
    pub auth_mode: Option<String>,
    pub auth_file: Option<PathBuf>,
    pub auth_user: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    pub auth_dbname: Option<String>,
    pub auth_query: Option<String>,
    pub auth_method: Option<String>,
    pub replication_users: Option<Vec<String>>,
}

macro_rules! overlay {
    ($top:expr, $bottom:expr, $($field:ident),*) => {
        ConfigLayer { $($field: $top.$field.or($bottom.$field),)* }
    };
}

impl ConfigLayer {
    /// Fields set in `self` win over those in `below`.
    pub fn over(self, below: ConfigLayer) -> ConfigLayer {
        overlay!(
            self,
            below,
            listen,
            upstream,
            upstream_ca_file,
            tls_cert,
            tls_key,
            tls_client_ca_file,
            tls_client_cert,
            tls_client_sslmode,
            admin_listen,
            rules,
            audit_file,
            audit_key_file,
            audit_on_full,
            audit_queue_size,
            audit_rotate_bytes,
            audit_syslog,
            audit_syslog_ca_file,
            audit_syslog_cert,
            audit_syslog_key,
            audit_syslog_server_name,
            audit_syslog_facility,
            audit_syslog_app_name,
            audit_syslog_format,
            audit_syslog_on_full,
            log_level,
            log_format,
            max_client_connections,
            max_message_size,
            startup_timeout_secs,
            idle_timeout_secs,
            shutdown_timeout_secs,
            master_key_file,
            master_key_command,
            require_guard,
            auth_mode,
            auth_file,
            auth_user,
            auth_password_file,
            auth_dbname,
            auth_query,
            auth_method,
            replication_users
        )
    }

    /// Reads a config file; the error names the file, the line and the problem.
    pub fn from_file(path: &Path) -> Result<ConfigLayer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            setting: "config".into(),
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError {
            setting: "config".into(),
            problem: format!(
                "{}{}: {}",
                path.display(),
                line_of(&text, e.span()),
                e.message()
            ),
        })
    }
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        }
        None => String::new(),
    }
}

/// A setting that stops start-up, with the setting's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

fn invalid(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
}

/// How the audit sinks behave (used when `audit_file` or `audit_syslog` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// File holding k_0 of the audit chain (else `$PGSHROUD_AUDIT_KEY`).
    pub key_file: Option<PathBuf>,
    pub on_full: crate::audit::OnFull,
    /// Events queued for the writer before `on_full` applies.
    pub queue_size: usize,
    /// Rotate the audit file once it reaches this size; `None`: never.
    pub rotate_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

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

/// Resource limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_client_connections: usize,
    pub max_message_size: usize,
    pub startup_timeout: Duration,
    /// `None`: clients may stay idle forever.
    pub idle_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
}

/// Validated settings, shared read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub upstream: UpstreamUrl,
    pub client_tls: Option<TlsFiles>,
    pub admin_listen: Option<SocketAddr>,
    pub rules: Option<PathBuf>,
    pub audit: Option<AuditTarget>,
    /// The SIEM's syslog collector, beside (or instead of) `audit`.
    pub audit_syslog: Option<SyslogSettings>,
    pub audit_options: AuditOptions,
    pub log_level: String,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub master_key_file: Option<PathBuf>,
    pub master_key_command: Option<String>,
    /// Write to no protected column that lacks its guard in the database (default true).
    pub require_guard: bool,
    pub auth_mode: AuthMode,
    /// What proxy-side authentication asks clients for.
    pub auth_method: ClientAuthMethod,
    /// Users whose replication connections (`replication` in the startup packet) are relayed;
    /// everyone else's are refused: a base backup or logical slot streams every envelope.
    pub replication_users: Vec<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9930";
/// Large enough for big bytea values and COPY rows, small enough to bound memory per client.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

impl Settings {
    /// Applies defaults and validates every setting.
    pub fn resolve(layer: ConfigLayer) -> Result<Settings, ConfigError> {
        let auth_mode = auth_mode(&layer)?;
        let auth_method = match layer.auth_method.as_deref() {
            None | Some("scram-sha-256") => ClientAuthMethod::ScramSha256,
            Some(_) if auth_mode == AuthMode::Relay => {
                return Err(invalid(
                    "auth_method",
                    "applies to auth_mode = proxy only; in relay mode pg_hba.conf decides",
                ))
            }
            Some("md5") => ClientAuthMethod::Md5,
            Some("password") => ClientAuthMethod::Password,
            Some(other) => {
                return Err(invalid(
                    "auth_method",
                    format!("`{other}` is not scram-sha-256, md5 or password"),
                ))
            }
        };
        let audit = layer.audit_file.as_deref().map(|a| match a {
            "-" => AuditTarget::Stdout,
            path => AuditTarget::File(PathBuf::from(path)),
        });
        let audit_options = AuditOptions {
            key_file: layer.audit_key_file.clone(),
            on_full: on_full("audit_on_full", layer.audit_on_full.as_deref())?
                .unwrap_or(OnFull::Block),
            queue_size: positive("audit_queue_size", layer.audit_queue_size.unwrap_or(10_000))?,
            rotate_bytes: layer.audit_rotate_bytes.filter(|b| *b > 0),
        };
        if let Some(key) = &audit_options.key_file {
            readable_file("audit_key_file", key)?;
        }
        let audit_syslog = syslog_settings(&layer, &audit_options)?;
        let listen = socket_addr("listen", layer.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let upstream_text = layer.upstream.ok_or_else(|| {
            invalid(
                "upstream",
                "missing; give --upstream postgres://host:port or `upstream = ...` in the config file",
            )
        })?;
        let mut upstream =
            UpstreamUrl::parse(&upstream_text).map_err(|p| invalid("upstream", p))?;
        if let Some(ca) = layer.upstream_ca_file {
            upstream.ca_file = Some(ca);
        }
        if let Some(ca) = &upstream.ca_file {
            readable_file("upstream_ca_file", ca)?;
        }
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
        let client_tls = match (layer.tls_cert, layer.tls_key) {
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
            (None, None) => None,
            (Some(cert), Some(key)) => {
                readable_file("tls_cert", &cert)?;
                readable_file("tls_key", &key)?;
                if let Some(ca) = &layer.tls_client_ca_file {
                    readable_file("tls_client_ca_file", ca)?;
                }
                let client_cert = match layer.tls_client_cert.as_deref() {
                    None | Some("optional") => ClientCertMode::Optional,
                    Some("verify-full") if layer.tls_client_ca_file.is_some() => {
                        ClientCertMode::VerifyFull
                    }
                    Some("verify-full") => {
                        return Err(invalid(
                            "tls_client_cert",
                            "verify-full needs tls_client_ca_file to verify certificates with",
                        ))
                    }
                    Some(other) => {
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
                Some(TlsFiles {
                    cert,
                    key,
                    client_ca: layer.tls_client_ca_file,
                    client_cert,
                    sslmode,
                })
            }
            (Some(_), None) => return Err(invalid("tls_key", "missing; tls_cert needs tls_key")),
            (None, Some(_)) => return Err(invalid("tls_cert", "missing; tls_key needs tls_cert")),
        };
        let admin_listen = match layer
            .admin_listen
            .as_deref()
            .unwrap_or(DEFAULT_ADMIN_LISTEN)
        {
            "off" | "" => None,
            addr => Some(socket_addr("admin_listen", addr)?),
        };
        if let Some(rules) = &layer.rules {
            readable_file("rules", rules)?;
        }
        let log_level = layer.log_level.unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| {
            invalid(
                "log_level",
                format!("`{log_level}`: {e} (e.g. info, debug, pgshroud=debug)"),
            )
        })?;
        let log_format = match layer.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("`{other}` is not text or json"),
                ))
            }
        };
        let limits = Limits {
            max_client_connections: positive(
                "max_client_connections",
                layer.max_client_connections.unwrap_or(1000),
            )?,
            max_message_size: positive(
                "max_message_size",
                layer.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            )?
            .max(1024),
            startup_timeout: Duration::from_secs(positive(
                "startup_timeout_secs",
                layer.startup_timeout_secs.unwrap_or(30) as usize,
            )? as u64),
            idle_timeout: layer
                .idle_timeout_secs
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            shutdown_timeout: Duration::from_secs(layer.shutdown_timeout_secs.unwrap_or(30)),
        };
        if layer.master_key_file.is_some() && layer.master_key_command.is_some() {
            return Err(invalid(
                "master_key_command",
                "give either master_key_file or master_key_command, not both",
            ));
        }
        Ok(Settings {
            listen,
            upstream,
            client_tls,
            admin_listen,
            rules: layer.rules,
            audit,
            audit_syslog,
            audit_options,
            log_level,
            log_format,
            limits,
            master_key_file: layer.master_key_file,
            master_key_command: layer.master_key_command,
            require_guard: layer.require_guard.unwrap_or(true),
            auth_mode,
            auth_method,
            replication_users: layer.replication_users.unwrap_or_default(),
        })
    }
}

/// `auth_mode` and its sources. Unset, it follows the settings: proxy-side authentication when
/// a verifier source is configured (the mode that works with TLS and channel binding on both
/// legs), else relay (which needs no credentials in the proxy).
fn auth_mode(layer: &ConfigLayer) -> Result<AuthMode, ConfigError> {
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
                dbname: layer
                    .auth_dbname
                    .clone()
                    .unwrap_or_else(|| "postgres".into()),
                query: layer
                    .auth_query
                    .clone()
                    .unwrap_or_else(|| crate::auth::secrets::DEFAULT_AUTH_QUERY.into()),
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

fn on_full(setting: &str, value: Option<&str>) -> Result<Option<OnFull>, ConfigError> {
    match value {
        None => Ok(None),
        Some("block") => Ok(Some(OnFull::Block)),
        Some("drop") => Ok(Some(OnFull::Drop)),
        Some(other) => Err(invalid(setting, format!("`{other}` is not block or drop"))),
    }
}

/// Where many Linux systems keep the CA bundle, the default for `tls://` collectors.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `audit_syslog` and its companions; `None` when `audit_syslog` is not set.
fn syslog_settings(
    layer: &ConfigLayer,
    options: &AuditOptions,
) -> Result<Option<SyslogSettings>, ConfigError> {
    let Some(url) = &layer.audit_syslog else {
        for (name, set) in [
            ("audit_syslog_ca_file", layer.audit_syslog_ca_file.is_some()),
            ("audit_syslog_cert", layer.audit_syslog_cert.is_some()),
            (
                "audit_syslog_facility",
                layer.audit_syslog_facility.is_some(),
            ),
            ("audit_syslog_format", layer.audit_syslog_format.is_some()),
        ] {
            if set {
                return Err(invalid(
                    name,
                    "needs audit_syslog (tcp://host:port or tls://host:port)",
                ));
            }
        }
        return Ok(None);
    };
    let (host, port, tls) =
        SyslogSettings::parse_url(url).map_err(|p| invalid("audit_syslog", p))?;
    let transport = if tls {
        let ca_file = layer
            .audit_syslog_ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
        readable_file("audit_syslog_ca_file", &ca_file)?;
        let client_cert = match (&layer.audit_syslog_cert, &layer.audit_syslog_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                readable_file("audit_syslog_cert", cert)?;
                readable_file("audit_syslog_key", key)?;
                Some((cert.clone(), key.clone()))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "audit_syslog_key",
                    "missing; audit_syslog_cert needs it",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "audit_syslog_cert",
                    "missing; audit_syslog_key needs it",
                ))
            }
        };
        Transport::Tls {
            ca_file,
            client_cert,
            server_name: layer
                .audit_syslog_server_name
                .clone()
                .unwrap_or_else(|| host.clone()),
        }
    } else {
        if layer.audit_syslog_ca_file.is_some() || layer.audit_syslog_cert.is_some() {
            return Err(invalid(
                "audit_syslog",
                "certificates are set but the collector is tcp://; use tls://",
            ));
        }
        Transport::Tcp
    };
    let facility_name = layer.audit_syslog_facility.as_deref().unwrap_or("local0");
    let facility = syslog::facility_code(facility_name).ok_or_else(|| {
        invalid(
            "audit_syslog_facility",
            format!("`{facility_name}` is not a syslog facility (e.g. local0 .. local7, auth, authpriv, audit)"),
        )
    })?;
    let app_name = layer
        .audit_syslog_app_name
        .clone()
        .unwrap_or_else(|| "pgshroud".into());
    if !syslog::valid_app_name(&app_name) {
        return Err(invalid(
            "audit_syslog_app_name",
            "1 to 48 printable ASCII characters without spaces",
        ));
    }
    let format = match layer.audit_syslog_format.as_deref().unwrap_or("json") {
        "json" => MessageFormat::Json,
        "cef" => MessageFormat::Cef,
        other => {
            return Err(invalid(
                "audit_syslog_format",
                format!("`{other}` is not json or cef"),
            ))
        }
    };
    Ok(Some(SyslogSettings {
        host,
        port,
        transport,
        facility,
        app_name,
        format,
        on_full: on_full(
            "audit_syslog_on_full",
            layer.audit_syslog_on_full.as_deref(),
        )?
        .unwrap_or(options.on_full),
        queue_size: options.queue_size,
    }))
}

fn socket_addr(setting: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| invalid(setting, format!("`{text}` is not a host:port address")))
}

fn readable_file(setting: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))
}

fn positive(setting: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        Err(invalid(setting, "must be greater than 0"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(upstream: &str) -> ConfigLayer {
        ConfigLayer {
            upstream: Some(upstream.into()),
            ..ConfigLayer::default()
        }
    }

    #[test]
    fn clients_need_tls_by_default_once_a_certificate_is_set() {
        let readable = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        let with_cert = |mode: Option<&str>| ConfigLayer {
            tls_cert: Some(readable.clone()),
            tls_key: Some(readable.clone()),
            tls_client_sslmode: mode.map(String::from),
            ..layer("postgres://127.0.0.1:5432")
        };
        let sslmode = |l| Settings::resolve(l).map(|s| s.client_tls.map(|t| t.sslmode));
        assert_eq!(sslmode(with_cert(None)), Ok(Some(ClientSslMode::Require)));
        assert_eq!(
            sslmode(with_cert(Some("prefer"))),
            Ok(Some(ClientSslMode::Prefer))
        );
        for refused in [Some("disable"), Some("verify-full")] {
            let e = Settings::resolve(with_cert(refused)).unwrap_err();
            assert_eq!(e.setting, "tls_client_sslmode");
        }
        let without_cert = ConfigLayer {
            tls_client_sslmode: Some("require".into()),
            ..layer("postgres://127.0.0.1:5432")
        };
        let e = Settings::resolve(without_cert).unwrap_err();
        assert_eq!(e.setting, "tls_client_sslmode");
        let disabled = ConfigLayer {
            tls_client_sslmode: Some("disable".into()),
            ..layer("postgres://127.0.0.1:5432")
        };
        assert_eq!(Settings::resolve(disabled).unwrap().client_tls, None);
    }

    #[test]
    fn replication_users_are_a_list_defaulting_to_nobody() {
        let file: ConfigLayer = toml::from_str(
            "upstream = \"postgres://db:5432\"\nreplication_users = [\"replicator\"]\n",
        )
        .unwrap();
        let s = Settings::resolve(file).unwrap();
        assert_eq!(s.replication_users, ["replicator"]);
        let s = Settings::resolve(layer("postgres://db:5432")).unwrap();
        assert!(s.replication_users.is_empty());
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = Settings::resolve(layer("postgres://127.0.0.1:5432")).unwrap();
        assert_eq!(s.listen, "127.0.0.1:6432".parse().unwrap());
        assert_eq!(s.admin_listen, Some("127.0.0.1:9930".parse().unwrap()));
        assert_eq!(s.limits.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(s.limits.idle_timeout, None);
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let file: ConfigLayer = toml::from_str(
            "listen = \"127.0.0.1:7000\"\nupstream = \"postgres://file:5432\"\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let flags = ConfigLayer {
            listen: Some("127.0.0.1:7001".into()),
            ..ConfigLayer::default()
        };
        let s = Settings::resolve(flags.over(file)).unwrap();
        assert_eq!(s.listen.port(), 7001);
        assert_eq!(s.upstream.host, "file");
        assert_eq!(s.log_level, "debug");
    }

    #[test]
    fn missing_upstream_names_the_setting() {
        let err = Settings::resolve(ConfigLayer::default()).unwrap_err();
        assert_eq!(err.setting, "upstream");
    }

    #[test]
    fn wrong_values_name_the_setting() {
        let cases: Vec<(&str, ConfigLayer)> = vec![
            (
                "listen",
                ConfigLayer {
                    listen: Some("nowhere".into()),
                    ..layer("postgres://h")
                },
            ),
            ("upstream", layer("http://h")),
            (
                "tls_key",
                ConfigLayer {
                    tls_cert: Some("/etc/hostname".into()),
                    ..layer("postgres://h")
                },
            ),
            (
                "tls_client_ca_file",
                ConfigLayer {
                    tls_client_ca_file: Some("/etc/hostname".into()),
                    ..layer("postgres://h")
                },
            ),
            (
                "log_level",
                ConfigLayer {
                    log_level: Some("loud[".into()),
                    ..layer("postgres://h")
                },
            ),
            (
                "log_format",
                ConfigLayer {
                    log_format: Some("xml".into()),
                    ..layer("postgres://h")
                },
            ),
            (
                "max_client_connections",
                ConfigLayer {
                    max_client_connections: Some(0),
                    ..layer("postgres://h")
                },
            ),
            (
                "rules",
                ConfigLayer {
                    rules: Some("/no/such/rules.toml".into()),
                    ..layer("postgres://h")
                },
            ),
        ];
        for (setting, layer) in cases {
            assert_eq!(Settings::resolve(layer).unwrap_err().setting, setting);
        }
    }

    #[test]
    fn unknown_config_key_is_an_error_with_its_line() {
        let dir = std::env::temp_dir().join(format!("pgshroud-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_port = 5\n").unwrap();
        let err = ConfigLayer::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml:2:1"), "{err}");
        assert!(err.contains("listen_port"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syslog_settings_are_validated_and_named() {
        let with = |extra: ConfigLayer| Settings::resolve(extra.over(layer("postgres://h")));
        let tcp = with(ConfigLayer {
            audit_syslog: Some("tcp://collector:1514".into()),
            audit_on_full: Some("drop".into()),
            ..ConfigLayer::default()
        })
        .unwrap();
        let syslog = tcp.audit_syslog.unwrap();
        assert_eq!((syslog.host.as_str(), syslog.port), ("collector", 1514));
        assert_eq!(syslog.transport, Transport::Tcp);
        assert_eq!(
            (syslog.facility, syslog.app_name.as_str()),
            (16, "pgshroud")
        );
        assert_eq!(syslog.format, MessageFormat::Json);
        assert_eq!(syslog.on_full, OnFull::Drop, "follows audit_on_full");
        let tls = with(ConfigLayer {
            audit_syslog: Some("tls://siem.example:6514".into()),
            audit_syslog_ca_file: Some("/etc/hostname".into()),
            audit_syslog_on_full: Some("block".into()),
            audit_syslog_format: Some("cef".into()),
            ..ConfigLayer::default()
        })
        .unwrap()
        .audit_syslog
        .unwrap();
        assert!(matches!(
            &tls.transport,
            Transport::Tls { server_name, client_cert: None, .. } if server_name == "siem.example"
        ));
        assert_eq!(tls.on_full, OnFull::Block);
        assert_eq!(tls.format, MessageFormat::Cef);

        let cases: Vec<(&str, ConfigLayer)> = vec![
            (
                "audit_syslog",
                ConfigLayer {
                    audit_syslog: Some("udp://collector:514".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "audit_syslog_key",
                ConfigLayer {
                    audit_syslog: Some("tls://c:6514".into()),
                    audit_syslog_ca_file: Some("/etc/hostname".into()),
                    audit_syslog_cert: Some("/etc/hostname".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "audit_syslog_facility",
                ConfigLayer {
                    audit_syslog: Some("tcp://c:601".into()),
                    audit_syslog_facility: Some("local9".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "audit_syslog_app_name",
                ConfigLayer {
                    audit_syslog: Some("tcp://c:601".into()),
                    audit_syslog_app_name: Some("pg shroud".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "audit_syslog_format",
                ConfigLayer {
                    audit_syslog: Some("tcp://c:601".into()),
                    audit_syslog_format: Some("leef".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "audit_syslog_on_full",
                ConfigLayer {
                    audit_syslog: Some("tcp://c:601".into()),
                    audit_syslog_on_full: Some("wait".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "audit_syslog_facility",
                ConfigLayer {
                    audit_syslog_facility: Some("local0".into()),
                    ..ConfigLayer::default()
                },
            ),
        ];
        for (setting, extra) in cases {
            assert_eq!(with(extra).unwrap_err().setting, setting);
        }
    }

    #[test]
    fn auth_mode_follows_the_verifier_source_and_wrong_combinations_name_the_setting() {
        let with = |extra: ConfigLayer| Settings::resolve(extra.over(layer("postgres://h")));
        assert_eq!(
            with(ConfigLayer::default()).unwrap().auth_mode,
            AuthMode::Relay
        );
        let query = with(ConfigLayer {
            auth_user: Some("pgshroud_auth".into()),
            ..ConfigLayer::default()
        })
        .unwrap();
        assert_eq!(
            query.auth_mode,
            AuthMode::Proxy(SecretSettings::Query {
                user: "pgshroud_auth".into(),
                password_file: None,
                dbname: "postgres".into(),
                query: crate::auth::secrets::DEFAULT_AUTH_QUERY.into(),
            })
        );
        let file = with(ConfigLayer {
            auth_file: Some("/etc/hostname".into()),
            ..ConfigLayer::default()
        })
        .unwrap();
        assert_eq!(
            file.auth_mode,
            AuthMode::Proxy(SecretSettings::File("/etc/hostname".into()))
        );
        let cases: Vec<(&str, ConfigLayer)> = vec![
            (
                "auth_mode",
                ConfigLayer {
                    auth_mode: Some("proxy".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "auth_mode",
                ConfigLayer {
                    auth_mode: Some("relay".into()),
                    auth_user: Some("a".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "auth_file",
                ConfigLayer {
                    auth_file: Some("/etc/hostname".into()),
                    auth_user: Some("a".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "auth_query",
                ConfigLayer {
                    auth_query: Some("SELECT 1".into()),
                    ..ConfigLayer::default()
                },
            ),
            (
                "tls_client_cert",
                ConfigLayer {
                    tls_cert: Some("/etc/hostname".into()),
                    tls_key: Some("/etc/hostname".into()),
                    tls_client_cert: Some("verify-full".into()),
                    ..ConfigLayer::default()
                },
            ),
        ];
        for (setting, extra) in cases {
            assert_eq!(with(extra).unwrap_err().setting, setting);
        }
    }

    #[test]
    fn admin_listener_can_be_turned_off() {
        let s = Settings::resolve(ConfigLayer {
            admin_listen: Some("off".into()),
            ..layer("postgres://h")
        })
        .unwrap();
        assert_eq!(s.admin_listen, None);
    }
}
