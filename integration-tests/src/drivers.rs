//! Runs the driver scripts in `integration-tests/drivers/` (psycopg 3, node-postgres) against
//! the proxy and returns the JSON line each prints.

use std::path::PathBuf;
use std::process::Command;

/// Which driver script to run.
#[derive(Debug, Clone, Copy)]
pub enum Driver {
    Psycopg,
    /// asyncpg: binary format throughout, with its own catalog introspection.
    Asyncpg,
    NodePostgres,
    /// pgjdbc from Debian's libpostgresql-jdbc-java.
    Jdbc,
}

/// Where Debian's libpostgresql-jdbc-java puts pgjdbc.
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn drivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers")
}

/// Runs a driver's scenario with libpq-style PG* variables; panics with its stderr on failure.
pub fn run(
    driver: Driver,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    env: &[(&str, &str)],
) -> String {
    let dir = drivers_dir();
    let mut cmd = match driver {
        Driver::Psycopg => {
            let mut c = Command::new("python3");
            c.arg(dir.join("psycopg_check.py"));
            c
        }
        Driver::Asyncpg => {
            let mut c = Command::new("python3");
            c.arg(dir.join("asyncpg_check.py"));
            c
        }
        Driver::Jdbc => {
            assert!(
                std::path::Path::new(PGJDBC_JAR).exists(),
                "pgjdbc missing: run scripts/install-test-deps.sh"
            );
            let classes = tempfile::tempdir().expect("temp dir").keep();
            let compiled = Command::new("javac")
                .arg("-d")
                .arg(&classes)
                .arg(dir.join("JdbcCheck.java"))
                .status()
                .expect("javac runs");
            assert!(compiled.success(), "JdbcCheck.java compiles");
            let mut c = Command::new("java");
            c.arg("-cp")
                .arg(format!("{PGJDBC_JAR}:{}", classes.display()))
                .arg("JdbcCheck");
            c
        }
        Driver::NodePostgres => {
            assert!(
                dir.join("node_modules/pg").exists(),
                "node-postgres missing: run scripts/install-test-deps.sh"
            );
            let mut c = Command::new("node");
            c.arg(dir.join("node_pg_check.js"));
            c
        }
    };
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .env("PGDATABASE", db)
        .env("PGSSLMODE", "disable");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("driver script runs");
    assert!(
        out.status.success(),
        "{driver:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
