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
    /// Print a new random master key (base64, on the last line of stdout); with --kms-key-id,
    /// a new key wrapped by that AWS KMS key, as a [[keys]] entry for the keys file.
    Keygen(KeygenArgs),
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
    /// Key versions: what the database holds under each, and retiring one.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Re-encrypt, online and in short batches, every stored value that is not under the active
    /// key version (resumable: run it again after an interruption); ends with a check. With
    /// --tenant-keys-dir also rewraps every tenant key under the active master key version;
    /// with --tenant ID re-encrypts that tenant's values under its active key version instead.
    Rotate(RotateArgs),
    /// Turn populated plaintext columns into guarded protected columns holding envelopes, or
    /// back with --decrypt: online (a shadow column filled in short batches, then a short
    /// swap), resumable (run it again after an interruption), verified value by value.
    Migrate(MigrateArgs),
    /// Per-tenant keys in the tenant key store: add a tenant, rotate its key.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Destroy a tenant's key (crypto-shredding): its values become unreadable everywhere,
    /// backups included. Asks for the tenant id again unless --yes.
    Forget(ForgetArgs),
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Give a tenant its first key (32 random bytes wrapped by the active master key).
    Add {
        #[command(flatten)]
        keys: TenantKeysArgs,
        /// The tenant id (as in the rules' [[tenants]]).
        id: String,
    },
    /// A new key version for a tenant, active from the next reload; then re-encrypt its
    /// values with `pgshroud rotate --tenant ID`.
    Rotate {
        #[command(flatten)]
        keys: TenantKeysArgs,
        id: String,
    },
}

/// The tenant key store and the master key that wraps its keys.
#[derive(Debug, Args)]
pub struct TenantKeysArgs {
    /// The directory of tenant key files (the proxy's tenant_keys_dir).
    #[arg(long)]
    pub tenant_keys_dir: PathBuf,
    /// Keys file (the active master key version wraps new tenant keys).
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// File holding the base64 master key (else $PGSHROUD_MASTER_KEY).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
    /// Command whose stdout is the base64 master key.
    #[arg(long)]
    pub master_key_command: Option<String>,
}

#[derive(Debug, Default, Args)]
pub struct ForgetArgs {
    /// The tenant whose key is destroyed.
    #[arg(long)]
    pub tenant: String,
    /// The directory of tenant key files (the proxy's tenant_keys_dir).
    #[arg(long)]
    pub tenant_keys_dir: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Also write `pgshroud_tenants_forgotten_total` as Prometheus text to this file.
    #[arg(long)]
    pub metrics_textfile: Option<PathBuf>,
    /// Append the forget (and the rows deleted) as a chained audit segment to this file: the
    /// proxy's event format, verified by `pgshroud audit verify`. Not a file a running proxy
    /// writes to.
    #[arg(long)]
    pub audit_file: Option<PathBuf>,
    /// The audit key (base64 of 32 bytes) for --audit-file (else $PGSHROUD_AUDIT_KEY).
    #[arg(long, requires = "audit_file")]
    pub audit_key_file: Option<PathBuf>,
    /// After destroying the key, delete the rows holding the tenant's values, in short
    /// batches (run it again to continue after an interruption). Needs --upstream-url and
    /// --rules.
    #[arg(long, requires_all = ["upstream_url", "rules"])]
    pub delete_rows: bool,
    /// A connection whose role may SELECT and DELETE the tables with per-tenant columns:
    /// postgres://user[:password]@host:port/db?sslmode=... (password also from $PGPASSWORD).
    #[arg(long, requires = "delete_rows")]
    pub upstream_url: Option<String>,
    /// Rules file naming the per-tenant columns.
    #[arg(long, requires = "delete_rows")]
    pub rules: Option<PathBuf>,
    /// Rows per transaction with --delete-rows.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u32,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// AWS KMS key (ARN, key id or alias/NAME) to wrap the new key with (GenerateDataKey,
    /// AES_256). Credentials and region come from the standard AWS chain.
    #[arg(long)]
    pub kms_key_id: Option<String>,
    /// Another KMS endpoint (also written into the printed entry).
    #[arg(long, requires = "kms_key_id")]
    pub kms_endpoint: Option<String>,
    /// AWS region of the KMS key (also written into the printed entry).
    #[arg(long, requires = "kms_key_id")]
    pub region: Option<String>,
    /// The version the printed [[keys]] entry gets (the next free one in your keys file).
    #[arg(long, requires = "kms_key_id", default_value_t = 1)]
    pub key_version: u32,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Per protected column, how many stored values are under each key version and envelope
    /// format (read from the envelopes' headers: no key needed).
    Status(KeysStatusArgs),
    /// Check that no stored value (nor, with --tenant-keys-dir, tenant key file) is under
    /// master key version N any more; exits 1 naming the columns and counts when some are.
    /// With --tenant ID: that no value of the tenant is under its key version N, then destroy
    /// that version's wrapped key in the tenant's file.
    Retire(KeysRetireArgs),
}

#[derive(Debug, Args)]
pub struct KeysStatusArgs {
    /// A connection that may read the protected tables (the owner's):
    /// postgres://user[:password]@host:port/db?sslmode=... (password also from $PGPASSWORD).
    #[arg(long)]
    pub upstream_url: String,
    /// Rules file naming the protected columns.
    #[arg(long)]
    pub rules: PathBuf,
    /// Also write the counts as Prometheus text (`pgshroud_stored_values`) to this file, for
    /// node_exporter's textfile collector.
    #[arg(long)]
    pub metrics_textfile: Option<PathBuf>,
    /// The tenant key store: names per-tenant values' tenants and their key state (else
    /// tenants are named from the rules' [[tenants]]); for `keys retire`, the tenant key
    /// files checked for keys the master version still wraps.
    #[arg(long)]
    pub tenant_keys_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysRetireArgs {
    #[command(flatten)]
    pub status: KeysStatusArgs,
    /// The key version to retire.
    #[arg(long)]
    pub version: u32,
    /// Retire a key version of this tenant's key (needs --tenant-keys-dir) instead of a
    /// master key version.
    #[arg(long, requires = "tenant_keys_dir")]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The tables' owner's connection:
    /// postgres://owner[:password]@host:port/db?sslmode=... (password also from $PGPASSWORD).
    #[arg(long)]
    pub upstream_url: String,
    /// Rules file naming the protected columns.
    #[arg(long)]
    pub rules: PathBuf,
    /// Keys file (every live version; values are re-encrypted under its active one).
    #[arg(long)]
    pub keys_file: PathBuf,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u32,
    /// Only count what would be re-encrypted.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write progress as Prometheus text (`pgshroud_rotate_*`) to this file while the run
    /// goes on, for node_exporter's textfile collector.
    #[arg(long)]
    pub metrics_textfile: Option<PathBuf>,
    /// The tenant key store (the proxy's tenant_keys_dir). A master key rotation wraps every
    /// tenant key in it again under the active master key version.
    #[arg(long)]
    pub tenant_keys_dir: Option<PathBuf>,
    /// Re-encrypt this tenant's values in the per-tenant columns under its active key version
    /// (add the version with `pgshroud tenants rotate ID` and reload every pgshroud first)
    /// instead of the master key's values.
    #[arg(
        long,
        requires = "tenant_keys_dir",
        conflicts_with = "metrics_textfile"
    )]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The tables' owner's connection:
    /// postgres://owner[:password]@host:port/db?sslmode=... (password also from $PGPASSWORD).
    #[arg(long)]
    pub upstream_url: String,
    /// Rules file naming the columns (logical type, type modifier, key context).
    #[arg(long)]
    pub rules: PathBuf,
    /// Keys file (values are sealed under its active version).
    #[arg(long)]
    pub keys_file: PathBuf,
    /// A column to migrate, as schema.table.column (repeat for several; columns linked by a
    /// foreign key must be migrated in the same run).
    #[arg(long = "column", required = true)]
    pub columns: Vec<String>,
    /// The way back: protected columns returned to their plaintext type.
    #[arg(long)]
    pub decrypt: bool,
    /// Print the plan (DDL, row counts, what cannot be kept) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Drop the indexes, constraints and defaults that cannot exist on the new form (named in
    /// the plan); without it, the migration stops before changing anything when there are any.
    #[arg(long)]
    pub drop_incompatible: bool,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u32,
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
    /// Every setting as a flag: `--max-client-connections` for `max_client_connections`.
    #[command(flatten)]
    pub settings: ConfigLayer,
}

impl ServeArgs {
    /// The flags as a settings layer (without `--config`, which names the file below them).
    pub fn layer(&self) -> ConfigLayer {
        self.settings.clone()
    }
}
