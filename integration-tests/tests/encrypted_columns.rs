//! Protected columns end to end through the proxy: values written and compared are stored as
//! AES-256-SIV ciphertext, read back as plaintext of the logical type in text and binary
//! formats, unsupported operations are refused without breaking the session.

use std::path::PathBuf;

use pgshroud_integration_tests::protected::{code, hex, rows, Fixture, MASTER_KEY, OTHER_KEY};
use pgshroud_integration_tests::users;

async fn fixture() -> Fixture {
    Fixture::new().await
}

#[tokio::test]
async fn literals_are_stored_as_ciphertext_and_read_back_as_plaintext() {
    let f = fixture().await;
    let c = f.app().await;
    c.simple_query("INSERT INTO customers (email, age, name) VALUES ('alice@example.com', 42, 'Alice'), ('bob@example.com', '007', 'Bob')")
        .await
        .unwrap();
    let got = rows(
        &c.simple_query("SELECT email, age, name FROM customers ORDER BY id")
            .await
            .unwrap(),
    );
    assert_eq!(
        got,
        vec![
            vec![
                Some("alice@example.com".into()),
                Some("42".into()),
                Some("Alice".into())
            ],
            vec![
                Some("bob@example.com".into()),
                Some("7".into()),
                Some("Bob".into())
            ],
        ]
    );
    for stored in f.stored("SELECT email FROM customers").await {
        let stored = stored.unwrap();
        assert_eq!(stored[0], 0x02, "envelope format byte");
        assert!(!String::from_utf8_lossy(&stored).contains("example.com"));
    }
}

#[tokio::test]
async fn parameters_are_encrypted_and_results_decrypted_in_binary_format() {
    let f = fixture().await;
    let c = f.app().await;
    let insert = c
        .prepare("INSERT INTO customers (email, age) VALUES ($1, $2) RETURNING id, email, age")
        .await
        .unwrap();
    let row = c
        .query_one(&insert, &[&"carol@example.com", &31i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "carol@example.com");
    assert_eq!(row.get::<_, i32>(2), 31);
    let found = c
        .query_one(
            "SELECT age FROM customers WHERE email = $1",
            &[&"carol@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(found.get::<_, i32>(0), 31);
    let star = c
        .query_one("SELECT * FROM customers WHERE age = $1", &[&31i32])
        .await
        .unwrap();
    assert_eq!(star.get::<_, String>("email"), "carol@example.com");
}

#[tokio::test]
async fn equality_in_and_null_tests_find_rows_on_ciphertext() {
    let f = fixture().await;
    let c = f.app().await;
    c.batch_execute("INSERT INTO customers (email, age) VALUES ('a@x.org', 1), ('b@x.org', 2), ('c@x.org', NULL)")
        .await
        .unwrap();
    let q = |sql: &'static str| {
        let c = &c;
        async move { rows(&c.simple_query(sql).await.unwrap()) }
    };
    assert_eq!(
        q("SELECT age FROM customers WHERE email = 'b@x.org'").await,
        vec![vec![Some("2".into())]]
    );
    assert_eq!(
        q("SELECT count(*) FROM customers WHERE email <> 'b@x.org'").await,
        vec![vec![Some("2".into())]]
    );
    assert_eq!(
        q("SELECT count(*) FROM customers WHERE email IN ('a@x.org', 'c@x.org', 'z@x.org')").await,
        vec![vec![Some("2".into())]]
    );
    assert_eq!(
        q("SELECT email FROM customers WHERE age IS NULL").await,
        vec![vec![Some("c@x.org".into())]]
    );
    assert_eq!(
        q("SELECT count(DISTINCT age) FROM customers WHERE age IS NOT NULL").await,
        vec![vec![Some("2".into())]]
    );
}

#[tokio::test]
async fn update_and_group_by_work_on_ciphertext() {
    let f = fixture().await;
    let c = f.app().await;
    c.batch_execute("INSERT INTO customers (email, age) VALUES ('a@x.org', 30), ('b@x.org', 30), ('c@x.org', 40)").await.unwrap();
    c.execute(
        "UPDATE customers SET age = $1 WHERE email = $2",
        &[&41i32, &"c@x.org"],
    )
    .await
    .unwrap();
    c.simple_query("UPDATE customers SET email = 'z@x.org' WHERE email = 'a@x.org'")
        .await
        .unwrap();
    let groups = c
        .query("SELECT age, count(*) FROM customers GROUP BY age", &[])
        .await
        .unwrap();
    let mut got: Vec<(i32, i64)> = groups.iter().map(|r| (r.get(0), r.get(1))).collect();
    got.sort();
    assert_eq!(got, vec![(30, 2), (41, 1)]);
    let z: i32 = c
        .query_one("SELECT age FROM customers WHERE email = 'z@x.org'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(z, 30);
}

#[tokio::test]
async fn unique_index_on_ciphertext_rejects_duplicates() {
    let f = fixture().await;
    let c = f.app().await;
    c.execute("INSERT INTO customers (email) VALUES ($1)", &[&"dup@x.org"])
        .await
        .unwrap();
    let err = c
        .execute("INSERT INTO customers (email) VALUES ($1)", &[&"dup@x.org"])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505");
}

#[tokio::test]
async fn join_on_columns_sharing_a_key_context() {
    let f = fixture().await;
    let c = f.app().await;
    c.batch_execute(
        "INSERT INTO people (email) VALUES ('p@x.org'), ('q@x.org');
         INSERT INTO orders (customer_email, total) VALUES ('p@x.org', 10), ('p@x.org', 5), ('q@x.org', 1)",
    )
    .await
    .unwrap();
    let got = c
        .query("SELECT p.email, sum(o.total) FROM people p JOIN orders o ON o.customer_email = p.email GROUP BY p.email ORDER BY 2", &[])
        .await
        .unwrap();
    let got: Vec<(String, i64)> = got.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![("q@x.org".to_owned(), 1), ("p@x.org".to_owned(), 15)]
    );
}

#[tokio::test]
async fn unsupported_operations_are_refused_with_0a000_and_the_session_goes_on() {
    let f = fixture().await;
    let c = f.app().await;
    c.batch_execute("INSERT INTO customers (email, age) VALUES ('a@x.org', 1)")
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM customers WHERE email LIKE 'a%'",
        "SELECT * FROM customers WHERE age > 3",
        "SELECT * FROM customers ORDER BY email",
        "SELECT upper(email) FROM customers",
        "SELECT * FROM customers c JOIN people p ON p.email = c.email",
    ] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&err), "0A000", "{sql}");
        let message = err.as_db_error().unwrap().message().to_owned();
        assert!(
            message.contains("customers.") || message.contains("people."),
            "{sql}: {message}"
        );
        assert!(
            !message.contains("a@x.org") && !message.contains("'a%'"),
            "{message}"
        );
        let err = c.query(sql, &[]).await.unwrap_err();
        assert_eq!(code(&err), "0A000", "extended: {sql}");
        let n: i64 = c
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "the session works after refusing {sql}");
    }
}

#[tokio::test]
async fn refusal_mid_transaction_aborts_it_and_mid_pipeline_keeps_order() {
    let f = fixture().await;
    let c = f.app().await;
    c.batch_execute("BEGIN; INSERT INTO customers (email) VALUES ('t@x.org')")
        .await
        .unwrap();
    let err = c
        .simple_query("SELECT * FROM customers WHERE email LIKE 't%'")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        f.stored("SELECT email FROM customers").await.is_empty(),
        "nothing was written"
    );

    let (a, b, d) = tokio::join!(
        c.query_one("SELECT 1::int4", &[]),
        c.query("SELECT * FROM customers WHERE email LIKE $1", &[&"x%"]),
        c.query_one("SELECT 3::int4", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(code(&b.unwrap_err()), "0A000");
    assert_eq!(d.unwrap().get::<_, i32>(0), 3);
}

#[tokio::test]
async fn unparseable_statement_on_a_protected_table_is_refused_with_42601() {
    let f = fixture().await;
    let c = f.app().await;
    let err = c
        .simple_query("SELECT * FROM customers WHERE email = = 'x'")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42601");
    assert!(!err.as_db_error().unwrap().message().contains("'x'"));
}

#[tokio::test]
async fn nulls_empty_strings_and_unicode_round_trip() {
    let f = fixture().await;
    let c = f.app().await;
    for email in ["", "ünïcødé@例え.jp", "emoji 🦀 @x.org", "quote's@x.org"] {
        c.execute("INSERT INTO customers (email) VALUES ($1)", &[&email])
            .await
            .unwrap();
        let back: String = c
            .query_one("SELECT email FROM customers WHERE email = $1", &[&email])
            .await
            .unwrap()
            .get(0);
        assert_eq!(back, email);
    }
    c.simple_query(
        "INSERT INTO customers (email) VALUES ('it''s@x.org'), (E'tab\\there@x.org'), (NULL)",
    )
    .await
    .unwrap();
    let got = rows(
        &c.simple_query(
            "SELECT email FROM customers WHERE email IN ('it''s@x.org', E'tab\\there@x.org')",
        )
        .await
        .unwrap(),
    );
    assert_eq!(got.len(), 2);
    let nulls: i64 = c
        .query_one("SELECT count(*) FROM customers WHERE email IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 1);
}

#[tokio::test]
async fn thousands_of_pipelined_inserts_are_all_encrypted() {
    let f = fixture().await;
    let c = f.app().await;
    let stmt = c
        .prepare("INSERT INTO customers (email, age) VALUES ($1, $2)")
        .await
        .unwrap();
    let emails: Vec<String> = (0..3000).map(|i| format!("user{i}@bulk.org")).collect();
    let inserts = emails.iter().enumerate().map(|(i, e)| {
        let age = i as i32;
        let stmt = &stmt;
        let c = &c;
        async move { c.execute(stmt, &[e, &age]).await }
    });
    futures_util::future::try_join_all(inserts).await.unwrap();
    let stored = f.stored("SELECT email FROM customers").await;
    assert_eq!(stored.len(), 3000);
    assert!(stored.iter().all(|s| s
        .as_ref()
        .is_some_and(|b| b[0] == 2 && !String::from_utf8_lossy(b).contains("bulk.org"))));
    let age: i32 = c
        .query_one(
            "SELECT age FROM customers WHERE email = 'user2999@bulk.org'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(age, 2999);
}

#[tokio::test]
async fn python_reference_decryptor_reads_what_the_proxy_stored() {
    let f = fixture().await;
    let c = f.app().await;
    c.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"independent@check.org"],
    )
    .await
    .unwrap();
    let stored = f
        .stored("SELECT email FROM customers")
        .await
        .remove(0)
        .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pgshroud_decrypt.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["public.customers.email", &hex(&stored)])
        .env("PGSHROUD_MASTER_KEY", MASTER_KEY)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "independent@check.org"
    );
}

/// The reference decryptor takes pgshroud's keys file and reads values of every key version,
/// each with the key its envelope names.
#[tokio::test]
async fn python_reference_decryptor_reads_every_key_version_from_a_keys_file() {
    use pgshroud_integration_tests::keys::{write_keys, Keys};
    let k = Keys::new().await;
    let c = k.app().await;
    c.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"old@v1.org"],
    )
    .await
    .unwrap();
    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();
    c.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"new@v2.org"],
    )
    .await
    .unwrap();
    assert_eq!(k.stored_versions().await, [(1, 1), (2, 2)]);
    let admin = pgshroud_integration_tests::cluster()
        .admin_client_for(&k.db)
        .await;
    let stored: Vec<Vec<u8>> = admin
        .query("SELECT email FROM customers ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pgshroud_decrypt.py");
    let run = |envelope: &[u8], keys: &std::path::Path| {
        std::process::Command::new("python3")
            .arg(&script)
            .arg("--keys-file")
            .arg(keys)
            .args(["public.customers.email", &hex(envelope)])
            .env_remove("PGSHROUD_MASTER_KEY")
            .output()
            .expect("python3 runs")
    };
    for (envelope, expected) in stored.iter().zip(["old@v1.org", "new@v2.org"]) {
        let out = run(envelope, &k.keys_path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    }
    // Once version 1 is gone from the keys file, its values are named as such, not garbled.
    write_keys(k.dir.path(), &[(2, OTHER_KEY)], 2);
    let out = run(&stored[0], &k.keys_path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no [[keys]] entry for key version 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value that does not decrypt ends the session (FATAL): stopping only the result would
/// leave client and server disagreeing about what ran.
#[tokio::test]
async fn a_proxy_with_the_wrong_key_reports_the_column_instead_of_garbage() {
    let f = fixture().await;
    f.app()
        .await
        .execute("INSERT INTO customers (email) VALUES ($1)", &[&"k@x.org"])
        .await
        .unwrap();
    let (_dir, wrong) = Fixture::proxy_for(OTHER_KEY).await;
    let c = wrong
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    let err = c
        .query("SELECT email FROM customers", &[])
        .await
        .unwrap_err();
    assert!(matches!(code(&err).as_str(), "XX001" | "22000"), "{err:?}");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("public.customers.email"));
    assert!(c.query_one("SELECT 1", &[]).await.is_err());
    let again = wrong
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap();
    let n: i32 = again.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_declared_parameter_type_is_echoed_as_postgresql_does() {
    // pgjdbc declares setString parameters as varchar and refuses a ParameterDescription that
    // names another type; undeclared parameters get the column's logical type.
    use tokio_postgres::types::Type;
    let f = fixture().await;
    let c = f.app().await;
    let declared = c
        .prepare_typed(
            "INSERT INTO customers (email, age) VALUES ($1, $2)",
            &[Type::VARCHAR],
        )
        .await
        .unwrap();
    assert_eq!(declared.params(), &[Type::VARCHAR, Type::INT4]);
    c.execute(&declared, &[&"declared@x.org", &5i32])
        .await
        .unwrap();
    let age: i32 = c
        .query_one(
            "SELECT age FROM customers WHERE email = $1",
            &[&"declared@x.org"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(age, 5);
}
