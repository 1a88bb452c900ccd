//! Master keys wrapped by AWS KMS, against a real KMS API server (moto's, on loopback):
//! `pgshroud keygen --kms-key-id` wraps a new key (GenerateDataKey), `pgshroud serve` unwraps it
//! at start-up (Decrypt) and serves the non-owner application role; a wrong key id, a disabled
//! key, KMS down and missing credentials stop the start with an error naming the key version
//! and the KMS key; KMS down at reload keeps the old keys serving, counts the failure and says
//! so on /readyz.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgshroud_integration_tests::kms::{
    admin_get, free_port, keygen, metric, serve, with_credentials, without_aws, Moto, ServeProcess,
};
use pgshroud_integration_tests::protected::{hex, install_guards, RULES, SCHEMA};
use pgshroud_integration_tests::proxy::pgshroud_bin;
use pgshroud_integration_tests::{cluster, users};
use tokio_postgres::NoTls;

/// The binary under test, checked to be new enough (the harness builds it only when missing).
fn bin() -> PathBuf {
    let bin = pgshroud_bin();
    let help = std::process::Command::new(&bin)
        .args(["keygen", "--help"])
        .output()
        .expect("pgshroud runs");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--kms-key-id"),
        "{} predates KMS support: run `cargo build -p pgshroud --bin pgshroud` first",
        bin.display()
    );
    bin
}

struct Setup {
    db: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(SCHEMA).await.unwrap();
        install_guards(&db, RULES).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
        Setup { db, dir }
    }

    fn rules(&self) -> PathBuf {
        self.dir.path().join("rules.toml")
    }

    /// Writes the keys file: `active` and the given [[keys]] entries.
    fn keys_file(&self, active: u32, entries: &[&str]) -> PathBuf {
        let path = self.dir.path().join("keys.toml");
        std::fs::write(
            &path,
            format!("active = {active}\n{}\n", entries.join("\n")),
        )
        .unwrap();
        path
    }

    fn serve(
        &self,
        keys: &Path,
        env: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
    ) -> ServeProcess {
        serve(
            &bin(),
            self.dir.path(),
            &cluster().url(),
            &self.rules(),
            keys,
            env,
        )
    }

    async fn app(&self, proxy: &ServeProcess) -> tokio_postgres::Client {
        let conn = format!(
            "host=127.0.0.1 port={} user={} password={} dbname={} sslmode=disable",
            proxy.listen.port(),
            users::SCRAM,
            users::SCRAM_PASSWORD,
            self.db
        );
        let (client, connection) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// The stored email envelopes, read without the proxy.
    async fn stored_emails(&self) -> Vec<Vec<u8>> {
        let admin = cluster().admin_client_for(&self.db).await;
        admin
            .query("SELECT email FROM customers ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The stored email envelopes' key versions.
    async fn stored_versions(&self) -> Vec<u32> {
        self.stored_emails()
            .await
            .iter()
            .map(|email| {
                assert_eq!(email[0], 2, "format 2 envelope");
                u32::from_be_bytes(email[1..5].try_into().unwrap())
            })
            .collect()
    }
}

/// The entry `pgshroud keygen --kms-key-id` prints; asserts it printed nothing secret.
fn wrapped_entry(moto: &Moto, key_id: &str, version: u32) -> String {
    let out = keygen(&bin(), moto, key_id, version);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("kms_key_id = \"{key_id}\"")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("version = {version}")), "{stdout}");
    let wrapped = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrapped = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a wrapped line");
    // The blob is a KMS ciphertext (longer than a bare 32-byte key), and the only base64 printed.
    let blob = base64_len(wrapped);
    assert!(blob > 32, "the wrapped blob is {blob} bytes");
    stdout
}

fn base64_len(text: &str) -> usize {
    let padding = text.chars().rev().take_while(|c| *c == '=').count();
    text.len() / 4 * 3 - padding
}

/// Starts and expects the start to fail; returns the log.
fn refused(mut proxy: ServeProcess) -> String {
    let (status, log) = match proxy.wait_listening() {
        Ok(()) => panic!("pgshroud must not start: {}", proxy.log_text()),
        Err(failed) => failed,
    };
    assert!(!status.success(), "exit status {status}: {log}");
    log
}

#[tokio::test]
async fn a_kms_wrapped_key_serves_and_kms_down_at_reload_keeps_the_old_keys() {
    let mut moto = Moto::start();
    let key_id = moto.create_key();
    let setup = Setup::new().await;
    let entry = wrapped_entry(&moto, &key_id, 1);
    let keys = setup.keys_file(1, &[&entry]);
    let mut proxy = setup.serve(&keys, with_credentials);
    proxy
        .wait_listening()
        .unwrap_or_else(|(status, log)| panic!("pgshroud did not start ({status}): {log}"));

    let app = setup.app(&proxy).await;
    app.execute(
        "INSERT INTO customers (email, age, name) VALUES ($1, $2, $3)",
        &[&"alice@example.com", &42i32, &"Alice"],
    )
    .await
    .unwrap();
    let row = app
        .query_one(
            "SELECT email, age FROM customers WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice@example.com");
    assert_eq!(row.get::<_, i32>(1), 42);
    assert_eq!(setup.stored_versions().await, [1]);
    // The independent decryptor unwraps the same key through KMS (boto3) and reads the value.
    let stored = setup.stored_emails().await.remove(0);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pgshroud_decrypt.py");
    let out = with_credentials(std::process::Command::new("python3").arg(script))
        .arg("--keys-file")
        .arg(&keys)
        .args(["public.customers.email", &hex(&stored)])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "alice@example.com"
    );
    let metrics = admin_get(proxy.admin, "/metrics").1;
    assert_eq!(
        metric(&metrics, "pgshroud_kms_calls_total{operation=\"decrypt\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(admin_get(proxy.admin, "/readyz"), (200, "ready".to_owned()));

    // KMS goes away; a reload (SIGHUP) cannot unwrap the key again.
    moto.kill();
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    let readyz = loop {
        let (status, body) = admin_get(proxy.admin, "/readyz");
        if body.contains("last reload") {
            break (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "no failed reload on /readyz: {body}\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(readyz.0, 200, "the old keys still serve: {readyz:?}");
    assert!(
        readyz.1.starts_with("ready\nthe last reload (SIGHUP, "),
        "{}",
        readyz.1
    );
    assert!(
        readyz.1.contains("previous rules and keys stay in force"),
        "{}",
        readyz.1
    );
    assert!(
        readyz
            .1
            .contains(&format!("key version 1 (KMS key {key_id})")),
        "{}",
        readyz.1
    );
    assert!(readyz.1.contains("KMS unreachable"), "{}", readyz.1);
    let metrics = admin_get(proxy.admin, "/metrics").1;
    assert!(
        metric(
            &metrics,
            "pgshroud_kms_failures_total{reason=\"unreachable\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "pgshroud_rules_reloads_total{result=\"rejected\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert!(
        proxy.log_text().contains("not reloaded (SIGHUP)"),
        "{}",
        proxy.log_text()
    );

    // The old ring keeps serving the open session and new ones: reads, equality, writes.
    app.execute(
        "INSERT INTO customers (email, age, name) VALUES ($1, $2, $3)",
        &[&"bob@example.com", &7i32, &"Bob"],
    )
    .await
    .unwrap();
    let fresh = setup.app(&proxy).await;
    let names: Vec<String> = fresh
        .query(
            "SELECT name FROM customers WHERE email IN ($1, $2) ORDER BY id",
            &[&"alice@example.com", &"bob@example.com"],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["Alice", "Bob"]);
    assert_eq!(setup.stored_versions().await, [1, 1]);
}

#[tokio::test]
async fn a_wrong_key_id_stops_the_start_naming_the_version_and_the_key() {
    let moto = Moto::start();
    let wrapping = moto.create_key();
    let other = moto.create_key();
    let setup = Setup::new().await;
    let entry = wrapped_entry(&moto, &wrapping, 3);

    // Another existing key: KMS refuses to unwrap with it.
    let keys = setup.keys_file(3, &[&entry.replace(&wrapping, &other)]);
    let log = refused(setup.serve(&keys, with_credentials));
    assert!(
        log.contains(&format!("key version 3 (KMS key {other})")),
        "{log}"
    );
    assert!(log.contains("KMS denied the request"), "{log}");

    // A key that does not exist.
    let missing = format!("{}0000", &wrapping[..wrapping.len() - 4]);
    let keys = setup.keys_file(3, &[&entry.replace(&wrapping, &missing)]);
    let log = refused(setup.serve(&keys, with_credentials));
    assert!(
        log.contains(&format!("key version 3 (KMS key {missing})")),
        "{log}"
    );
    assert!(log.contains("the KMS key does not exist"), "{log}");
}

#[tokio::test]
async fn a_disabled_key_stops_the_start() {
    let moto = Moto::start();
    let key_id = moto.create_key();
    let setup = Setup::new().await;
    let keys = setup.keys_file(1, &[&wrapped_entry(&moto, &key_id, 1)]);
    moto.disable_key(&key_id);
    let log = refused(setup.serve(&keys, with_credentials));
    assert!(
        log.contains(&format!(
            "key version 1 (KMS key {key_id}): the KMS key is Disabled"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn kms_down_at_start_up_stops_the_start() {
    let mut moto = Moto::start();
    let key_id = moto.create_key();
    let setup = Setup::new().await;
    let keys = setup.keys_file(1, &[&wrapped_entry(&moto, &key_id, 1)]);
    moto.kill();
    let log = refused(setup.serve(&keys, with_credentials));
    assert!(
        log.contains(&format!(
            "key version 1 (KMS key {key_id}): KMS unreachable"
        )),
        "{log}"
    );
    // Also an endpoint where nothing ever listened.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let entry = wrapped_entry_text(&key_id, &nowhere);
    let keys = setup.keys_file(1, &[&entry]);
    let log = refused(setup.serve(&keys, with_credentials));
    assert!(log.contains("KMS unreachable"), "{log}");
}

fn wrapped_entry_text(key_id: &str, endpoint: &str) -> String {
    format!(
        "[[keys]]\nversion = 1\nkms_key_id = \"{key_id}\"\nwrapped = \"AQIDBA==\"\nkms_endpoint = \"{endpoint}\"\nkms_region = \"us-east-1\"\nactivated_at = 2026-12-06T00:00:00Z\n"
    )
}

#[tokio::test]
async fn missing_credentials_stop_the_start_with_a_clear_error() {
    let moto = Moto::start();
    let key_id = moto.create_key();
    let setup = Setup::new().await;
    let keys = setup.keys_file(1, &[&wrapped_entry(&moto, &key_id, 1)]);
    let home = setup.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let log = refused(setup.serve(&keys, |c| without_aws(c, &home)));
    assert!(
        log.contains(&format!(
            "key version 1 (KMS key {key_id}): no AWS credentials found"
        )),
        "{log}"
    );
    assert!(!log.contains("testing"), "{log}");
}

/// The README's procedure, end to end: a live database under a key in a file moves to a new
/// key wrapped by KMS (keygen, a [[keys]] entry, SIGHUP), `pgshroud rotate` re-encrypts with
/// its progress in a metrics textfile, `keys status` proves nothing is left under version 1
/// (also as metrics), `keys retire` agrees, and the old entry goes.
#[tokio::test]
async fn a_live_database_moves_to_a_kms_key_and_the_old_key_is_retired() {
    use pgshroud_integration_tests::protected::{owner_url, MASTER_KEY};
    let moto = Moto::start();
    let key_id = moto.create_key();
    let setup = Setup::new().await;
    let old_key = setup.dir.path().join("v1.key");
    std::fs::write(&old_key, MASTER_KEY).unwrap();
    let v1 = format!(
        "[[keys]]\nversion = 1\nfile = \"{}\"\nactivated_at = 2026-01-01T00:00:00Z\n",
        old_key.display()
    );
    let keys = setup.keys_file(1, &[&v1]);
    let mut proxy = setup.serve(&keys, with_credentials);
    proxy
        .wait_listening()
        .unwrap_or_else(|(status, log)| panic!("pgshroud did not start ({status}): {log}"));
    let app = setup.app(&proxy).await;
    for (email, age) in [("a@x.org", 1i32), ("b@x.org", 2), ("c@x.org", 3)] {
        app.execute(
            "INSERT INTO customers (email, age) VALUES ($1, $2)",
            &[&email, &age],
        )
        .await
        .unwrap();
    }

    let v2 = wrapped_entry(&moto, &key_id, 2);
    eprintln!("keygen printed:\n{v2}");
    setup.keys_file(2, &[&v1, &v2]);
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(
        &admin_get(proxy.admin, "/metrics").1,
        "pgshroud_key_active_version",
    ) != 2.0
    {
        assert!(Instant::now() < deadline, "no reload: {}", proxy.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.execute(
        "INSERT INTO customers (email, age) VALUES ($1, $2)",
        &[&"d@x.org", &4i32],
    )
    .await
    .unwrap();
    assert_eq!(setup.stored_versions().await, [1, 1, 1, 2]);

    let run = |args: &[&str]| {
        let out = with_credentials(std::process::Command::new(bin()).args(args))
            .output()
            .expect("pgshroud runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ pgshroud {}\n{text}", args.join(" "));
        (out.status.success(), text)
    };
    let url = owner_url(&setup.db);
    let rules = setup.rules().display().to_string();
    let keys_text = keys.display().to_string();
    let rotate_prom = setup.dir.path().join("rotate.prom");
    let status_prom = setup.dir.path().join("keys.prom");
    let (ok, text) = run(&[
        "rotate",
        "--upstream-url",
        &url,
        "--rules",
        &rules,
        "--keys-file",
        &keys_text,
        "--metrics-textfile",
        &rotate_prom.display().to_string(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Final check: every stored value is under key version 2"),
        "{text}"
    );
    let prom = std::fs::read_to_string(&rotate_prom).unwrap();
    assert_eq!(metric(&prom, "pgshroud_rotate_rows"), 3.0, "{prom}");
    assert_eq!(metric(&prom, "pgshroud_rotate_rows_done"), 3.0, "{prom}");
    assert_eq!(
        metric(&prom, "pgshroud_rotate_values_reencrypted"),
        6.0,
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "pgshroud_rotate_final_check_passed"),
        1.0,
        "{prom}"
    );
    assert_eq!(setup.stored_versions().await, [2, 2, 2, 2]);

    let (ok, text) = run(&[
        "keys",
        "status",
        "--upstream-url",
        &url,
        "--rules",
        &rules,
        "--metrics-textfile",
        &status_prom.display().to_string(),
    ]);
    assert!(ok, "{text}");
    let prom = std::fs::read_to_string(&status_prom).unwrap();
    let series =
        "pgshroud_stored_values{column=\"public.customers.email\",format=\"2\",key_version=\"2\"}";
    assert_eq!(metric(&prom, series), 4.0, "{prom}");
    assert!(!prom.contains("key_version=\"1\""), "{prom}");
    let (ok, text) = run(&[
        "keys",
        "retire",
        "--upstream-url",
        &url,
        "--rules",
        &rules,
        "--version",
        "1",
    ]);
    assert!(ok, "{text}");

    // The old key leaves the keys file; everything still reads, through KMS's key alone.
    setup.keys_file(2, &[&v2]);
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(
        &admin_get(proxy.admin, "/metrics").1,
        "pgshroud_rules_reloads_total{result=\"ok\"}",
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "no second reload: {}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = setup.app(&proxy).await;
    let ages: Vec<i32> = fresh
        .query(
            "SELECT age FROM customers WHERE email = ANY($1) ORDER BY id",
            &[&vec!["a@x.org", "d@x.org"]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ages, [1, 4]);
    assert_eq!(admin_get(proxy.admin, "/readyz"), (200, "ready".to_owned()));
}
