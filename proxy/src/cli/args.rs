//! The command line: `pgshroud serve` and its flags. Every flag is also a config-file key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::ConfigLayer;

#[derive(Debug, Parser)]
#[command(
    name = "pgshroud",
    version,
    about = "Transparent encrypting proxy for PostgreSQL"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(Box<ServeArgs>),
    /// Print a new random master key (base64, on the last line of stdout).
    Keygen,
    /// Encrypt one value for a protected column; prints the stored bytes as hex.
    Encrypt(ColumnValueArgs),
    /// Decrypt stored bytes (hex, with or without a leading \x) of a protected column.
    Decrypt(ColumnValueArgs),
    /// Validate a rules file and print what every role sees of every protected column; with
    /// --upstream-url, also each protected column's guard in the database.
    Check(CheckArgs),
    /// Install the guard (a CHECK constraint that admits only envelopes of the column's key
    /// context) on every protected column, over an owner's connection. Safe to run again.
    Setup(SetupArgs),
    /// Start a throwaway PostgreSQL with pgshroud in front and show who sees what (Ctrl-C ends it).
    Demo(DemoArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address the demo's proxy listens on.
    #[arg(long, default_value = "127.0.0.1:6432")]
    pub listen: String,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain of an audit file, or of rotated files given oldest first; exits 1 naming
    /// the first broken line, 3 when a segment has no chain_end (truncated or unclean stop).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// File holding the audit key, base64 (else $PGSHROUD_AUDIT_KEY).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Audit files, oldest first (rotated files, then the current one).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ColumnValueArgs {
    /// Rules file naming the column.
    #[arg(long)]
    pub rules: PathBuf,
    /// The protected column, as schema.table.column.
    #[arg(long)]
    pub column: String,
    /// File holding the base64 master key (else $PGSHROUD_MASTER_KEY).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
    /// Command whose stdout is the base64 master key.
    #[arg(long)]
    pub master_key_command: Option<String>,
    /// The value: plaintext (text form of the logical type) for encrypt, hex for decrypt.
    pub value: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules file to check.
    #[arg(long)]
    pub rules: PathBuf,
    /// Also report each protected column's state in this database:
    /// postgres://user[:password]@host:port/db?sslmode=... (password also from $PGPASSWORD).
    #[arg(long)]
    pub upstream_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// An owner's connection to the database holding the protected tables:
    /// postgres://owner[:password]@host:port/db?sslmode=... (password also from $PGPASSWORD).
    #[arg(long)]
    pub upstream_url: String,
    /// Rules file naming the protected columns.
    #[arg(long)]
    pub rules: PathBuf,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file; flags win over it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    #[arg(long)]
    pub listen: Option<String>,
    /// PostgreSQL to relay to: postgres://host:port?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=FILE
    #[arg(long)]
    pub upstream: Option<String>,
    /// CA certificate (PEM) to verify the upstream server with.
    #[arg(long)]
    pub upstream_ca_file: Option<PathBuf>,
    /// Certificate chain (PEM) offered to clients; enables TLS towards clients.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates are verified against (for `cert_subjects` in rules).
    #[arg(long)]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Admin HTTP address for /metrics, /healthz, /readyz, or `off` [default: 127.0.0.1:9930].
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Rules file: protected columns and roles.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Audit events: a file path, or `-` for stdout.
    #[arg(long)]
    pub audit_file: Option<String>,
    /// File holding the audit chain key, base64 of 32 bytes (else $PGSHROUD_AUDIT_KEY).
    #[arg(long)]
    pub audit_key_file: Option<PathBuf>,
    /// When the audit queue is full: block (no statement goes unaudited) or drop [default: block].
    #[arg(long)]
    pub audit_on_full: Option<String>,
    /// Audit events queued for the writer before --audit-on-full applies [default: 10000].
    #[arg(long)]
    pub audit_queue_size: Option<usize>,
    /// Rotate the audit file once it reaches this many bytes; 0 = never [default: 0].
    #[arg(long)]
    pub audit_rotate_bytes: Option<u64>,
    /// Audit events also to a SIEM's syslog collector: tcp://host:port or tls://host:port.
    #[arg(long)]
    pub audit_syslog: Option<String>,
    /// CA (PEM) the tls:// collector's certificate must chain to [default: the system bundle].
    #[arg(long)]
    pub audit_syslog_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for collectors that require one.
    #[arg(long)]
    pub audit_syslog_cert: Option<PathBuf>,
    /// Private key (PEM) of --audit-syslog-cert.
    #[arg(long)]
    pub audit_syslog_key: Option<PathBuf>,
    /// Name the collector's certificate must carry [default: the host of --audit-syslog].
    #[arg(long)]
    pub audit_syslog_server_name: Option<String>,
    /// Syslog facility of audit messages [default: local0].
    #[arg(long)]
    pub audit_syslog_facility: Option<String>,
    /// APP-NAME of audit messages [default: pgshroud].
    #[arg(long)]
    pub audit_syslog_app_name: Option<String>,
    /// Message format: json (the verifiable event line) or cef [default: json].
    #[arg(long)]
    pub audit_syslog_format: Option<String>,
    /// When the syslog queue is full: block or drop [default: --audit-on-full].
    #[arg(long)]
    pub audit_syslog_on_full: Option<String>,
    /// Log filter, e.g. info, debug, pgshroud=debug [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long)]
    pub log_format: Option<String>,
    /// Most clients served at once; more are refused with SQLSTATE 53300 [default: 1000].
    #[arg(long)]
    pub max_client_connections: Option<usize>,
    /// Largest message a client may send, in bytes [default: 268435456].
    #[arg(long)]
    pub max_message_size: Option<usize>,
    /// Seconds a client has to finish TLS, startup and authentication [default: 30].
    #[arg(long)]
    pub startup_timeout_secs: Option<u64>,
    /// Seconds a client may stay idle before it is disconnected; 0 = never [default: 0].
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds to let sessions finish on SIGTERM before closing them [default: 30].
    #[arg(long)]
    pub shutdown_timeout_secs: Option<u64>,
    /// File holding the base64 master key (else $PGSHROUD_MASTER_KEY).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
    /// Command whose stdout is the base64 master key (KMS and vault CLIs).
    #[arg(long)]
    pub master_key_command: Option<String>,
    /// Write to no protected column without its guard in the database [default: true]. `false`
    /// only for a migration window: plaintext written around pgshroud would then be stored.
    #[arg(long)]
    pub require_guard: Option<bool>,
}

impl ServeArgs {
    /// The flags as a settings layer (without `--config`, which names the file below them).
    pub fn layer(&self) -> ConfigLayer {
        ConfigLayer {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            upstream_ca_file: self.upstream_ca_file.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca_file: self.tls_client_ca_file.clone(),
            admin_listen: self.admin_listen.clone(),
            rules: self.rules.clone(),
            audit_file: self.audit_file.clone(),
            audit_key_file: self.audit_key_file.clone(),
            audit_on_full: self.audit_on_full.clone(),
            audit_queue_size: self.audit_queue_size,
            audit_rotate_bytes: self.audit_rotate_bytes,
            audit_syslog: self.audit_syslog.clone(),
            audit_syslog_ca_file: self.audit_syslog_ca_file.clone(),
            audit_syslog_cert: self.audit_syslog_cert.clone(),
            audit_syslog_key: self.audit_syslog_key.clone(),
            audit_syslog_server_name: self.audit_syslog_server_name.clone(),
            audit_syslog_facility: self.audit_syslog_facility.clone(),
            audit_syslog_app_name: self.audit_syslog_app_name.clone(),
            audit_syslog_format: self.audit_syslog_format.clone(),
            audit_syslog_on_full: self.audit_syslog_on_full.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format.clone(),
            max_client_connections: self.max_client_connections,
            max_message_size: self.max_message_size,
            startup_timeout_secs: self.startup_timeout_secs,
            idle_timeout_secs: self.idle_timeout_secs,
            shutdown_timeout_secs: self.shutdown_timeout_secs,
            master_key_file: self.master_key_file.clone(),
            master_key_command: self.master_key_command.clone(),
            require_guard: self.require_guard,
            // Authentication settings are read from the config file only.
            ..ConfigLayer::default()
        }
    }
}
