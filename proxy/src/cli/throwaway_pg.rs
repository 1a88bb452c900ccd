//! A throwaway PostgreSQL: `initdb` in a directory of its own, a server on a free loopback port
//! with its own socket directory, stopped and deleted on request. The demo and the integration
//! tests both start theirs with it (each adds its own configuration and clean-up guarantees).
//! PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user.
//!
//! ```text
//! <root>/data/          the cluster (initdb)
//! <root>/sock/          unix socket directory
//! <root>/postgres.log   the server log
//! ```

use std::env;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{anyhow, bail, ensure, Context};

/// Environment variable naming the directory with `initdb`, `pg_ctl` and `postgres`, when the
/// automatic search (PATH, `pg_config --bindir`, `/usr/lib/postgresql/*/bin`) picks the wrong one.
pub const BIN_DIR_ENV: &str = "PGSHROUD_PG_BIN_DIR";

/// The only address the server listens on.
pub const HOST: &str = "127.0.0.1";

/// The bootstrap superuser `initdb` creates (and the system user the server runs as under root).
pub const SUPERUSER: &str = "postgres";

/// How long `pg_ctl` may wait for the server to start or stop, in seconds.
const PG_CTL_WAIT_SECS: &str = "60";

/// Start-up attempts: another process may grab the free port between our probe and the bind.
const START_ATTEMPTS: usize = 3;

/// Where a throwaway cluster lives and as whom its programs run: everything needed to build
/// it and, from any exit path, to stop and delete it.
#[derive(Debug)]
pub struct Instance {
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    bin_dir: PathBuf,
    run_as: RunAs,
}

impl Instance {
    /// Makes the (still empty) directory layout under `root` (created unless it exists, and
    /// deleted with the cluster), for the server programs in `bin_dir` (see [`find_bin_dir`]).
    pub fn create(root: PathBuf, bin_dir: PathBuf) -> anyhow::Result<Instance> {
        let run_as = RunAs::detect()?;
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let instance = Instance {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_path: root.join("postgres.log"),
            root,
            bin_dir,
            run_as,
        };
        if let Err(e) = instance.make_dirs() {
            instance.stop_and_remove();
            return Err(e);
        }
        Ok(instance)
    }

    fn make_dirs(&self) -> anyhow::Result<()> {
        fs::create_dir(&self.socket_dir)
            .with_context(|| format!("creating {}", self.socket_dir.display()))?;
        self.give(&self.root)?;
        self.give(&self.socket_dir)
    }

    /// The directory holding everything of this cluster.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the unix socket (`host=` for libpq and tokio-postgres).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Directory of the server programs in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// `bin_dir()/name` if that exists (psql and pgbench usually live beside the server),
    /// else plain `name` to be looked up in PATH.
    pub fn program(&self, name: &str) -> PathBuf {
        let bundled = self.bin_dir.join(name);
        if bundled.is_file() {
            bundled
        } else {
            PathBuf::from(name)
        }
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    /// Hands `path` to the server's user (a no-op unless running as root).
    pub fn give(&self, path: &Path) -> anyhow::Result<()> {
        self.run_as.give(path)
    }

    /// `initdb` (superuser `postgres`, trust, UTF-8, no locale), then the settings every
    /// throwaway cluster shares: loopback only, its own socket directory, no fsync.
    pub fn init_db(&self) -> anyhow::Result<()> {
        let mut initdb = self.pg_command("initdb");
        initdb.arg("-D").arg(&self.data_dir).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb")?;
        self.append_conf(&format!(
            "\n# pgshroud throwaway cluster\n\
             listen_addresses = '{HOST}'\n\
             unix_socket_directories = {}\n\
             fsync = off\n",
            conf_string(&self.socket_dir)
        ))
    }

    /// Appends settings to postgresql.conf (which keeps its owner).
    pub fn append_conf(&self, settings: &str) -> anyhow::Result<()> {
        let conf = self.data_dir.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
        text.push_str(settings);
        fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))
    }

    /// Replaces pg_hba.conf (which keeps its owner).
    pub fn write_hba(&self, hba: &str) -> anyhow::Result<()> {
        let path = self.data_dir.join("pg_hba.conf");
        fs::write(&path, hba).with_context(|| format!("writing {}", path.display()))
    }

    /// Starts the server on a free port and returns it, retrying with another port when the
    /// chosen one was taken in the meantime.
    pub fn start(&self) -> anyhow::Result<u16> {
        let mut attempts_left = START_ATTEMPTS;
        loop {
            let port = free_port()?;
            match self.pg_ctl_start(port)? {
                StartOutcome::Started => return Ok(port),
                StartOutcome::PortTaken(_) if attempts_left > 1 => attempts_left -= 1,
                StartOutcome::PortTaken(e) | StartOutcome::Failed(e) => return Err(e),
            }
        }
    }

    fn pg_ctl_start(&self, port: u16) -> anyhow::Result<StartOutcome> {
        let log_before = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let output = self
            .pg_command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t", PG_CTL_WAIT_SECS, "-s", "-o"])
            .arg(format!("-p {port}"))
            .output()
            .context("running pg_ctl start")?;
        if output.status.success() {
            return Ok(StartOutcome::Started);
        }
        let error = anyhow!(
            "pg_ctl start failed ({}): {}\n--- tail of {} ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            self.log_path.display(),
            tail(&self.log_path, 40)
        );
        let log = fs::read(&self.log_path).unwrap_or_default();
        let this_attempt =
            String::from_utf8_lossy(log.get(log_before as usize..).unwrap_or_default());
        if this_attempt.contains("could not bind") || this_attempt.contains("already in use") {
            Ok(StartOutcome::PortTaken(error))
        } else {
            Ok(StartOutcome::Failed(error))
        }
    }

    /// Immediate shutdown (no checkpoint: the data is thrown away anyway), then deletion.
    /// Never panics: it also runs from exit hooks and signal handlers.
    pub fn stop_and_remove(&self) {
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self
                .pg_command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECS, "-s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.root);
    }

    /// A server program, run as the cluster's user, from a directory that user can enter.
    pub fn pg_command(&self, program: &str) -> Command {
        let mut command = self.run_as.command(&self.bin_dir.join(program));
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }
}

/// How one `pg_ctl start` went.
enum StartOutcome {
    Started,
    /// Another process bound the port between our probe and the server's bind: try another.
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

/// Who runs the server programs: `postgres` when we are root (PostgreSQL refuses root),
/// otherwise ourselves.
#[derive(Debug)]
enum RunAs {
    CurrentUser,
    Postgres { uid: u32, gid: u32 },
}

impl RunAs {
    fn detect() -> anyhow::Result<RunAs> {
        // The owner of /proc/self is our effective uid; no `unsafe` geteuid needed.
        let euid = fs::metadata("/proc/self")
            .context("reading /proc/self")?
            .uid();
        if euid != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let uid = id_number("-u")?;
        let gid = id_number("-g")?;
        Ok(RunAs::Postgres { uid, gid })
    }

    fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::CurrentUser => Command::new(program),
            RunAs::Postgres { .. } => match find_program("runuser", &["/usr/sbin", "/sbin"]) {
                Some(runuser) => {
                    let mut command = Command::new(runuser);
                    command.args(["-u", SUPERUSER, "--"]).arg(program);
                    command
                }
                None => {
                    // su passes the arguments after `-c script` to the shell as $0, $1, ...
                    let mut command = Command::new("su");
                    command
                        .args(["-s", "/bin/sh", SUPERUSER, "-c", r#"exec "$0" "$@""#])
                        .arg(program);
                    command
                }
            },
        }
    }

    fn give(&self, path: &Path) -> anyhow::Result<()> {
        match self {
            RunAs::CurrentUser => Ok(()),
            RunAs::Postgres { uid, gid } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .with_context(|| format!("chown postgres {}", path.display())),
        }
    }
}

/// `id -u postgres` / `id -g postgres` (goes through NSS, unlike reading /etc/passwd).
fn id_number(flag: &str) -> anyhow::Result<u32> {
    let output = run(Command::new("id").args([flag, SUPERUSER]), "id")
        .context("running as root needs a `postgres` system user to run PostgreSQL")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("`id {flag} postgres` printed {text:?}"))
}

/// Finds a directory with `initdb`, `pg_ctl` and `postgres`: $PGSHROUD_PG_BIN_DIR (and only
/// it, when set), then PATH (following symlinks to the real directory, where psql and pgbench
/// usually live too), then `pg_config --bindir`, then `/usr/lib/postgresql/*/bin`, newest
/// version first.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = env::var_os(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        ensure!(
            has_server_programs(&dir),
            "{BIN_DIR_ENV}={} lacks initdb, pg_ctl or postgres",
            dir.display()
        );
        return Ok(dir);
    }
    let mut candidates = Vec::new();
    if let Some(initdb) = find_program("initdb", &[]) {
        if let Some(real_dir) = fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            candidates.push(real_dir);
        }
        candidates.extend(initdb.parent().map(Path::to_path_buf));
    }
    candidates.extend(pg_config_bindir());
    candidates.extend(debian_bin_dirs());
    candidates.into_iter().find(|dir| has_server_programs(dir)).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server programs (initdb, pg_ctl, postgres) in PATH, `pg_config --bindir` \
             or /usr/lib/postgresql/*/bin: run scripts/install-test-deps.sh or set {BIN_DIR_ENV}"
        )
    })
}

fn has_server_programs(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|p| dir.join(p).is_file())
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}

/// `/usr/lib/postgresql/<version>/bin`, newest first (versions compared numerically: 9.6 < 15).
fn debian_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let names = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok());
    newest_versions_first(names)
        .into_iter()
        .map(|version| Path::new("/usr/lib/postgresql").join(version).join("bin"))
        .collect()
}

/// Version-named directory names, newest first; names that are not versions are dropped.
fn newest_versions_first(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut versions: Vec<(Vec<u32>, String)> = names
        .filter_map(|name| {
            let key = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((key, name))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, name)| name).collect()
}

/// `name` in PATH, then in `extra_dirs`.
fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a command to completion; a failure carries its stdout and stderr.
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// A port nothing listens on right now (the OS picks it; it may be taken again before use).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((HOST, 0)).context("probing for a free port")?;
    Ok(listener
        .local_addr()
        .context("probing for a free port")?
        .port())
}

/// A path as a postgresql.conf string literal.
pub fn conf_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// The last `lines` lines of a text file ("" if it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_server_version_comes_first_numerically() {
        let names = ["9.6", "15", "README", "16", "10"].map(String::from);
        assert_eq!(
            newest_versions_first(names.into_iter()),
            ["16", "15", "10", "9.6"]
        );
    }

    #[test]
    fn conf_strings_double_single_quotes() {
        assert_eq!(conf_string(Path::new("/tmp/o'k")), "'/tmp/o''k'");
    }
}
