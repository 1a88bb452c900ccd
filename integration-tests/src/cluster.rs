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

use std::env;
use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use anyhow::{anyhow, bail, ensure, Context};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::certs::TestCa;

/// The fixture's login roles. Each one is matched by its own pg_hba.conf line for TCP
/// connections from 127.0.0.1, so its name says how PostgreSQL authenticates it.
pub mod users {
    /// Bootstrap superuser. Unix socket: trust; TCP: SCRAM-SHA-256.
    pub const SUPERUSER: &str = "postgres";
    pub const SUPERUSER_PASSWORD: &str = "postgres-secret";
    /// TCP: `scram-sha-256`; password stored as a SCRAM verifier. Owns every fresh database.
    pub const SCRAM: &str = "scram_user";
    pub const SCRAM_PASSWORD: &str = "scram-secret";
    /// TCP: `md5`; password stored as an md5 hash (so the md5 exchange really happens).
    pub const MD5: &str = "md5_user";
    pub const MD5_PASSWORD: &str = "md5-secret";
    /// TCP: `password` (cleartext on the wire); password stored as a SCRAM verifier.
    pub const CLEARTEXT: &str = "cleartext_user";
    pub const CLEARTEXT_PASSWORD: &str = "cleartext-secret";
    /// TCP: `trust`; has no password.
    pub const TRUST: &str = "trust_user";

    /// The non-superuser fixture roles.
    pub const ALL: [&str; 4] = [SCRAM, MD5, CLEARTEXT, TRUST];
    /// A group (NOLOGIN): its members may log in over TCP only with TLS (`hostnossl` rejects
    /// them), as on a production server that requires TLS. Tests create such members.
    pub const TLS_ONLY: &str = "tls_only";
}

/// Environment variable naming the directory with `initdb`, `pg_ctl` and `postgres`, when the
/// automatic search (PATH, `pg_config --bindir`, `/usr/lib/postgresql/*/bin`) picks the wrong one.
pub const BIN_DIR_ENV: &str = "PGSHROUD_PG_BIN_DIR";

/// The only address the cluster listens on.
pub const HOST: &str = "127.0.0.1";

/// How long `pg_ctl` may wait for the server to start or stop, in seconds.
const PG_CTL_WAIT_SECS: &str = "60";

/// Start-up attempts: another process may grab the free port between our probe and the bind.
const START_ATTEMPTS: usize = 3;

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
        &self.instance.socket_dir
    }

    /// Directory of the server programs in use; psql and pgbench of the same version are
    /// usually there too (see [`PgCluster::program`]).
    pub fn bin_dir(&self) -> &Path {
        &self.instance.bin_dir
    }

    /// `bin_dir()/name` if that exists, else plain `name` to be looked up in PATH.
    pub fn program(&self, name: &str) -> PathBuf {
        let bundled = self.instance.bin_dir.join(name);
        if bundled.is_file() {
            bundled
        } else {
            PathBuf::from(name)
        }
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.instance.data_dir
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.instance.log_path
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.instance.log_path, lines)
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

    /// Upstream URL without TLS: `postgres://127.0.0.1:PORT?sslmode=disable`.
    pub fn url(&self) -> String {
        format!("postgres://{HOST}:{}?sslmode=disable", self.port)
    }

    /// Upstream URL with TLS in `sslmode` and the test CA as `sslrootcert`. The host is
    /// `localhost`, so `verify-full` checks a DNS name (the certificate also names 127.0.0.1).
    pub fn tls_url(&self, sslmode: &str) -> String {
        format!(
            "postgres://localhost:{}?sslmode={sslmode}&sslrootcert={}",
            self.port,
            self.ca_cert_path.display()
        )
    }

    /// A key=value connection string straight to the cluster over TCP, without TLS. Values are
    /// quoted, so an empty password (trust_user) is fine. Understood by libpq and tokio-postgres.
    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname={} sslmode=disable",
            self.port,
            quote(user),
            quote(password),
            quote(db)
        )
    }

    /// A connection string for TLS straight to the cluster with tokio-postgres: host
    /// `localhost`, `sslmode=require`. Together with [`PgCluster::tls_connector`] (rustls
    /// checks the chain and the host name) this is what libpq calls `verify-full`.
    pub fn tls_conn_string(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=localhost port={} user={} password={} dbname={} sslmode=require",
            self.port,
            quote(user),
            quote(password),
            quote(db)
        )
    }

    /// A tokio-postgres TLS connector that trusts only the cluster's CA.
    pub fn tls_connector(&self) -> MakeRustlsConnect {
        MakeRustlsConnect::new(self.ca.client_config())
    }

    /// Connects straight to the cluster over TCP without TLS. The connection is driven by a
    /// task on the current tokio runtime.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(user, password, db), NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Connects straight to the cluster over TLS, verifying its certificate against the CA and
    /// the name `localhost`.
    pub async fn connect_tls(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let conn = self.tls_conn_string(user, password, db);
        let (client, connection) = tokio_postgres::connect(&conn, self.tls_connector()).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A superuser client on the `postgres` database, over the unix socket.
    pub async fn admin_client(&self) -> Client {
        self.admin_client_for("postgres").await
    }

    /// A superuser client on database `db`, over the unix socket.
    pub async fn admin_client_for(&self, db: &str) -> Client {
        let (client, connection) = admin_config(&self.instance.socket_dir, self.port, db)
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
        register_exit_hook();
        let instance = Instance::create()?;
        let reaper = match Reaper::spawn(&instance) {
            Ok(reaper) => reaper,
            Err(e) => {
                instance.stop_and_remove();
                return Err(anyhow::Error::new(e).context("spawning the clean-up process"));
            }
        };
        let brought_up = {
            let guard = CleanupOnDrop {
                instance: &instance,
                armed: true,
            };
            let result = instance.bring_up();
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
            .field("root", &self.instance.root)
            .field("bin_dir", &self.instance.bin_dir)
            .finish_non_exhaustive()
    }
}

/// Where a cluster lives and as whom its programs run: everything needed to build it and,
/// from any exit path, to stop and delete it.
struct Instance {
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    tls_dir: PathBuf,
    log_path: PathBuf,
    bin_dir: PathBuf,
    run_as: RunAs,
}

impl Instance {
    /// Finds the server programs and makes the (still empty) directory layout.
    fn create() -> anyhow::Result<Instance> {
        let bin_dir = find_bin_dir()?;
        let run_as = RunAs::detect()?;
        let root = tempfile::Builder::new()
            .prefix("pgshroud-pg-")
            .tempdir()
            .context("creating the cluster's temporary directory")?
            .keep();
        let instance = Instance {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            tls_dir: root.join("tls"),
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
        for dir in [&self.socket_dir, &self.tls_dir] {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for dir in [&self.root, &self.socket_dir, &self.tls_dir] {
            self.run_as.give(dir)?;
        }
        Ok(())
    }

    /// initdb, certificates, configuration, server start, roles. Returns the port, the CA and
    /// the CA certificate's path.
    fn bring_up(&self) -> anyhow::Result<(u16, TestCa, PathBuf)> {
        self.init_db()?;
        let ca = TestCa::new();
        let ca_cert_path = self.write_tls_files(&ca)?;
        self.write_config()?;
        let port = self.start_server()?;
        create_roles(&self.socket_dir, port)?;
        Ok((port, ca, ca_cert_path))
    }

    fn init_db(&self) -> anyhow::Result<()> {
        let mut initdb = self.pg_command("initdb");
        initdb.arg("-D").arg(&self.data_dir).args([
            "-U",
            users::SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb").map(drop)
    }

    /// CA certificate, server certificate and key, all owned by the server's user.
    fn write_tls_files(&self, ca: &TestCa) -> anyhow::Result<PathBuf> {
        let ca_cert_path = ca.write_ca(&self.tls_dir);
        let (cert, key) = ca
            .issue(&["localhost", HOST])
            .write_to(&self.tls_dir, "server");
        for file in [&ca_cert_path, &cert, &key] {
            self.run_as.give(file)?;
        }
        Ok(ca_cert_path)
    }

    /// Replaces pg_hba.conf and appends the test settings to postgresql.conf. Both files
    /// already exist (initdb made them), so they keep their owner.
    fn write_config(&self) -> anyhow::Result<()> {
        let hba = self.data_dir.join("pg_hba.conf");
        fs::write(&hba, hba_conf()).with_context(|| format!("writing {}", hba.display()))?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
        text.push_str(&self.test_settings());
        fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))
    }

    fn test_settings(&self) -> String {
        let tls = |file: &str| conf_string(&self.tls_dir.join(file));
        format!(
            "\n# pgshroud integration tests\n\
             listen_addresses = '{HOST}'\n\
             unix_socket_directories = {socket_dir}\n\
             max_connections = 200\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             password_encryption = 'scram-sha-256'\n\
             ssl = on\n\
             ssl_cert_file = {cert}\n\
             ssl_key_file = {key}\n",
            socket_dir = conf_string(&self.socket_dir),
            cert = tls("server.crt"),
            key = tls("server.key"),
        )
    }

    /// Starts the server on a free port, retrying with another port when the chosen one was
    /// taken in the meantime.
    fn start_server(&self) -> anyhow::Result<u16> {
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
    /// Never panics: it also runs from the atexit hook.
    fn stop_and_remove(&self) {
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
    fn pg_command(&self, program: &str) -> Command {
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

/// Stops and deletes a half-started cluster when start-up fails, by error or by panic (e.g. in
/// certificate generation), unless disarmed once start-up succeeded.
struct CleanupOnDrop<'a> {
    instance: &'a Instance,
    armed: bool,
}

impl CleanupOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CleanupOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.instance.stop_and_remove();
        }
    }
}

/// A `sh` child that waits for its stdin to close, which happens when the test process ends
/// in any way, including SIGKILL or Ctrl-C where the atexit hook never runs; it then kills the
/// postmaster and deletes the directory. After a normal exit it finds nothing left to do.
/// It runs in its own process group and ignores terminal signals, so Ctrl-C does not take it
/// down with the tests (pg_ctl already detaches the postmaster the same way).
struct Reaper {
    child: Child,
    stdin: ChildStdin,
}

const REAPER_SCRIPT: &str = r#"
trap '' INT HUP TERM QUIT
cat >/dev/null 2>&1
pidfile="$1/postmaster.pid"
if [ -f "$pidfile" ]; then
    kill -QUIT "$(head -n 1 "$pidfile")" 2>/dev/null
    i=0
    while [ -f "$pidfile" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
fi
rm -rf "$2"
"#;

impl Reaper {
    fn spawn(instance: &Instance) -> std::io::Result<Reaper> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(REAPER_SCRIPT)
            .arg("pgshroud-pg-reaper")
            .arg(&instance.data_dir)
            .arg(&instance.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        match child.stdin.take() {
            Some(stdin) => Ok(Reaper { child, stdin }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::io::Error::other("the reaper has no stdin pipe"))
            }
        }
    }

    /// Keeps only the pipe: the reaper outlives this process and is reaped by init.
    fn into_pipe(self) -> ChildStdin {
        self.stdin
    }

    /// Lets the reaper run now (after the caller cleaned up) and waits for it.
    fn dismiss(self) {
        let Reaper { mut child, stdin } = self;
        drop(stdin);
        let _ = child.wait();
    }
}

/// Registers, once per process, the hook that stops and deletes the cluster at exit. The test
/// harness ends with `std::process::exit` (or by returning from main) after all tests, failed
/// or not, and both run atexit handlers.
fn register_exit_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: `atexit` only stores the function pointer. `stop_at_exit` takes no
        // arguments, touches only a static, and cannot unwind into C (it catches panics).
        let rc = unsafe { libc::atexit(stop_at_exit) };
        if rc != 0 {
            eprintln!("warning: atexit failed; the test cluster is left to its reaper process");
        }
    });
}

extern "C" fn stop_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(cluster)) = CLUSTER.get() {
            cluster.instance.stop_and_remove();
        }
    });
}

/// Who runs the server programs: `postgres` when we are root (PostgreSQL refuses root),
/// otherwise ourselves.
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
                    command.args(["-u", users::SUPERUSER, "--"]).arg(program);
                    command
                }
                None => {
                    // su passes the arguments after `-c script` to the shell as $0, $1, ...
                    let mut command = Command::new("su");
                    command
                        .args(["-s", "/bin/sh", users::SUPERUSER, "-c", r#"exec "$0" "$@""#])
                        .arg(program);
                    command
                }
            },
        }
    }

    /// Hands `path` to the server's user.
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
    let output = run(Command::new("id").args([flag, users::SUPERUSER]), "id")
        .context("tests run as root, so they need a `postgres` system user to run PostgreSQL")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("`id {flag} postgres` printed {text:?}"))
}

/// Finds a directory with `initdb`, `pg_ctl` and `postgres`: $PGSHROUD_PG_BIN_DIR, then PATH
/// (following symlinks to the real directory, where psql and pgbench usually live too), then
/// `pg_config --bindir`, then `/usr/lib/postgresql/*/bin`, newest version first.
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

/// pg_hba.conf: the unix socket trusts everyone (superuser set-up and admin clients); over
/// TCP members of `tls_only` need TLS, each fixture role gets its own method and everyone
/// else SCRAM.
fn hba_conf() -> String {
    format!(
        "# TYPE  DATABASE  USER  ADDRESS  METHOD\n\
         local   all  all                   trust\n\
         hostnossl all +{tls_only} {HOST}/32  reject\n\
         host    all  {trust}      {HOST}/32  trust\n\
         host    all  {cleartext}  {HOST}/32  password\n\
         host    all  {md5}        {HOST}/32  md5\n\
         host    all  all          {HOST}/32  scram-sha-256\n",
        trust = users::TRUST,
        cleartext = users::CLEARTEXT,
        md5 = users::MD5,
        tls_only = users::TLS_ONLY,
    )
}

/// Creates the fixture roles and prepares template1 so every fresh database shares the
/// fixture roles' tables (see [`PgCluster::fresh_database`]).
fn create_roles(socket_dir: &Path, port: u16) -> anyhow::Result<()> {
    use users::*;
    let roles = format!(
        "ALTER ROLE {SUPERUSER} PASSWORD '{SUPERUSER_PASSWORD}';
         CREATE ROLE {SCRAM} LOGIN PASSWORD '{SCRAM_PASSWORD}';
         CREATE ROLE {CLEARTEXT} LOGIN PASSWORD '{CLEARTEXT_PASSWORD}';
         CREATE ROLE {TRUST} LOGIN;
         CREATE ROLE {TLS_ONLY} NOLOGIN;
         SET password_encryption = 'md5';
         CREATE ROLE {MD5} LOGIN PASSWORD '{MD5_PASSWORD}';"
    );
    let everyone = ALL.join(", ");
    let template = format!(
        "GRANT ALL ON SCHEMA public TO PUBLIC;
         ALTER DEFAULT PRIVILEGES FOR ROLE {everyone} IN SCHEMA public GRANT ALL ON TABLES TO PUBLIC;
         ALTER DEFAULT PRIVILEGES FOR ROLE {everyone} IN SCHEMA public GRANT ALL ON SEQUENCES TO PUBLIC;"
    );
    run_sql_blocking(
        socket_dir,
        port,
        &[("postgres", roles), ("template1", template)],
    )
}

/// Runs SQL as the superuser on a thread with its own tokio runtime: start-up happens inside
/// `cluster()`, which tests call from within their own runtime, where blocking on another
/// future is not allowed.
fn run_sql_blocking(
    socket_dir: &Path,
    port: u16,
    batches: &[(&str, String)],
) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a set-up runtime")?;
                runtime.block_on(async {
                    for (db, sql) in batches {
                        let (client, connection) = admin_config(socket_dir, port, db)
                            .connect(NoTls)
                            .await
                            .with_context(|| format!("superuser connection to {db}"))?;
                        let connection = tokio::spawn(connection);
                        client
                            .batch_execute(sql)
                            .await
                            .with_context(|| format!("set-up SQL in {db}"))?;
                        // Close properly: a session left on template1 would make
                        // CREATE DATABASE wait for it.
                        drop(client);
                        let _ = connection.await;
                    }
                    Ok(())
                })
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the set-up thread panicked")))
    })
}

fn admin_config(socket_dir: &Path, port: u16, db: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(users::SUPERUSER)
        .dbname(db)
        .application_name("pgshroud-test-admin");
    config
}

/// Runs a command to completion; a failure carries its stdout and stderr.
fn run(command: &mut Command, what: &str) -> anyhow::Result<Output> {
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
fn conf_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// A connection-string value in single quotes, with `\` and `'` escaped (libpq rules).
/// Quotes a libpq connection-string value (empty values and spaces stay intact).
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
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
    fn quoted_values_survive_empty_strings_quotes_and_backslashes() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
    }

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

    #[test]
    fn tls_and_plain_connection_strings_parse_in_tokio_postgres() {
        let plain = format!(
            "host={HOST} port=1 user={} password={} dbname=db sslmode=disable",
            quote("u"),
            quote("")
        );
        let config: tokio_postgres::Config = plain.parse().expect("parses");
        assert_eq!(config.get_password(), Some(&b""[..]));
        assert_eq!(config.get_dbname(), Some("db"));
    }
}
