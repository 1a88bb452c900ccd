//! Views and materialized views over a protected table, read and written through the proxy as
//! non-owner roles: plain columns give each role what the table gives it (app plaintext,
//! support masks and NULL, dba envelopes, auditor a refusal); outputs computed from protected
//! columns go only to roles that may read those columns.

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::{code, rows};
use pgshroud_integration_tests::roles::{RolesFixture, RULES, SCHEMA};

/// The views every test reads, made by the owner before any session opens.
const VIEWS: &str = "\
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total int);
CREATE VIEW v_customers AS SELECT * FROM customers;
CREATE VIEW v_nested AS SELECT id, email AS mail, age, name FROM v_customers;
CREATE VIEW v_joined AS SELECT c.id, c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id;
CREATE VIEW v_expr AS SELECT id, encode(email, 'hex') AS email_hex, name FROM customers;
CREATE VIEW v_count AS SELECT count(email) AS emails FROM customers;
CREATE VIEW v_barrier WITH (security_barrier) AS SELECT id, email FROM customers WHERE id > 0;
CREATE VIEW v_union AS SELECT id, email FROM customers WHERE id = 1 UNION ALL SELECT id, email FROM customers WHERE id = 2;
CREATE MATERIALIZED VIEW mv_customers AS SELECT id, email, age FROM customers;";

async fn fixture() -> RolesFixture {
    let schema = format!("{SCHEMA}\n{VIEWS}");
    let f = RolesFixture::with_rules(RULES, &schema, ConfigLayer::default()).await;
    let app = f.connect("app").await;
    app.simple_query(
        "INSERT INTO customers (id, email, age, name) VALUES \
         (1, 'alice@example.com', '42', 'Alice'), (2, 'bob@example.com', NULL, 'Bob'); \
         INSERT INTO orders VALUES (10, 1, 99), (11, 2, 5);",
    )
    .await
    .expect("app writes");
    f.direct()
        .await
        .batch_execute("REFRESH MATERIALIZED VIEW mv_customers")
        .await
        .expect("refresh");
    f
}

async fn read(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    match c.simple_query(sql).await {
        Ok(r) => Ok(rows(&r)),
        Err(e) => Err(code(&e)),
    }
}

fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

#[tokio::test]
async fn plain_view_columns_give_each_role_what_the_table_gives() {
    let f = fixture().await;
    let plain = [
        "SELECT id, email, age FROM v_customers ORDER BY id",
        "SELECT id, mail, age FROM v_nested ORDER BY id",
        "SELECT id, email, age FROM mv_customers ORDER BY id",
    ];
    let app = f.connect("app").await;
    let support = f.connect("support").await;
    let dba = f.connect("dba").await;
    let auditor = f.connect("auditor").await;
    for sql in plain {
        assert_eq!(
            read(&app, sql).await.expect(sql),
            [
                row(&[Some("1"), Some("alice@example.com"), Some("42")]),
                row(&[Some("2"), Some("bob@example.com"), None]),
            ],
            "app: {sql}"
        );
        assert_eq!(
            read(&support, sql).await.expect(sql),
            [
                row(&[Some("1"), Some("a****@example.com"), None]),
                row(&[Some("2"), Some("b****@example.com"), None]),
            ],
            "support: {sql}"
        );
        let stored = read(&dba, sql).await.expect(sql);
        assert!(
            stored[0][1]
                .as_deref()
                .is_some_and(|v| v.starts_with("\\x02")),
            "dba: {sql}: {stored:?}"
        );
        assert_eq!(
            read(&auditor, sql).await,
            Err("42501".into()),
            "auditor: {sql}"
        );
    }
    for sql in [
        "SELECT email FROM v_joined WHERE total = 99",
        "SELECT email FROM v_barrier WHERE id = 1",
        "SELECT email FROM v_union ORDER BY id LIMIT 1",
    ] {
        assert_eq!(
            read(&app, sql).await.expect(sql),
            [row(&[Some("alice@example.com")])],
            "app: {sql}"
        );
        assert_eq!(
            read(&support, sql).await.expect(sql),
            [row(&[Some("a****@example.com")])],
            "support: {sql}"
        );
        assert_eq!(
            read(&auditor, sql).await,
            Err("42501".into()),
            "auditor: {sql}"
        );
    }
    // What the table gives the auditor too: unprotected columns.
    assert_eq!(
        read(&auditor, "SELECT id, name FROM v_customers ORDER BY id")
            .await
            .expect("unprotected columns"),
        [
            row(&[Some("1"), Some("Alice")]),
            row(&[Some("2"), Some("Bob")])
        ]
    );
    // Extended protocol, binary results: the logical type, decrypted.
    let r = app
        .query("SELECT email, age FROM v_customers WHERE id = 1", &[])
        .await
        .expect("extended");
    assert_eq!(r[0].get::<_, String>(0), "alice@example.com");
    assert_eq!(r[0].get::<_, i32>(1), 42);
}

#[tokio::test]
async fn values_compared_with_view_columns_are_encrypted_like_the_table_s() {
    let f = fixture().await;
    let app = f.connect("app").await;
    for sql in [
        "SELECT id FROM v_customers WHERE email = 'bob@example.com'",
        "SELECT id FROM v_nested WHERE mail = 'bob@example.com'",
        "SELECT id FROM mv_customers WHERE email IN ('bob@example.com')",
    ] {
        assert_eq!(
            read(&app, sql).await.expect(sql),
            [row(&[Some("2")])],
            "{sql}"
        );
    }
    let r = app
        .query(
            "SELECT id FROM v_customers WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .expect("parameter");
    assert_eq!(r[0].get::<_, i32>(0), 1);
    // What the table refuses, the view refuses.
    assert_eq!(
        read(&app, "SELECT id FROM v_customers WHERE email LIKE 'a%'").await,
        Err("0A000".into())
    );
}

#[tokio::test]
async fn writes_through_an_updatable_view_are_encrypted_like_the_table_s() {
    let f = fixture().await;
    let app = f.connect("app").await;
    app.simple_query(
        "INSERT INTO v_customers (id, email, age, name) VALUES (3, 'carol@example.com', '7', 'Carol')",
    )
    .await
    .expect("insert through the view");
    app.execute(
        "UPDATE v_nested SET mail = $1 WHERE id = 2",
        &[&"robert@example.com"],
    )
    .await
    .expect("update through a nested view");
    assert_eq!(
        read(
            &app,
            "SELECT email, age FROM customers WHERE id IN (2, 3) ORDER BY id"
        )
        .await
        .expect("read back"),
        [
            row(&[Some("robert@example.com"), None]),
            row(&[Some("carol@example.com"), Some("7")]),
        ]
    );
    let stored = f
        .direct()
        .await
        .query("SELECT email FROM customers WHERE id IN (2, 3)", &[])
        .await
        .expect("stored");
    for r in stored {
        let v: Vec<u8> = r.get(0);
        assert_eq!(v[0], 2, "an envelope is stored");
        assert!(!String::from_utf8_lossy(&v).contains("example.com"));
    }
    // Roles without the write right are refused as for the table.
    let support = f.connect("support").await;
    let e = support
        .simple_query("UPDATE v_customers SET email = 'x@example.com' WHERE id = 1")
        .await
        .expect_err("support may not write");
    assert_eq!(code(&e), "42501", "{e}");
}

#[tokio::test]
async fn computed_view_outputs_go_only_to_roles_that_may_read_their_columns() {
    let f = fixture().await;
    let computed = [
        "SELECT email_hex FROM v_expr ORDER BY id",
        "SELECT emails FROM v_count",
        // Not even the unprotected columns of such a view: the statement names it.
        "SELECT id, name FROM v_expr ORDER BY id",
        "COPY (SELECT * FROM v_expr) TO STDOUT",
        "CREATE TEMP TABLE launder AS SELECT * FROM v_expr",
    ];
    for suffix in ["support", "auditor"] {
        let c = f.connect(suffix).await;
        for sql in computed {
            assert_eq!(read(&c, sql).await, Err("42501".into()), "{suffix}: {sql}");
        }
    }
    // Roles that may read every column it comes from get what the server computes.
    for suffix in ["app", "dba"] {
        let c = f.connect(suffix).await;
        let hex = read(&c, computed[0]).await.expect(suffix);
        assert!(
            hex[0][0].as_deref().is_some_and(|v| v.starts_with("02")),
            "{suffix}: {hex:?}"
        );
        assert_eq!(
            read(&c, computed[1]).await.expect(suffix),
            [row(&[Some("2")])]
        );
    }
}

#[tokio::test]
async fn a_view_made_or_replaced_in_one_session_is_mapped_in_the_others() {
    let f = fixture().await;
    f.direct()
        .await
        .batch_execute(&format!(
            "GRANT CREATE ON SCHEMA public TO {}",
            f.user("app")
        ))
        .await
        .expect("grant");
    // Open before the view exists.
    let support = f.connect("support").await;
    let app = f.connect("app").await;
    app.batch_execute(
        "CREATE VIEW v_late AS SELECT id, email FROM customers; \
         CREATE VIEW v_late_named AS SELECT id, email, name FROM customers; \
         GRANT SELECT ON v_late, v_late_named TO PUBLIC",
    )
    .await
    .expect("create view through the proxy");
    // The first statement after another session's change waits for this session's look-up,
    // sent ahead of it: the new view is mapped already (the role's mask applies).
    assert_eq!(
        read(&support, "SELECT email FROM v_late_named ORDER BY id")
            .await
            .expect("support"),
        [
            row(&[Some("a****@example.com")]),
            row(&[Some("b****@example.com")])
        ]
    );
    assert_eq!(
        read(&support, "SELECT email FROM v_late ORDER BY id")
            .await
            .expect("support"),
        [
            row(&[Some("a****@example.com")]),
            row(&[Some("b****@example.com")])
        ]
    );
    // Replaced inside a transaction: the others follow once it commits.
    let app2 = f.connect("app").await;
    app.batch_execute(
        "BEGIN; CREATE OR REPLACE VIEW v_late AS SELECT id, email, age FROM customers; COMMIT",
    )
    .await
    .expect("replace view");
    read(&app2, "SELECT 1")
        .await
        .expect("the look-up runs after this");
    read(&support, "SELECT 1")
        .await
        .expect("the look-up runs after this");
    assert_eq!(
        read(&app2, "SELECT email, age FROM v_late WHERE id = 1")
            .await
            .expect("app"),
        [row(&[Some("alice@example.com"), Some("42")])]
    );
    assert_eq!(
        read(&support, "SELECT email, age FROM v_late WHERE id = 1")
            .await
            .expect("support"),
        [row(&[Some("a****@example.com"), None])]
    );
    // A view computing from a protected column is refused when made through pgshroud.
    let e = app
        .simple_query("CREATE VIEW v_hex AS SELECT encode(email, 'hex') AS h FROM customers")
        .await
        .expect_err("computed view");
    assert_eq!(code(&e), "0A000", "{e}");
}

/// The whole output of a `COPY ... TO STDOUT`, as text.
async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Result<String, String> {
    use futures_util::StreamExt;
    let stream = c.copy_out(sql).await.map_err(|e| code(&e))?;
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| code(&e))?);
    }
    Ok(String::from_utf8(out).expect("utf8"))
}

#[tokio::test]
async fn copy_of_a_view_or_materialized_view_gives_each_role_what_the_table_gives() {
    let f = fixture().await;
    let copies = [
        "COPY (SELECT id, email, age FROM v_customers ORDER BY id) TO STDOUT",
        // PostgreSQL copies a materialized view only through a query.
        "COPY (SELECT * FROM mv_customers ORDER BY id) TO STDOUT",
    ];
    let app = f.connect("app").await;
    let support = f.connect("support").await;
    let auditor = f.connect("auditor").await;
    for sql in copies {
        let plain = copy_out(&app, sql).await.expect(sql);
        assert!(
            plain.starts_with("1\talice@example.com\t42\n"),
            "{sql}: {plain}"
        );
        let masked = copy_out(&support, sql).await.expect(sql);
        assert!(
            masked.starts_with("1\ta****@example.com\t\\N\n"),
            "{sql}: {masked}"
        );
        assert_eq!(copy_out(&auditor, sql).await, Err("42501".into()), "{sql}");
    }
}
