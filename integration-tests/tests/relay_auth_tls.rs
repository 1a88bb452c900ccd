//! Authentication relayed to PostgreSQL (trust, cleartext, md5, SCRAM-SHA-256, wrong
//! passwords), TLS towards clients (verify-full with tokio-postgres and psql) and towards the
//! upstream server (every sslmode).

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::certs::TestCa;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::{cluster, proxy, users};

async fn select_one(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT 1", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn scram_md5_cleartext_and_trust_logins_are_relayed() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    for (user, password) in [
        (users::SCRAM, users::SCRAM_PASSWORD),
        (users::MD5, users::MD5_PASSWORD),
        (users::CLEARTEXT, users::CLEARTEXT_PASSWORD),
        (users::TRUST, ""),
    ] {
        let c = p
            .connect(user, password, &db)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(select_one(&c).await, 1);
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
    }
}

#[tokio::test]
async fn wrong_passwords_get_postgresqls_own_28p01() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    for user in [users::SCRAM, users::MD5, users::CLEARTEXT] {
        let err = p.connect(user, "not-the-password", &db).await.unwrap_err();
        let db_err = err.as_db_error().unwrap_or_else(|| panic!("{user}: {err}"));
        assert_eq!(db_err.code().code(), "28P01", "{user}");
        assert!(
            db_err.message().contains("password authentication failed"),
            "{user}"
        );
    }
}

#[tokio::test]
async fn unknown_database_error_comes_from_postgresql() {
    let p = proxy().await;
    let err = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, "no_such_db")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "3D000");
}

fn tls_proxy_layer(dir: &std::path::Path, ca: &TestCa) -> ConfigLayer {
    let issued = ca.issue(&["localhost", "127.0.0.1"]);
    let (cert, key) = issued.write_to(dir, "proxy");
    ConfigLayer {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    }
}

#[tokio::test]
async fn clients_connect_with_tls_verify_full_using_tokio_postgres() {
    let db = cluster().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let p = pgshroud_integration_tests::proxy_with(tls_proxy_layer(dir.path(), &ca)).await;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(ca.client_config());
    let conn = format!(
        "host=localhost port={} user={} password={} dbname={db} sslmode=require",
        p.port(),
        users::SCRAM,
        users::SCRAM_PASSWORD
    );
    let (c, connection) = tokio_postgres::connect(&conn, tls)
        .await
        .expect("TLS login through the proxy");
    tokio::spawn(connection);
    assert_eq!(select_one(&c).await, 1);
}

#[tokio::test]
async fn psql_connects_with_tls_verify_full_and_scram() {
    let db = cluster().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write_ca(dir.path());
    let p = pgshroud_integration_tests::proxy_with(tls_proxy_layer(dir.path(), &ca)).await;
    let conn = format!(
        "host=localhost port={} user={} dbname={db} sslmode=verify-full sslrootcert={}",
        p.port(),
        users::SCRAM,
        ca_path.display()
    );
    let out = tokio::process::Command::new("psql")
        .args([
            &conn,
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT 40 + 2",
            "-c",
            "\\conninfo",
        ])
        .env("PGPASSWORD", users::SCRAM_PASSWORD)
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("42"), "{stdout}");
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1."),
        "{stdout}"
    );
}

#[tokio::test]
async fn psql_verify_full_fails_against_an_untrusted_proxy_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let other_path = other_ca.write_ca(dir.path());
    let p = pgshroud_integration_tests::proxy_with(tls_proxy_layer(dir.path(), &ca)).await;
    let conn = format!(
        "host=localhost port={} user={} dbname=postgres sslmode=verify-full sslrootcert={}",
        p.port(),
        users::SCRAM,
        other_path.display()
    );
    let out = tokio::process::Command::new("psql")
        .args([&conn, "-X", "-c", "SELECT 1"])
        .env("PGPASSWORD", users::SCRAM_PASSWORD)
        .output()
        .await
        .expect("psql runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
}

#[tokio::test]
async fn scram_plus_is_not_offered_across_the_proxys_tls() {
    // libpq with channel_binding=require needs SCRAM-SHA-256-PLUS: the proxy must not offer
    // it, so the login fails on the client side instead of failing inside PostgreSQL.
    let db = cluster().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write_ca(dir.path());
    let p = pgshroud_integration_tests::proxy_with(tls_proxy_layer(dir.path(), &ca)).await;
    let base = format!(
        "host=localhost port={} user={} dbname={db} sslmode=verify-full sslrootcert={}",
        p.port(),
        users::SCRAM,
        ca_path.display()
    );
    let psql = |conn: String| {
        tokio::process::Command::new("psql")
            .args([&conn, "-X", "-c", "SELECT 1"])
            .env("PGPASSWORD", users::SCRAM_PASSWORD)
            .output()
    };
    let required = psql(format!("{base} channel_binding=require"))
        .await
        .unwrap();
    assert!(!required.status.success());
    assert!(String::from_utf8_lossy(&required.stderr).contains("channel binding"));
    let preferred = psql(format!("{base} channel_binding=prefer"))
        .await
        .unwrap();
    assert!(
        preferred.status.success(),
        "{}",
        String::from_utf8_lossy(&preferred.stderr)
    );
}

async fn upstream_ssl(sslmode: &str) -> bool {
    let db = cluster().fresh_database().await;
    let ca = cluster().ca_cert_path();
    let p = TestProxy::start(
        format!(
            "postgres://localhost:{}?sslmode={sslmode}&sslrootcert={}",
            cluster().port(),
            ca.display()
        ),
        ConfigLayer::default(),
    )
    .await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap_or_else(|e| panic!("{sslmode}: {e}"));
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn upstream_tls_in_every_sslmode() {
    assert!(!upstream_ssl("disable").await);
    assert!(upstream_ssl("prefer").await);
    assert!(upstream_ssl("require").await);
    assert!(upstream_ssl("verify-ca").await);
    assert!(upstream_ssl("verify-full").await);
}

#[tokio::test]
async fn upstream_verify_full_refuses_a_server_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::new();
    let other_path = other.write_ca(dir.path());
    let p = TestProxy::start(
        format!(
            "postgres://localhost:{}?sslmode=verify-full&sslrootcert={}",
            cluster().port(),
            other_path.display()
        ),
        ConfigLayer::default(),
    )
    .await;
    let err = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, "postgres")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "08006");
    assert!(
        err.as_db_error().unwrap().message().contains("TLS"),
        "{err:?}"
    );
}
