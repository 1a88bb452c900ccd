//! `pgshroud forget` finished: the audit event (the proxy's, once per instance at the reload
//! that drops the key; the command's own chained record with `--audit-file`), and
//! `--delete-rows` run as a non-owner role with DELETE: rows holding only the forgotten
//! tenant's values go, in batches, resumably; a row also holding another tenant's values stays;
//! a role without DELETE is refused before the key is destroyed.

use std::path::Path;
use std::time::Duration;

use pgshroud::audit::chain::ChainKey;
use pgshroud::audit::verify;
use pgshroud::cli::args::ForgetArgs;
use pgshroud::config::ConfigLayer;
use pgshroud::crypto::tenant_keys::{self, file};
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud_integration_tests::cluster;
use pgshroud_integration_tests::protected::MASTER_KEY;
use pgshroud_integration_tests::roles::{RolesFixture, PASSWORD};
use serde_json::Value;

const AUDIT_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

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
CREATE TABLE notes (id serial PRIMARY KEY, tenant text NOT NULL, email bytea UNIQUE, body bytea);
CREATE TABLE orders (id serial PRIMARY KEY, email bytea, total int);
";

struct Fixture {
    f: RolesFixture,
    store: tempfile::TempDir,
    audit_dir: tempfile::TempDir,
}

impl Fixture {
    fn proxy_log(&self) -> std::path::PathBuf {
        self.audit_dir.path().join("proxy-audit.log")
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.audit_dir.path().join("audit.key")
    }

    fn forget_args(&self, tenant: &str) -> ForgetArgs {
        ForgetArgs {
            tenant: tenant.into(),
            tenant_keys_dir: self.store.path().to_owned(),
            yes: true,
            audit_file: Some(self.audit_dir.path().join("forget-audit.log")),
            audit_key_file: Some(self.key_file()),
            ..ForgetArgs::default()
        }
    }

    /// A connection URL for the fixture's login user `suffix` (a non-owner role).
    fn role_url(&self, suffix: &str) -> String {
        format!(
            "postgres://{}:{PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
            self.f.user(suffix),
            cluster().port(),
            self.f.db
        )
    }
}

async fn fixture() -> Fixture {
    let store = tempfile::tempdir().unwrap();
    let ring = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
    for tenant in ["acme", "globex"] {
        tenant_keys::add_tenant(store.path(), tenant, &ring).unwrap();
    }
    let audit_dir = tempfile::tempdir().unwrap();
    std::fs::write(audit_dir.path().join("audit.key"), AUDIT_KEY).unwrap();
    let layer = ConfigLayer {
        tenant_keys_dir: Some(store.path().to_owned()),
        audit_file: Some(
            audit_dir
                .path()
                .join("proxy-audit.log")
                .display()
                .to_string(),
        ),
        audit_key_file: Some(audit_dir.path().join("audit.key")),
        ..Default::default()
    };
    let f = RolesFixture::with_rules(RULES, SCHEMA, layer).await;
    Fixture {
        f,
        store,
        audit_dir,
    }
}

/// Two notes and an order for acme, one note and an order for globex.
async fn write_both_tenants(f: &RolesFixture) {
    let acme = f.connect("app").await;
    acme.batch_execute(
        "INSERT INTO notes (tenant, email, body) VALUES ('acme', 'alice@example.com', 'acme one'), \
         ('acme', 'bob@example.com', 'acme two'); \
         INSERT INTO orders (email, total) VALUES ('alice@example.com', 10)",
    )
    .await
    .unwrap();
    let globex = f.connect("support").await;
    globex
        .batch_execute(
            "INSERT INTO notes (tenant, email, body) VALUES ('globex', 'carol@example.com', 'globex one'); \
             INSERT INTO orders (email, total) VALUES ('carol@example.com', 99)",
        )
        .await
        .unwrap();
}

fn read_events(path: &Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let events = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (text, events)
}

/// Waits until the audit writer has written a statement event for `marker` (events are
/// written in order, so everything emitted before it is in the file too).
async fn written_through(path: &Path, marker: &str) -> (String, Vec<Value>) {
    for _ in 0..100 {
        let (text, events) = read_events(path);
        if text.contains(marker) {
            return (text, events);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{marker} never reached {}", path.display());
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[tokio::test]
async fn the_proxy_audits_a_forget_once_per_instance_and_the_command_keeps_its_own_record() {
    let fx = fixture().await;
    write_both_tenants(&fx.f).await;
    let key_text = std::fs::read_to_string(file::path_of(fx.store.path(), "acme")).unwrap();
    let wrapped: Vec<String> = file::read(fx.store.path(), "acme")
        .unwrap()
        .unwrap()
        .versions
        .iter()
        .map(|v| v.wrapped.clone())
        .collect();
    assert!(!wrapped.is_empty() && key_text.contains(&wrapped[0]));

    let said = pgshroud::cli::forget::forget(&fx.forget_args("acme"), &mut "".as_bytes()).unwrap();
    assert!(said.contains("forgotten"), "{said}");
    let forgotten_at = file::read(fx.store.path(), "acme")
        .unwrap()
        .unwrap()
        .forgotten_at
        .unwrap();

    // Before a reload the proxy has said nothing (it still holds the key).
    let c = fx.f.connect("support").await;
    c.simple_query("SELECT 1 AS before_reload").await.unwrap();
    let (_, before) = written_through(&fx.proxy_log(), "before_reload").await;
    assert!(of_type(&before, "tenant_forgotten").is_empty());

    // Two reloads and sessions in between: one event, from this instance.
    fx.f.proxy.reload().unwrap();
    for _ in 0..3 {
        let c = fx.f.connect("support").await;
        c.query("SELECT body FROM notes ORDER BY id", &[])
            .await
            .unwrap();
    }
    fx.f.proxy.reload().unwrap();
    let c = fx.f.connect("support").await;
    c.simple_query("SELECT 1 AS after_reloads").await.unwrap();
    let (text, events) = written_through(&fx.proxy_log(), "after_reloads").await;
    let forgotten = of_type(&events, "tenant_forgotten");
    assert_eq!(forgotten.len(), 1, "{text}");
    let e = forgotten[0];
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["source"], "reload");
    assert_eq!(e["forgotten_at"], forgotten_at.as_str());
    let instance = e["instance"].as_str().unwrap();
    assert!(
        instance.ends_with(&format!(":{}", std::process::id())),
        "{instance}"
    );
    for secret in wrapped
        .iter()
        .map(String::as_str)
        .chain([MASTER_KEY, AUDIT_KEY])
    {
        assert!(!text.contains(secret), "key material in the audit log");
    }
    // The proxy's log verifies with the new event in it (still open: unterminated).
    let k0 = ChainKey::from_base64(AUDIT_KEY).unwrap();
    let checked = verify::verify(&[fx.proxy_log()], &k0).expect("the proxy log verifies");
    assert_eq!(checked.unterminated.len(), 1);

    // The command's record: a closed segment per run, the second following the first.
    pgshroud::cli::forget::forget(&fx.forget_args("globex"), &mut "".as_bytes()).unwrap();
    let record = fx.audit_dir.path().join("forget-audit.log");
    let (text, events) = read_events(&record);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "chain_start",
            "tenant_forgotten",
            "chain_end",
            "chain_start",
            "tenant_forgotten",
            "chain_end"
        ],
        "{text}"
    );
    assert_eq!(events[1]["tenant"], "acme");
    assert_eq!(events[1]["source"], "forget");
    assert_eq!(events[1]["forgotten_at"], forgotten_at.as_str());
    assert_eq!(events[4]["tenant"], "globex");
    assert!(events[3]["prev_chain"].is_string(), "{text}");
    let checked = verify::verify(std::slice::from_ref(&record), &k0).expect("the record verifies");
    assert_eq!(checked.events, 6);
    assert!(checked.unterminated.is_empty());
    for secret in wrapped
        .iter()
        .map(String::as_str)
        .chain([MASTER_KEY, AUDIT_KEY])
    {
        assert!(!text.contains(secret), "key material in the record");
    }

    // A forget whose record cannot be written does not start: the key stays.
    let ring = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
    tenant_keys::add_tenant(fx.store.path(), "initech", &ring).unwrap();
    let mut args = fx.forget_args("initech");
    args.audit_key_file = Some(fx.audit_dir.path().join("no-such.key"));
    let err = pgshroud::cli::forget::forget(&args, &mut "".as_bytes()).unwrap_err();
    assert!(err.contains("audit key"), "{err}");
    assert!(!file::read(fx.store.path(), "initech")
        .unwrap()
        .unwrap()
        .is_tombstone());
}

#[tokio::test]
async fn delete_rows_removes_rows_holding_only_the_tenants_values_resumably() {
    let fx = fixture().await;
    write_both_tenants(&fx.f).await;
    let direct = fx.f.direct().await;
    // A row holding both tenants' values: acme's email, globex's body (the same column's
    // context, so the guard admits it).
    direct
        .batch_execute(
            "UPDATE notes SET body = (SELECT body FROM notes WHERE tenant = 'globex') \
             WHERE email IS NOT NULL AND tenant = 'acme' AND id = (SELECT max(id) FROM notes WHERE tenant = 'acme')",
        )
        .await
        .unwrap();

    // acme's order as a backup holds it, to bring back later.
    let acme_order: Vec<u8> = direct
        .query_one("SELECT email FROM orders WHERE total = 10", &[])
        .await
        .unwrap()
        .get(0);

    // A role without DELETE on one of the tables: refused before anything changes.
    direct
        .batch_execute("REVOKE DELETE ON orders FROM PUBLIC")
        .await
        .unwrap();
    let mut args = fx.forget_args("acme");
    args.delete_rows = true;
    args.upstream_url = Some(fx.role_url("dba"));
    args.rules = Some(fx.f.rules_path());
    args.batch_size = 1;
    let err = pgshroud::cli::forget::forget_and_delete(&args, &mut "".as_bytes())
        .await
        .unwrap_err();
    assert!(
        err.contains("may not DELETE public.orders") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!file::read(fx.store.path(), "acme")
        .unwrap()
        .unwrap()
        .is_tombstone());

    direct
        .batch_execute(&format!("GRANT DELETE ON orders TO {}", fx.f.user("dba")))
        .await
        .unwrap();
    let report = pgshroud::cli::forget::forget_and_delete(&args, &mut "".as_bytes())
        .await
        .unwrap();
    assert!(report.ok, "{}", report.text);
    let lines: Vec<&str> = report.text.lines().collect();
    assert!(
        lines[0].starts_with("tenant acme forgotten"),
        "{}",
        report.text
    );
    assert_eq!(
        lines[1],
        "public.notes: 1 row deleted; 1 row left: it holds values of other tenants too (tenant acme's values in it read as NULL)"
    );
    assert_eq!(lines[2], "public.orders: 1 row deleted");
    assert_eq!(
        lines[3],
        "forget --delete-rows: 2 rows deleted from 2 tables; 1 row left holding other tenants' values too; 0 rows left to delete"
    );
    let left: Vec<(String, i32)> = direct
        .query(
            "SELECT 'notes:' || tenant, id FROM notes UNION ALL SELECT 'orders', total FROM orders ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        left,
        [
            ("notes:acme".to_owned(), 2),
            ("notes:globex".to_owned(), 3),
            ("orders".to_owned(), 99)
        ]
    );
    // globex reads as before; the mixed row's acme value is NULL, its globex value readable.
    fx.f.proxy.reload().unwrap();
    let globex = fx.f.connect("support").await;
    let r = globex
        .query("SELECT email, body FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(Option<String>, Option<String>)> =
        r.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            (None, Some("globex one".to_owned())),
            (
                Some("carol@example.com".to_owned()),
                Some("globex one".to_owned())
            )
        ]
    );

    // A copy of an acme row coming back (a restore of an older backup): a second run
    // continues with the rows, without asking again (the key is already gone).
    direct
        .execute(
            "INSERT INTO orders (email, total) VALUES ($1, 11)",
            &[&acme_order],
        )
        .await
        .unwrap();
    let again = pgshroud::cli::forget::forget_and_delete(&args, &mut "".as_bytes())
        .await
        .unwrap();
    assert!(
        again.text.starts_with("tenant acme was already forgotten"),
        "{}",
        again.text
    );
    assert!(
        again.text.contains("public.orders: 1 row deleted")
            && again.text.contains("public.notes: 0 rows deleted"),
        "{}",
        again.text
    );

    // The record of both runs: what was deleted, by table and count, no values.
    let (text, events) = read_events(&fx.audit_dir.path().join("forget-audit.log"));
    let deleted = of_type(&events, "tenant_rows_deleted");
    assert_eq!(deleted.len(), 2, "{text}");
    assert_eq!(deleted[0]["rows"], 2);
    assert_eq!(
        deleted[0]["tables"],
        serde_json::json!(["public.notes", "public.orders"])
    );
    assert_eq!(deleted[1]["rows"], 1);
    assert_eq!(of_type(&events, "tenant_forgotten").len(), 1, "{text}");
    verify::verify(
        &[fx.audit_dir.path().join("forget-audit.log")],
        &ChainKey::from_base64(AUDIT_KEY).unwrap(),
    )
    .expect("the record verifies");
}
