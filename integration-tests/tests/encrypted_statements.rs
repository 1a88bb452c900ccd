//! Statement forms beyond plain INSERT/SELECT on protected columns: COPY both ways, ON
//! CONFLICT, RETURNING, CTEs, set operations, `= ANY($n)`, schema changes seen by a live
//! session, and the operator commands `pgshroud encrypt` / `decrypt`.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use pgshroud_integration_tests::protected::{code, hex, rows, Fixture, MASTER_KEY, RULES};
use pgshroud_integration_tests::{cluster, proxy::pgshroud_bin};

async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    chunks: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in(sql).await?;
    futures_util::pin_mut!(sink);
    for chunk in chunks {
        sink.send(Bytes::copy_from_slice(chunk.as_bytes())).await?;
    }
    sink.finish().await
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> String {
    let stream = c.copy_out(sql).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[tokio::test]
async fn copy_from_stdin_encrypts_text_and_csv_rows_split_anywhere() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let n = copy_in(
        &c,
        "COPY customers (email, age, name) FROM STDIN",
        &[
            "a@x.org\t1\tAnn\nb@x.o",
            "rg\t\\N\tB\\tob\n",
            "c\\\\@x.org\t3\tCy\n",
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let n = copy_in(
        &c,
        "COPY customers (name, email, age) FROM STDIN WITH (FORMAT csv, HEADER true)",
        &[
            "name,email,age\n\"Dee, D\",\"d,1@x.org\",4\n",
            "Eve,\"\",5\n",
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    for stored in f
        .stored("SELECT email FROM customers WHERE email IS NOT NULL")
        .await
    {
        let stored = stored.unwrap();
        assert_eq!(stored[0], 2);
        assert!(!String::from_utf8_lossy(&stored).contains("x.org"));
    }
    let got = rows(&c.simple_query("SELECT name, age FROM customers WHERE email IN ('b@x.org', 'c\\@x.org', 'd,1@x.org', '') ORDER BY name").await.unwrap());
    assert_eq!(
        got,
        vec![
            vec![Some("B\tob".into()), None],
            vec![Some("Cy".into()), Some("3".into())],
            vec![Some("Dee, D".into()), Some("4".into())],
            vec![Some("Eve".into()), Some("5".into())],
        ]
    );
}

#[tokio::test]
async fn copy_to_stdout_decrypts_protected_fields() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.batch_execute("INSERT INTO customers (email, age, name) VALUES ('a@x.org', 1, 'Ann'), (E'tab\\t@x.org', NULL, 'T')")
        .await
        .unwrap();
    let text = copy_out(&c, "COPY customers (email, age, name) TO STDOUT").await;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["a@x.org\t1\tAnn", "tab\\t@x.org\t\\N\tT"]);
    let csv = copy_out(
        &c,
        "COPY customers (age, email) TO STDOUT WITH (FORMAT csv)",
    )
    .await;
    let mut lines: Vec<&str> = csv.lines().collect();
    lines.sort();
    assert_eq!(lines, vec![",tab\t@x.org", "1,a@x.org"]);
}

#[tokio::test]
async fn bad_copy_data_fails_the_copy_and_writes_nothing() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let err = copy_in(
        &c,
        "COPY customers (email, age) FROM STDIN",
        &["ok@x.org\t1\n", "bad@x.org\tnot-a-number\n"],
    )
    .await
    .unwrap_err();
    let message = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("public.customers.age"), "{err:?}");
    assert!(!message.contains("not-a-number") && !message.contains("bad@x.org"));
    assert!(f.stored("SELECT email FROM customers").await.is_empty());
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn on_conflict_returning_and_ctes_work_on_protected_columns() {
    let f = Fixture::new().await;
    let c = f.app().await;
    for age in [1i32, 2] {
        c.execute(
            "INSERT INTO customers (email, age) VALUES ($1, $2) ON CONFLICT (email) DO UPDATE SET age = EXCLUDED.age",
            &[&"up@x.org", &age],
        )
        .await
        .unwrap();
    }
    c.simple_query("INSERT INTO customers (email, age) VALUES ('up@x.org', 5) ON CONFLICT (email) DO UPDATE SET age = 3")
        .await
        .unwrap();
    let row = c
        .query_one(
            "WITH u AS (SELECT email, age FROM customers WHERE email = $1) SELECT * FROM u",
            &[&"up@x.org"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("age"), 3);
    let returned = c
        .query_one(
            "UPDATE customers SET age = 9 WHERE email = 'up@x.org' RETURNING *",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(returned.get::<_, String>("email"), "up@x.org");
    assert_eq!(returned.get::<_, i32>("age"), 9);
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn any_with_an_array_parameter_matches_encrypted_values() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.batch_execute(
        "INSERT INTO customers (email, age) VALUES ('a@x.org', 1), ('b@x.org', 2), ('c@x.org', 3)",
    )
    .await
    .unwrap();
    let emails = vec!["a@x.org", "c@x.org", "nobody@x.org"];
    let got = c
        .query(
            "SELECT age FROM customers WHERE email = ANY($1)",
            &[&emails],
        )
        .await
        .unwrap();
    let mut ages: Vec<i32> = got.iter().map(|r| r.get(0)).collect();
    ages.sort();
    assert_eq!(ages, vec![1, 3]);
}

#[tokio::test]
async fn set_operations_are_decrypted_when_branches_share_a_context_and_refused_otherwise() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.batch_execute(
        "INSERT INTO people (email) VALUES ('p@x.org');
         INSERT INTO orders (customer_email, total) VALUES ('o@x.org', 1);
         INSERT INTO customers (email) VALUES ('c@x.org')",
    )
    .await
    .unwrap();
    let got = c
        .query(
            "SELECT email FROM people UNION SELECT customer_email FROM orders",
            &[],
        )
        .await
        .unwrap();
    let mut emails: Vec<String> = got.iter().map(|r| r.get(0)).collect();
    emails.sort();
    assert_eq!(emails, vec!["o@x.org", "p@x.org"]);
    let err = c
        .query(
            "SELECT email FROM people UNION SELECT email FROM customers",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
    let err = c
        .query(
            "SELECT email FROM customers UNION SELECT name FROM customers",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
}

#[tokio::test]
async fn a_table_created_through_the_proxy_is_protected_on_the_same_connection() {
    let db = cluster().fresh_database().await;
    let (_dir, proxy) = Fixture::proxy_for(MASTER_KEY).await;
    let c = proxy
        .connect(
            pgshroud_integration_tests::users::SUPERUSER,
            pgshroud_integration_tests::users::SUPERUSER_PASSWORD,
            &db,
        )
        .await
        .unwrap();
    // A migration through the proxy creates the table; the catalog is looked up again at once,
    // so the session knows it is protected (and that it has no guard yet).
    c.batch_execute("CREATE TABLE people (id int, email bytea)")
        .await
        .unwrap();
    // The operator guards it while the session is connected: the session's first write is
    // refused under what it last looked up, and that refusal makes it look again.
    pgshroud_integration_tests::protected::install_guards(&db, RULES).await;
    let err = c
        .simple_query("INSERT INTO people VALUES (0, 'early@x.org')")
        .await
        .expect_err("the session has not seen the guard yet");
    assert_eq!(code(&err), "55000", "{err}");
    // tokio-postgres pipelines: a round trip first, so the look-up has answered.
    c.simple_query("SELECT 1").await.unwrap();
    c.execute("INSERT INTO people VALUES (1, $1)", &[&"late@x.org"])
        .await
        .unwrap();
    let email: String = c
        .query_one("SELECT email FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "late@x.org");
    c.batch_execute("ALTER TABLE people ADD COLUMN note text")
        .await
        .unwrap();
    let row = c.query_one("SELECT * FROM people", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>("email"), "late@x.org");
}

#[tokio::test]
async fn a_protected_column_not_stored_as_bytea_is_never_written_in_plaintext() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute("CREATE TABLE people (id int, email text); GRANT ALL ON people TO PUBLIC")
        .await
        .unwrap();
    let (_dir, proxy) = Fixture::proxy_for(MASTER_KEY).await;
    let c = proxy
        .connect(
            pgshroud_integration_tests::users::SCRAM,
            pgshroud_integration_tests::users::SCRAM_PASSWORD,
            &db,
        )
        .await
        .unwrap();
    let err = c
        .execute("INSERT INTO people VALUES (1, $1)", &[&"plain@x.org"])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("public.people.email"));
    let n: i64 = admin
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn encrypt_and_decrypt_commands_agree_with_the_proxy() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.execute(
        "INSERT INTO customers (email, age) VALUES ($1, $2)",
        &[&"cli@x.org", &77i32],
    )
    .await
    .unwrap();
    let stored = f
        .stored("SELECT age FROM customers")
        .await
        .remove(0)
        .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(pgshroud_bin())
            .args(args)
            .env("PGSHROUD_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let rules = f.rules_path();
    let rules = rules.to_str().unwrap();
    let encrypted = run(&[
        "encrypt",
        "--rules",
        rules,
        "--column",
        "public.customers.age",
        "077",
    ]);
    assert_eq!(
        encrypted,
        hex(&stored),
        "deterministic: the CLI and the proxy store the same bytes"
    );
    let decrypted = run(&[
        "decrypt",
        "--rules",
        rules,
        "--column",
        "public.customers.age",
        &format!("\\x{encrypted}"),
    ]);
    assert_eq!(decrypted, "77");
}

#[tokio::test]
async fn a_view_listed_in_the_rules_and_an_unlisted_one_are_both_decrypted() {
    let f = Fixture::new().await;
    let admin = cluster().admin_client_for(&f.db).await;
    admin
        .batch_execute(
            "CREATE VIEW customer_emails AS SELECT id, email FROM customers;
             CREATE VIEW raw_emails AS SELECT email FROM customers;
             GRANT SELECT ON customer_emails, raw_emails TO PUBLIC",
        )
        .await
        .unwrap();
    let c = f.app().await;
    c.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"view@x.org"],
    )
    .await
    .unwrap();
    let row = c
        .query_one(
            "SELECT * FROM customer_emails WHERE email = $1",
            &[&"view@x.org"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("email"), "view@x.org");
    // Not listed: mapped from its definition (a plain reference to customers.email), so it
    // reads as the table does.
    let raw = c
        .query_one("SELECT email FROM raw_emails", &[])
        .await
        .unwrap();
    assert_eq!(raw.columns()[0].type_(), &tokio_postgres::types::Type::TEXT);
    assert_eq!(raw.get::<_, String>(0), "view@x.org");
}
