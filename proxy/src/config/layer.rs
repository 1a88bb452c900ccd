//! Every setting, declared once: its config-file key, its flag, its type, its default and its
//! help. The file, the flags, the defaults and the README's table all follow from this table.

use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// A setting's default, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingDefault {
    /// No default: unset means off (or, for `upstream`, start-up stops).
    Unset,
    /// This value, applied by the setting's getter on [`ConfigLayer`].
    Value(&'static str),
    /// Follows from other settings (e.g. the host of `audit_syslog`); applied where resolved.
    Described(&'static str),
}

/// A setting's key, default and help, for the README check and `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    pub default: SettingDefault,
    /// The help's lines (the field's doc comment).
    pub help: &'static [&'static str],
}

/// `--help` text: the doc comment on one line (without its final period, as clap shows doc
/// comments), then the default.
fn help(doc: &[&str], default: SettingDefault) -> String {
    let text = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    let text = text.strip_suffix('.').unwrap_or(&text);
    match default {
        SettingDefault::Unset => text.to_owned(),
        SettingDefault::Described(v) if v.starts_with('(') => format!("{text} {v}"),
        SettingDefault::Value(v) | SettingDefault::Described(v) => {
            format!("{text} [default: {}]", v.replace('`', ""))
        }
    }
}

/// Declares the settings. Each row is a doc comment (the help), then `key: Type`, then either
/// `= "value"` (a default the getter applies; it must parse as `Type`), or `, default "text"`
/// (a default that follows from other settings, resolved in code), or nothing (no default).
///
/// It generates [`ConfigLayer`] (one field per key; serde reads the file with the key, clap the
/// flag `--key-with-dashes`), [`ConfigLayer::over`], a getter per defaulted key that returns
/// the value or its default, and [`SETTINGS`].
macro_rules! settings {
    (@default) => { SettingDefault::Unset };
    (@default $default:literal) => { SettingDefault::Value($default) };
    (@default , $described:literal) => { SettingDefault::Described($described) };
    (@getter $key:ident: $ty:ty) => {};
    (@getter $key:ident: $ty:ty = $default:literal) => {
        #[doc = concat!("`", stringify!($key), "`, or its default `", $default, "`.")]
        pub fn $key(&self) -> $ty {
            match &self.$key {
                Some(value) => value.clone(),
                None => $default
                    .parse()
                    .expect(concat!("the default of `", stringify!($key), "` parses")),
            }
        }
    };
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty $(= $default:literal)? $(, default $described:literal)?;
    )*) => {
        /// One source of settings: the config file, or the flags. Every field is optional so
        /// layers can be merged; the names are the config file's keys.
        #[derive(Debug, Default, Clone, PartialEq, serde::Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigLayer {
            $(
                $(#[doc = $doc])*
                #[arg(long, help = help(&[$($doc),*], settings!(@default $($default)? $(, $described)?)))]
                pub $key: Option<$ty>,
            )*
        }

        impl ConfigLayer {
            /// Fields set in `self` win over those in `below`.
            pub fn over(self, below: ConfigLayer) -> ConfigLayer {
                ConfigLayer { $($key: self.$key.or(below.$key),)* }
            }

            $(settings!(@getter $key: $ty $(= $default)?);)*
        }

        /// Every setting, in the order of `--help`.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                key: stringify!($key),
                default: settings!(@default $($default)? $(, $described)?),
                help: &[$($doc),*],
            },
        )*];
    };
}

settings! {
    /// Address clients connect to.
    listen: String = "127.0.0.1:6432";
    /// PostgreSQL to relay to:
    /// postgres://host:port?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=FILE
    upstream: String, default "(required)";
    /// CA certificate (PEM) to verify the upstream server with.
    upstream_ca_file: PathBuf;
    /// Certificate chain (PEM) offered to clients; enables TLS towards clients.
    tls_cert: PathBuf;
    /// Private key (PEM) of --tls-cert.
    tls_key: PathBuf;
    /// CA (PEM) that client certificates are verified against (for `cert_subjects` in rules).
    tls_client_ca_file: PathBuf;
    /// Whether clients must present a certificate: optional, or verify-full (one chaining to
    /// --tls-client-ca-file whose common name is the user name).
    tls_client_cert: String = "optional";
    /// Whether clients must come over TLS once --tls-cert is set: allow, prefer or require
    /// (clients without TLS get 28000); disable only without a certificate.
    tls_client_sslmode: String, default "`require` with `tls_cert`, else `disable`";
    /// Who checks passwords: relay (PostgreSQL) or proxy (pgshroud, against SCRAM verifiers).
    auth_mode: String, default "`proxy` when `auth_user` or `auth_file` is set, else `relay`";
    /// Role the proxy looks verifiers up as (with --auth-query), over its own connection.
    auth_user: String;
    /// File holding --auth-user's password (else $PGSHROUD_AUTH_PASSWORD).
    auth_password_file: PathBuf;
    /// Database the auth query runs in.
    auth_dbname: String = "postgres";
    /// Query returning a user's secret (its parameter: the user name).
    auth_query: String = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1";
    /// Instead of --auth-user: a file of `"user" "SCRAM-SHA-256$..."` lines.
    auth_file: PathBuf;
    /// What proxy-side authentication asks clients for: scram-sha-256, md5 or password.
    auth_method: String = "scram-sha-256";
    /// Users whose replication connections (`replication` in the startup packet) are relayed;
    /// everyone else's are refused.
    replication_users: Vec<String>, default "`[]`";
    /// Admin HTTP address for /metrics, /healthz, /readyz, or `off`.
    admin_listen: String = "127.0.0.1:9930";
    /// Rules file: protected columns and roles.
    rules: PathBuf;
    /// Audit events: a file path, or `-` for stdout.
    audit_file: String;
    /// File holding the audit chain key, base64 of 32 bytes (else $PGSHROUD_AUDIT_KEY).
    audit_key_file: PathBuf;
    /// When the audit queue is full: block (no statement goes unaudited) or drop.
    audit_on_full: String = "block";
    /// Audit events queued for the writer before --audit-on-full applies.
    audit_queue_size: usize = "10000";
    /// Rotate the audit file once it reaches this many bytes; 0 = never.
    audit_rotate_bytes: u64 = "0";
    /// Audit events also to a SIEM's syslog collector: tcp://host:port or tls://host:port.
    audit_syslog: String;
    /// CA (PEM) the tls:// collector's certificate must chain to (the system bundle).
    audit_syslog_ca_file: PathBuf = "/etc/ssl/certs/ca-certificates.crt";
    /// Client certificate (PEM) for collectors that require one.
    audit_syslog_cert: PathBuf;
    /// Private key (PEM) of --audit-syslog-cert.
    audit_syslog_key: PathBuf;
    /// Name the collector's certificate must carry.
    audit_syslog_server_name: String, default "the host of `audit_syslog`";
    /// Syslog facility of audit messages.
    audit_syslog_facility: String = "local0";
    /// APP-NAME of audit messages.
    audit_syslog_app_name: String = "pgshroud";
    /// Message format: json (the verifiable event line) or cef.
    audit_syslog_format: String = "json";
    /// When the syslog queue is full: block or drop.
    audit_syslog_on_full: String, default "`audit_on_full`";
    /// Log filter, e.g. info, debug, pgshroud=debug.
    log_level: String = "info";
    /// Log format: text or json.
    log_format: String = "text";
    /// Most clients served at once; more are refused with SQLSTATE 53300.
    max_client_connections: usize = "1000";
    /// Largest message a client may send, in bytes.
    max_message_size: usize = "268435456";
    /// Seconds a client has to finish TLS, startup and authentication.
    startup_timeout_secs: u64 = "30";
    /// Seconds a client may stay idle before it is disconnected; 0 = never.
    idle_timeout_secs: u64 = "0";
    /// Seconds to let sessions finish on SIGTERM before closing them.
    shutdown_timeout_secs: u64 = "30";
    /// File with a base64 32-byte key (`pgshroud keygen`) shared by every pgshroud in front
    /// of one server: a CancelRequest reaching another instance is still routed.
    cancel_key_file: PathBuf;
    /// Threads serving sessions, each a single-threaded runtime that a session stays on from
    /// start to end (no cross-thread wake-ups); 0 = the shared work-stealing runtime.
    session_threads: usize, default "half the CPUs, at least 1";
    /// File holding the base64 master key (else $PGSHROUD_MASTER_KEY).
    master_key_file: PathBuf;
    /// Command whose stdout is the base64 master key (KMS and vault CLIs).
    master_key_command: String;
    /// Key versions file (TOML): every live master key with its version, source and
    /// activated_at, and the active one; re-read on reload. Instead of master_key_file/command.
    keys_file: PathBuf;
    /// Days the active key may stay active before pgshroud_key_active_age_seconds passes
    /// pgshroud_key_rotate_after_seconds (the alert rule in docker/ fires then).
    rotate_after_days: u64 = "90";
    /// Write to no protected column without its guard in the database; `false` only for a
    /// migration window: plaintext written around pgshroud would then be stored.
    require_guard: bool = "true";
    /// Directory of per-tenant key files (`<tenant>.toml`, wrapped by the master key), kept
    /// apart from the database's backups so that destroying a key destroys it everywhere.
    tenant_keys_dir: PathBuf;
    /// Create a tenant's key on its first write (else such a write is refused until
    /// `pgshroud tenants add ID`).
    tenant_keys_create: bool = "false";
    /// What a read of a forgotten tenant's value gives: null or refuse.
    forgotten_tenant_values: String = "null";
}

impl ConfigLayer {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command};

    #[test]
    fn every_default_parses_as_its_type() {
        let d = ConfigLayer::default();
        assert_eq!(d.max_message_size(), 256 * 1024 * 1024);
        assert_eq!(d.audit_queue_size(), 10_000);
        assert!(d.require_guard());
        assert_eq!(d.auth_query(), crate::auth::secrets::DEFAULT_AUTH_QUERY);
        let _ = (d.startup_timeout_secs(), d.idle_timeout_secs());
        let _ = (d.shutdown_timeout_secs(), d.audit_rotate_bytes());
        let _ = (d.max_client_connections(), d.audit_syslog_ca_file());
    }

    #[test]
    fn every_setting_is_a_flag_and_a_file_key() {
        let command = ConfigLayer::augment_args(Command::new("serve"));
        let flags: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| l.replace('-', "_"))
            .collect();
        let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(flags, keys);
        for key in keys {
            let value = if matches!(key, "require_guard" | "tenant_keys_create") {
                "true"
            } else {
                "1"
            };
            let text = format!("{key} = {}", toml_value(key, value));
            toml::from_str::<ConfigLayer>(&text).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    fn toml_value(key: &str, value: &str) -> String {
        let numeric = matches!(
            key,
            "audit_queue_size"
                | "audit_rotate_bytes"
                | "max_client_connections"
                | "max_message_size"
                | "startup_timeout_secs"
                | "idle_timeout_secs"
                | "shutdown_timeout_secs"
                | "session_threads"
                | "rotate_after_days"
                | "require_guard"
                | "tenant_keys_create"
        );
        if numeric {
            value.to_owned()
        } else if key == "replication_users" {
            format!("[\"{value}\"]")
        } else {
            format!("\"{value}\"")
        }
    }

    #[test]
    fn flags_keep_their_names_and_take_values() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            layer: ConfigLayer,
        }
        let flags = <Flags as clap::Parser>::try_parse_from([
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--max-client-connections",
            "5",
            "--require-guard",
            "false",
            "--auth-user",
            "pgshroud_auth",
            "--tls-client-cert",
            "verify-full",
        ])
        .unwrap();
        assert_eq!(flags.layer.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(flags.layer.max_client_connections, Some(5));
        assert_eq!(flags.layer.require_guard, Some(false));
        assert_eq!(flags.layer.auth_user.as_deref(), Some("pgshroud_auth"));
        assert_eq!(flags.layer.tls_client_cert.as_deref(), Some("verify-full"));
    }

    #[test]
    fn help_shows_the_default() {
        let listen = SETTINGS.iter().find(|s| s.key == "listen").unwrap();
        assert_eq!(
            help(listen.help, listen.default),
            "Address clients connect to [default: 127.0.0.1:6432]"
        );
    }
}
