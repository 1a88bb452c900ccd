//! A database with a protected `customers` table, login users for each role of a rules file
//! with roles, and a proxy holding those rules: the fixture of the role tests.
//!
//! Login users are per database (`<db>_app`, `<db>_support`, ...) so tests running at once in
//! one cluster never share them; the rules match them with `*_app`-style globs.

use pgshroud::config::ConfigLayer;

use crate::protected::MASTER_KEY;
use crate::proxy::TestProxy;
use crate::{cluster, proxy_with};

/// The password of every login user the fixture creates.
pub const PASSWORD: &str = "role-secret";

/// The group role whose members the `analyst` role matches through `pg_roles`.
pub const ANALYSTS_GROUP: &str = "pgshroud_analysts";

/// The README's "Who sees what" rules, plus an analyst matched by PostgreSQL group and a role
/// that may connect only from 10.0.0.0/8.
pub const RULES: &str = r#"
default_role = "dba"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"
  [[tables.columns]]
  name = "birthday"
  type = "date"

[[roles]]
name = "app"
template = "app"
users = ["*_app"]

[[roles]]
name = "support"
template = "support"
users = ["*_support"]
  [roles.columns]
  "public.customers.email" = "mask:email"
  "public.customers.age" = "null"

[[roles]]
name = "analyst"
template = "analyst"
pg_roles = ["pgshroud_analysts"]
statements = ["select"]

[[roles]]
name = "dba"
template = "dba"
users = ["*_dba"]

[[roles]]
name = "auditor"
template = "auditor"
users = ["*_auditor"]

[[roles]]
name = "remote"
template = "app"
users = ["*_remote"]
networks = ["10.0.0.0/8"]

[[roles]]
name = "service"
template = "app"
cert_subjects = ["CN=*.svc.example.test"]
"#;

/// The fixture's tables (customers is protected by [`RULES`]).
pub const SCHEMA: &str = "\
CREATE TABLE customers (id serial PRIMARY KEY, email bytea UNIQUE, age bytea, birthday bytea, name text);
CREATE TABLE notes (id serial PRIMARY KEY, body text);";

/// The login users made for each database, by the suffix the rules match.
pub const SUFFIXES: [&str; 6] = ["app", "support", "dba", "auditor", "analyst", "remote"];

pub struct RolesFixture {
    pub db: String,
    pub proxy: TestProxy,
    pub dir: tempfile::TempDir,
}

impl RolesFixture {
    pub async fn new() -> RolesFixture {
        RolesFixture::with_settings(ConfigLayer::default()).await
    }

    /// Like [`RolesFixture::new`], with extra proxy settings (TLS, ...).
    pub async fn with_settings(extra: ConfigLayer) -> RolesFixture {
        RolesFixture::with_rules(RULES, SCHEMA, extra).await
    }

    /// A fixture with other rules and tables (`schema` runs as the superuser; its tables are
    /// granted to every login user). The rules must match users by the same suffixes.
    pub async fn with_rules(rules_text: &str, schema: &str, extra: ConfigLayer) -> RolesFixture {
        let db = cluster().fresh_database().await;
        let admin = cluster().admin_client_for(&db).await;
        admin.batch_execute(schema).await.expect("schema");
        admin
            .batch_execute(
                "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; \
                 GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;",
            )
            .await
            .expect("grants");
        crate::protected::install_guards(&db, rules_text).await;
        // Cluster-wide objects: created once, whichever test gets there first.
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {ANALYSTS_GROUP} NOLOGIN; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ))
            .await
            .expect("group role");
        for suffix in SUFFIXES {
            let user = format!("{db}_{suffix}");
            admin
                .batch_execute(&format!(
                    "CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'; GRANT CONNECT ON DATABASE {db} TO {user}"
                ))
                .await
                .expect("login user");
        }
        admin
            .batch_execute(&format!("GRANT {ANALYSTS_GROUP} TO {db}_analyst"))
            .await
            .expect("group membership");
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, rules_text).expect("rules file");
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, MASTER_KEY).expect("key file");
        let proxy = proxy_with(
            ConfigLayer {
                rules: Some(rules),
                master_key_file: Some(key_file),
                ..Default::default()
            }
            .over(extra),
        )
        .await;
        RolesFixture { db, proxy, dir }
    }

    /// The login user for a role suffix (`app`, `support`, ...).
    pub fn user(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.db)
    }

    /// A client through the proxy as the fixture user with that suffix.
    pub async fn connect(&self, suffix: &str) -> tokio_postgres::Client {
        self.try_connect(suffix)
            .await
            .unwrap_or_else(|e| panic!("login as {suffix}: {e}"))
    }

    pub async fn try_connect(
        &self,
        suffix: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.proxy
            .connect(&self.user(suffix), PASSWORD, &self.db)
            .await
    }

    pub fn rules_path(&self) -> std::path::PathBuf {
        self.dir.path().join("rules.toml")
    }

    /// A client straight to PostgreSQL (superuser), to see what is stored.
    pub async fn direct(&self) -> tokio_postgres::Client {
        cluster().admin_client_for(&self.db).await
    }
}
