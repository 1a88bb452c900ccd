//! `pgshroud rotate`, `pgshroud keys status` and `keys retire` against a real PostgreSQL while
//! a non-owner application role keeps reading and writing through the proxy: no wrong answer,
//! no lost row, resumable after a SIGKILL, duplicates a unique index could not see reported.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pgshroud::cli::args::RotateArgs;
use pgshroud_integration_tests::keys::{write_keys, Keys};
use pgshroud_integration_tests::protected::{owner_url, MASTER_KEY, OTHER_KEY};
use pgshroud_integration_tests::proxy::pgshroud_bin;

const ROWS: usize = 100_000;

fn rotate_args(k: &Keys, dry_run: bool) -> RotateArgs {
    RotateArgs {
        upstream_url: owner_url(&k.db),
        rules: k.rules_path(),
        keys_file: k.keys_path(),
        batch_size: 1000,
        dry_run,
        metrics_textfile: None,
        tenant_keys_dir: None,
        tenant: None,
    }
}

fn email(i: usize) -> String {
    format!("user{i}@example.com")
}

/// `ROWS` customers written through the proxy under key version 1 (bulk UNNEST inserts).
async fn fill(k: &Keys) {
    let c = k.app().await;
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(5000) {
        let emails: Vec<String> = chunk.iter().map(|&i| email(i)).collect();
        let ages: Vec<i32> = chunk.iter().map(|&i| (i % 100) as i32).collect();
        c.execute(
            "INSERT INTO customers (email, age) SELECT * FROM UNNEST($1::text[], $2::int4[])",
            &[&emails, &ages],
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_survives_a_kill_and_leaves_nothing_under_the_old_key() {
    let k = Keys::new().await;
    fill(&k).await;
    let url = owner_url(&k.db);

    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();

    // Before: everything is under version 1, and it cannot be retired.
    let status = pgshroud::cli::keys::status(&url, &k.rules_path())
        .await
        .unwrap();
    assert!(
        status.text.contains(&format!(
            "public.customers.email  2       1            {ROWS}"
        )),
        "{}",
        status.text
    );
    let refused = pgshroud::cli::keys::retire(&url, &k.rules_path(), 1)
        .await
        .unwrap();
    assert!(!refused.ok);
    assert!(
        refused
            .text
            .contains(&format!("public.customers.email ({ROWS} values")),
        "{}",
        refused.text
    );
    let dry = pgshroud::cli::rotate::run(&rotate_args(&k, true))
        .await
        .unwrap();
    assert!(
        dry.text.contains(&format!("Dry run: {ROWS} rows")),
        "{}",
        dry.text
    );
    assert_eq!(
        k.stored_versions().await[0].1,
        1,
        "a dry run changes nothing"
    );

    // Clients read and write through the proxy the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..3 {
        let c = k.app().await;
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut i = worker;
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                let row = c
                    .query(
                        "SELECT age FROM customers WHERE email = $1",
                        &[&email(i % ROWS)],
                    )
                    .await
                    .unwrap();
                assert_eq!(row.len(), 1, "{} is found exactly once", email(i % ROWS));
                assert_eq!(row[0].get::<_, i32>(0), ((i % ROWS) % 100) as i32);
                let new = format!("new{worker}-{written}@example.com");
                c.execute(
                    "INSERT INTO customers (email, age) VALUES ($1, $2)",
                    &[&new, &7i32],
                )
                .await
                .unwrap();
                written += 1;
                i += 997;
            }
            written
        }));
    }

    // A first run, killed (SIGKILL) once it has reported some progress.
    let mut child = Command::new(pgshroud_bin())
        .args([
            "rotate",
            "--upstream-url",
            &url,
            "--batch-size",
            "500",
            "--rules",
        ])
        .arg(k.rules_path())
        .arg("--keys-file")
        .arg(k.keys_path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("rotate: "))
            .take(3)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines[0].contains(&format!("/{ROWS} rows")), "{lines:?}");
    let moved = k
        .stored_versions()
        .await
        .iter()
        .filter(|(_, v)| *v == 2)
        .count();
    assert!(moved > 0, "the killed run committed some batches");

    // Run again: it continues and ends with a clean final check.
    let done = pgshroud::cli::rotate::run(&rotate_args(&k, false))
        .await
        .unwrap();
    assert!(done.ok, "{}", done.text);
    assert!(done
        .text
        .contains("Final check: every stored value is under key version 2"));

    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for c in clients {
        written += c.await.unwrap();
    }
    let versions = k.stored_versions().await;
    assert_eq!(versions.len(), ROWS + written, "no row lost, none added");
    assert!(versions.iter().all(|(_, v)| *v == 2));

    // Every value still reads as written, and version 1 can go.
    let c = k.app().await;
    let sample: Vec<String> = (0..ROWS).step_by(7919).map(email).collect();
    let found = c
        .query(
            "SELECT email, age FROM customers WHERE email = ANY($1)",
            &[&sample],
        )
        .await
        .unwrap();
    assert_eq!(found.len(), sample.len());
    let retire = pgshroud::cli::keys::retire(&url, &k.rules_path(), 1)
        .await
        .unwrap();
    assert!(retire.ok, "{}", retire.text);
    write_keys(k.dir.path(), &[(2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();
    let one = c
        .query("SELECT age FROM customers WHERE email = $1", &[&email(42)])
        .await
        .unwrap();
    assert_eq!(one[0].get::<_, i32>(0), 42);
}

#[tokio::test]
async fn a_duplicate_the_unique_index_could_not_see_is_left_and_reported() {
    let k = Keys::new().await;
    let c = k.app().await;
    c.simple_query("INSERT INTO customers (email, name) VALUES ('alice@example.com', 'Alice'), ('bob@example.com', 'Bob')")
        .await
        .unwrap();
    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();
    c.simple_query(
        "INSERT INTO customers (email, name) VALUES ('alice@example.com', 'Alice again')",
    )
    .await
    .unwrap();
    let report = pgshroud::cli::rotate::run(&rotate_args(&k, false))
        .await
        .unwrap();
    assert!(!report.ok, "{}", report.text);
    assert!(
        report.text.contains("public.customers.email: a value is left under its old key version because another row holds the same value under version 2 (unique constraint customers_email_key)"),
        "{}",
        report.text
    );
    assert!(
        report
            .text
            .contains("Final check failed: public.customers.email (1 values under key version 1"),
        "{}",
        report.text
    );
    // Bob moved; the pair is the operator's to resolve. After that, a second run is clean.
    assert_eq!(
        k.stored_versions()
            .await
            .iter()
            .map(|v| v.1)
            .collect::<Vec<_>>(),
        [1, 2, 2]
    );
    c.simple_query("DELETE FROM customers WHERE name = 'Alice again'")
        .await
        .unwrap();
    let again = pgshroud::cli::rotate::run(&rotate_args(&k, false))
        .await
        .unwrap();
    assert!(again.ok, "{}", again.text);
}
