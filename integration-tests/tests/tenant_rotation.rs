//! Rotating a tenant's key against a real PostgreSQL, as non-owner roles through pgshroud
//! (`*_app` users are tenant acme, `*_support` users tenant globex): `pgshroud rotate --tenant
//! acme` moves every acme value to its new key version while clients keep writing and
//! reading, survives a SIGKILL without sealing anything twice, and never touches globex's
//! bytes; `keys retire --tenant` refuses before and destroys the old version after; a
//! duplicate the unique index could not see is left and named. The master key's side is in
//! `tenant_master_rotation.rs`.

#[path = "tenant_rotation/fixture.rs"]
mod fixture;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fixture::Fixture;
use pgshroud::cli::args::TenantKeysArgs;
use pgshroud::crypto::tenant_keys::file;
use pgshroud_integration_tests::protected::code;
use pgshroud_integration_tests::proxy::pgshroud_bin;

/// acme's notes (globex gets a quarter as many).
const ROWS: usize = 4000;

fn email(i: usize) -> String {
    format!("user{i}@example.com")
}

/// acme: `ROWS` notes and an order per tenth; globex: `ROWS / 4` notes (same emails) and its
/// own orders. Written through pgshroud by each tenant's user.
async fn fill(f: &Fixture) {
    for (suffix, tenant, n) in [("app", "acme", ROWS), ("support", "globex", ROWS / 4)] {
        let c = f.connect(suffix).await;
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let emails: Vec<String> = chunk.iter().map(|&i| email(i)).collect();
            let bodies: Vec<String> = chunk
                .iter()
                .map(|&i| format!("{tenant} note {i}"))
                .collect();
            c.execute(
                "INSERT INTO notes (tenant, email, body) SELECT $1, * FROM UNNEST($2::text[], $3::text[])",
                &[&tenant, &emails, &bodies],
            )
            .await
            .unwrap();
        }
        for i in (0..n).step_by(10) {
            let total = i as i32 + if tenant == "acme" { 0 } else { 100_000 };
            c.execute(
                "INSERT INTO orders (email, total) VALUES ($1, $2)",
                &[&email(i), &total],
            )
            .await
            .unwrap();
        }
    }
}

fn versions_of(stored: &[(String, i32, String, Vec<u8>)]) -> Vec<u32> {
    let mut v: Vec<u32> = stored
        .iter()
        .map(|s| u32::from_be_bytes(s.3[1..5].try_into().unwrap()))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_a_tenant_key_moves_its_values_under_load_and_leaves_the_other_tenant_alone() {
    let f = Fixture::new().await;
    fill(&f).await;
    let globex_before = f.stored_of("globex").await;
    assert_eq!(globex_before.len(), ROWS / 4 * 2 + ROWS / 40);
    // A value of acme under version 1, as a backup taken now holds it.
    let backup: (Vec<u8>, Vec<u8>) = {
        let row = f
            .direct()
            .await
            .query_one(
                "SELECT email, body FROM notes WHERE tenant = 'acme' ORDER BY id LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };

    // Version 1 cannot be retired while acme's values are under it.
    let refused =
        pgshroud::cli::keys::retire_tenant(&f.url(), &f.rules(), f.store.path(), "acme", 1)
            .await
            .unwrap();
    println!("{}", refused.text);
    assert!(!refused.ok);
    assert!(
        refused
            .text
            .contains(&format!("public.notes.email ({ROWS} values)")),
        "{}",
        refused.text
    );

    // A new version (the existing CLI), active after the reload.
    let added = pgshroud::cli::tenants::rotate(
        &TenantKeysArgs {
            tenant_keys_dir: f.store.path().to_owned(),
            keys_file: Some(f.dir.path().join("keys.toml")),
            master_key_file: None,
            master_key_command: None,
        },
        "acme",
    )
    .unwrap();
    assert!(added.contains("key version 2"), "{added}");
    f.proxy.reload().unwrap();

    let dry = pgshroud::cli::rotate::run(&f.rotate_args(Some("acme"), true))
        .await
        .unwrap();
    let acme_rows = ROWS + ROWS / 10;
    assert!(
        dry.text.contains(&format!(
            "Dry run: {acme_rows} rows hold values of tenant acme"
        )),
        "{}",
        dry.text
    );
    assert_eq!(
        versions_of(&f.stored_of("acme").await),
        [1],
        "a dry run changes nothing"
    );

    // acme's clients read and write the whole time; globex's read.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..2 {
        let c = f.connect("app").await;
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut i, mut written) = (worker, 0);
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .query(
                        "SELECT body FROM notes WHERE email = $1",
                        &[&email(i % ROWS)],
                    )
                    .await
                    .unwrap();
                assert_eq!(r.len(), 1, "{} is found exactly once", email(i % ROWS));
                assert_eq!(r[0].get::<_, String>(0), format!("acme note {}", i % ROWS));
                c.execute(
                    "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, 'during')",
                    &[&format!("new{worker}-{written}@example.com")],
                )
                .await
                .unwrap();
                written += 1;
                i += 997;
            }
            written
        }));
    }
    let globex = f.connect("support").await;
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        let mut i = 0;
        while !reader_stop.load(Ordering::Relaxed) {
            let r = globex
                .query(
                    "SELECT body FROM notes WHERE email = $1",
                    &[&email(i % (ROWS / 4))],
                )
                .await
                .unwrap();
            assert_eq!(r.len(), 1);
            assert_eq!(
                r[0].get::<_, String>(0),
                format!("globex note {}", i % (ROWS / 4))
            );
            i += 31;
        }
    });

    // A first run, killed (SIGKILL) once it has reported some progress.
    let mut child = Command::new(pgshroud_bin())
        .args([
            "rotate",
            "--tenant",
            "acme",
            "--batch-size",
            "50",
            "--upstream-url",
            &f.url(),
        ])
        .arg("--rules")
        .arg(f.rules())
        .arg("--keys-file")
        .arg(f.dir.path().join("keys.toml"))
        .arg("--tenant-keys-dir")
        .arg(f.store.path())
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
    assert!(
        lines[0].contains(&format!("/{acme_rows} rows")),
        "{lines:?}"
    );
    let mid = f.stored_of("acme").await;
    assert_eq!(
        versions_of(&mid),
        [1, 2],
        "the killed run committed some batches, not all"
    );

    // Run again: it continues and ends with a clean final check.
    let done = pgshroud::cli::rotate::run(&f.rotate_args(Some("acme"), false))
        .await
        .unwrap();
    println!("{}\n", done.text);
    assert!(done.ok, "{}", done.text);
    assert!(
        done.text
            .contains("Final check: every value of tenant acme is under its key version 2"),
        "{}",
        done.text
    );
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for c in clients {
        written += c.await.unwrap();
    }
    reader.await.unwrap();
    assert!(written > 0);

    // Every acme value is under version 2; globex's bytes are exactly as they were.
    let after = f.stored_of("acme").await;
    assert_eq!(versions_of(&after), [2]);
    assert_eq!(after.len(), (ROWS + written) * 2 + ROWS / 10);
    assert_eq!(f.stored_of("globex").await, globex_before);

    // Nothing was sealed twice: every acme value reads back as written (a value sealed twice
    // would read as an envelope, or not at all), and equality, unique and joins hold.
    let acme = f.connect("app").await;
    let all = acme
        .query(
            "SELECT email, body FROM notes WHERE tenant = 'acme' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(all.len(), ROWS + written);
    let first: Vec<_> = all
        .iter()
        .filter(|r| r.get::<_, String>(1) != "during")
        .collect();
    assert_eq!(first.len(), ROWS);
    for (i, row) in first.iter().enumerate() {
        assert_eq!(row.get::<_, String>(0), email(i));
        assert_eq!(row.get::<_, String>(1), format!("acme note {i}"));
    }
    let err = acme
        .execute(
            "INSERT INTO notes (tenant, email) VALUES ('acme', $1)",
            &[&email(7)],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505", "{err}");
    let joined = acme
        .query(
            "SELECT o.total FROM notes n JOIN orders o ON o.email = n.email WHERE n.tenant = 'acme' ORDER BY o.total",
            &[],
        )
        .await
        .unwrap();
    let totals: Vec<i32> = joined.iter().map(|r| r.get(0)).collect();
    assert_eq!(totals, (0..ROWS as i32).step_by(10).collect::<Vec<_>>());

    // Now version 1 can go: its wrapped key leaves the file.
    let retired =
        pgshroud::cli::keys::retire_tenant(&f.url(), &f.rules(), f.store.path(), "acme", 1)
            .await
            .unwrap();
    println!("{}\n", retired.text);
    assert!(retired.ok, "{}", retired.text);
    let stored = file::read(f.store.path(), "acme").unwrap().unwrap();
    assert_eq!(
        stored
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [2]
    );
    f.proxy.reload().unwrap();

    // A value under the retired version, restored from the backup, is undecryptable (XX001),
    // as the README says; the live values read on.
    f.direct()
        .await
        .execute(
            "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, $2)",
            &[&backup.0, &backup.1],
        )
        .await
        .unwrap();
    let acme = f.connect("app").await;
    let err = acme
        .query(
            "SELECT body FROM notes WHERE tenant = 'acme' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "XX001", "{err}");
    let acme = f.connect("app").await;
    let r = acme
        .query("SELECT body FROM notes WHERE email = $1", &[&email(1)])
        .await
        .unwrap();
    assert_eq!(r[0].get::<_, String>(0), "acme note 1");
}

#[tokio::test]
async fn a_tenant_duplicate_the_unique_index_could_not_see_is_left_and_reported() {
    let f = Fixture::new().await;
    let acme = f.connect("app").await;
    for (email, body) in [("alice@example.com", "first"), ("bob@example.com", "bob")] {
        acme.execute(
            "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, $2)",
            &[&email, &body],
        )
        .await
        .unwrap();
    }
    let args = TenantKeysArgs {
        tenant_keys_dir: f.store.path().to_owned(),
        keys_file: Some(f.dir.path().join("keys.toml")),
        master_key_file: None,
        master_key_command: None,
    };
    pgshroud::cli::tenants::rotate(&args, "acme").unwrap();
    f.proxy.reload().unwrap();
    // Under version 2 the same email is another ciphertext: the unique index lets it in.
    let acme = f.connect("app").await;
    acme.execute(
        "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, 'again')",
        &[&"alice@example.com"],
    )
    .await
    .unwrap();
    let report = pgshroud::cli::rotate::run(&f.rotate_args(Some("acme"), false))
        .await
        .unwrap();
    println!("{}", report.text);
    assert!(!report.ok, "{}", report.text);
    assert!(
        report.text.contains("public.notes.email, public.notes.body: a value is left under its old key version because another row holds the same value under version 2 (unique constraint notes_email_key)"),
        "{}",
        report.text
    );
    assert!(
        report
            .text
            .contains("Re-encrypted 2 values of tenant acme in 1 rows"),
        "only bob's row is counted: {}",
        report.text
    );
    assert!(
        report.text.contains("Final check failed: public.notes.email (1 values under tenant key version 1), public.notes.body (1 values under tenant key version 1)"),
        "{}",
        report.text
    );
    // bob moved; the pair is the operator's. Once resolved, a second run is clean.
    acme.execute("DELETE FROM notes WHERE body = $1", &[&"again"])
        .await
        .unwrap();
    let again = pgshroud::cli::rotate::run(&f.rotate_args(Some("acme"), false))
        .await
        .unwrap();
    assert!(again.ok, "{}", again.text);
    assert!(
        again
            .text
            .contains("Re-encrypted 2 values of tenant acme in 1 rows"),
        "{}",
        again.text
    );
}
