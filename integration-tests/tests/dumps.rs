//! pg_dump and pg_restore through the proxy, with the real programs, per role: `app` dumps
//! plaintext (and restoring that through pgshroud encrypts it again), `support` masks, `dba`
//! envelopes (and restoring those straight into PostgreSQL gives a database pgshroud reads),
//! `auditor` nothing of the protected columns.

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::cluster;
use pgshroud_integration_tests::protected::{install_guards, owner_url, rows};
use pgshroud_integration_tests::roles::{RolesFixture, PASSWORD, RULES, SCHEMA};

async fn with_customers() -> RolesFixture {
    let f = RolesFixture::with_rules(RULES, SCHEMA, ConfigLayer::default()).await;
    let app = f.connect("app").await;
    app.simple_query(
        "INSERT INTO customers (id, email, age, name) VALUES \
         (1, 'alice@example.com', '42', 'Alice'), (2, 'bob@example.com', NULL, 'Bob')",
    )
    .await
    .expect("app writes");
    f
}

/// Runs `program` with `args`, connected to `url`; standard output, or standard error.
async fn run(program: &str, url: &str, args: &[&str]) -> Result<String, String> {
    pgshroud_integration_tests::client_program(program, url, args).await
}

fn proxied(f: &RolesFixture, suffix: &str, db: &str) -> String {
    f.proxy.conn_string(&f.user(suffix), PASSWORD, db)
}

#[tokio::test]
async fn pg_dump_filters_and_insert_forms_give_each_role_what_it_may_see() {
    let f = with_customers().await;
    let forms: [&[&str]; 5] = [
        &["-t", "customers", "--inserts", "--data-only"],
        &["-t", "customers", "--column-inserts", "--data-only"],
        &["-n", "public", "--data-only"],
        &["-T", "notes", "--data-only"],
        &["-t", "customers"],
    ];
    for args in forms {
        let app = run("pg_dump", &proxied(&f, "app", &f.db), args)
            .await
            .unwrap_or_else(|e| panic!("app {args:?}: {e}"));
        assert!(app.contains("alice@example.com"), "app {args:?}: {app}");
        let support = run("pg_dump", &proxied(&f, "support", &f.db), args)
            .await
            .unwrap_or_else(|e| panic!("support {args:?}: {e}"));
        assert!(support.contains("a****@example.com"), "support {args:?}");
        assert!(!support.contains("alice@"), "support {args:?}: {support}");
        let dba = run("pg_dump", &proxied(&f, "dba", &f.db), args)
            .await
            .unwrap_or_else(|e| panic!("dba {args:?}: {e}"));
        assert!(!dba.contains("alice@"), "dba {args:?}: {dba}");
        assert!(
            dba.contains("\\\\x02") || dba.contains("\\x02"),
            "dba {args:?}"
        );
        // The auditor may not read the columns: the dump fails rather than leak them.
        let auditor = run("pg_dump", &proxied(&f, "auditor", &f.db), args).await;
        assert!(
            auditor
                .as_ref()
                .is_err_and(|e| e.contains("protected column")),
            "auditor {args:?}: {auditor:?}"
        );
    }
}

/// A database with the fixture's tables, guards, and CONNECT for the fixture's users.
async fn fresh_copy_of_the_schema(f: &RolesFixture) -> String {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin.batch_execute(SCHEMA).await.expect("schema");
    admin
        .batch_execute(
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .expect("grants");
    install_guards(&db, RULES).await;
    for suffix in ["app", "dba"] {
        admin
            .batch_execute(&format!(
                "GRANT CONNECT ON DATABASE {db} TO {}",
                f.user(suffix)
            ))
            .await
            .expect("connect");
    }
    db
}

#[tokio::test]
async fn custom_format_dumps_restore_in_both_directions() {
    let f = with_customers().await;
    let dir = tempfile::tempdir().expect("dir");
    // app's dump holds plaintext; restored through pgshroud it is encrypted again.
    let plain = dir.path().join("app.dump");
    let plain = plain.to_str().expect("path");
    let args = ["-Fc", "-t", "customers", "--data-only", "-f", plain];
    run("pg_dump", &proxied(&f, "app", &f.db), &args)
        .await
        .expect("app dumps");
    let db = fresh_copy_of_the_schema(&f).await;
    run(
        "pg_restore",
        &proxied(&f, "app", &db),
        &["--data-only", plain],
    )
    .await
    .expect("app restores through pgshroud");
    let stored = cluster()
        .admin_client_for(&db)
        .await
        .query("SELECT email FROM customers ORDER BY id", &[])
        .await
        .expect("stored");
    for r in &stored {
        let v: Vec<u8> = r.get(0);
        assert_eq!(v[0], 2, "an envelope is stored");
    }
    let app = f
        .proxy
        .connect(&f.user("app"), PASSWORD, &db)
        .await
        .expect("app");
    let r = app
        .simple_query("SELECT email, age FROM customers ORDER BY id")
        .await
        .expect("read back");
    assert_eq!(
        rows(&r),
        [
            vec![Some("alice@example.com".into()), Some("42".into())],
            vec![Some("bob@example.com".into()), None]
        ]
    );

    // dba's dump holds the envelopes; restored straight into PostgreSQL, pgshroud reads it.
    let sealed = dir.path().join("dba.dump");
    let sealed = sealed.to_str().expect("path");
    let args = ["-Fc", "-t", "customers", "--data-only", "-f", sealed];
    run("pg_dump", &proxied(&f, "dba", &f.db), &args)
        .await
        .expect("dba dumps");
    let db = fresh_copy_of_the_schema(&f).await;
    run("pg_restore", &owner_url(&db), &["--data-only", sealed])
        .await
        .expect("restored directly");
    let app = f
        .proxy
        .connect(&f.user("app"), PASSWORD, &db)
        .await
        .expect("app");
    let r = app
        .simple_query("SELECT email FROM customers WHERE email = 'bob@example.com'")
        .await
        .expect("read back");
    assert_eq!(rows(&r), [vec![Some("bob@example.com".to_owned())]]);
}

#[tokio::test]
async fn psql_describe_commands_work_for_every_role() {
    let f = with_customers().await;
    cluster()
        .admin_client_for(&f.db)
        .await
        .batch_execute(
            "CREATE VIEW customer_view AS SELECT id, email FROM customers; \
             GRANT SELECT ON customer_view TO PUBLIC",
        )
        .await
        .expect("view");
    let commands = [
        ("\\d customers", "email"),
        ("\\d+ customers", "email"),
        ("\\dt", "customers"),
        ("\\dv", "customer_view"),
        ("\\d customer_view", "email"),
        ("\\d+ customer_view", "email"),
    ];
    for suffix in ["app", "support", "dba", "auditor", "analyst"] {
        for (command, expected) in commands {
            let out = run("psql", &proxied(&f, suffix, &f.db), &["-X", "-c", command])
                .await
                .unwrap_or_else(|e| panic!("{suffix} {command}: {e}"));
            assert!(out.contains(expected), "{suffix} {command}: {out}");
            assert!(!out.contains("alice"), "{suffix} {command}: {out}");
        }
    }
}
