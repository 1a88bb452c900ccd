//! The demo's throwaway PostgreSQL: `initdb` in a temporary directory, a server on a free
//! loopback port with its own socket directory, stopped and deleted on drop. PostgreSQL
//! refuses to run as root, so as root its programs run as the `postgres` system user.
//! When the server programs are missing, they are installed first (scripts/install-postgres.sh,
//! embedded), so that the demo works on a machine with nothing but Rust.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// A running throwaway cluster; dropping it stops the server and deletes its files.
pub struct DemoCluster {
    root: PathBuf,
    bin_dir: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl DemoCluster {
    pub fn start() -> Result<DemoCluster> {
        let bin_dir = match find_bin_dir() {
            Some(dir) => dir,
            None => {
                install_postgres()?;
                find_bin_dir().context(
                    "PostgreSQL's server programs (initdb, pg_ctl) are still missing after installing them",
                )?
            }
        };
        let as_postgres = is_root();
        let root = std::env::temp_dir().join(format!("pgshroud-demo-{}", std::process::id()));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let mut cluster = DemoCluster {
            root,
            bin_dir,
            as_postgres,
            port: 0,
        };
        if as_postgres {
            run(
                Command::new("chown").arg("postgres:").arg(&cluster.root),
                "chown",
            )
            .context("running as root needs a `postgres` system user")?;
        }
        let data = cluster.root.join("data");
        let mut initdb = cluster.pg_command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb")?;
        cluster.port = free_port()?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.port,
            cluster.root.display()
        );
        let mut start = cluster.pg_command("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.root.join("postgres.log"))
            .args(["-w", "-o", &options, "start"]);
        run(&mut start, "pg_ctl start")?;
        Ok(cluster)
    }

    /// The directory holding the cluster's data, socket and log (removed on drop).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cluster's URL for pgshroud's `upstream` setting.
    pub fn upstream_url(&self) -> String {
        format!("postgres://127.0.0.1:{}?sslmode=disable", self.port)
    }

    /// Runs SQL as the superuser over the cluster's own socket and returns psql's output
    /// (unaligned, tuples only, fields separated by `|`).
    pub fn psql_direct(&self, sql: &str) -> Result<String> {
        let mut psql = Command::new(self.psql());
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.root)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ]);
        let out = run(&mut psql, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// psql from the server's directory, else from PATH.
    pub fn psql(&self) -> PathBuf {
        let beside = self.bin_dir.join("psql");
        if beside.is_file() {
            beside
        } else {
            PathBuf::from("psql")
        }
    }

    fn pg_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for DemoCluster {
    fn drop(&mut self) {
        let mut stop = self.pg_command("pg_ctl");
        stop.arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn run(command: &mut Command, what: &str) -> Result<Output> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what} could not be started"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
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

/// `$PGSHROUD_PG_BIN_DIR` when set (and only it), else `initdb` on PATH, `pg_config --bindir`,
/// or Debian's `/usr/lib/postgresql/<newest>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PGSHROUD_PG_BIN_DIR") {
        return Some(PathBuf::from(dir)).filter(|d| has(d));
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|d| d.join("initdb").is_file()));
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    on_path
        .map(|d| {
            std::fs::canonicalize(d.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_owned))
                .unwrap_or(d)
        })
        .into_iter()
        .chain(from_pg_config)
        .chain(debian.into_iter().map(|(_, d)| d))
        .find(|d| has(d))
}
