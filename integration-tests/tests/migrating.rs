//! The application through pgshroud while `pgshroud migrate` runs, with the column marked
//! `migrating = true` in the rules pgshroud serves from the start (no reload): clients insert,
//! update and look rows up by the column across the swap, both ways (`--decrypt` too). And
//! the catalog look-up before a statement: after a reload that lists a new table, and after
//! another session's DDL, an open session's very next statement is served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgshroud::cli::args::MigrateArgs;
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::keys::write_keys;
use pgshroud_integration_tests::protected::{
    install_guards, owner_url, MASTER_KEY, MIGRATING_PEOPLE,
};
use pgshroud_integration_tests::{cluster, proxy_with, users};

const ROWS: i32 = 20_000;

/// One client's record: what it wrote, and what went wrong.
#[derive(Default, Debug)]
struct Record {
    inserted: Vec<(i32, String)>,
    updated: Vec<(i32, String)>,
    lookups: usize,
    /// Statements that failed: (what, SQLSTATE, message).
    errors: Vec<(String, String, String)>,
    /// A look-up that found another row than the one it looked for, or none.
    wrong: Vec<String>,
}

fn failed(record: &mut Record, what: &str, e: &tokio_postgres::Error) {
    let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
    let text = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    record.errors.push((what.to_owned(), code, text));
}

/// Inserts, updates and looks rows up by the column (extended and simple protocol) until
/// `stop`; client `w` touches only its own original rows.
async fn client_loop(c: tokio_postgres::Client, run: u8, w: i32, stop: Arc<AtomicBool>) -> Record {
    let mut r = Record::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let email = format!("new{run}-{w}-{n}@example.com");
        match c
            .query_one(
                "INSERT INTO people (email, born) VALUES ($1, date '2001-02-03') RETURNING id",
                &[&email],
            )
            .await
        {
            Ok(row) => r.inserted.push((row.get(0), email.clone())),
            Err(e) => failed(&mut r, "insert", &e),
        }
        // An original row of this client's: id k holds user{k}@example.com until moved.
        let id = 1 + w + 4 * n;
        let moved = format!("moved{id}@example.com");
        match c
            .execute("UPDATE people SET email = $1 WHERE id = $2", &[&moved, &id])
            .await
        {
            Ok(1) => r.updated.push((id, moved.clone())),
            Ok(k) => r.wrong.push(format!("update of id {id} touched {k} rows")),
            Err(e) => failed(&mut r, "update", &e),
        }
        // Look-ups by the column: the row just moved (extended protocol, typed parameter) and
        // an untouched original row (simple protocol, a literal).
        match c
            .query("SELECT id FROM people WHERE email = $1", &[&moved])
            .await
        {
            Ok(rows) => {
                r.lookups += 1;
                let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
                if ids != [id] {
                    r.wrong.push(format!("{moved}: found {ids:?}, not [{id}]"));
                }
            }
            Err(e) => failed(&mut r, "lookup", &e),
        }
        let original = ROWS - w - 4 * n;
        let sql = format!("SELECT id FROM people WHERE email = 'user{original}@example.com'");
        match c.simple_query(&sql).await {
            Ok(messages) => {
                r.lookups += 1;
                let ids: Vec<String> = messages
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => {
                            row.get(0).map(str::to_owned)
                        }
                        _ => None,
                    })
                    .collect();
                if ids != [original.to_string()] {
                    r.wrong.push(format!("user{original}: found {ids:?}"));
                }
            }
            Err(e) => failed(&mut r, "literal lookup", &e),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r
}

/// Runs migrate (`decrypt` or not) with four clients going through the proxy before, during
/// and for a second after it; returns their records.
async fn migrate_under_load(
    proxy: &pgshroud_integration_tests::proxy::TestProxy,
    db: &str,
    args: &MigrateArgs,
) -> Vec<Record> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for w in 0..4 {
        let c = proxy
            .connect(users::SCRAM, users::SCRAM_PASSWORD, db)
            .await
            .unwrap();
        clients.push(tokio::spawn(client_loop(
            c,
            u8::from(args.decrypt),
            w,
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let report = pgshroud::cli::migrate::run(args).await.unwrap();
    eprintln!(
        "migrate (decrypt: {}) took {:?}",
        args.decrypt,
        started.elapsed()
    );
    eprintln!("{}", report.text);
    assert!(report.ok, "{}", report.text);
    // The clients keep going after the swap, with the marker still in the rules.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    for c in clients {
        records.push(c.await.unwrap());
    }
    records
}

/// No error, no wrong answer; every row written reads back through the proxy by its column.
async fn check_records(app: &tokio_postgres::Client, records: &[Record]) {
    let lookups: usize = records.iter().map(|r| r.lookups).sum();
    let writes: usize = records
        .iter()
        .map(|r| r.inserted.len() + r.updated.len())
        .sum();
    eprintln!("{writes} writes and {lookups} look-ups by the column through pgshroud");
    assert!(
        writes > 100 && lookups > 100,
        "the clients ran: {records:?}"
    );
    for r in records {
        assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
        assert!(r.wrong.is_empty(), "wrong answers: {:?}", r.wrong);
        for (id, email) in r.inserted.iter().chain(&r.updated) {
            let rows = app
                .query("SELECT id FROM people WHERE email = $1", &[email])
                .await
                .unwrap();
            let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
            assert_eq!(ids, [*id], "{email}");
        }
    }
}

async fn column_type(db: &str) -> String {
    let admin = cluster().admin_client_for(db).await;
    admin
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'people'::regclass AND attname = 'email'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_are_served_across_the_swap_both_ways_with_the_marker_and_no_reload() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE people (id serial PRIMARY KEY, email text NOT NULL UNIQUE, born date);
             INSERT INTO people (email, born) SELECT 'user' || i || '@example.com', date '1950-01-01' + i % 20000
               FROM generate_series(1, {ROWS}) AS i;
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, MIGRATING_PEOPLE).unwrap();
    write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
    // The proxy serves the very rules migrate reads, marker included, throughout.
    let proxy = proxy_with(ConfigLayer {
        rules: Some(rules.clone()),
        keys_file: Some(dir.path().join("keys.toml")),
        ..Default::default()
    })
    .await;
    let args = |decrypt: bool| MigrateArgs {
        upstream_url: owner_url(&db),
        rules: rules.clone(),
        keys_file: dir.path().join("keys.toml"),
        columns: vec!["public.people.email".to_owned()],
        decrypt,
        dry_run: false,
        drop_incompatible: false,
        batch_size: 1000,
    };
    let dry = pgshroud::cli::migrate::run(&MigrateArgs {
        dry_run: true,
        ..args(false)
    })
    .await
    .unwrap();
    assert!(
        dry.text
            .contains("public.people.email is marked migrating = true"),
        "{}",
        dry.text
    );
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();

    // Forward: plaintext -> envelopes under the guard.
    let records = migrate_under_load(&proxy, &db, &args(false)).await;
    assert_eq!(column_type(&db).await, "bytea");
    check_records(&app, &records).await;
    let stored: Vec<u8> = admin
        .query_one("SELECT email FROM people WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !stored.windows(4).any(|w| w == b"user"),
        "an envelope, not plaintext"
    );
    let check = pgshroud::cli::setup::database_report(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(
        check
            .text
            .contains("migration done: remove migrating = true"),
        "{}",
        check.text
    );

    // And back: envelopes -> plaintext, the marker still in place.
    let records = migrate_under_load(&proxy, &db, &args(true)).await;
    assert_eq!(column_type(&db).await, "text");
    check_records(&app, &records).await;
    let plain: String = admin
        .query_one("SELECT email FROM people WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert!(plain.ends_with("@example.com"), "{plain}");
    let count: i64 = admin
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert!(count > i64::from(ROWS));
    let check = pgshroud::cli::setup::database_report(&owner_url(&db), &rules)
        .await
        .unwrap();
    assert!(check.text.contains("marked migrating"), "{}", check.text);
}

const LISTED: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
"#;

const WITH_SECRETS: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
[[tables]]
name = "public.secrets"
  [[tables.columns]]
  name = "secret"
  type = "text"
"#;

async fn proxy_serving(
    rules: &str,
) -> (
    tempfile::TempDir,
    pgshroud_integration_tests::proxy::TestProxy,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
    let proxy = proxy_with(ConfigLayer {
        rules: Some(dir.path().join("rules.toml")),
        keys_file: Some(dir.path().join("keys.toml")),
        ..Default::default()
    })
    .await;
    (dir, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_statement_after_a_reload_that_lists_a_new_table_is_served() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, email bytea);
             CREATE TABLE secrets (id serial PRIMARY KEY, secret bytea);
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
        )
        .await
        .unwrap();
    install_guards(&db, WITH_SECRETS).await;
    let (dir, proxy) = proxy_serving(LISTED).await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    app.simple_query("SELECT id FROM customers").await.unwrap();
    std::fs::write(dir.path().join("rules.toml"), WITH_SECRETS).unwrap();
    proxy.reload().unwrap();
    // The open session's first statement on the newly listed table: sealed, not refused.
    app.simple_query("INSERT INTO secrets (secret) VALUES ('s3cret')")
        .await
        .expect("the first statement after the reload is served");
    let rows = app
        .query("SELECT secret FROM secrets WHERE secret = $1", &[&"s3cret"])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "s3cret");
    let stored: Vec<u8> = admin
        .query_one("SELECT secret FROM secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!stored.windows(6).any(|w| w == b"s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_statement_after_another_sessions_ddl_is_served() {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, email bytea);
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT CREATE ON SCHEMA public TO PUBLIC;",
        )
        .await
        .unwrap();
    let (_dir, proxy) = proxy_serving(WITH_SECRETS).await;
    let reader = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    reader
        .simple_query("SELECT id FROM customers")
        .await
        .unwrap();
    // Another session makes the listed table, through pgshroud.
    let maker = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    maker
        .simple_query("CREATE TABLE secrets (id serial PRIMARY KEY, secret bytea)")
        .await
        .unwrap();
    let rows = reader
        .query("SELECT id FROM secrets WHERE secret = $1", &[&"nothing"])
        .await
        .expect("the first statement after the other session's DDL is served");
    assert!(rows.is_empty());
    let rows = reader
        .simple_query("SELECT id FROM secrets WHERE secret = 'nothing'")
        .await
        .expect("and in the simple protocol");
    let found = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(found, 0, "{rows:?}");
}
