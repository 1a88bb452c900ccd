//! Runs pgshroud inside the test process, in front of the test cluster, and connects real
//! clients to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use pgshroud::config::{ConfigLayer, Settings};
use pgshroud::server::RunningProxy;
use tokio_postgres::{Client, NoTls};

/// A proxy listening on a free loopback port.
pub struct TestProxy {
    pub addr: SocketAddr,
    running: Option<RunningProxy>,
}

impl TestProxy {
    /// Starts a proxy in front of `upstream` with extra settings from `layer` (its `listen`,
    /// `upstream` and `admin_listen` default to a free port, `upstream` and off).
    pub async fn start(upstream: String, layer: ConfigLayer) -> TestProxy {
        let defaults = ConfigLayer {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(upstream),
            admin_listen: Some("off".into()),
            ..ConfigLayer::default()
        };
        let settings = Settings::resolve(layer.over(defaults)).expect("valid test settings");
        let running = RunningProxy::start(settings).await.expect("proxy starts");
        TestProxy {
            addr: running.addr,
            running: Some(running),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where the admin listener is bound, when `admin_listen` was set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.admin_addr)
    }

    /// The proxy's metrics, in the Prometheus text format `/metrics` serves.
    pub fn metrics_text(&self) -> String {
        self.running
            .as_ref()
            .map(|r| r.context.metrics.encode())
            .unwrap_or_default()
    }

    /// A libpq-style connection string to the proxy.
    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> String {
        use crate::cluster::quote;
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={} sslmode=disable",
            self.port(),
            quote(user),
            quote(password),
            quote(db)
        )
    }

    /// Connects with tokio-postgres (no TLS) and drives the connection in the background.
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

    /// Drains sessions and stops.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// Reloads the rules and keys now, as SIGHUP does (without waiting for the file watcher).
    pub fn reload(&self) -> Result<(), String> {
        let running = self.running.as_ref().ok_or("the proxy has stopped")?;
        let live = running
            .context
            .protection
            .clone()
            .ok_or("the proxy has no rules")?;
        live.reload_and_report(&running.context.metrics, "test")
    }

    /// Starts draining without waiting (to test graceful shutdown).
    pub fn begin_shutdown(&self) {
        if let Some(running) = &self.running {
            running
                .trigger
                .set(pgshroud::context::shutdown::Stage::Draining);
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running
                .trigger
                .set(pgshroud::context::shutdown::Stage::Forced);
            running.task.abort();
        }
    }
}

/// The `pgshroud` binary of this workspace, built if missing (for command-line tests).
pub fn pgshroud_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/pgshroud
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let bin = profile_dir.join("pgshroud");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "pgshroud", "--bin", "pgshroud"])
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building the pgshroud binary failed");
    }
    bin
}
