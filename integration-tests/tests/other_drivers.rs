//! Drivers other than tokio-postgres and psql work through the proxy unchanged: psycopg 3
//! (text and binary formats), asyncpg (binary), node-postgres and pgjdbc (server-side prepared
//! statements).

use pgshroud_integration_tests::drivers::{run, Driver};
use pgshroud_integration_tests::protected::Fixture;
use pgshroud_integration_tests::{cluster, proxy, users};

#[tokio::test]
async fn psycopg_works_through_the_proxy_in_text_and_binary() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let port = p.port();
    let out = tokio::task::spawn_blocking(move || {
        run(
            Driver::Psycopg,
            port,
            users::SCRAM,
            users::SCRAM_PASSWORD,
            &db,
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        out,
        r#"{"text": [42, "x"], "binary": [42, "x"], "error": "22012", "after": 1}"#
    );
}

#[tokio::test]
async fn node_postgres_works_through_the_proxy() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let port = p.port();
    let out = tokio::task::spawn_blocking(move || {
        run(
            Driver::NodePostgres,
            port,
            users::MD5,
            users::MD5_PASSWORD,
            &db,
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        out,
        r#"{"row":{"n":42,"s":"héllo"},"error":"22012","after":1}"#
    );
}

/// Runs a driver script against protected columns and returns its JSON line.
async fn protected_run(
    driver: Driver,
    user: &'static str,
    password: &'static str,
) -> serde_json::Value {
    let f = Fixture::new().await;
    let port = f.proxy.port();
    let db = f.db.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(
            driver,
            port,
            user,
            password,
            &db,
            &[("PROTECTED", "1"), ("TABLE", "driver_check")],
        )
    })
    .await
    .unwrap();
    for stored in f.stored("SELECT email FROM driver_check").await {
        let stored = stored.expect("email written");
        assert_eq!(stored[0], 2, "stored as an envelope");
        assert!(!String::from_utf8_lossy(&stored).contains("example.com"));
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn psycopg_reads_and_writes_protected_columns_unchanged() {
    let out = protected_run(Driver::Psycopg, users::SCRAM, users::SCRAM_PASSWORD).await;
    assert_eq!(
        out,
        serde_json::json!({
            "text": ["py@example.com", 44, "from python"],
            "binary": ["py@example.com", 44, "from python"],
            "binary_param": 44,
            "any": 2,
            "in": 4,
            "like": "0A000",
            "tx": "0A000",
            "tx_rows": 0,
            "error": "22012",
            "after": 1
        })
    );
}

#[tokio::test]
async fn node_postgres_reads_and_writes_protected_columns_unchanged() {
    let out = protected_run(Driver::NodePostgres, users::MD5, users::MD5_PASSWORD).await;
    assert_eq!(
        out,
        serde_json::json!({
            "row": {"email": "node@example.com", "age": 33, "note": "from node"},
            "any": 1,
            "star": 1,
            "like": "0A000",
            "error": "22012",
            "after": 1
        })
    );
}

#[tokio::test]
async fn pgjdbc_reads_and_writes_protected_columns_unchanged() {
    let out = protected_run(Driver::Jdbc, users::SCRAM, users::SCRAM_PASSWORD).await;
    assert_eq!(
        out,
        serde_json::json!({"email": "java3@example.com", "age": 43, "like": "0A000", "in": 2})
    );
}

#[tokio::test]
async fn asyncpg_reads_and_writes_protected_columns_unchanged() {
    let out = protected_run(Driver::Asyncpg, users::SCRAM, users::SCRAM_PASSWORD).await;
    assert_eq!(
        out,
        serde_json::json!({
            "row": ["apg2@example.com", 52, "from asyncpg"],
            "any": 2,
            "range": "0A000",
            "after": 1
        })
    );
}
