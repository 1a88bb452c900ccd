//! What makes the test cluster a fixture: its roles, pg_hba.conf, TLS files and settings, put
//! in place around the shared launcher's initdb and start.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use pgshroud::cli::throwaway_pg::{conf_string, Instance, HOST};
use tokio_postgres::NoTls;

use super::users;
use crate::certs::TestCa;

/// initdb, certificates, configuration, server start, roles. Returns the port, the CA and
/// the CA certificate's path.
pub(super) fn bring_up(instance: &Instance) -> anyhow::Result<(u16, TestCa, PathBuf)> {
    instance.init_db()?;
    let tls_dir = instance.root().join("tls");
    fs::create_dir(&tls_dir).with_context(|| format!("creating {}", tls_dir.display()))?;
    instance.give(&tls_dir)?;
    let ca = TestCa::new();
    let ca_cert_path = write_tls_files(instance, &tls_dir, &ca)?;
    instance.write_hba(&hba_conf())?;
    instance.append_conf(&test_settings(&tls_dir))?;
    let port = instance.start()?;
    create_roles(instance.socket_dir(), port)?;
    Ok((port, ca, ca_cert_path))
}

/// CA certificate, server certificate and key, all owned by the server's user.
fn write_tls_files(instance: &Instance, tls_dir: &Path, ca: &TestCa) -> anyhow::Result<PathBuf> {
    let ca_cert_path = ca.write_ca(tls_dir);
    let (cert, key) = ca.issue(&["localhost", HOST]).write_to(tls_dir, "server");
    for file in [&ca_cert_path, &cert, &key] {
        instance.give(file)?;
    }
    Ok(ca_cert_path)
}

/// The test settings on top of the launcher's (loopback only, own socket directory, no fsync).
fn test_settings(tls_dir: &Path) -> String {
    let tls = |file: &str| conf_string(&tls_dir.join(file));
    format!(
        "\n# pgshroud integration tests\n\
         max_connections = 200\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         password_encryption = 'scram-sha-256'\n\
         ssl = on\n\
         ssl_cert_file = {cert}\n\
         ssl_key_file = {key}\n",
        cert = tls("server.crt"),
        key = tls("server.key"),
    )
}

/// pg_hba.conf: the unix socket trusts everyone (superuser set-up and admin clients); over
/// TCP members of `tls_only` need TLS, each fixture role gets its own method (the replicator
/// also for replication connections) and everyone else SCRAM.
fn hba_conf() -> String {
    format!(
        "# TYPE  DATABASE  USER  ADDRESS  METHOD\n\
         local   all  all                   trust\n\
         hostnossl all +{tls_only} {HOST}/32  reject\n\
         host    all  {trust}      {HOST}/32  trust\n\
         host    all  {cleartext}  {HOST}/32  password\n\
         host    all  {md5}        {HOST}/32  md5\n\
         host    replication {replicator} {HOST}/32  trust\n\
         host    all  {replicator} {HOST}/32  trust\n\
         host    all  all          {HOST}/32  scram-sha-256\n",
        trust = users::TRUST,
        cleartext = users::CLEARTEXT,
        md5 = users::MD5,
        tls_only = users::TLS_ONLY,
        replicator = users::REPLICATOR,
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
         CREATE ROLE {REPLICATOR} LOGIN REPLICATION;
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

pub(super) fn admin_config(socket_dir: &Path, port: u16, db: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(users::SUPERUSER)
        .dbname(db)
        .application_name("pgshroud-test-admin");
    config
}
