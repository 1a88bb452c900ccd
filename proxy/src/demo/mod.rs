//! `pgshroud demo`: pgshroud in one minute. Starts a throwaway PostgreSQL, pgshroud in front
//! of it with the README's rules, fills a `customers` table through the proxy, prints side by
//! side what `app`, `support` and `dba` see and what PostgreSQL stores, prints connection
//! strings, and keeps running until Ctrl-C (then removes everything).

mod cluster;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::config::{ConfigLayer, Settings};
use crate::crypto::MasterKey;
use crate::server::RunningProxy;
use cluster::DemoCluster;

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

/// Runs the demo until Ctrl-C; `listen` is the proxy's address.
pub async fn run(listen: &str) -> Result<()> {
    println!("Starting a throwaway PostgreSQL ...");
    let cluster = tokio::task::spawn_blocking(DemoCluster::start).await??;
    cluster.psql_direct(SETUP)?;
    let files = DemoFiles::write()?;
    println!("Installing the guard on the protected columns (pgshroud setup) ...");
    let owner = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let guarded = crate::setup::setup(&owner, &files.rules)
        .await
        .map_err(|e| anyhow::anyhow!("pgshroud setup: {e}"))?;
    println!("{}\n", guarded.text);
    if !guarded.ok {
        bail!("pgshroud setup could not guard every protected column");
    }
    let settings = Settings::resolve(ConfigLayer {
        listen: Some(listen.to_owned()),
        upstream: Some(cluster.upstream_url()),
        rules: Some(files.rules.clone()),
        master_key_file: Some(files.key.clone()),
        admin_listen: Some("off".into()),
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let proxy = RunningProxy::start(settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let port = proxy.addr.port();
    println!("Starting pgshroud on {} with these rules:\n", proxy.addr);
    println!("{RULES}");

    let demo = Demo {
        cluster: &cluster,
        port,
    };
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
    println!("\nauditor: {refused}\n");

    println!("Connect through pgshroud as any of them (Ctrl-C stops the demo and removes it all):");
    for user in ["app", "support_ann", "dba", "auditor"] {
        println!("  psql 'postgres://{user}@127.0.0.1:{port}/postgres?sslmode=disable'");
    }
    println!(
        "and straight to PostgreSQL, to see what it stores:\n  psql 'postgres://postgres@127.0.0.1:{}/postgres'",
        cluster.port
    );
    println!("Ready.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("\nStopping ...");
    proxy.shutdown().await;
    drop(cluster);
    drop(files);
    Ok(())
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
        println!("{}", header.trim_end());
        for (i, name) in names.iter().enumerate() {
            let mut line = format!("{name:<8}");
            for (_, rows) in columns {
                let value = rows.get(i).and_then(|r| r.get(field)).map(String::as_str);
                line.push_str(&cell(value.unwrap_or_default()));
            }
            println!("{}", line.trim_end());
        }
        println!();
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
