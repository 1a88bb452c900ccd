//! Row-level security fed by pgshroud's verified identity: PostgreSQL policies on
//! `pgshroud.tenant`, `pgshroud.role` and `pgshroud.user` confine non-owner, non-superuser
//! roles connected through pgshroud to their rows; every way a client could change those
//! settings is refused (or undone by the server's own defaults); a role allowed to choose its
//! tenant switches per request and sees exactly that tenant's rows; a direct connection
//! without pgshroud sees nothing.

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::protected::{code, rows, OTHER_KEY};
use pgshroud_integration_tests::raw::{build, startup_packet, Msg, RawClient};
use pgshroud_integration_tests::roles::{RolesFixture, PASSWORD};
use pgshroud_integration_tests::{cluster, users};
use tokio_postgres::Client;

/// Tenants by user (`*_app` is acme, `*_remote` is globex), a support role (its region from a
/// table keyed by `pgshroud.role`), a pooled application role that names its tenant per
/// request (`*_dba` users), and a role matched by PostgreSQL group (`*_analyst`).
const RULES: &str = r#"
default_role = "fallback"

[[tables]]
name = "public.orders"
  [[tables.columns]]
  name = "secret"
  type = "text"

[[roles]]
name = "app"
template = "app"
users = ["*_app", "*_remote"]

[[roles]]
name = "support_eu"
template = "support"
users = ["*_support"]

[[roles]]
name = "pooled"
template = "app"
users = ["*_dba", "trust_user"]
choose_tenant = true

[[roles]]
name = "analyst"
template = "app"
pg_roles = ["pgshroud_analysts"]

[[roles]]
name = "fallback"
template = "app"
users = ["*_auditor"]

[[tenants]]
id = "acme"
users = ["*_app"]

[[tenants]]
id = "globex"
users = ["*_remote"]
"#;

/// The README's worked example: one table, two tenants, support seeing only its region.
const SCHEMA: &str = "
CREATE TABLE orders (id int PRIMARY KEY, tenant_id text NOT NULL, region text NOT NULL,
                     item text, secret bytea);
CREATE TABLE support_regions (role text PRIMARY KEY, region text NOT NULL);
INSERT INTO support_regions VALUES ('support_eu', 'eu');
INSERT INTO orders (id, tenant_id, region, item) VALUES
  (1, 'acme', 'eu', 'acme-eu'), (2, 'acme', 'us', 'acme-us'),
  (3, 'globex', 'eu', 'globex-eu'), (4, 'globex', 'us', 'globex-us');
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON orders
  USING (tenant_id = current_setting('pgshroud.tenant', true))
  WITH CHECK (tenant_id = current_setting('pgshroud.tenant', true));
CREATE POLICY support_region ON orders FOR SELECT
  USING (region = (SELECT region FROM support_regions
                   WHERE role = current_setting('pgshroud.role', true)));
CREATE TABLE notes (owner text NOT NULL, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes
  USING (owner = current_setting('pgshroud.user', true))
  WITH CHECK (owner = current_setting('pgshroud.user', true));
";

async fn fixture() -> RolesFixture {
    fixture_with(ConfigLayer::default()).await
}

async fn fixture_with(extra: ConfigLayer) -> RolesFixture {
    let f = RolesFixture::with_rules(RULES, SCHEMA, extra).await;
    let admin = f.direct().await;
    admin
        .batch_execute(&format!(
            "INSERT INTO notes VALUES ('{0}_app', 'note of app'), ('{0}_support', 'note of support')",
            f.db
        ))
        .await
        .expect("notes");
    f
}

/// The `item`s the client sees, sorted.
async fn items(c: &Client) -> Vec<String> {
    let mut items: Vec<String> = c
        .query("SELECT item FROM orders", &[])
        .await
        .expect("select orders")
        .iter()
        .map(|r| r.get(0))
        .collect();
    items.sort();
    items
}

/// The identity settings as the server holds them for the session: user, role, tenant.
async fn settings(c: &Client) -> Vec<Option<String>> {
    let sql = "SELECT current_setting('pgshroud.user', true), \
               current_setting('pgshroud.role', true), current_setting('pgshroud.tenant', true)";
    rows(&c.simple_query(sql).await.expect("settings")).remove(0)
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

#[tokio::test]
async fn policies_confine_each_session_by_tenant_role_and_user() {
    let f = fixture().await;
    let app = f.connect("app").await;
    assert_eq!(items(&app).await, ["acme-eu", "acme-us"]);
    assert_eq!(settings(&app).await, some(&[&f.user("app"), "app", "acme"]));
    let globex = f.connect("remote").await;
    assert_eq!(items(&globex).await, ["globex-eu", "globex-us"]);
    let support = f.connect("support").await;
    assert_eq!(items(&support).await, ["acme-eu", "globex-eu"]);
    assert_eq!(settings(&support).await[2], Some(String::new()));
    // A tenant writes only its own rows (the policy's WITH CHECK).
    let e = app
        .execute(
            "INSERT INTO orders (id, tenant_id, region, item) VALUES (9, 'globex', 'eu', 'x')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    app.execute(
        "INSERT INTO orders (id, tenant_id, region, item, secret) VALUES (5, 'acme', 'eu', 'acme-new', $1)",
        &[&"s3cret"],
    )
    .await
    .expect("a tenant writes its own rows");
    assert_eq!(items(&globex).await, ["globex-eu", "globex-us"]);
    // pgshroud.user: each user reads its own notes.
    let notes = |c: Client| async move {
        let r = c.query("SELECT body FROM notes", &[]).await.unwrap();
        r.iter().map(|r| r.get(0)).collect::<Vec<String>>()
    };
    assert_eq!(notes(app).await, ["note of app"]);
    assert_eq!(notes(support).await, ["note of support"]);
}

#[tokio::test]
async fn resets_put_the_verified_identity_back() {
    let f = fixture().await;
    let app = f.connect("app").await;
    for reset in [
        "RESET ALL",
        "DISCARD ALL",
        "SET search_path TO DEFAULT",
        "DISCARD PLANS",
    ] {
        app.simple_query(reset).await.expect(reset);
        assert_eq!(
            settings(&app).await,
            some(&[&f.user("app"), "app", "acme"]),
            "{reset}"
        );
        assert_eq!(items(&app).await, ["acme-eu", "acme-us"], "{reset}");
    }
    // A role matched by PostgreSQL group membership (known only after login) gets its role
    // set by pgshroud; a reset would put back the guess made before login, so it is refused.
    let analyst = f.connect("analyst").await;
    assert_eq!(settings(&analyst).await[1].as_deref(), Some("analyst"));
    for reset in ["RESET ALL", "DISCARD ALL"] {
        let e = analyst.simple_query(reset).await.unwrap_err();
        assert_eq!(code(&e), "42501", "{reset}");
    }
    assert_eq!(settings(&analyst).await[1].as_deref(), Some("analyst"));
}

/// Every statement a client could use to change an identity setting.
const ATTEMPTS: &[&str] = &[
    "SET pgshroud.tenant = 'globex'",
    "SET SESSION pgshroud.role = 'support_eu'",
    "SET pgshroud.user TO 'someone'",
    "SET PGSHROUD.TENANT = 'globex'",
    r#"SET "pgshroud".tenant = 'globex'"#,
    r#"SET U&"pgshroud\002etenant" = 'globex'"#,
    "RESET pgshroud.tenant",
    "SET pgshroud.role TO DEFAULT",
    "SELECT set_config('pgshroud.tenant', 'globex', false)",
    "SELECT pg_catalog.set_config('PgShroud.Tenant', 'globex', false)",
    r#"SELECT U&"set\005fconfig"('pgshroud.tenant', 'globex', false)"#,
    r#"SELECT set_config(U&'pgshroud\002etenant', 'globex', false)"#,
    "SELECT set_config('pgs' || 'hroud.tenant', 'globex', false)",
    "SELECT count(*) FROM orders WHERE set_config('pgshroud.tenant', 'globex', false) IS NOT NULL",
    "UPDATE pg_settings SET setting = 'globex' WHERE name = 'pgshroud.tenant'",
    "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql SET pgshroud.tenant = 'globex' AS 'SELECT count(*) FROM orders'",
    "ALTER ROLE CURRENT_USER SET pgshroud.tenant = 'globex'",
    "ALTER DATABASE CURRENT SET pgshroud.tenant = 'globex'",
    "DO $$ BEGIN PERFORM set_config('pgshroud.tenant', 'globex', false); END $$",
    "DO $$ BEGIN EXECUTE 'SET pgs' || 'hroud.tenant = globex'; END $$",
];

#[tokio::test]
async fn every_way_to_change_the_settings_is_refused() {
    let f = fixture().await;
    let app = f.connect("app").await;
    let before = f.proxy.metrics_text();
    for sql in ATTEMPTS {
        let e = app.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "42501", "simple: {sql}: {e:?}");
        let message = e.as_db_error().unwrap().message().to_owned();
        assert!(message.contains("pgshroud"), "{message}");
        assert!(
            !message.contains("globex"),
            "no value in the error: {message}"
        );
        // The extended protocol (prepare, then execute) is refused the same way.
        let e = app.execute(*sql, &[]).await.unwrap_err();
        assert_eq!(code(&e), "42501", "extended: {sql}: {e:?}");
        assert_eq!(items(&app).await, ["acme-eu", "acme-us"], "after {sql}");
    }
    // SET LOCAL inside a transaction, and a computed name with a parameter.
    app.batch_execute("BEGIN").await.unwrap();
    let e = app
        .simple_query("SET LOCAL pgshroud.tenant = 'globex'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    app.batch_execute("ROLLBACK").await.unwrap();
    let e = app
        .query(
            "SELECT set_config($1, $2, false)",
            &[&"pgshroud.tenant", &"globex"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    assert_eq!(settings(&app).await, some(&[&f.user("app"), "app", "acme"]));
    let after = f.proxy.metrics_text();
    let refusals = |m: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix("pgshroud_refusals_total{reason=\"identity_setting\"}")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    assert_eq!(
        refusals(&after) - refusals(&before),
        (ATTEMPTS.len() * 2 + 2) as f64
    );
}

#[tokio::test]
async fn startup_options_and_parameters_naming_the_settings_are_refused() {
    let f = fixture().await;
    // tokio-postgres sends `options` as libpq does.
    let conn = format!(
        "{} options='-c pgshroud.tenant=globex'",
        f.proxy.conn_string(&f.user("app"), PASSWORD, &f.db)
    );
    let e = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    assert_eq!(code(&e), "42501");
    // psql with PGOPTIONS.
    let out = tokio::process::Command::new(cluster().program("psql"))
        .arg(f.proxy.conn_string(&f.user("app"), PASSWORD, &f.db))
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM orders"])
        .env("PGOPTIONS", "--pgshroud.tenant=globex")
        .output()
        .await
        .expect("psql runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied to set pgshroud's identity settings"),
        "{stderr}"
    );
    // A startup parameter of its own name.
    let mut raw = RawClient::connect(f.proxy.port()).await;
    let user = f.user("app");
    raw.send(&startup_packet(
        3 << 16,
        &[
            ("user", &user),
            ("database", &f.db),
            ("PgShroud.Tenant", "globex"),
        ],
    ))
    .await;
    let reply = raw.recv().await.expect("an error");
    assert_eq!(reply.kind, b'E');
    assert_eq!(reply.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(reply.field(b'C').as_deref(), Some("42501"));
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn a_role_that_chooses_its_tenant_sees_exactly_that_tenants_rows() {
    let f = fixture().await;
    let mut pooled = f.connect("dba").await;
    assert!(items(&pooled).await.is_empty(), "no tenant yet: no rows");
    // Simple protocol.
    pooled
        .batch_execute("SET pgshroud.tenant = 'acme'")
        .await
        .unwrap();
    assert_eq!(items(&pooled).await, ["acme-eu", "acme-us"]);
    // Extended protocol (prepare, then execute).
    pooled
        .execute("SET pgshroud.tenant = 'globex'", &[])
        .await
        .unwrap();
    assert_eq!(items(&pooled).await, ["globex-eu", "globex-us"]);
    assert_eq!(settings(&pooled).await[2].as_deref(), Some("globex"));
    // Inside a transaction block a switch would be undone by a rollback: refused, and the
    // transaction fails as it would on any error.
    pooled.batch_execute("BEGIN").await.unwrap();
    let e = pooled
        .simple_query("SET pgshroud.tenant = 'acme'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25001");
    pooled.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(items(&pooled).await, ["globex-eu", "globex-us"]);
    // Within a transaction, reads see the tenant chosen before it.
    let tx = pooled.transaction().await.unwrap();
    let n: i64 = tx
        .query_one(
            "SELECT count(*) FROM orders WHERE tenant_id = 'globex'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    tx.commit().await.unwrap();
    // A switch together with another statement, SET LOCAL, and ids that are not plain names.
    for (sql, want) in [
        ("SET pgshroud.tenant = 'acme'; SELECT 1", "42501"),
        ("SET LOCAL pgshroud.tenant = 'acme'", "42501"),
        ("SET pgshroud.tenant = '../acme'", "22023"),
        ("SET pgshroud.tenant = 'acme''--'", "22023"),
        (
            "SELECT set_config('pgshroud.tenant', 'acme', false)",
            "42501",
        ),
    ] {
        let e = pooled.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql}");
        assert_eq!(items(&pooled).await, ["globex-eu", "globex-us"], "{sql}");
    }
    // RESET puts back the rules' tenant (none for this user); DISCARD ALL as well.
    pooled
        .batch_execute("SET pgshroud.tenant = 'acme'")
        .await
        .unwrap();
    pooled.batch_execute("DISCARD ALL").await.unwrap();
    assert!(items(&pooled).await.is_empty());
    pooled
        .batch_execute("SET pgshroud.tenant = 'acme'")
        .await
        .unwrap();
    pooled.batch_execute("RESET pgshroud.tenant").await.unwrap();
    assert!(items(&pooled).await.is_empty());
    // A role that may not choose is refused.
    let app = f.connect("app").await;
    let e = app
        .batch_execute("SET pgshroud.tenant = 'globex'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
}

#[tokio::test]
async fn a_failed_or_pipelined_switch_is_tracked_exactly() {
    let f = fixture().await;
    // The trust user (no password to answer) belongs to the role that chooses its tenant.
    let mut raw = RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await;
    // A switch followed, before Sync, by a statement that fails: the server rolls the
    // implicit transaction back, and so does pgshroud's tracking.
    raw.send(&build::pipeline(&[
        build::parse("", "SET pgshroud.tenant = 'acme'"),
        build::bind("", "", &[]),
        build::execute(""),
        build::parse("", "SELECT 1/0"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let answers = raw.recv_until_ready().await;
    assert!(answers.iter().any(|m| m.kind == b'E'));
    raw.send(&build::query(
        "SELECT current_setting('pgshroud.tenant', true)",
    ))
    .await;
    let answers = raw.recv_until_ready().await;
    let row = answers.iter().find(|m| m.kind == b'D').expect("a row");
    assert!(row.body.ends_with(&[0, 0, 0, 0]), "empty: no tenant");
    // A switch, then in the same pipeline another statement: refused (its sealing and
    // policies would depend on a switch not yet answered), which rolls the switch back too.
    raw.send(&build::pipeline(&[
        build::parse("", "SET pgshroud.tenant = 'acme'"),
        build::bind("", "", &[]),
        build::execute(""),
        build::parse("", "SELECT item FROM orders"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let answers = raw.recv_until_ready().await;
    let codes: Vec<String> = answers
        .iter()
        .filter(|m| m.kind == b'E')
        .filter_map(|m| m.field(b'C'))
        .collect();
    assert_eq!(codes, ["25001"]);
    assert!(!answers.iter().any(|m| m.kind == b'D'));
    // The same switch alone takes effect.
    raw.send(&build::pipeline(&[
        build::parse("", "SET pgshroud.tenant = 'acme'"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let answers = raw.recv_until_ready().await;
    assert!(!answers.iter().any(|m| m.kind == b'E'), "{answers:?}");
    raw.send(&build::query("SELECT item FROM orders ORDER BY item"))
        .await;
    let answers = raw.recv_until_ready().await;
    let items: Vec<&Msg> = answers.iter().filter(|m| m.kind == b'D').collect();
    assert_eq!(items.len(), 2, "acme's two rows");
}

#[tokio::test]
async fn a_direct_connection_without_pgshroud_sees_no_rows() {
    let f = fixture().await;
    let (direct, connection) = tokio_postgres::connect(
        &cluster().conn_string(&f.user("app"), PASSWORD, &f.db),
        tokio_postgres::NoTls,
    )
    .await
    .expect("direct login");
    tokio::spawn(connection);
    assert!(items(&direct).await.is_empty());
    assert_eq!(settings(&direct).await, vec![None, None, None]);
}

#[tokio::test]
async fn a_refused_attempt_is_audited_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let audit_key = dir.path().join("audit.key");
    std::fs::write(&audit_key, OTHER_KEY).unwrap();
    let log = dir.path().join("audit.log");
    let f = fixture_with(ConfigLayer {
        audit_file: Some(log.display().to_string()),
        audit_key_file: Some(audit_key),
        ..Default::default()
    })
    .await;
    let app = f.connect("app").await;
    let e = app
        .simple_query("SELECT set_config('pgshroud.tenant', 'globex-secret-tenant', false)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    drop(app);
    let RolesFixture { proxy, dir: _d, .. } = f;
    proxy.shutdown().await;
    let text = std::fs::read_to_string(&log).expect("audit file");
    assert!(!text.contains("globex-secret-tenant"), "{text}");
    let refused = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "statement" && e["outcome"] == "refused")
        .unwrap_or_else(|| panic!("no refused statement event in\n{text}"));
    assert_eq!(refused["sqlstate"], "42501");
}
