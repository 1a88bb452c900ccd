//! The test cluster itself: every fixture role logs in with its own authentication method,
//! wrong passwords get PostgreSQL's 28P01, TLS verifies against the test CA, and each test
//! gets a database of its own.

use pgshroud_integration_tests::{cluster, users};
use tokio_postgres::NoTls;

async fn select_one(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT 1", &[]).await.expect("SELECT 1").get(0)
}

#[tokio::test]
async fn every_fixture_role_logs_in_over_tcp_and_runs_select_1() {
    let db = cluster().fresh_database().await;
    for (user, password) in [
        (users::SCRAM, users::SCRAM_PASSWORD),
        (users::MD5, users::MD5_PASSWORD),
        (users::CLEARTEXT, users::CLEARTEXT_PASSWORD),
        (users::TRUST, ""),
        (users::SUPERUSER, users::SUPERUSER_PASSWORD),
    ] {
        let c = cluster()
            .connect(user, password, &db)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(select_one(&c).await, 1, "{user}");
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
    }
}

#[tokio::test]
async fn wrong_password_fails_with_28p01_for_every_password_method() {
    for user in [users::SCRAM, users::MD5, users::CLEARTEXT] {
        let err = cluster()
            .connect(user, "not-the-password", "postgres")
            .await
            .unwrap_err();
        let db_err = err.as_db_error().unwrap_or_else(|| panic!("{user}: {err}"));
        assert_eq!(db_err.code().code(), "28P01", "{user}");
    }
}

#[tokio::test]
async fn passwords_are_stored_as_the_method_needs() {
    let admin = cluster().admin_client().await;
    let stored = |user: &'static str| {
        let admin = &admin;
        async move {
            let row = admin
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[&user],
                )
                .await
                .unwrap();
            row.get::<_, Option<String>>(0)
        }
    };
    assert!(stored(users::MD5).await.unwrap().starts_with("md5"));
    assert!(stored(users::SCRAM)
        .await
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    assert!(stored(users::CLEARTEXT)
        .await
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    assert_eq!(stored(users::TRUST).await, None);
}

#[tokio::test]
async fn verify_full_tls_to_the_cluster_works_with_the_test_ca() {
    let c = cluster()
        .connect_tls(users::SCRAM, users::SCRAM_PASSWORD, "postgres")
        .await
        .expect("TLS login verified against the test CA");
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn tls_to_the_cluster_fails_when_trusting_another_ca() {
    let other = pgshroud_integration_tests::certs::TestCa::new();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(other.client_config());
    let conn = cluster().tls_conn_string(users::SCRAM, users::SCRAM_PASSWORD, "postgres");
    let err = tokio_postgres::connect(&conn, tls)
        .await
        .err()
        .expect("an unknown CA is refused");
    assert!(
        err.as_db_error().is_none(),
        "refused by the client, not the server: {err}"
    );
}

#[tokio::test]
async fn ca_certificate_file_holds_the_ca_pem() {
    let on_disk = std::fs::read_to_string(cluster().ca_cert_path()).unwrap();
    assert_eq!(on_disk, cluster().ca_cert_pem());
}

#[tokio::test]
async fn fresh_databases_are_distinct_and_empty() {
    let a = cluster().fresh_database().await;
    let b = cluster().fresh_database().await;
    assert_ne!(a, b);
    let in_a = cluster()
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &a)
        .await
        .unwrap();
    in_a.batch_execute("CREATE TABLE only_in_a (x int)")
        .await
        .unwrap();
    let in_b = cluster()
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &b)
        .await
        .unwrap();
    let tables: i64 = in_b
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    let name: String = in_b
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, b);
}

#[tokio::test]
async fn fixture_roles_share_tables_in_a_fresh_database() {
    let db = cluster().fresh_database().await;
    let owner = cluster()
        .connect(users::MD5, users::MD5_PASSWORD, &db)
        .await
        .unwrap();
    owner
        .batch_execute("CREATE TABLE shared (id serial, v text)")
        .await
        .unwrap();
    let other = cluster()
        .connect(users::CLEARTEXT, users::CLEARTEXT_PASSWORD, &db)
        .await
        .unwrap();
    other
        .execute("INSERT INTO shared (v) VALUES ('x')", &[])
        .await
        .unwrap();
    let n: i64 = other
        .query_one("SELECT count(*) FROM shared", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn admin_client_reaches_a_fresh_database_as_superuser() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    let row = admin
        .query_one(
            "SELECT current_database()::text, rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db);
    assert!(row.get::<_, bool>(1));
}

#[tokio::test]
async fn unix_socket_and_bin_dir_are_usable_by_psql() {
    let psql = cluster().program("psql");
    let out = tokio::process::Command::new(psql)
        .arg("-X")
        .arg("-A")
        .arg("-t")
        .arg("-h")
        .arg(cluster().socket_dir())
        .arg("-p")
        .arg(cluster().port().to_string())
        .args([
            "-U",
            users::SUPERUSER,
            "-d",
            "postgres",
            "-c",
            "SELECT 40 + 2",
        ])
        .output()
        .await
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

#[tokio::test]
async fn plain_connection_without_tls_is_not_encrypted() {
    let (c, connection) =
        tokio_postgres::connect(&cluster().conn_string(users::TRUST, "", "postgres"), NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl);
}
