//! Django's text lookups (iexact, contains, startswith, endswith and their i-forms) on a
//! protected column are refused with 0A000, named for what they mean and how to fix it.

use pgshroud_integration_tests::protected::{code, Fixture};

#[tokio::test]
async fn django_text_lookups_are_refused_by_what_they_mean() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.simple_query("INSERT INTO customers (email) VALUES ('a@x.org')")
        .await
        .unwrap();
    let base = "SELECT \"customers\".\"id\" FROM \"customers\" WHERE";
    let cases = [
        (
            format!("{base} UPPER(\"customers\".\"email\"::text) = UPPER('a@x.org')"),
            "case-insensitive comparison (UPPER/LOWER",
        ),
        (
            format!("{base} \"customers\".\"email\"::text LIKE '%x.org'"),
            "pattern matching (LIKE",
        ),
        (
            format!("{base} UPPER(\"customers\".\"email\"::text) LIKE UPPER('%x.org%')"),
            "case-insensitive pattern matching",
        ),
    ];
    for (sql, operation) in &cases {
        for extended in [false, true] {
            let err = match extended {
                false => c.simple_query(sql).await.map(drop).unwrap_err(),
                true => c.query(sql.as_str(), &[]).await.map(drop).unwrap_err(),
            };
            assert_eq!(code(&err), "0A000", "{sql}");
            let message = err.as_db_error().unwrap().message().to_owned();
            assert!(message.starts_with(operation), "{sql}: {message}");
            assert!(
                message.contains("on protected column public.customers.email is not possible on deterministic ciphertext"),
                "{message}"
            );
            assert!(!message.contains("x.org"), "{message}");
            // The session goes on.
            let n: i64 = c
                .query_one("SELECT count(*) FROM customers", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1);
        }
    }
    // Parameters, as Django sends them with server-side binding.
    let err = c
        .query(
            "SELECT id FROM customers WHERE UPPER(email::text) = UPPER($1)",
            &[&"a@x.org"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
    f.app().await.simple_query("SELECT 1").await.unwrap();
}
