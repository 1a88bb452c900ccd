//! `pgshroud demo`: pgshroud in one minute. Starts a throwaway PostgreSQL (installing its
//! server programs first when they are missing), pgshroud in front of it with the README's
//! rules, fills a `customers` table through the proxy, prints side by side what `app`,
//! `support` and `dba` see and what PostgreSQL stores, prints connection strings, and keeps
//! running until SIGINT, SIGTERM or SIGHUP, which (at any point, also during start-up) stop
//! what it started and remove its files.

mod cluster;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use crate::config::{ConfigLayer, Settings};
use crate::crypto::MasterKey;
use crate::server::RunningProxy;
use cluster::DemoCluster;

/// Prints a line; a closed terminal (SIGHUP) must not stop the clean-up, so errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
/// The README's "Who sees what" rules.
pub const RULES: &str = r#"default_role = "dba"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"

[[roles]]
name = "app"
template = "app"
users = ["app"]

[[roles]]
name = "support"
template = "support"
users = ["support_*"]
  [roles.columns]
  "public.customers.email" = "mask:email"
  "public.customers.age" = "null"

[[roles]]
name = "dba"
template = "dba"
users = ["dba"]

[[roles]]
name = "auditor"
template = "auditor"
users = ["auditor"]
"#;

const SETUP: &str = "\
CREATE ROLE app LOGIN; CREATE ROLE support_ann LOGIN; CREATE ROLE dba LOGIN; CREATE ROLE auditor LOGIN;
CREATE TABLE customers (id serial PRIMARY KEY, email bytea UNIQUE, age bytea, name text);
GRANT ALL ON customers, customers_id_seq TO PUBLIC;";

const FILL: &str = "INSERT INTO customers (email, age, name) VALUES \
    ('alice@example.com', 42, 'Alice'), ('bob@example.org', 35, 'Bob'), ('carol@example.net', 29, 'Carol')";

const SELECT: &str = "SELECT name, email, age FROM customers ORDER BY id";

/// Who the demo shows, as (heading, PostgreSQL user).
const VIEWERS: [(&str, &str); 3] = [
    ("app sees", "app"),
    ("support sees", "support_ann"),
    ("dba sees", "dba"),
];

/// Runs the demo until SIGINT, SIGTERM or SIGHUP; `listen` is the proxy's address. Whatever
/// ends it (a signal at any point, or an error), what it started is stopped and removed.
pub async fn run(listen: &str) -> Result<()> {
    // Installed first, so that no signal finds the default action (exit without clean-up).
    let mut signals = StopSignals::install()?;
    let mut running = Running::default();
    let outcome = {
        let start = running.start(listen);
        tokio::pin!(start);
        tokio::select! {
            result = &mut start => match result {
                Ok(()) => {
                    say!("Ready.");
                    Ok(signals.next().await)
                }
                Err(e) => Err(e),
            },
            name = signals.next() => {
                say!("\n{name} during start-up: stopping what has started so far ...");
                Ok(name)
            }
        }
    };
    if let Ok(name) = &outcome {
        say!("\n{name}: stopping pgshroud and the throwaway PostgreSQL, removing their files ...");
    }
    let removed = running.stop().await;
    say!("Stopped; removed {}.", removed.join(", "));
    outcome.map(|_| ())
}

/// SIGINT (Ctrl-C), SIGTERM (kill, timeout, a container stop) and SIGHUP (a closed terminal).
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        let listen = |kind| signal(kind).context("installing signal handlers");
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// Waits for the next stop signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// What the demo has started so far; `stop` undoes it, whatever step start-up reached.
#[derive(Default)]
struct Running {
    /// The cluster while `initdb` and `pg_ctl start` run (a blocking task that a signal must
    /// not orphan: its cluster is stopped once it is there).
    starting: Option<JoinHandle<Result<DemoCluster>>>,
    cluster: Option<DemoCluster>,
    files: Option<DemoFiles>,
    proxy: Option<RunningProxy>,
}

impl Running {
    async fn start(&mut self, listen: &str) -> Result<()> {
        say!("Starting a throwaway PostgreSQL ...");
        let starting = self
            .starting
            .insert(tokio::task::spawn_blocking(DemoCluster::start));
        let cluster = starting.await.context("starting PostgreSQL")?;
        self.starting = None;
        let cluster = self.cluster.insert(cluster?);
        cluster.psql_direct(SETUP)?;
        let files = self.files.insert(DemoFiles::write()?);
        say!("Installing the guard on the protected columns (pgshroud setup) ...");
        let owner = format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            cluster.port
        );
        let guarded = crate::cli::setup::setup(&owner, &files.rules)
            .await
            .map_err(|e| anyhow::anyhow!("pgshroud setup: {e}"))?;
        say!("{}\n", guarded.text);
        if !guarded.ok {
            bail!("pgshroud setup could not guard every protected column");
        }
        let settings = Settings::resolve(ConfigLayer {
            listen: Some(listen.to_owned()),
            upstream: Some(cluster.upstream_url()),
            rules: Some(files.rules.clone()),
            master_key_file: Some(files.key.clone()),
            admin_listen: Some("off".into()),
            // Sessions a reader left open in psql need not hold the clean-up up for long.
            shutdown_timeout_secs: Some(2),
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let proxy = RunningProxy::start(settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let port = proxy.addr.port();
        say!("Starting pgshroud on {} with these rules:\n", proxy.addr);
        self.proxy = Some(proxy);
        say!("{RULES}");

        let demo = Demo { cluster, port };
        demo.through_proxy("app", FILL).await?;
        let mut columns = Vec::new();
        for (heading, user) in VIEWERS {
            columns.push((heading, rows(&demo.through_proxy(user, SELECT).await?)));
        }
        columns.push(("stored in PostgreSQL", rows(&cluster.psql_direct(SELECT)?)));
        print_side_by_side(&columns);
        let refused = match demo.through_proxy("auditor", SELECT).await {
            Ok(_) => "(unexpectedly allowed)".to_owned(),
            Err(e) => e.to_string(),
        };
        say!("\nauditor: {refused}\n");

        say!("Connect through pgshroud as any of them:");
        for user in ["app", "support_ann", "dba", "auditor"] {
            say!("  psql 'postgres://{user}@127.0.0.1:{port}/postgres?sslmode=disable'");
        }
        say!(
            "and straight to PostgreSQL, to see what it stores:\n  psql 'postgres://postgres@127.0.0.1:{}/postgres'",
            cluster.port
        );
        say!(
            "Ctrl-C (or SIGTERM, or closing the terminal) stops the demo and removes everything it started."
        );
        Ok(())
    }

    /// Stops the proxy and the cluster and removes their files; returns what it removed.
    async fn stop(&mut self) -> Vec<String> {
        let mut removed = Vec::new();
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown().await;
            removed.push("pgshroud".to_owned());
        }
        if let Some(starting) = self.starting.take() {
            say!("(waiting for PostgreSQL to finish starting, to stop it)");
            if let Ok(Ok(cluster)) = starting.await {
                self.cluster = Some(cluster);
            }
        }
        if let Some(cluster) = self.cluster.take() {
            let dir = cluster.root().display().to_string();
            let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
            removed.push(format!("PostgreSQL and {dir}"));
        }
        if let Some(files) = self.files.take() {
            removed.push(files.dir.display().to_string());
        }
        if removed.is_empty() {
            removed.push("nothing was left".to_owned());
        }
        removed
    }
}

struct Demo<'a> {
    cluster: &'a DemoCluster,
    port: u16,
}

impl Demo<'_> {
    /// psql through the proxy as `user`; an error carries psql's message.
    async fn through_proxy(&self, user: &str, sql: &str) -> Result<String> {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres sslmode=disable",
            self.port
        );
        // tokio's Command: the proxy serving this psql runs on the same runtime.
        let out = tokio::process::Command::new(self.cluster.psql())
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                &conn,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("psql could not be started")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err.lines().next().unwrap_or_default().trim();
            bail!("{first}");
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// psql's unaligned rows as fields.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// One block per protected column, one line per customer, one column per viewer.
fn print_side_by_side(columns: &[(&str, Vec<Vec<String>>)]) {
    const WIDTH: usize = 22;
    let cell = |s: &str| {
        let shown: String = if s.chars().count() > WIDTH {
            s.chars().take(WIDTH - 1).chain(['…']).collect()
        } else if s.is_empty() {
            "NULL".to_owned()
        } else {
            s.to_owned()
        };
        format!("{shown:<WIDTH$}  ")
    };
    let names: Vec<&str> = columns
        .first()
        .map(|(_, rows)| rows.iter().map(|r| r[0].as_str()).collect())
        .unwrap_or_default();
    for (field, label) in [(1, "email"), (2, "age")] {
        let mut header = format!("{:<8}", label);
        for (heading, _) in columns {
            header.push_str(&cell(heading));
        }
        say!("{}", header.trim_end());
        for (i, name) in names.iter().enumerate() {
            let mut line = format!("{name:<8}");
            for (_, rows) in columns {
                let value = rows.get(i).and_then(|r| r.get(field)).map(String::as_str);
                line.push_str(&cell(value.unwrap_or_default()));
            }
            say!("{}", line.trim_end());
        }
        say!();
    }
}

/// The rules file and a fresh master key, removed when dropped.
struct DemoFiles {
    dir: PathBuf,
    rules: PathBuf,
    key: PathBuf,
}

impl DemoFiles {
    fn write() -> Result<DemoFiles> {
        let dir = std::env::temp_dir().join(format!("pgshroud-demo-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let rules = dir.join("rules.toml");
        std::fs::write(&rules, RULES)?;
        let key = dir.join("master.key");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)?;
        file.write_all(MasterKey::generate().to_base64().as_bytes())?;
        Ok(DemoFiles { dir, rules, key })
    }
}

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
