//! The throwaway PostgreSQL cluster every integration test talks to: one per test binary,
//! started on first use, stopped and deleted when the test process exits (pass or fail).
//!
//! Its temporary directory (owned by the `postgres` system user when the tests run as root,
//! because PostgreSQL refuses to run as root) holds:
//!
//! ```text
//! data/           the cluster (initdb)
//! sock/           unix socket directory: superuser connections, `local all all trust`
//! tls/            ca.crt, server.crt, server.key (0600): ssl = on, cert for localhost, 127.0.0.1
//! postgres.log    the server log, kept for diagnosing failures
//! ```
//!
//! Over TCP (127.0.0.1 only) pg_hba.conf gives each fixture role in [`users`] its own
//! authentication method, so tests can exercise trust, cleartext, md5 and SCRAM-SHA-256.
//!
//! Parts: the cluster and its accessors here, connection strings and clients in `connect`,
//! the fixture (roles, pg_hba.conf, TLS, settings) in `fixture` and `users`, and the
//! guarantees that it is stopped and deleted however the tests end in `cleanup`. The
//! PostgreSQL launcher itself is the proxy's `cli::throwaway_pg`, which the demo uses too.

mod cleanup;
mod connect;
mod fixture;
pub mod users;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::Context;
use pgshroud::cli::throwaway_pg::{self, Instance};
use tokio_postgres::{Client, NoTls};

use self::cleanup::{CleanupOnDrop, Reaper};
use crate::certs::TestCa;

pub use self::connect::quote;
pub use pgshroud::cli::throwaway_pg::{find_bin_dir, BIN_DIR_ENV, HOST};

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// The cluster of this test binary, started on first use. Safe to call from many test threads
/// at once: the first caller starts it, the others wait. If start-up failed, every caller
/// panics with the same error (including the tail of the server log).
pub fn cluster() -> &'static PgCluster {
    match CLUSTER.get_or_init(|| PgCluster::start().map_err(|e| format!("{e:#}"))) {
        Ok(cluster) => cluster,
        Err(e) => panic!("the test PostgreSQL cluster could not be started: {e}"),
    }
}

/// A running throwaway PostgreSQL cluster. Obtain it with [`cluster()`].
pub struct PgCluster {
    instance: Instance,
    port: u16,
    ca: TestCa,
    ca_cert_path: PathBuf,
    /// Write end of the reaper's stdin: it closes when this process ends, however it ends.
    _reaper: ChildStdin,
}

impl PgCluster {
    /// TCP host of the cluster (always `127.0.0.1`).
    pub fn host(&self) -> &str {
        HOST
    }

    /// TCP port of the cluster (also the number in its unix socket's file name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, e.g. for relays that sit in front of the cluster.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Directory of the cluster's unix socket (`host=` for libpq and tokio-postgres).
    pub fn socket_dir(&self) -> &Path {
        self.instance.socket_dir()
    }

    /// Directory of the server programs in use; psql and pgbench of the same version are
    /// usually there too (see [`PgCluster::program`]).
    pub fn bin_dir(&self) -> &Path {
        self.instance.bin_dir()
    }

    /// `bin_dir()/name` if that exists, else plain `name` to be looked up in PATH.
    pub fn program(&self, name: &str) -> PathBuf {
        self.instance.program(name)
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        self.instance.data_dir()
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        self.instance.log_path()
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.instance.log_tail(lines)
    }

    /// The CA that signed the server's certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA certificate file (libpq's `sslrootcert`, the proxy's upstream CA).
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A superuser client on the `postgres` database, over the unix socket.
    pub async fn admin_client(&self) -> Client {
        self.admin_client_for("postgres").await
    }

    /// A superuser client on database `db`, over the unix socket.
    pub async fn admin_client_for(&self, db: &str) -> Client {
        let (client, connection) = fixture::admin_config(self.instance.socket_dir(), self.port, db)
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("superuser connection to {db}: {e}\n{}", self.log_tail(20)));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Creates a new, empty database with a unique name and returns the name.
    ///
    /// Its owner is `scram_user` (so it owns schema `public` and may do anything in it), PUBLIC
    /// has all privileges on the database and may create in `public`, and tables and sequences
    /// that any fixture role creates in `public` are granted to PUBLIC (default privileges
    /// copied from template1). So every fixture role can create, read and write every
    /// fixture-made table: permissions never get in the way of testing the proxy. Roles a test
    /// creates itself get no such default; grant what they need.
    pub async fn fresh_database(&self) -> String {
        let name = format!("test_db_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        let admin = self.admin_client().await;
        // Two round trips: CREATE DATABASE refuses to run inside a multi-statement query.
        for sql in [
            format!("CREATE DATABASE {name} OWNER {}", users::SCRAM),
            format!("GRANT ALL ON DATABASE {name} TO PUBLIC"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}\n{}", self.log_tail(20)));
        }
        name
    }

    /// Starts a new cluster; anything half-built is stopped and deleted when this fails.
    fn start() -> anyhow::Result<PgCluster> {
        cleanup::register_exit_hook();
        let bin_dir = throwaway_pg::find_bin_dir()?;
        let root = tempfile::Builder::new()
            .prefix("pgshroud-pg-")
            .tempdir()
            .context("creating the cluster's temporary directory")?
            .keep();
        let instance = Instance::create(root, bin_dir)?;
        let reaper = match Reaper::spawn(&instance) {
            Ok(reaper) => reaper,
            Err(e) => {
                instance.stop_and_remove();
                return Err(anyhow::Error::new(e).context("spawning the clean-up process"));
            }
        };
        let brought_up = {
            let guard = CleanupOnDrop::arm(&instance);
            let result = fixture::bring_up(&instance);
            if result.is_ok() {
                guard.disarm();
            }
            result
        };
        match brought_up {
            Ok((port, ca, ca_cert_path)) => Ok(PgCluster {
                instance,
                port,
                ca,
                ca_cert_path,
                _reaper: reaper.into_pipe(),
            }),
            Err(e) => {
                reaper.dismiss();
                Err(e)
            }
        }
    }
}

/// Paths only: the users' passwords are constants, and the CA key stays out of it.
impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port)
            .field("root", &self.instance.root())
            .field("bin_dir", &self.instance.bin_dir())
            .finish_non_exhaustive()
    }
}
