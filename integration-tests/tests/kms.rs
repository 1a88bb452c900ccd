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
