//! Proxy-side authentication (`auth_mode = "proxy"`) with TLS on both legs: PostgreSQL with
//! ssl = on and scram-sha-256 (the test roles are members of `tls_only`, which pg_hba rejects
//! without TLS), pgshroud with TLS towards clients and sslmode=verify-full upstream. Clients
//! log in with their strictest settings, channel binding included, and the failures a
//! production proxy meets (wrong password, unknown user, expired or changed password, the
//! auth_query connection down) give PostgreSQL's own answers or a clear error.

use std::path::{Path, PathBuf};

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::certs::TestCa;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::{cluster, users};
use tokio::sync::OnceCell;

/// The least-privileged look-up role and its SECURITY DEFINER function, as the README shows.
const AUTH_USER: &str = "pgshroud_auth";
/// A second look-up role, for the test that takes its login away.
const AUTH_USER_TOGGLED: &str = "pgshroud_auth_toggled";
const AUTH_PASSWORD: &str = "auth-secret";
const AUTH_QUERY: &str = "SELECT usename, passwd FROM pgshroud_auth.lookup($1)";
static AUTH_FUNCTION: OnceCell<()> = OnceCell::const_new();

async fn install_auth_function() {
    AUTH_FUNCTION
        .get_or_init(|| async {
            let admin = cluster().admin_client().await;
            admin
                .batch_execute(&format!(
                    "CREATE ROLE {AUTH_USER} LOGIN PASSWORD '{AUTH_PASSWORD}' IN ROLE {tls};
                     CREATE ROLE {AUTH_USER_TOGGLED} LOGIN PASSWORD '{AUTH_PASSWORD}' IN ROLE {tls};
                     CREATE SCHEMA pgshroud_auth;
                     CREATE FUNCTION pgshroud_auth.lookup(p_usename text)
                       RETURNS TABLE (usename name, passwd text)
                       LANGUAGE sql STABLE SECURITY DEFINER
                       SET search_path = pg_catalog, pg_temp
                     AS $$ SELECT rolname, rolpassword FROM pg_catalog.pg_authid
                           WHERE rolname = p_usename AND rolcanlogin AND NOT rolsuper
                             AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) $$;
                     REVOKE ALL ON FUNCTION pgshroud_auth.lookup(text) FROM PUBLIC;
                     GRANT USAGE ON SCHEMA pgshroud_auth TO {AUTH_USER};
                     GRANT EXECUTE ON FUNCTION pgshroud_auth.lookup(text) TO {AUTH_USER};
                     GRANT USAGE ON SCHEMA pgshroud_auth TO {AUTH_USER_TOGGLED};
                     GRANT EXECUTE ON FUNCTION pgshroud_auth.lookup(text) TO {AUTH_USER_TOGGLED};",
                    tls = users::TLS_ONLY
                ))
                .await
                .expect("install the auth_query function");
        })
        .await;
}

/// A fresh role pg_hba admits over TLS only.
async fn tls_only_role(password: &str) -> String {
    cluster().tls_only_role("tls_role", password).await
}

async fn verifier_of(role: &str) -> String {
    cluster()
        .admin_client()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("read verifier")
        .get(0)
}

async fn write_auth_file(path: &Path, roles: &[&str]) {
    let mut text = String::from("; pgshroud auth_file\n");
    for role in roles {
        text.push_str(&format!("\"{role}\" \"{}\"\n", verifier_of(role).await));
    }
    std::fs::write(path, text).expect("write auth_file");
}

/// Everything one proxy under test needs: its certificates, its auth settings, the CA file
/// clients verify it with.
struct TlsProxy {
    proxy: TestProxy,
    ca: TestCa,
    ca_path: PathBuf,
    dir: tempfile::TempDir,
}

enum Secrets {
    /// An auth_file holding these roles' verifiers.
    File(Vec<String>),
    /// auth_query as this look-up role.
    Query(&'static str),
}

async fn tls_proxy(secrets: Secrets) -> TlsProxy {
    tls_proxy_with(secrets, |_| ConfigLayer::default()).await
}

/// Like [`tls_proxy`], with settings that may name files in the proxy's directory.
async fn tls_proxy_with(secrets: Secrets, extra: impl FnOnce(&Path) -> ConfigLayer) -> TlsProxy {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write_ca(dir.path());
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write_to(dir.path(), "proxy");
    let mut layer = ConfigLayer {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..ConfigLayer::default()
    };
    match secrets {
        Secrets::File(roles) => {
            let path = dir.path().join("userlist.txt");
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            write_auth_file(&path, &roles).await;
            layer.auth_file = Some(path);
        }
        Secrets::Query(auth_user) => {
            install_auth_function().await;
            let password = dir.path().join("auth-password");
            std::fs::write(&password, format!("{AUTH_PASSWORD}\n")).unwrap();
            layer.auth_user = Some(auth_user.into());
            layer.auth_password_file = Some(password);
            layer.auth_query = Some(AUTH_QUERY.into());
        }
    }
    let layer = extra(dir.path()).over(layer);
    let proxy = TestProxy::start(cluster().tls_url("verify-full"), layer).await;
    TlsProxy {
        proxy,
        ca,
        ca_path,
        dir,
    }
}

impl TlsProxy {
    /// libpq's strictest settings towards the proxy.
    fn strict_conn(&self, user: &str, db: &str) -> String {
        format!(
            "host=localhost port={} user={user} dbname={db} sslmode=verify-full sslrootcert={} channel_binding=require",
            self.proxy.port(),
            self.ca_path.display()
        )
    }

    /// tokio-postgres over rustls trusting only the proxy's CA (verify-full). Channel binding
    /// stays at its default (prefer): tokio-postgres-rustls 0.13 never provides binding data
    /// (it parses the certificate as a TBSCertificate and fails), so tokio-postgres sends `n`.
    async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_with(self.ca.client_config(), user, password, db)
            .await
    }

    async fn connect_with(
        &self,
        tls: rustls::ClientConfig,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let conn = format!(
            "host=localhost port={} user={user} password='{password}' dbname={db} sslmode=require",
            self.proxy.port()
        );
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let (client, connection) = tokio_postgres::connect(&conn, tls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

struct PsqlRun {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn psql(conn: &str, password: &str, sql: &[&str]) -> PsqlRun {
    let mut args = vec![conn.to_owned(), "-X".into(), "-A".into(), "-t".into()];
    for statement in sql {
        args.push("-c".into());
        args.push((*statement).into());
    }
    let out = tokio::process::Command::new(cluster().program("psql"))
        .args(&args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "30")
        .output()
        .await
        .expect("psql runs");
    PsqlRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the upstream session is: TLS or not, and as whom.
const UPSTREAM_FACTS: &str =
    "SELECT ssl::text || ' ' || current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

async fn assert_proxy_serves(p: &TlsProxy, user: &str, password: &str, db: &str) {
    let c = p
        .connect(user, password, db)
        .await
        .expect("the proxy still serves logins");
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error, got {e}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

#[tokio::test]
async fn the_fixture_roles_cannot_reach_postgresql_without_tls() {
    let role = tls_only_role("pw-plain").await;
    let err = cluster()
        .connect(&role, "pw-plain", "postgres")
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "28000", "{err}");
    cluster()
        .connect_tls(&role, "pw-plain", "postgres")
        .await
        .expect("with TLS the role logs in");
}

#[tokio::test]
async fn psql_logs_in_with_verify_full_and_channel_binding_required() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("psql-secret").await;
    let p = tls_proxy(Secrets::File(vec![role.clone()])).await;
    let run = psql(
        &p.strict_conn(&role, &db),
        "psql-secret",
        &[UPSTREAM_FACTS, "SELECT 40 + 2", "\\conninfo"],
    )
    .await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("true {role}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("42"), "{}", run.stdout);
    assert!(
        run.stdout.contains("SSL connection (protocol: TLSv1."),
        "{}",
        run.stdout
    );
    // sslmode=require (no certificate check) works the same.
    let run = psql(
        &format!(
            "host=localhost port={} user={role} dbname={db} sslmode=require",
            p.proxy.port()
        ),
        "psql-secret",
        &["SELECT 1"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_proxy_serves(&p, &role, "psql-secret", &db).await;
}

#[tokio::test]
async fn tokio_postgres_logs_in_with_verify_full() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("tp-secret").await;
    let p = tls_proxy(Secrets::File(vec![role.clone()])).await;
    let c = p.connect(&role, "tp-secret", &db).await.expect("login");
    let facts: String = c.query_one(UPSTREAM_FACTS, &[]).await.unwrap().get(0);
    assert_eq!(facts, format!("true {role}"));
    let two: i32 = c.query_one("SELECT 1 + 1", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);
}

#[tokio::test]
async fn auth_query_as_a_least_privileged_role_serves_logins() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("aq-secret").await;
    let p = tls_proxy(Secrets::Query(AUTH_USER)).await;
    for _ in 0..2 {
        // The second login reuses the auth_query connection.
        let c = p.connect(&role, "aq-secret", &db).await.expect("login");
        let facts: String = c.query_one(UPSTREAM_FACTS, &[]).await.unwrap().get(0);
        assert_eq!(facts, format!("true {role}"));
    }
    let run = psql(&p.strict_conn(&role, &db), "aq-secret", &["SELECT 7"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "7");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_postgresqls_28p01() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("right-secret").await;
    for secrets in [Secrets::File(vec![role.clone()]), Secrets::Query(AUTH_USER)] {
        let p = tls_proxy(secrets).await;
        for (user, password) in [(role.as_str(), "wrong-secret"), ("no_such_role", "x")] {
            let err = p.connect(user, password, &db).await.unwrap_err();
            assert_eq!(
                db_error(&err),
                (
                    "28P01".to_owned(),
                    format!("password authentication failed for user \"{user}\"")
                )
            );
        }
        let run = psql(&p.strict_conn(&role, &db), "wrong-secret", &["SELECT 1"]).await;
        assert!(!run.ok);
        assert!(
            run.stderr.contains(&format!(
                "password authentication failed for user \"{role}\""
            )),
            "{}",
            run.stderr
        );
        assert_proxy_serves(&p, &role, "right-secret", &db).await;
    }
}

#[tokio::test]
async fn an_expired_password_is_refused_with_28p01() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("old-secret").await;
    // auth_file: the verifier is fine, PostgreSQL itself refuses the upstream login.
    let from_file = tls_proxy(Secrets::File(vec![role.clone()])).await;
    let from_query = tls_proxy(Secrets::Query(AUTH_USER)).await;
    cluster()
        .admin_client()
        .await
        .batch_execute(&format!("ALTER ROLE {role} VALID UNTIL '2000-01-01'"))
        .await
        .unwrap();
    for p in [&from_file, &from_query] {
        let err = p.connect(&role, "old-secret", &db).await.unwrap_err();
        assert_eq!(db_error(&err).0, "28P01", "{err}");
    }
    cluster()
        .admin_client()
        .await
        .batch_execute(&format!("ALTER ROLE {role} VALID UNTIL 'infinity'"))
        .await
        .unwrap();
    assert_proxy_serves(&from_file, &role, "old-secret", &db).await;
    assert_proxy_serves(&from_query, &role, "old-secret", &db).await;
}

#[tokio::test]
async fn a_password_changed_while_the_proxy_runs_counts_from_the_next_login() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("first-secret").await;
    let from_query = tls_proxy(Secrets::Query(AUTH_USER)).await;
    let from_file = tls_proxy(Secrets::File(vec![role.clone()])).await;
    let kept = from_query
        .connect(&role, "first-secret", &db)
        .await
        .expect("login before the change");
    cluster()
        .admin_client()
        .await
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-secret'"))
        .await
        .unwrap();
    // auth_query reads the new verifier at the next login.
    let err = from_query
        .connect(&role, "first-secret", &db)
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "28P01");
    assert_proxy_serves(&from_query, &role, "second-secret", &db).await;
    let one: i32 = kept.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "an open session is not affected");
    // An auth_file not yet updated: the old password passes the proxy, but the server's salt
    // shows the verifier is stale, and the client gets 28P01 rather than a login.
    let err = from_file
        .connect(&role, "first-secret", &db)
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "28P01");
    // Once the file is rewritten, the next login uses it (no restart).
    write_auth_file(&from_file.dir.path().join("userlist.txt"), &[&role]).await;
    assert_proxy_serves(&from_file, &role, "second-secret", &db).await;
}

#[tokio::test]
async fn auth_query_connection_down_gives_a_clear_error_and_recovers() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("down-secret").await;
    let p = tls_proxy(Secrets::Query(AUTH_USER_TOGGLED)).await;
    assert_proxy_serves(&p, &role, "down-secret", &db).await;
    let admin = cluster().admin_client().await;
    // The kept connection is terminated: the next look-up opens a new one.
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pgshroud auth_query' AND usename = '{AUTH_USER_TOGGLED}'"
        ))
        .await
        .unwrap();
    assert_proxy_serves(&p, &role, "down-secret", &db).await;
    // The look-up role cannot log in at all: a clear error, no hang.
    admin
        .batch_execute(&format!(
            "ALTER ROLE {AUTH_USER_TOGGLED} NOLOGIN; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pgshroud auth_query' AND usename = '{AUTH_USER_TOGGLED}'"
        ))
        .await
        .unwrap();
    let err = p.connect(&role, "down-secret", &db).await.unwrap_err();
    let restored = admin
        .batch_execute(&format!("ALTER ROLE {AUTH_USER_TOGGLED} LOGIN"))
        .await;
    let (code, message) = db_error(&err);
    assert_eq!(code, "08006", "{message}");
    assert!(message.contains("cannot check passwords"), "{message}");
    restored.unwrap();
    assert_proxy_serves(&p, &role, "down-secret", &db).await;
}

/// One login with a driver's strictest TLS settings through the proxy; prints UPSTREAM_FACTS.
/// Connection facts come from the environment: LOGIN_PORT, LOGIN_USER, LOGIN_PASSWORD,
/// LOGIN_DB, LOGIN_CA, LOGIN_SQL.
const PSYCOPG_LOGIN: &str = r#"
import os, psycopg
e = os.environ
conninfo = (f"host=localhost port={e['LOGIN_PORT']} user={e['LOGIN_USER']} dbname={e['LOGIN_DB']}"
            f" sslmode=verify-full sslrootcert={e['LOGIN_CA']} channel_binding=require")
with psycopg.connect(conninfo, password=e["LOGIN_PASSWORD"]) as c:
    print(c.execute(e["LOGIN_SQL"]).fetchone()[0])
"#;

/// asyncpg implements no channel binding (it sends `n`); verify-full is its strictest TLS.
const ASYNCPG_LOGIN: &str = r#"
import asyncio, os, ssl, asyncpg
e = os.environ
async def main():
    tls = ssl.create_default_context(cafile=e["LOGIN_CA"])
    c = await asyncpg.connect(host="localhost", port=int(e["LOGIN_PORT"]), user=e["LOGIN_USER"],
                              password=e["LOGIN_PASSWORD"], database=e["LOGIN_DB"], ssl=tls)
    print(await c.fetchval(e["LOGIN_SQL"]))
    await c.close()
asyncio.run(main())
"#;

const NODE_LOGIN: &str = r#"
const e = process.env;
const { Client } = require(e.LOGIN_PG_MODULE);
const c = new Client({
  host: 'localhost', port: Number(e.LOGIN_PORT), user: e.LOGIN_USER, password: e.LOGIN_PASSWORD,
  database: e.LOGIN_DB, ssl: { ca: require('fs').readFileSync(e.LOGIN_CA) },
  enableChannelBinding: true,
});
c.connect()
  .then(() => c.query({ text: e.LOGIN_SQL, rowMode: 'array' }))
  .then((r) => { console.log(r.rows[0][0]); return c.end(); })
  .catch((err) => { console.error(err.message); process.exit(1); });
"#;

/// pgjdbc 42.5 (Debian 12) has no channelBinding setting and sends `n`; verify-full is its
/// strictest TLS.
const JDBC_LOGIN: &str = r#"
import java.sql.*;
public class Login {
    public static void main(String[] args) throws Exception {
        var e = System.getenv();
        String url = "jdbc:postgresql://localhost:" + e.get("LOGIN_PORT") + "/" + e.get("LOGIN_DB")
            + "?sslmode=verify-full&sslrootcert=" + e.get("LOGIN_CA");
        try (Connection c = DriverManager.getConnection(url, e.get("LOGIN_USER"), e.get("LOGIN_PASSWORD"));
             ResultSet r = c.createStatement().executeQuery(e.get("LOGIN_SQL"))) {
            r.next();
            System.out.println(r.getString(1));
        }
    }
}
"#;

#[derive(Debug, Clone, Copy)]
enum LoginDriver {
    Psycopg,
    Asyncpg,
    NodePostgres,
    Jdbc,
}

/// Runs `driver`'s login through `p`; `Ok(stdout)` or `Err(stderr)`.
async fn driver_login(
    p: &TlsProxy,
    driver: LoginDriver,
    user: &str,
    password: &str,
    db: &str,
) -> Result<String, String> {
    let drivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers");
    let script = |name: &str, text: &str| {
        let path = p.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut command = match driver {
        LoginDriver::Psycopg | LoginDriver::Asyncpg => {
            let text = match driver {
                LoginDriver::Psycopg => PSYCOPG_LOGIN,
                _ => ASYNCPG_LOGIN,
            };
            let mut c = tokio::process::Command::new("python3");
            c.arg(script(&format!("{driver:?}.py"), text));
            c
        }
        LoginDriver::NodePostgres => {
            assert!(
                drivers.join("node_modules/pg").exists(),
                "node-postgres missing: run scripts/install-test-deps.sh"
            );
            let mut c = tokio::process::Command::new("node");
            c.arg(script("login.js", NODE_LOGIN))
                .env("LOGIN_PG_MODULE", drivers.join("node_modules/pg"));
            c
        }
        LoginDriver::Jdbc => {
            // Java 11+ runs a single source file directly.
            let mut c = tokio::process::Command::new("java");
            c.args(["-cp", "/usr/share/java/postgresql.jar"])
                .arg(script("Login.java", JDBC_LOGIN));
            c
        }
    };
    let out = command
        .env("LOGIN_PORT", p.proxy.port().to_string())
        .env("LOGIN_USER", user)
        .env("LOGIN_PASSWORD", password)
        .env("LOGIN_DB", db)
        .env("LOGIN_CA", &p.ca_path)
        .env("LOGIN_SQL", UPSTREAM_FACTS)
        .output()
        .await
        .expect("driver runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every driver logs in with its strictest TLS settings through the proxy to the TLS-only
/// role, then a wrong password gets 28P01, and the proxy still serves the next login.
async fn driver_logs_in_with_strict_tls(driver: LoginDriver) {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("driver-secret").await;
    let p = tls_proxy(Secrets::Query(AUTH_USER)).await;
    let facts = driver_login(&p, driver, &role, "driver-secret", &db)
        .await
        .unwrap_or_else(|e| panic!("{driver:?}: {e}"));
    assert_eq!(facts, format!("true {role}"), "{driver:?}");
    let refused = driver_login(&p, driver, &role, "wrong", &db)
        .await
        .expect_err("wrong password");
    assert!(
        refused.contains("28P01") || refused.contains("password authentication failed"),
        "{driver:?}: {refused}"
    );
    assert_proxy_serves(&p, &role, "driver-secret", &db).await;
}

#[tokio::test]
async fn psycopg_logs_in_with_verify_full_and_channel_binding_required() {
    driver_logs_in_with_strict_tls(LoginDriver::Psycopg).await;
}

#[tokio::test]
async fn asyncpg_logs_in_with_verify_full() {
    driver_logs_in_with_strict_tls(LoginDriver::Asyncpg).await;
}

#[tokio::test]
async fn node_postgres_logs_in_with_verify_full_and_channel_binding() {
    driver_logs_in_with_strict_tls(LoginDriver::NodePostgres).await;
}

#[tokio::test]
async fn jdbc_logs_in_with_verify_full() {
    driver_logs_in_with_strict_tls(LoginDriver::Jdbc).await;
}

#[tokio::test]
async fn failed_proxy_side_logins_are_audited_without_the_password() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("audited-secret").await;
    let p = tls_proxy_with(Secrets::File(vec![role.clone()]), |dir| {
        let key = dir.join("audit.key");
        std::fs::write(&key, pgshroud_integration_tests::protected::OTHER_KEY).unwrap();
        ConfigLayer {
            audit_file: Some(dir.join("audit.log").display().to_string()),
            audit_key_file: Some(key),
            ..ConfigLayer::default()
        }
    })
    .await;
    let err = p
        .connect(&role, "wrong-audited-secret", &db)
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "28P01");
    assert_proxy_serves(&p, &role, "audited-secret", &db).await;
    let TlsProxy { proxy, dir, .. } = p;
    proxy.shutdown().await;
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let failed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "auth_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert_eq!(failed[0]["sqlstate"], "28P01");
    assert_eq!(failed[0]["user"], role.as_str());
    for secret in ["audited-secret", "SCRAM-SHA-256$"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
}

#[tokio::test]
async fn client_certificate_must_name_the_user_under_verify_full() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("cert-secret").await;
    let p = tls_proxy_with(Secrets::Query(AUTH_USER), |dir| ConfigLayer {
        tls_client_ca_file: Some(dir.join("ca.crt")),
        tls_client_cert: Some("verify-full".into()),
        ..ConfigLayer::default()
    })
    .await;
    let own = p.ca.issue_client(&role);
    let with_cert = |cert| p.ca.client_config_with_identity(cert);
    let c = p
        .connect_with(with_cert(&own), &role, "cert-secret", &db)
        .await
        .expect("certificate naming the user, right password");
    let facts: String = c.query_one(UPSTREAM_FACTS, &[]).await.unwrap().get(0);
    assert_eq!(facts, format!("true {role}"));
    let other = p.ca.issue_client("somebody_else");
    let cases = [
        (
            p.connect_with(with_cert(&other), &role, "cert-secret", &db).await,
            "28000",
            format!("certificate validation (clientcert=verify-full) failed for user \"{role}\": CN mismatch"),
        ),
        (
            p.connect(&role, "cert-secret", &db).await,
            "28000",
            "connection requires a valid client certificate".to_owned(),
        ),
        (
            p.connect_with(with_cert(&own), &role, "wrong", &db).await,
            "28P01",
            format!("password authentication failed for user \"{role}\""),
        ),
    ];
    for (result, code, message) in cases {
        let err = result.expect_err("refused");
        assert_eq!(db_error(&err), (code.to_owned(), message));
    }
    // libpq with its strictest settings and the certificate.
    let (cert, key) = own.write_to(p.dir.path(), "client");
    let run = psql(
        &format!(
            "{} sslcert={} sslkey={}",
            p.strict_conn(&role, &db),
            cert.display(),
            key.display()
        ),
        "cert-secret",
        &["SELECT current_user"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), role);
}

fn method(name: &'static str) -> impl FnOnce(&Path) -> ConfigLayer {
    move |_| ConfigLayer {
        auth_method: Some(name.into()),
        ..ConfigLayer::default()
    }
}

/// Logs in through `p` and returns the upstream session's user.
async fn logged_in_as(p: &TlsProxy, user: &str, password: &str, db: &str) -> String {
    let c = p
        .connect(user, password, db)
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    c.query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn md5_method_serves_md5_secrets_and_refuses_scram_ones_as_a_wrong_password() {
    let db = cluster().fresh_database().await;
    let scram_role = tls_only_role("scram-for-md5").await;
    let p = tls_proxy_with(Secrets::Query(AUTH_USER), method("md5")).await;
    // md5_user's secret is an md5 hash and its pg_hba method md5: the proxy checks the client's
    // md5 answer and answers the server's challenge with the secret.
    assert_eq!(
        logged_in_as(&p, users::MD5, users::MD5_PASSWORD, &db).await,
        users::MD5
    );
    // Everyone is asked for md5, so a known user looks like an unknown one; a SCRAM verifier
    // cannot check an md5 answer (fail_closed_connections.rs compares the exchanges).
    let err = p
        .connect(&scram_role, "scram-for-md5", &db)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "28P01".to_owned(),
            format!("password authentication failed for user \"{scram_role}\"")
        )
    );
    let err = p.connect(users::MD5, "wrong", &db).await.unwrap_err();
    assert_eq!(db_error(&err).0, "28P01");
    assert_proxy_serves(&p, users::MD5, users::MD5_PASSWORD, &db).await;
}

#[tokio::test]
async fn scram_method_refuses_md5_secrets_as_postgresql_does() {
    let db = cluster().fresh_database().await;
    let p = tls_proxy(Secrets::Query(AUTH_USER)).await;
    let err = p
        .connect(users::MD5, users::MD5_PASSWORD, &db)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "28P01".to_owned(),
            format!("password authentication failed for user \"{}\"", users::MD5)
        )
    );
    assert_proxy_serves(&p, users::SCRAM, users::SCRAM_PASSWORD, &db).await;
}

#[tokio::test]
async fn password_method_checks_cleartext_against_either_secret_and_answers_any_server_method() {
    let db = cluster().fresh_database().await;
    let scram_role = tls_only_role("clear-to-scram").await;
    let p = tls_proxy_with(Secrets::Query(AUTH_USER), method("password")).await;
    // Upstream methods: cleartext_user -> password, md5_user -> md5, the TLS role -> SCRAM-PLUS.
    for (user, password) in [
        (users::CLEARTEXT, users::CLEARTEXT_PASSWORD),
        (users::MD5, users::MD5_PASSWORD),
        (scram_role.as_str(), "clear-to-scram"),
    ] {
        assert_eq!(logged_in_as(&p, user, password, &db).await, user);
        let err = p.connect(user, "wrong", &db).await.unwrap_err();
        assert_eq!(db_error(&err).0, "28P01", "{user}");
    }
    assert_proxy_serves(&p, &scram_role, "clear-to-scram", &db).await;
}
