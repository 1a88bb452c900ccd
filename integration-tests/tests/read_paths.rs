//! Read paths other than a plain SELECT, through the proxy as non-owner roles: each gives a
//! role what it may see of a protected column, never more (`COPY (query) TO STDOUT`).

use futures_util::StreamExt;
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::code;
use pgshroud_integration_tests::roles::{RolesFixture, RULES, SCHEMA};

/// A fixture with two customers written by `app`.
async fn with_customers() -> RolesFixture {
    let f = RolesFixture::with_rules(RULES, SCHEMA, ConfigLayer::default()).await;
    let app = f.connect("app").await;
    app.simple_query(
        "INSERT INTO customers (id, email, age, name) VALUES \
         (1, 'alice@example.com', '42', 'Alice'), (2, 'bob@example.com', NULL, 'Bob, Jr.')",
    )
    .await
    .expect("app writes");
    f
}

/// The whole output of a `COPY ... TO STDOUT`, as text.
async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let stream = c.copy_out(sql).await?;
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(String::from_utf8(out).expect("utf8"))
}

#[tokio::test]
async fn copy_query_to_stdout_gives_each_role_what_it_may_see() {
    let f = with_customers().await;
    let text = "COPY (SELECT id, email, age, name FROM customers ORDER BY id) TO STDOUT";
    let csv = "COPY (SELECT c.email, c.name FROM customers c WHERE c.id = 2) TO STDOUT \
               WITH (FORMAT csv, HEADER)";
    let app = f.connect("app").await;
    assert_eq!(
        copy_out(&app, text).await.expect("app"),
        "1\talice@example.com\t42\tAlice\n2\tbob@example.com\t\\N\tBob, Jr.\n"
    );
    assert_eq!(
        copy_out(&app, csv).await.expect("app csv"),
        "email,name\nbob@example.com,\"Bob, Jr.\"\n"
    );
    let support = f.connect("support").await;
    assert_eq!(
        copy_out(&support, text).await.expect("support"),
        "1\ta****@example.com\t\\N\tAlice\n2\tb****@example.com\t\\N\tBob, Jr.\n"
    );
    // The dba reads what is stored: envelopes, never plaintext.
    let dba = f.connect("dba").await;
    let stored = copy_out(&dba, text).await.expect("dba");
    assert!(stored.starts_with("1\t\\\\x02"), "{stored}");
    assert!(!stored.contains("alice@"), "{stored}");
    // A role denied the column gets nothing of it, and its session goes on.
    let auditor = f.connect("auditor").await;
    let e = copy_out(&auditor, text).await.expect_err("auditor");
    assert_eq!(code(&e), "42501", "{e}");
    assert_eq!(
        copy_out(
            &auditor,
            "COPY (SELECT id, name FROM customers ORDER BY id) TO STDOUT"
        )
        .await
        .expect("unprotected columns"),
        "1\tAlice\n2\tBob, Jr.\n"
    );
}

#[tokio::test]
async fn copy_query_to_stdout_refuses_what_a_select_refuses_and_binary() {
    let f = with_customers().await;
    let app = f.connect("app").await;
    for (sql, sqlstate) in [
        (
            "COPY (SELECT id FROM customers WHERE email LIKE 'a%') TO STDOUT",
            "0A000",
        ),
        (
            "COPY (SELECT email FROM customers) TO STDOUT (FORMAT binary)",
            "0A000",
        ),
    ] {
        let e = copy_out(&app, sql).await.expect_err(sql);
        assert_eq!(code(&e), sqlstate, "{sql}: {e}");
    }
    // Where a set operation merges the column with itself, the role's action still applies.
    let support = f.connect("support").await;
    let merged = copy_out(
        &support,
        "COPY (SELECT email FROM customers WHERE id = 1 UNION ALL \
         SELECT email FROM customers WHERE id = 2) TO STDOUT",
    )
    .await
    .expect("union");
    assert_eq!(merged, "a****@example.com\nb****@example.com\n");
}

/// Runs a PostgreSQL client program (pg_dump, psql) through the proxy as the fixture user
/// with `suffix`; its standard output, or its standard error on failure.
async fn client_program(
    f: &RolesFixture,
    program: &str,
    suffix: &str,
    args: &[&str],
) -> Result<String, String> {
    let url = f.proxy.conn_string(
        &f.user(suffix),
        pgshroud_integration_tests::roles::PASSWORD,
        &f.db,
    );
    pgshroud_integration_tests::client_program(program, &url, args).await
}

#[tokio::test]
async fn pg_dump_with_a_table_filter_and_psql_describe_work_per_role() {
    let f = with_customers().await;
    let dump = ["-t", "customers", "--data-only"];
    let app = client_program(&f, "pg_dump", "app", &dump)
        .await
        .expect("app dumps the table");
    assert!(app.contains("alice@example.com"), "{app}");
    let support = client_program(&f, "pg_dump", "support", &dump)
        .await
        .expect("support dumps the table");
    assert!(support.contains("a****@example.com"), "{support}");
    assert!(!support.contains("alice@"), "{support}");
    let dba = client_program(&f, "pg_dump", "dba", &dump)
        .await
        .expect("dba dumps the table");
    assert!(!dba.contains("alice@"), "{dba}");
    for suffix in ["app", "support", "dba", "auditor"] {
        let described = client_program(&f, "psql", suffix, &["-X", "-c", "\\d customers"])
            .await
            .unwrap_or_else(|e| panic!("{suffix}: {e}"));
        assert!(described.contains("email"), "{suffix}: {described}");
    }
}

/// The first column of every row of a simple query.
async fn column(c: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    let r = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    pgshroud_integration_tests::protected::rows(&r)
        .into_iter()
        .map(|mut row| row.remove(0))
        .collect()
}

#[tokio::test]
async fn envelopes_in_results_of_no_known_origin_are_withheld_from_roles_that_may_not_read_them() {
    let f = with_customers().await;
    // Sessions open before the objects exist: a child table made by another connection is
    // unknown to their catalog until its next look-up.
    let mut sessions = Vec::new();
    for suffix in ["support", "analyst", "dba", "app"] {
        sessions.push((suffix, f.connect(suffix).await));
    }
    f.direct()
        .await
        .batch_execute(
            "CREATE VIEW customer_emails AS SELECT id, email FROM customers; \
             CREATE FUNCTION all_emails() RETURNS SETOF bytea LANGUAGE sql \
               AS 'SELECT email FROM customers ORDER BY id'; \
             CREATE TABLE customers_late () INHERITS (customers); \
             INSERT INTO customers_late (id, email) SELECT 3, email FROM customers WHERE id = 1; \
             GRANT SELECT ON customer_emails, customers_late TO PUBLIC;",
        )
        .await
        .expect("objects made outside the proxy");
    let reads = [
        "SELECT email FROM customer_emails ORDER BY id",
        "SELECT * FROM all_emails()",
        "SELECT email FROM customers_late",
    ];
    for (suffix, c) in &sessions[..2] {
        // The first read of a relation the session's catalog does not know is shaped by the
        // backstop alone; a set-returning function's results always are.
        for sql in &reads[..2] {
            let values = column(c, sql).await;
            assert!(!values.is_empty(), "{suffix}: {sql}");
            assert!(
                values.iter().all(Option::is_none),
                "{suffix}: {sql}: {values:?}"
            );
        }
        // Extended protocol, binary results: the same.
        let rows = c.query(reads[1], &[]).await.expect("extended");
        assert!(rows
            .iter()
            .all(|r| r.get::<_, Option<Vec<u8>>>(0).is_none()));
        // The unknown origin made the session look its catalog up again: the view and the
        // child are now mapped like the table (masks or NULL, never an envelope).
        for sql in [reads[0], reads[2]] {
            let values = column(c, sql).await;
            assert!(!values.is_empty(), "{suffix}: {sql}");
            assert!(
                values
                    .iter()
                    .flatten()
                    .all(|v| !v.starts_with("\\x") && !v.contains("alice")),
                "{suffix}: {sql}: {values:?}"
            );
        }
    }
    // Roles that may read stored values get them as they are at first (envelopes, never
    // plaintext), then as the table gives them once the catalog knows the relations.
    for (suffix, c) in &sessions[2..] {
        for sql in &reads[..2] {
            let values = column(c, sql).await;
            assert!(
                values.iter().flatten().all(|v| v.starts_with("\\x02")),
                "{suffix}: {sql}: {values:?}"
            );
        }
        let late = column(c, reads[2]).await;
        let expected = if *suffix == "app" {
            Some("alice@example.com".to_owned())
        } else {
            late[0].clone().filter(|v| v.starts_with("\\x02"))
        };
        assert_eq!(late[0], expected, "{suffix}");
        assert!(late[0].is_some(), "{suffix}");
    }
}
