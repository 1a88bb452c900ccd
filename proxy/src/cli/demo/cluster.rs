//! The demo's throwaway PostgreSQL ([`crate::cli::throwaway_pg`]), stopped and deleted on drop.
//! When the server programs are missing, they are installed first (scripts/install-postgres.sh,
//! embedded), so that the demo works on a machine with nothing but Rust.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cli::throwaway_pg::{self, Instance, HOST, SUPERUSER};

/// A running throwaway cluster; dropping it stops the server and deletes its files.
pub struct DemoCluster {
    instance: Instance,
    pub port: u16,
}

impl DemoCluster {
    pub fn start() -> Result<DemoCluster> {
        let bin_dir = match throwaway_pg::find_bin_dir() {
            Ok(dir) => dir,
            Err(_) => {
                install_postgres()?;
                throwaway_pg::find_bin_dir().context(
                    "PostgreSQL's server programs (initdb, pg_ctl) are still missing after installing them",
                )?
            }
        };
        let root = std::env::temp_dir().join(format!("pgshroud-demo-{}", std::process::id()));
        let instance = Instance::create(root, bin_dir)?;
        // From here on, dropping the cluster (on an error too) stops and deletes it.
        let mut cluster = DemoCluster { instance, port: 0 };
        cluster.instance.init_db()?;
        cluster.port = cluster.instance.start()?;
        Ok(cluster)
    }

    /// The directory holding the cluster's data, socket and log (removed on drop).
    pub fn root(&self) -> &Path {
        self.instance.root()
    }

    /// The cluster's URL for pgshroud's `upstream` setting.
    pub fn upstream_url(&self) -> String {
        format!("postgres://{HOST}:{}?sslmode=disable", self.port)
    }

    /// Runs SQL as the superuser over the cluster's own socket and returns psql's output
    /// (unaligned, tuples only, fields separated by `|`).
    pub fn psql_direct(&self, sql: &str) -> Result<String> {
        let mut psql = Command::new(self.psql());
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.instance.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .stdin(Stdio::null());
        let out = throwaway_pg::run(&mut psql, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// psql from the server's directory, else from PATH.
    pub fn psql(&self) -> PathBuf {
        self.instance.program("psql")
    }
}

impl Drop for DemoCluster {
    fn drop(&mut self) {
        self.instance.stop_and_remove();
    }
}

/// The installer the README's first command runs when `initdb` is missing.
const INSTALL_POSTGRES: &str = include_str!("../../../../scripts/install-postgres.sh");

/// Installs PostgreSQL's server programs with the package manager, saying what and why.
fn install_postgres() -> Result<()> {
    say(
        "PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed; the demo needs \
         them to run a throwaway PostgreSQL of its own.\n\
         Installing them now: apt-get install postgresql postgresql-client (with sudo unless root; \
         no system cluster is created or started) ...",
    );
    let status = Command::new("bash")
        .args(["-c", INSTALL_POSTGRES, "install-postgres"])
        .stdin(Stdio::null())
        .status()
        .context("bash could not be started to install PostgreSQL")?;
    if !status.success() {
        bail!(
            "installing PostgreSQL's server programs failed ({status}); install them yourself \
             (Debian/Ubuntu: apt-get install postgresql) and run the demo again"
        );
    }
    say("Installed PostgreSQL's server programs.");
    Ok(())
}

/// Prints a line, ignoring a closed terminal (the demo must still clean up after SIGHUP).
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}
