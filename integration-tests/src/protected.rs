//! A database with protected tables and a proxy holding the rules and key for them: the
//! fixture of the encrypted-column tests.

use pgshroud::config::ConfigLayer;

use crate::proxy::TestProxy;
use crate::{cluster, proxy_with, users};

/// The test master key (base64 of bytes 0..32).
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Rules marking `public.people.email` as migrating (plaintext now, sealed after the swap).
pub const MIGRATING_PEOPLE: &str = r#"
[[tables]]
name = "public.people"
  [[tables.columns]]
  name = "email"
  type = "text"
  migrating = true
"#;
/// Another valid key, to show what a wrong key does.
pub const OTHER_KEY: &str = "HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

/// `customers` (email text, age int4), `orders`/`people` sharing the `person-email` context,
/// and `typed` with one column of every logical type.
pub const RULES: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"

[[tables]]
name = "orders"
  [[tables.columns]]
  name = "customer_email"
  type = "text"
  key_context = "person-email"

[[tables]]
name = "people"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "person-email"

# A view over customers.email, listed with the base column's key context.
[[tables]]
name = "customer_emails"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "public.customers.email"

[[tables]]
name = "driver_check"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"

[[tables]]
name = "typed"
  [[tables.columns]]
  name = "v_text"
  type = "text"
  [[tables.columns]]
  name = "v_varchar"
  type = "varchar"
  [[tables.columns]]
  name = "v_int2"
  type = "int2"
  [[tables.columns]]
  name = "v_int4"
  type = "int4"
  [[tables.columns]]
  name = "v_int8"
  type = "int8"
  [[tables.columns]]
  name = "v_bool"
  type = "bool"
  [[tables.columns]]
  name = "v_numeric"
  type = "numeric"
  [[tables.columns]]
  name = "v_date"
  type = "date"
  [[tables.columns]]
  name = "v_timestamp"
  type = "timestamp"
  [[tables.columns]]
  name = "v_timestamptz"
  type = "timestamptz"
  [[tables.columns]]
  name = "v_uuid"
  type = "uuid"
  [[tables.columns]]
  name = "v_bytea"
  type = "bytea"
  [[tables.columns]]
  name = "v_jsonb"
  type = "jsonb"
"#;

pub const SCHEMA: &str = "
CREATE TABLE customers (id serial PRIMARY KEY, email bytea UNIQUE, age bytea, name text);
CREATE TABLE orders (id serial PRIMARY KEY, customer_email bytea, total int);
CREATE TABLE people (id serial PRIMARY KEY, email bytea);
CREATE TABLE driver_check (id serial PRIMARY KEY, email bytea, age bytea, note text);
CREATE TABLE typed (id serial PRIMARY KEY, v_text bytea, v_varchar bytea, v_int2 bytea,
  v_int4 bytea, v_int8 bytea, v_bool bytea, v_numeric bytea, v_date bytea, v_timestamp bytea,
  v_timestamptz bytea, v_uuid bytea, v_bytea bytea, v_jsonb bytea);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;";

/// An owner's connection URL to `db` (the superuser, who owns the fixtures' tables), for
/// operator commands such as `pgshroud setup`.
pub fn owner_url(db: &str) -> String {
    format!(
        "postgres://{}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        users::SUPERUSER,
        users::SUPERUSER_PASSWORD,
        cluster().port()
    )
}

/// Runs `pgshroud setup` for `rules` on `db`, as an operator would before serving: every
/// protected column that exists gets its guard. Panics with setup's report if any fails.
pub async fn install_guards(db: &str, rules: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules).expect("rules file");
    let report = pgshroud::cli::setup::setup(&owner_url(db), &path)
        .await
        .expect("pgshroud setup ran");
    assert!(report.ok, "pgshroud setup failed:\n{}", report.text);
    report.text
}

/// A proxy with `rules` and the master `key`, and the directory holding their files.
pub async fn proxy_with_rules(rules: &str, key: &str) -> (tempfile::TempDir, TestProxy) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_path = dir.path().join("rules.toml");
    std::fs::write(&rules_path, rules).expect("rules file");
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, key).expect("key file");
    let proxy = proxy_with(ConfigLayer {
        rules: Some(rules_path),
        master_key_file: Some(key_file),
        ..Default::default()
    })
    .await;
    (dir, proxy)
}

pub struct Fixture {
    pub db: String,
    pub proxy: TestProxy,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A fresh database with the protected tables and a proxy with the rules and key.
    pub async fn new() -> Fixture {
        Fixture::with_key(MASTER_KEY).await
    }

    pub async fn with_key(key: &str) -> Fixture {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(SCHEMA).await.expect("schema");
        install_guards(&db, RULES).await;
        let (dir, proxy) = Fixture::proxy_for(key).await;
        Fixture { db, proxy, dir }
    }

    /// A proxy with the rules and `key`, and the directory holding their files.
    pub async fn proxy_for(key: &str) -> (tempfile::TempDir, TestProxy) {
        proxy_with_rules(RULES, key).await
    }

    pub fn rules_path(&self) -> std::path::PathBuf {
        self.dir.path().join("rules.toml")
    }

    /// A client through the proxy, as a password-authenticated user.
    pub async fn app(&self) -> tokio_postgres::Client {
        self.proxy
            .connect(users::SCRAM, users::SCRAM_PASSWORD, &self.db)
            .await
            .expect("login through the proxy")
    }

    /// What PostgreSQL itself holds in the first column of `sql`, read without the proxy.
    pub async fn stored(&self, sql: &str) -> Vec<Option<Vec<u8>>> {
        let admin = cluster().admin_client_for(&self.db).await;
        admin
            .query(sql, &[])
            .await
            .expect("direct query")
            .iter()
            .map(|r| r.get::<_, Option<Vec<u8>>>(0))
            .collect()
    }
}

/// The SQLSTATE of an error (or its text when it is not a server error).
pub fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("{e}"))
}

/// The rows of a simple-protocol result, as text.
pub fn rows(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
