//! The fixture of the tenant rotation tests: a database with two tables holding per-tenant
//! columns (and one shared-key column), login users of tenant acme (`*_app`) and globex
//! (`*_support`), a tenant key store where both have keys wrapped by master key version 1,
//! and a proxy reading a keys file the tests rewrite.

use std::path::{Path, PathBuf};

use pgshroud::cli::args::RotateArgs;
use pgshroud::config::ConfigLayer;
use pgshroud::crypto::tenant_keys;
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud_integration_tests::keys::write_keys;
use pgshroud_integration_tests::protected::{install_guards, owner_url, MASTER_KEY};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::{cluster, proxy_with};

const RULES: &str = r#"
[[tables]]
name = "public.notes"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true
  key_context = "tenant-email"
  [[tables.columns]]
  name = "body"
  type = "text"
  per_tenant = true
  [[tables.columns]]
  name = "code"
  type = "text"

[[tables]]
name = "public.orders"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true
  key_context = "tenant-email"

[[tenants]]
id = "acme"
users = ["*_app"]

[[tenants]]
id = "globex"
users = ["*_support"]
"#;

const SCHEMA: &str = "
CREATE TABLE notes (id serial PRIMARY KEY, tenant text NOT NULL, email bytea UNIQUE, body bytea, code bytea);
CREATE TABLE orders (id serial PRIMARY KEY, email bytea, total int);
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
";

pub const PASSWORD: &str = "tenant-secret";

pub struct Fixture {
    pub db: String,
    pub proxy: TestProxy,
    /// rules.toml, keys.toml and the master key files.
    pub dir: tempfile::TempDir,
    pub store: tempfile::TempDir,
}

impl Fixture {
    /// Master key version 1 only; acme and globex have keys wrapped by it.
    pub async fn new() -> Fixture {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(SCHEMA).await.unwrap();
        install_guards(&db, RULES).await;
        for suffix in ["app", "support"] {
            admin
                .batch_execute(&format!(
                    "CREATE ROLE {db}_{suffix} LOGIN PASSWORD '{PASSWORD}'; GRANT CONNECT ON DATABASE {db} TO {db}_{suffix}"
                ))
                .await
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
        write_keys(dir.path(), &[(1, MASTER_KEY)], 1);
        let store = tempfile::tempdir().unwrap();
        let v1 = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
        for tenant in ["acme", "globex"] {
            tenant_keys::add_tenant(store.path(), tenant, &v1).unwrap();
        }
        let proxy = Fixture::start_proxy(dir.path(), store.path()).await;
        Fixture {
            db,
            proxy,
            dir,
            store,
        }
    }

    pub async fn start_proxy(dir: &Path, store: &Path) -> TestProxy {
        proxy_with(ConfigLayer {
            rules: Some(dir.join("rules.toml")),
            keys_file: Some(dir.join("keys.toml")),
            tenant_keys_dir: Some(store.to_owned()),
            ..Default::default()
        })
        .await
    }

    pub async fn connect(&self, suffix: &str) -> tokio_postgres::Client {
        self.proxy
            .connect(&format!("{}_{suffix}", self.db), PASSWORD, &self.db)
            .await
            .unwrap()
    }

    pub async fn direct(&self) -> tokio_postgres::Client {
        cluster().admin_client_for(&self.db).await
    }

    pub fn rules(&self) -> PathBuf {
        self.dir.path().join("rules.toml")
    }

    pub fn url(&self) -> String {
        owner_url(&self.db)
    }

    pub fn rotate_args(&self, tenant: Option<&str>, dry_run: bool) -> RotateArgs {
        RotateArgs {
            upstream_url: self.url(),
            rules: self.rules(),
            keys_file: self.dir.path().join("keys.toml"),
            batch_size: 100,
            dry_run,
            metrics_textfile: None,
            tenant_keys_dir: Some(self.store.path().to_owned()),
            tenant: tenant.map(str::to_owned),
        }
    }

    /// Every stored notes/orders value, raw, for a tenant: (table, id, column, bytes).
    pub async fn stored_of(&self, tenant: &str) -> Vec<(String, i32, String, Vec<u8>)> {
        let tag = pgshroud::crypto::envelope::tenant_tag(tenant).to_vec();
        let direct = self.direct().await;
        let mut out = Vec::new();
        for (table, column) in [("notes", "email"), ("notes", "body"), ("orders", "email")] {
            let sql = format!(
                "SELECT id, {column} FROM {table} WHERE substr({column}, 10, 8) = $1 ORDER BY id"
            );
            for row in direct.query(&sql, &[&tag]).await.unwrap() {
                out.push((table.into(), row.get(0), column.into(), row.get(1)));
            }
        }
        out
    }
}
