//! Fixtures for pgshroud's integration tests: a throwaway PostgreSQL cluster per test binary,
//! test certificate authorities, and (once enabled) the proxy under test in front of them.

pub mod certs;
pub mod cluster;
pub mod drivers;
pub mod faults;
pub mod keys;
pub mod kms;
pub mod protected;
pub mod proxy;
pub mod raw;
pub mod roles;
pub mod rsyslog;

pub use cluster::{cluster, users, PgCluster};

/// A proxy with default settings in front of the test cluster (no TLS on either side).
pub async fn proxy() -> proxy::TestProxy {
    proxy_with(pgshroud::config::ConfigLayer::default()).await
}

/// A proxy with extra settings from `layer` in front of the test cluster.
pub async fn proxy_with(layer: pgshroud::config::ConfigLayer) -> proxy::TestProxy {
    proxy::TestProxy::start(cluster().url(), layer).await
}

/// Runs a PostgreSQL client program of the test cluster's installation (psql, pg_dump,
/// pg_restore) against `url`; its standard output, or its standard error on failure.
pub async fn client_program(program: &str, url: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(cluster().program(program))
        .arg("--dbname")
        .arg(url)
        .args(args)
        .output()
        .await
        .expect("program runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
