//! `pgshroud migrate` against a real PostgreSQL: populated plaintext columns of every kind of
//! logical type (NULLs, NOT NULL, a unique constraint, a foreign key between two protected
//! columns) become guarded envelope columns while writers keep going, survive kills at
//! arbitrary points, are idempotent, read through the proxy, and come back byte for byte
//! with `--decrypt`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgshroud::cli::args::MigrateArgs;
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::keys::write_keys;
use pgshroud_integration_tests::protected::{owner_url, MASTER_KEY};
use pgshroud_integration_tests::proxy::pgshroud_bin;
use pgshroud_integration_tests::{cluster, proxy_with, users};

const RULES: &str = r#"
[[tables]]
name = "public.people"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "person-email"
  [[tables.columns]]
  name = "born"
  type = "date"

[[tables]]
name = "public.orders"
  [[tables.columns]]
  name = "customer_email"
  type = "text"
  key_context = "person-email"
  [[tables.columns]]
  name = "note"
  type = "varchar(40)"
  [[tables.columns]]
  name = "total"
  type = "numeric(12,2)"
  [[tables.columns]]
  name = "paid"
  type = "bool"
  [[tables.columns]]
  name = "at"
  type = "timestamptz"
  [[tables.columns]]
  name = "data"
  type = "jsonb"
  [[tables.columns]]
  name = "big"
  type = "int8"
"#;

/// The rules the proxy serves before the swap: none of the migrating columns.
const NOT_YET: &str = r#"
[[tables]]
name = "public.unrelated"
  [[tables.columns]]
  name = "x"
  type = "text"
"#;

const COLUMNS: [&str; 9] = [
    "public.people.email",
    "public.people.born",
    "public.orders.customer_email",
    "public.orders.note",
    "public.orders.total",
    "public.orders.paid",
    "public.orders.at",
    "public.orders.data",
    "public.orders.big",
];

const SCHEMA: &str = "
CREATE TABLE people (id serial PRIMARY KEY, email text NOT NULL CONSTRAINT people_email_key UNIQUE,
  age int4, born date);
INSERT INTO people (email, age, born)
  SELECT 'user' || i || '@example.com', i % 100,
         CASE WHEN i % 10 = 0 THEN NULL ELSE date '1950-01-01' + i % 20000 END
  FROM generate_series(1, 100000) AS i;
CREATE TABLE orders (id serial PRIMARY KEY,
  customer_email text CONSTRAINT orders_customer_email_fkey REFERENCES people (email),
  note varchar(40), total numeric(12,2) NOT NULL CONSTRAINT orders_total_check CHECK (total >= 0),
  paid boolean, at timestamptz, data jsonb, big int8);
CREATE INDEX orders_note_lower ON orders (lower(note));
INSERT INTO orders (customer_email, note, total, paid, at, data, big)
  SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE 'user' || (i * 7) || '@example.com' END,
         CASE WHEN i % 4 = 0 THEN NULL ELSE 'café ünïcode ' || i || ' ✓' END,
         (i * 1.37)::numeric(12,2),
         CASE WHEN i % 3 = 0 THEN NULL ELSE i % 2 = 0 END,
         CASE WHEN i % 6 = 0 THEN NULL ELSE timestamptz '2026-01-01 00:00:00.123456+00' + i * interval '1 hour 3 min 7.5 s' END,
         CASE WHEN i % 7 = 0 THEN NULL ELSE jsonb_build_object('n', i, 'x', jsonb_build_array(1.50, 'ü', true, null)) END,
         CASE WHEN i % 8 = 0 THEN NULL ELSE (i - 1000) * 1000000000000 END
  FROM generate_series(1, 2000) AS i;
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;";

struct Setup {
    db: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(SCHEMA).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
        write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
        Setup { db, dir }
    }

    fn args(&self, decrypt: bool, dry_run: bool, drop_incompatible: bool) -> MigrateArgs {
        MigrateArgs {
            upstream_url: owner_url(&self.db),
            rules: self.dir.path().join("rules.toml"),
            keys_file: self.dir.path().join("keys.toml"),
            columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
            decrypt,
            dry_run,
            drop_incompatible,
            batch_size: 2000,
        }
    }

    /// Every row of both tables in text form, under fixed output settings.
    async fn snapshot(&self) -> BTreeMap<String, Vec<Option<String>>> {
        let admin = cluster().admin_client_for(&self.db).await;
        admin
            .batch_execute(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1",
            )
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for sql in [
            "SELECT 'p' || email, email, age::text, born::text FROM people",
            "SELECT 'o' || id, customer_email, note::text, total::text, paid::text, at::text, data::text, big::text FROM orders",
        ] {
            for row in admin.query(sql, &[]).await.unwrap() {
                let values = (1..row.len()).map(|i| row.get(i)).collect();
                out.insert(row.get(0), values);
            }
        }
        out
    }

    async fn column_types(&self) -> Vec<(String, String, bool)> {
        let admin = cluster().admin_client_for(&self.db).await;
        admin
            .query(
                "SELECT attrelid::regclass::text || '.' || attname, format_type(atttypid, atttypmod), attnotnull \
                 FROM pg_attribute WHERE attrelid IN ('people'::regclass, 'orders'::regclass) \
                   AND attnum > 0 AND NOT attisdropped ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// Runs the binary and kills it after `lines` progress lines or `delay`, whichever first.
    async fn run_and_kill(&self, lines: usize, delay: Duration) {
        let args = self.args(false, false, true);
        let mut child = Command::new(pgshroud_bin())
            .args(["migrate", "--drop-incompatible", "--batch-size", "1000"])
            .args(["--upstream-url", &args.upstream_url])
            .arg("--rules")
            .arg(&args.rules)
            .arg("--keys-file")
            .arg(&args.keys_file)
            .args(COLUMNS.iter().flat_map(|c| ["--column", c]))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let reader = tokio::task::spawn_blocking(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with("migrate: "))
                .take(lines)
                .count()
        });
        let _ = tokio::time::timeout(delay, reader).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A delay that differs from run to run (the kill lands at a different point each time).
fn random_delay(max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(50 + u64::from(nanos) % max_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn columns_of_every_type_are_encrypted_online_resumably_and_decrypted_back_byte_for_byte() {
    let s = Setup::new().await;
    let original = s.snapshot().await;
    let types = s.column_types().await;

    // The plan names what is kept and what cannot be, and changes nothing.
    let dry = pgshroud::cli::migrate::run(&s.args(false, true, false))
        .await
        .unwrap();
    eprintln!("{}", dry.text);
    for expected in [
        "Plan (encrypt): 9 column(s) to migrate, 0 already done.",
        "public.people.email: text -> bytea envelopes under the guard, key context \"person-email\", 100000 rows to fill, NOT NULL kept",
        "public.orders.total: numeric(12,2) -> bytea envelopes under the guard, key context \"public.orders.total\", 2000 rows to fill, NOT NULL kept",
        "kept: unique constraint people_email_key (rebuilt on the ciphertext)",
        "foreign key orders_customer_email_fkey (public.orders.customer_email -> public.people.email) is kept",
        "cannot be kept: public.orders.note: index orders_note_lower cannot be rebuilt",
        "cannot be kept: public.orders.total: CHECK constraint orders_total_check",
        "ALTER TABLE \"public\".\"people\" ADD COLUMN \"email__pgshroud\" bytea;",
        "CREATE UNIQUE INDEX CONCURRENTLY",
        "ALTER TABLE \"public\".\"people\" ADD CONSTRAINT \"people_email_key\" UNIQUE USING INDEX",
        "Dry run: nothing was changed.",
    ] {
        assert!(dry.text.contains(expected), "missing {expected:?} in:\n{}", dry.text);
    }
    assert_eq!(s.column_types().await, types, "a dry run changes nothing");

    // Without --drop-incompatible, nothing happens.
    let refused = pgshroud::cli::migrate::run(&s.args(false, false, false))
        .await
        .unwrap();
    assert!(!refused.ok);
    assert!(
        refused.text.contains("goes only with --drop-incompatible"),
        "{}",
        refused.text
    );
    assert_eq!(s.column_types().await, types);

    // `check --upstream-url` names what still holds plaintext, then what is mid-migration.
    let rules = s.dir.path().join("rules.toml");
    let check = pgshroud::cli::setup::database_report(&owner_url(&s.db), &rules)
        .await
        .unwrap();
    assert!(!check.ok);
    let line = |text: &str, column: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(column))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line(&check.text, "public.people.email").contains("STILL PLAINTEXT (text)"),
        "{}",
        check.text
    );

    // Killed after some progress, then again at a random point.
    s.run_and_kill(2, Duration::from_secs(60)).await;
    let check = pgshroud::cli::setup::database_report(&owner_url(&s.db), &rules)
        .await
        .unwrap();
    assert!(
        line(&check.text, "public.people.email")
            .contains("MID-MIGRATION: text, with shadow column email__pgshroud (bytea)"),
        "{}",
        check.text
    );
    s.run_and_kill(usize::MAX, random_delay(3000)).await;

    // The application goes through pgshroud, whose rules do not list the columns until the
    // swap. Writers keep inserting and updating the columns while the last run goes on; they
    // stop at the swap (their plaintext statements then meet bytea under the guard).
    let served = s.dir.path().join("served.toml");
    std::fs::write(&served, NOT_YET).unwrap();
    let proxy = proxy_with(ConfigLayer {
        rules: Some(served.clone()),
        keys_file: Some(s.dir.path().join("keys.toml")),
        ..Default::default()
    })
    .await;
    let text = |m: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<Option<String>> {
        m.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                _ => None,
            })
            .collect()
    };
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &s.db)
        .await
        .unwrap();
    let born = app
        .simple_query("SELECT born FROM people WHERE email = 'user41@example.com'")
        .await
        .unwrap();
    assert_eq!(
        text(born),
        [Some("1950-02-11".to_owned())],
        "plaintext, before"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let c = proxy
            .connect(users::SCRAM, users::SCRAM_PASSWORD, &s.db)
            .await
            .unwrap();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let (mut inserted, mut updated) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let email = format!("new{w}-{n}@example.com");
                // Not a multiple of 7: no order refers to these people (the foreign key).
                let id = 1 + w * 40_000 + n * 14;
                let insert = c
                    .execute(
                        "INSERT INTO people (email, age, born) VALUES ($1, 1, date '2001-02-03')",
                        &[&email],
                    )
                    .await;
                let update = c
                    .execute(
                        "UPDATE people SET born = date '1999-12-31', email = 'moved' || id || '@example.com' WHERE id = $1",
                        &[&id],
                    )
                    .await;
                // An error means the swap happened: the columns are bytea now.
                match insert {
                    Ok(_) => inserted.push(email),
                    Err(_) => break,
                }
                match update {
                    Ok(_) => updated.push(id),
                    Err(_) => break,
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (inserted, updated)
        }));
    }
    let started = std::time::Instant::now();
    let report = pgshroud::cli::migrate::run(&s.args(false, false, true))
        .await
        .unwrap();
    eprintln!("encrypt run: {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    assert!(report.ok, "{}", report.text);
    eprintln!("{}", report.text);
    assert!(
        report
            .text
            .contains("each verified to hold what the column held"),
        "{}",
        report.text
    );
    let (mut inserted, mut updated): (Vec<String>, Vec<i32>) = (Vec::new(), Vec::new());
    for w in writers {
        let (i, u) = w.await.unwrap();
        inserted.extend(i);
        updated.extend(u);
    }
    assert!(!updated.is_empty(), "the writers ran during the migration");

    // The database holds envelopes under guards; plaintext is refused by PostgreSQL itself.
    let admin = cluster().admin_client_for(&s.db).await;
    let now = s.column_types().await;
    for column in ["people.email", "people.born", "orders.total", "orders.data"] {
        let (_, ty, _) = now.iter().find(|(n, _, _)| n == column).unwrap();
        assert_eq!(ty, "bytea", "{column}");
    }
    assert!(
        now.iter().any(|(n, _, nn)| n == "people.email" && *nn),
        "NOT NULL kept"
    );
    let plain = admin
        .batch_execute("INSERT INTO people (email) VALUES ('\\x00'::bytea)")
        .await
        .unwrap_err();
    assert_eq!(plain.code().unwrap().code(), "23514", "the guard refuses");
    let keys: Vec<String> = admin
        .query(
            "SELECT conname::text FROM pg_constraint WHERE conrelid IN ('people'::regclass, 'orders'::regclass) AND convalidated ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in [
        "people_email_key",
        "orders_customer_email_fkey",
        "pgshroud_guard_email",
        "pgshroud_guard_total",
    ] {
        assert!(keys.contains(&name.to_owned()), "{name} in {keys:?}");
    }

    let check = pgshroud::cli::setup::database_report(&owner_url(&s.db), &rules)
        .await
        .unwrap();
    assert!(check.ok, "{}", check.text);

    // A run killed between its swap and the validation leaves the guard NOT VALID; the next
    // run validates it.
    admin
        .batch_execute(&format!(
            "SET search_path = pg_catalog; ALTER TABLE public.people DROP CONSTRAINT pgshroud_guard_born; \
             ALTER TABLE public.people ADD CONSTRAINT pgshroud_guard_born CHECK ({}) NOT VALID; RESET search_path",
            pgshroud::protect::guard::check_expression("born", "public.people.born")
        ))
        .await
        .unwrap();

    // Idempotent: a second run has nothing to do.
    let again = pgshroud::cli::migrate::run(&s.args(false, false, true))
        .await
        .unwrap();
    assert!(
        again.ok && again.text.starts_with("Nothing to do"),
        "{}",
        again.text
    );
    let validated: bool = admin
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'pgshroud_guard_born'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(validated, "the second run validated the guard");

    // The proxy reads what migrate wrote (the same envelopes it writes itself): equality
    // look-ups find the rows, a join over the shared key context works.
    // The operator puts the columns into the served rules; the session opened before the
    // migration reads plaintext at its next statement.
    std::fs::write(&served, RULES).unwrap();
    proxy.reload().unwrap();
    // The session's first statements after a reload that adds tables may still be planned on
    // the catalog it looked up before (pgshroud looks it up again after a statement): they
    // are refused (0A000), never answered wrongly, and the session is served soon after.
    let lookup = "SELECT born FROM people WHERE email = 'user41@example.com'";
    let mut refused = 0;
    let born = loop {
        match app.simple_query(lookup).await {
            Ok(rows) => break rows,
            Err(e) => {
                assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
                refused += 1;
                assert!(refused < 20, "the session never took the new rules: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    eprintln!("statements refused after the reload before the session was served: {refused}");
    assert_eq!(text(born), [Some("1950-02-11".to_owned())]);
    let joined = app
        .simple_query(
            "SELECT o.total FROM orders o JOIN people p ON p.email = o.customer_email WHERE o.id = 1",
        )
        .await
        .unwrap();
    assert_eq!(text(joined), [Some("1.37".to_owned())]);
    app.simple_query(
        "INSERT INTO people (email, age, born) VALUES ('after@example.com', 2, '2020-01-01')",
    )
    .await
    .unwrap();
    drop(app);
    proxy.shutdown().await;

    // The way back, and every value as it was (with the writers' changes), byte for byte.
    let started = std::time::Instant::now();
    let back = pgshroud::cli::migrate::run(&s.args(true, false, true))
        .await
        .unwrap();
    assert!(back.ok, "{}", back.text);
    eprintln!("{}\ndecrypt run: {:?}", back.text, started.elapsed());
    // What the plan says is not kept: a jsonb number's written scale (equal documents are
    // encrypted alike, so 1.50 and 1.5 are one value).
    assert!(dry
        .text
        .contains("note: public.orders.data: jsonb numbers are kept by value"));
    let mut expected = original.clone();
    for row in expected.values_mut().filter(|r| r.len() == 7) {
        if let Some(data) = row[5].as_mut() {
            *data = data.replace("1.50", "1.5");
        }
    }
    for id in &updated {
        let old = format!("puser{id}@example.com");
        if let Some(mut row) = expected.remove(&old) {
            let moved = format!("moved{id}@example.com");
            row[0] = Some(moved.clone());
            row[2] = Some("1999-12-31".into());
            expected.insert(format!("p{moved}"), row);
        }
    }
    expected.insert(
        "pafter@example.com".into(),
        vec![
            Some("after@example.com".into()),
            Some("2".into()),
            Some("2020-01-01".into()),
        ],
    );
    for email in &inserted {
        expected.insert(
            format!("p{email}"),
            vec![
                Some(email.clone()),
                Some("1".into()),
                Some("2001-02-03".into()),
            ],
        );
    }
    let after = s.snapshot().await;
    assert_eq!(after.len(), expected.len(), "no row lost, none added");
    for (key, row) in &expected {
        assert_eq!(after.get(key), Some(row), "{key}");
    }
    let restored = s.column_types().await;
    for (name, ty, not_null) in &types {
        assert!(
            restored.contains(&(name.clone(), ty.clone(), *not_null)),
            "{name} {ty} back: {restored:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_the_rules_do_not_match_or_a_view_on_the_column_stops_the_migration_before_any_change(
) {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin
        .batch_execute(
            "CREATE TABLE cards (id serial PRIMARY KEY, pan varchar(19), holder text);
             INSERT INTO cards (pan, holder) VALUES ('4111111111111111', 'A'), (NULL, 'B');
             CREATE VIEW holders AS SELECT id, holder FROM cards;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[tables]]\nname = \"public.cards\"\n  [[tables.columns]]\n  name = \"pan\"\n  type = \"text\"\n  [[tables.columns]]\n  name = \"holder\"\n  type = \"text\"\n",
    )
    .unwrap();
    write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
    let args = |column: &str| MigrateArgs {
        upstream_url: owner_url(&db),
        rules: rules.clone(),
        keys_file: dir.path().join("keys.toml"),
        columns: vec![column.to_owned()],
        decrypt: false,
        dry_run: false,
        drop_incompatible: true,
        batch_size: 100,
    };
    let pan = pgshroud::cli::migrate::run(&args("public.cards.pan"))
        .await
        .unwrap();
    assert!(!pan.ok);
    assert!(
        pan.text.contains(
            "public.cards.pan: the column is character varying(19), the rules say text: write type = \"varchar(19)\" for it in the rules file"
        ),
        "{}",
        pan.text
    );
    let holder = pgshroud::cli::migrate::run(&args("public.cards.holder"))
        .await
        .unwrap();
    assert!(!holder.ok);
    assert!(
        holder.text.contains("view public.holders reads the column"),
        "{}",
        holder.text
    );
    assert!(holder.text.contains("Nothing was changed"));
    let shadows: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'cards'::regclass AND attname LIKE '%pgshroud%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shadows, 0, "nothing was changed");
    let unknown = pgshroud::cli::migrate::run(&args("public.cards.id")).await;
    assert!(unknown
        .unwrap_err()
        .contains("not a protected column in the rules file"));
}
