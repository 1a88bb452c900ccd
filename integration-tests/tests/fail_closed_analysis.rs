//! The analyser fails closed by construction, seen through the proxy: statements too deep to
//! analyse are refused (54001) without taking the process down, Unicode-escaped names are
//! read as PostgreSQL reads them, guard-weakening DDL is refused for every role, and names
//! resolve with PostgreSQL's scoping. Every test also checks the session and proxy live on.

use pgshroud_integration_tests::protected::{code, rows, Fixture};
use pgshroud_integration_tests::roles::RolesFixture;
use pgshroud_integration_tests::{cluster, users};

/// The session still answers, and the proxy still accepts new sessions.
async fn still_up(f: &Fixture, c: &tokio_postgres::Client) {
    let r = c.simple_query("SELECT 41 + 1").await.expect("same session");
    assert_eq!(rows(&r), vec![vec![Some("42".to_string())]]);
    let fresh = f.app().await;
    fresh.simple_query("SELECT 1").await.expect("new session");
}

/// Deep statements of every shape on the protected table.
fn deep_statements(n: usize) -> Vec<String> {
    vec![
        format!(
            "SELECT id FROM customers WHERE name = 'a'{}",
            " || name".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE {}",
            vec!["name = 'a'"; n].join(" AND ")
        ),
        format!(
            "SELECT id FROM customers WHERE {}name = 'a'{}",
            "(".repeat(n),
            ")".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE id IN {}(1){}",
            "(SELECT id FROM customers WHERE id IN ".repeat(n),
            ")".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE name = {}'x'{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE id = {}1{}",
            "ARRAY[".repeat(n),
            "]".repeat(n)
        ),
    ]
}

fn assert_too_complex(e: &tokio_postgres::Error, sql: &str) {
    assert_eq!(code(e), "54001", "{}: {e}", &sql[..60]);
    let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
    assert!(
        message.starts_with("statement too complex for pgshroud to analyse: nesting deeper than"),
        "{message}"
    );
}

#[tokio::test]
async fn statements_too_deep_to_analyse_are_refused_with_54001_and_nothing_goes_down() {
    let f = Fixture::new().await;
    let c = f.app().await;
    for n in [10_000, 100_000] {
        for sql in deep_statements(n) {
            let e = c
                .simple_query(&sql)
                .await
                .expect_err("simple query refused");
            assert_too_complex(&e, &sql);
            still_up(&f, &c).await;
            let e = c.query(sql.as_str(), &[]).await.expect_err("Parse refused");
            assert_too_complex(&e, &sql);
            still_up(&f, &c).await;
        }
    }
}

#[tokio::test]
async fn deep_statements_from_every_role_leave_the_proxy_up() {
    let f = RolesFixture::new().await;
    let deep_protected = format!(
        "SELECT id FROM customers WHERE name = 'a'{}",
        " || name".repeat(100_000)
    );
    // Not about a protected table: analysed only for the analyst's statement-kind check.
    let deep_plain = format!(
        "SELECT 1 FROM notes WHERE body = 'a'{}",
        " || body".repeat(100_000)
    );
    for suffix in ["app", "auditor", "analyst", "dba"] {
        let c = f.connect(suffix).await;
        let e = c.simple_query(&deep_protected).await.expect_err("refused");
        assert_too_complex(&e, &deep_protected);
        // PostgreSQL may answer this one itself (its own stack limit); the proxy must not fall.
        let _ = c.simple_query(&deep_plain).await;
        c.simple_query("SELECT 1").await.expect("same session");
        f.connect(suffix)
            .await
            .simple_query("SELECT 1")
            .await
            .expect("new session");
    }
}

/// Statements touching no protected table are still read with PostgreSQL's grammar when they
/// hold PREPARE, DEALLOCATE, DISCARD, DECLARE, CLOSE, EXECUTE or FETCH (the statement
/// tracker, the schema-change checks, FETCH detection). That reading recursed once per level
/// of the tree: `1+1+...` twenty thousand terms long overflowed the session thread's stack and
/// aborted the whole proxy, every session with it. Now the nesting is bounded from PostgreSQL's
/// scanner first: what is too deep to read is not read (the tracker goes by the command tag)
/// or, where the statement's effect must be known (EXECUTE with arguments), refused.
#[tokio::test]
async fn deep_statements_read_for_their_effects_leave_the_proxy_up() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let chain = "+1".repeat(20_000);
    for sql in [
        format!("PREPARE deep AS SELECT 1{chain}"),
        format!("SELECT 1{chain} -- discard all"),
        format!(
            "DECLARE c CURSOR FOR SELECT 1 WHERE {}true",
            "NOT ".repeat(20_000)
        ),
        format!("SELECT 1{chain} -- fetch"),
        // Keywords after `.` are names to PostgreSQL: not the CASE's separators.
        format!(
            "SELECT CASE WHEN true THEN 0 ELSE 0{} END -- close",
            " + x.then".repeat(20_000)
        ),
    ] {
        // PostgreSQL may run it or refuse it (its own stack limit); the proxy must not fall.
        let _ = c.simple_query(&sql).await;
        still_up(&f, &c).await;
        let _ = c.query(sql.as_str(), &[]).await;
        still_up(&f, &c).await;
    }
    c.simple_query("PREPARE p (int) AS SELECT $1")
        .await
        .unwrap();
    let sql = format!("EXECUTE p (1{chain})");
    // Refused before it is sent: by the first reader that needs it (the identity settings'
    // reading, 42601, or the schema-change check, 54001).
    let e = c.simple_query(&sql).await.expect_err("refused");
    let refusal = e.as_db_error().expect("an ErrorResponse");
    assert!(
        ["42601", "54001"].contains(&refusal.code().code())
            && refusal.message().contains("levels deep"),
        "{refusal:?}"
    );
    still_up(&f, &c).await;
}

#[tokio::test]
async fn writes_through_unicode_escaped_names_are_encrypted() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.simple_query(
        r#"INSERT INTO U&"\0063ustomers" (U&"\0065mail", name) VALUES ('u1@x.org', 'u1')"#,
    )
    .await
    .expect("escaped name");
    c.simple_query(
        r#"INSERT INTO u&"!0063ustomers" UESCAPE '!' (email, name) VALUES ('u2@x.org', 'u2')"#,
    )
    .await
    .expect("UESCAPE");
    c.execute(
        r#"UPDATE U&"\0063ustomers" SET U&"\0065mail" = $1 WHERE name = 'u2'"#,
        &[&"u3@x.org"],
    )
    .await
    .expect("escaped UPDATE with a parameter");
    let stored = f.stored("SELECT email FROM customers ORDER BY name").await;
    assert_eq!(stored.len(), 2);
    for (value, plain) in stored.iter().zip(["u1@x.org", "u3@x.org"]) {
        let value = value.as_deref().expect("stored");
        assert!(
            !value.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "plaintext stored"
        );
    }
    let back = c
        .simple_query("SELECT email FROM customers ORDER BY name")
        .await
        .unwrap();
    assert_eq!(
        rows(&back),
        vec![vec![Some("u1@x.org".into())], vec![Some("u3@x.org".into())]]
    );
    let e = c
        .simple_query(r#"SELECT 1 FROM U&"\0063ustomers" WHERE email LIKE 'u%'"#)
        .await
        .expect_err("LIKE on an encrypted column, however the table is spelled");
    assert_eq!(code(&e), "0A000");
    let e = c
        .simple_query(r#"INSERT INTO U&"\00zzustomers" (email) VALUES ('x')"#)
        .await
        .expect_err("undecodable");
    assert_eq!(code(&e), "42601");
    still_up(&f, &c).await;
}

fn assert_guard_refusal(e: &tokio_postgres::Error, sql: &str) {
    // The app role does not own the table, so PostgreSQL would say 42501 too: the message
    // shows it was the proxy.
    assert_eq!(code(e), "42501", "{sql}: {e}");
    let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
    assert!(
        message.starts_with("pgshroud refuses") && message.contains("guard"),
        "{sql}: {message}"
    );
}

#[tokio::test]
async fn ddl_weakening_a_guard_is_refused_for_every_role() {
    let f = RolesFixture::new().await;
    // The fixture ran `pgshroud setup`: every protected column has its guard.
    let direct = f.direct().await;
    let statements = [
        "ALTER TABLE customers DROP CONSTRAINT pgshroud_guard_email",
        r#"ALTER TABLE U&"\0063ustomers" DROP CONSTRAINT U&"pgshroud\005fguard_email""#,
        "ALTER TABLE customers RENAME CONSTRAINT pgshroud_guard_email TO gone",
        "ALTER TABLE customers ALTER COLUMN email TYPE text",
        "ALTER TABLE customers ADD CONSTRAINT pgshroud_guard_age CHECK (true)",
        "DROP DOMAIN IF EXISTS pgshroud_email",
    ];
    for suffix in ["app", "dba", "auditor"] {
        let c = f.connect(suffix).await;
        for sql in statements {
            let e = c.simple_query(sql).await.expect_err("refused");
            assert_guard_refusal(&e, sql);
            c.simple_query("SELECT 1").await.expect("same session");
        }
    }
    // The database owner (who could drop it directly) is refused through the proxy as well.
    let owner = f
        .proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    let e = owner
        .simple_query("ALTER TABLE customers DROP CONSTRAINT pgshroud_guard_email")
        .await
        .expect_err("refused");
    assert_guard_refusal(&e, "owner");
    let left = direct
        .query(
            "SELECT 1 FROM pg_constraint WHERE conname = 'pgshroud_guard_email'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the guard is still there");
    // Reading about guards is fine.
    let c = f.connect("app").await;
    let r = c
        .simple_query("SELECT conname FROM pg_constraint WHERE conname = 'pgshroud_guard_email'")
        .await
        .unwrap();
    assert_eq!(rows(&r), vec![vec![Some("pgshroud_guard_email".into())]]);
    f.connect("app")
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cte_named_like_the_table_does_not_hide_the_delete_target() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.simple_query("INSERT INTO customers (email, name) VALUES ('cte@x.org', 'c')")
        .await
        .unwrap();
    // PostgreSQL deletes from the table (a CTE is never a target): the compared value must be
    // encrypted to find the row.
    let r = c
        .simple_query(
            "WITH customers AS (SELECT 1 AS id) DELETE FROM customers WHERE email = 'cte@x.org'",
        )
        .await
        .unwrap();
    let deleted = r.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(deleted, Some(1));
    still_up(&f, &c).await;
}

#[tokio::test]
async fn a_subquery_in_from_does_not_see_its_sibling_table() {
    let f = Fixture::new().await;
    cluster()
        .admin_client_for(&f.db)
        .await
        .batch_execute(
            "CREATE TABLE imported (email text); INSERT INTO imported VALUES ('leak@x.org');
             GRANT ALL ON imported TO PUBLIC",
        )
        .await
        .unwrap();
    let c = f.app().await;
    c.simple_query("INSERT INTO customers (email, name) VALUES ('a@x.org', 'a')")
        .await
        .unwrap();
    // `email` in the subquery is imported's plaintext, not the sibling customers.email.
    let e = c
        .simple_query(
            "INSERT INTO customers (email) SELECT s.email FROM customers c, \
             (SELECT email FROM imported) s",
        )
        .await
        .expect_err("plaintext into an encrypted column");
    assert_eq!(code(&e), "0A000");
    assert_eq!(f.stored("SELECT email FROM customers").await.len(), 1);
    still_up(&f, &c).await;
}

#[tokio::test]
async fn a_select_only_role_cannot_delete_through_a_cte() {
    let f = RolesFixture::new().await;
    let direct = f.direct().await;
    direct
        .batch_execute("INSERT INTO notes (body) VALUES ('keep')")
        .await
        .unwrap();
    let c = f.connect("analyst").await;
    let e = c
        .simple_query("WITH d AS (DELETE FROM notes RETURNING 1) SELECT count(*) FROM d")
        .await
        .expect_err("a delete, whatever its outer SELECT");
    assert_eq!(code(&e), "42501");
    let left = direct.query("SELECT 1 FROM notes", &[]).await.unwrap();
    assert_eq!(left.len(), 1);
    c.simple_query("SELECT 1").await.expect("same session");
}
