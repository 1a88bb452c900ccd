//! PostgreSQL's own grammar is how pgshroud reads SQL, seen through the proxy as a role that is
//! not a superuser: every lexical corner of PostgreSQL's scanner either is refused or reaches
//! PostgreSQL analysed as PostgreSQL reads it. Nothing here may delete a row, store plaintext
//! or run a statement the analysis did not see.

use pgshroud_integration_tests::cluster;
use pgshroud_integration_tests::protected::{code, rows, Fixture};
use pgshroud_integration_tests::roles::RolesFixture;

/// Rows of customers and how many stored emails are not envelopes (plaintext), read directly.
async fn table_state(f: &Fixture) -> (i64, i64) {
    state_of(&f.db).await
}

async fn state_of(db: &str) -> (i64, i64) {
    let admin = cluster().admin_client_for(db).await;
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE email IS NOT NULL \
             AND get_byte(email, 0) <> 2) FROM customers",
            &[],
        )
        .await
        .expect("direct count");
    (row.get(0), row.get(1))
}

async fn seeded() -> (Fixture, tokio_postgres::Client) {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.simple_query(
        "INSERT INTO customers (email, age, name) VALUES ('a@x.org', 30, 'a'), ('b@x.org', 40, 'b')",
    )
    .await
    .expect("seed through the proxy");
    (f, c)
}

/// Each text, sent by the analyst (whose rules allow only SELECT, while PostgreSQL lets every
/// login user write the tables), is refused (0A000, 42601, a role refusal, or PostgreSQL's own
/// error) or runs as analysed. A DELETE or UPDATE the analysis saw is refused by the role's
/// statement kinds, so one that changes the table ran unseen.
async fn nothing_hidden_runs(f: &RolesFixture, texts: &[&str]) {
    let app = f.connect("app").await;
    app.simple_query(
        "INSERT INTO customers (email, age, name) VALUES ('a@x.org', 30, 'a'), ('b@x.org', 40, 'b')",
    )
    .await
    .expect("seed through the proxy");
    let before = state_of(&f.db).await;
    let c = f.connect("analyst").await;
    for sql in texts {
        if let Err(e) = c.simple_query(sql).await {
            assert!(
                ["0A000", "42601", "42501", "42883", "42P01", "42703", "22P02", "42804"]
                    .contains(&code(&e).as_str()),
                "{sql:?}: {e}"
            );
        }
        assert_eq!(state_of(&f.db).await, before, "{sql:?} changed the table");
        c.simple_query("SELECT 1").await.expect("session lives on");
    }
}

#[tokio::test]
async fn scanner_corners_hide_no_statement_from_the_analysis() {
    let f = RolesFixture::new().await;
    nothing_hidden_runs(
        &f,
        &[
            "SELECT $é$; DELETE FROM customers; $é$",
            "SELECT $_$'$_$ FROM customers; DELETE FROM customers WHERE email = 'x' --'",
            "SELECT 1 /* /* */ ; DELETE FROM customers; */ FROM customers",
            r"SELECT id FROM customers WHERE email = E'a\'; DELETE FROM customers; --'",
            "SELECT 1 FROM customers -- \r; DELETE FROM customers",
            "SELECT 1 FROM customers -- \u{b}; DELETE FROM customers",
            "SELECT 2 */ 1 FROM customers",
            "SELECT email FROM customers WHERE email = 'x' *--\n; DELETE FROM customers",
            "SELECT id FROM customers WHERE email = 'plain'\n'text'",
            "SELECT email FROM customers AS only",
            "SELECT over.email FROM customers over WHERE over.email = 'a@x.org'",
            "SELECT 1 FROM customers; DELETE FROM U&\"!0063ustomers\" UESCAPE '!'",
            "SELECT 1 FROM customers; DO $$ BEGIN DELETE FROM customers; END $$",
            "WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1",
            "SELECT 1 FROM customers; EXPLAIN ANALYZE DELETE FROM customers",
        ],
    )
    .await;
}

#[tokio::test]
async fn only_on_a_protected_table_is_refused_with_0a000_in_writes() {
    let (f, c) = seeded().await;
    for sql in [
        "SELECT email FROM ONLY /* c */ customers",
        "DELETE FROM ONLY customers WHERE email = 'a@x.org'",
        "UPDATE ONLY customers SET email = 'plain'",
    ] {
        let e = c.simple_query(sql).await.expect_err("refused");
        assert_eq!(code(&e), "0A000", "{sql}: {e}");
    }
    assert_eq!(table_state(&f).await, (2, 0));
    // A read of the table's own rows is read as a read of the table (pg_dump --inserts).
    let read = c
        .query("SELECT email FROM ONLY customers", &[])
        .await
        .expect("read with ONLY");
    assert_eq!(read.len(), 2);
    assert!(read
        .iter()
        .all(|r| !r.get::<_, String>(0).starts_with("\\x")));
}

#[tokio::test]
async fn do_blocks_that_touch_a_protected_table_once_decoded_are_refused() {
    let (f, c) = seeded().await;
    for sql in [
        "DO $$ BEGIN DELETE FROM customers; END $$",
        r"DO E'BEGIN DELETE FROM \x63ustomers; END'",
        r"DO U&'BEGIN DELETE FROM \0063ustomers; END'",
        "DO 'BEGIN DELETE FROM cust'\n'omers; END'",
    ] {
        let e = c.simple_query(sql).await.expect_err("refused");
        assert_eq!(code(&e), "42601", "{sql}: {e}");
    }
    assert_eq!(table_state(&f).await, (2, 0));
}

#[tokio::test]
async fn values_are_encrypted_as_postgresql_decodes_them() {
    let (f, c) = seeded().await;
    c.simple_query(r"INSERT INTO customers (email, name) VALUES (E'q\'\x41', 'e')")
        .await
        .expect("escape string");
    c.simple_query(r#"INSERT INTO "public"."customers" ("email", name) VALUES (U&'\0071u', 'u')"#)
        .await
        .ok();
    assert_eq!(table_state(&f).await.1, 0, "no plaintext stored");
    let r = c
        .simple_query("SELECT email FROM customers WHERE name = 'e'")
        .await
        .expect("read back");
    assert_eq!(rows(&r), vec![vec![Some("q'A".to_string())]]);
    let r = c
        .simple_query(r"SELECT name FROM customers WHERE email = E'q\'\x41'")
        .await
        .expect("compare");
    assert_eq!(rows(&r), vec![vec![Some("e".to_string())]]);
}
