//! Bulk INSERT shapes ORMs and drivers emit for many rows — SQLAlchemy's VALUES derived table,
//! Django's and sqlx's UNNEST of arrays (parameters, '{...}' literals, ARRAY[...]) — store every protected value as an envelope, read back
//! exactly, and anything else done to the values stays refused.

use pgshroud_integration_tests::protected::{code, rows, Fixture};
use pgshroud_integration_tests::raw::{build, error_codes, RawClient};
use pgshroud_integration_tests::users;

/// Every stored email and age is an envelope (format 2) holding no plaintext; returns the count.
async fn all_sealed(f: &Fixture, plaintexts: &[&str]) -> usize {
    let stored = f
        .stored("SELECT email FROM customers WHERE email IS NOT NULL UNION ALL SELECT age FROM customers WHERE age IS NOT NULL")
        .await;
    for s in &stored {
        let s = s.as_ref().unwrap();
        assert_eq!(s[0], 2, "envelope format 2");
        let text = String::from_utf8_lossy(s);
        assert!(plaintexts.iter().all(|p| !text.contains(p)));
    }
    stored.len()
}

/// (email, age, name) of every customer through the proxy, by name.
async fn customers(c: &tokio_postgres::Client) -> Vec<Vec<Option<String>>> {
    rows(
        &c.simple_query("SELECT email, age, name FROM customers ORDER BY name")
            .await
            .unwrap(),
    )
}

fn row(email: Option<&str>, age: Option<&str>, name: &str) -> Vec<Option<String>> {
    vec![
        email.map(str::to_owned),
        age.map(str::to_owned),
        Some(name.to_owned()),
    ]
}

/// The session goes on, and the proxy still takes new connections.
async fn still_serving(f: &Fixture, c: &tokio_postgres::Client) {
    c.simple_query("SELECT 1").await.unwrap();
    f.app().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn sqlalchemy_values_bulk_insert_with_literals_is_encrypted() {
    let f = Fixture::new().await;
    let c = f.app().await;
    // SQLAlchemy 2.0 insertmanyvalues with psycopg2 (client-side literals).
    let got = c
        .simple_query(
            "INSERT INTO customers (email, age, name) SELECT p0::VARCHAR, p1::INTEGER, p2::VARCHAR \
             FROM (VALUES ('a@x.org', 30, 'A', 0), ('b@x.org', NULL, 'B', 1), (NULL, 7, 'C', 2)) \
             AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter \
             RETURNING customers.id, customers.id AS id__1",
        )
        .await
        .unwrap();
    assert_eq!(rows(&got).len(), 3);
    assert_eq!(all_sealed(&f, &["x.org"]).await, 4);
    assert_eq!(
        customers(&c).await,
        vec![
            row(Some("a@x.org"), Some("30"), "A"),
            row(Some("b@x.org"), None, "B"),
            row(None, Some("7"), "C"),
        ]
    );
    // A protected column that is NULL in every row is still bytea to the server.
    c.simple_query(
        "INSERT INTO customers (email, name) SELECT p0::VARCHAR, p1::VARCHAR \
         FROM (VALUES (NULL, 'D', 0), (NULL, 'E', 1)) AS imp_sen(p0, p1, sen_counter) \
         ORDER BY sen_counter",
    )
    .await
    .unwrap();
    let found = c
        .simple_query("SELECT name FROM customers WHERE email = 'b@x.org'")
        .await
        .unwrap();
    assert_eq!(rows(&found), vec![vec![Some("B".to_owned())]]);
    still_serving(&f, &c).await;
}

#[tokio::test]
async fn sqlalchemy_values_bulk_insert_with_parameters_is_encrypted() {
    let f = Fixture::new().await;
    let c = f.app().await;
    // asyncpg casts every parameter; psycopg 3 only the strings.
    let asyncpg = "INSERT INTO customers (email, age, name) SELECT p0::VARCHAR, p1::INTEGER, p2::VARCHAR \
        FROM (VALUES ($1::VARCHAR, $2::INTEGER, $3::VARCHAR, 0), ($4::VARCHAR, $5::INTEGER, $6::VARCHAR, 1)) \
        AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter RETURNING customers.id";
    let ids = c
        .query(
            asyncpg,
            &[&"a@x.org", &30i32, &"A", &None::<&str>, &Some(31i32), &"B"],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let psycopg =
        "INSERT INTO customers (email, age, name) SELECT p0::VARCHAR, p1::INTEGER, p2::VARCHAR \
        FROM (VALUES ($1::VARCHAR, $2, $3::VARCHAR, 0)) AS imp_sen(p0, p1, p2, sen_counter) \
        ORDER BY sen_counter RETURNING customers.id";
    c.query(psycopg, &[&"c@x.org", &32i32, &"C"]).await.unwrap();
    assert_eq!(all_sealed(&f, &["x.org"]).await, 5);
    assert_eq!(
        customers(&c).await,
        vec![
            row(Some("a@x.org"), Some("30"), "A"),
            row(None, Some("31"), "B"),
            row(Some("c@x.org"), Some("32"), "C"),
        ]
    );
    still_serving(&f, &c).await;
}

#[tokio::test]
async fn django_unnest_of_array_literals_is_encrypted() {
    let f = Fixture::new().await;
    let c = f.app().await;
    // Django 5.2 bulk_create with psycopg's client-side binding.
    let got = c
        .simple_query(
            "INSERT INTO \"customers\" (\"email\", \"age\", \"name\") SELECT * FROM \
             UNNEST(('{a@x.org,\"b,1@x.org\",NULL}')::varchar[], ('{1,NULL,3}'::integer[])::integer[], \
             ('{A,B,C}')::varchar[]) RETURNING \"customers\".\"id\"",
        )
        .await
        .unwrap();
    assert_eq!(rows(&got).len(), 3);
    // The same with psycopg2, which writes a list as ARRAY[...].
    c.simple_query(
        "INSERT INTO \"customers\" (\"email\", \"age\", \"name\") SELECT * FROM \
         UNNEST((ARRAY['d@x.org',NULL])::varchar[], (ARRAY[4,5])::integer[], \
         (ARRAY['D','E'])::varchar[]) RETURNING \"customers\".\"id\"",
    )
    .await
    .unwrap();
    assert_eq!(all_sealed(&f, &["x.org"]).await, 7);
    assert_eq!(
        customers(&c).await,
        vec![
            row(Some("a@x.org"), Some("1"), "A"),
            row(Some("b,1@x.org"), None, "B"),
            row(None, Some("3"), "C"),
            row(Some("d@x.org"), Some("4"), "D"),
            row(None, Some("5"), "E"),
        ]
    );
    still_serving(&f, &c).await;
}

#[tokio::test]
async fn sqlx_unnest_of_binary_array_parameters_is_encrypted() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let emails = vec![Some("a@x.org"), None, Some("c@x.org")];
    let ages = vec![Some(1i32), Some(2), None];
    let names = vec!["A", "B", "C"];
    let n = c
        .execute(
            "INSERT INTO customers (email, age, name) SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[])",
            &[&emails, &ages, &names],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    // Django with server-side binding: parenthesised parameters.
    let n = c
        .execute(
            "INSERT INTO customers (email, age, name) SELECT * FROM UNNEST(($1)::varchar[], ($2)::integer[], ($3)::varchar[])",
            &[&vec!["d@x.org"], &vec![4i32], &vec!["D"]],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(all_sealed(&f, &["x.org"]).await, 6);
    assert_eq!(
        customers(&c).await,
        vec![
            row(Some("a@x.org"), Some("1"), "A"),
            row(None, Some("2"), "B"),
            row(Some("c@x.org"), None, "C"),
            row(Some("d@x.org"), Some("4"), "D"),
        ]
    );
    still_serving(&f, &c).await;
}

#[tokio::test]
async fn unnest_of_text_array_parameters_is_encrypted() {
    let f = Fixture::new().await;
    let mut raw = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    raw.send(&build::pipeline(&[
        build::parse(
            "",
            "INSERT INTO customers (email, age, name) SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[])",
        ),
        build::bind("", "", &["{a@x.org,\"q\\\"@x.org\",NULL}", "{1,NULL,3}", "{A,B,C}"]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let msgs = raw.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(all_sealed(&f, &["x.org"]).await, 4);
    let c = f.app().await;
    assert_eq!(
        customers(&c).await,
        vec![
            row(Some("a@x.org"), Some("1"), "A"),
            row(Some("q\"@x.org"), None, "B"),
            row(None, Some("3"), "C"),
        ]
    );
    // The raw session goes on too.
    raw.send(&build::query("SELECT 1")).await;
    assert!(error_codes(&raw.recv_until_ready().await).is_empty());
    still_serving(&f, &c).await;
}

#[tokio::test]
async fn other_bulk_shapes_on_protected_columns_are_refused_by_name() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let values = "(VALUES ('a@x.org', 1), ('b@x.org', 2)) AS v(p0, n)";
    let cases = [
        (
            format!("INSERT INTO customers (email) SELECT p0 FROM {values} ORDER BY p0"),
            "ORDER BY",
        ),
        (
            format!("INSERT INTO customers (email) SELECT p0 FROM {values} WHERE n > 1"),
            "a WHERE clause",
        ),
        (
            format!("INSERT INTO customers (email) SELECT lower(p0) FROM {values}"),
            "a computed value",
        ),
        (
            "INSERT INTO customers (email) SELECT * FROM UNNEST(ARRAY[lower('a@x.org')])"
                .to_owned(),
            "an ARRAY[...] element that is not a literal",
        ),
    ];
    for (sql, what) in cases {
        let err = c.simple_query(&sql).await.unwrap_err();
        assert_eq!(code(&err), "0A000", "{sql}");
        let message = err.as_db_error().unwrap().message().to_owned();
        assert!(message.contains(what), "{sql}: {message}");
        assert!(message.contains("public.customers.email"), "{message}");
        assert!(!message.contains("x.org"), "{message}");
    }
    assert!(f.stored("SELECT email FROM customers").await.is_empty());
    still_serving(&f, &c).await;
}
