//! Row-level security and per-tenant keys together: a pooled role that chooses its tenant per
//! request (`SET pgshroud.tenant`) writes and compares a per-tenant column under the key of
//! the tenant the server holds at that moment, through literals (plans are cached per
//! tenant), parameters of a statement prepared under another tenant, and reads only its
//! tenant's rows (the policy) decrypted.

use pgshroud::config::ConfigLayer;
use pgshroud::crypto::envelope::tenant_tag;
use pgshroud::crypto::tenant_keys;
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud_integration_tests::protected::MASTER_KEY;
use pgshroud_integration_tests::roles::RolesFixture;

const RULES: &str = r#"
default_role = "pooled"

[[tables]]
name = "public.accounts"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true

[[roles]]
name = "pooled"
template = "app"
users = ["*_app"]
choose_tenant = true
"#;

const SCHEMA: &str = "
CREATE TABLE accounts (id serial PRIMARY KEY, tenant_id text NOT NULL, email bytea,
                       UNIQUE (tenant_id, email));
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON accounts
  USING (tenant_id = current_setting('pgshroud.tenant', true))
  WITH CHECK (tenant_id = current_setting('pgshroud.tenant', true));
";

/// The tenant tag of every stored envelope, by tenant_id, read without the proxy.
async fn stored_tags(f: &RolesFixture) -> Vec<(String, Vec<u8>)> {
    f.direct()
        .await
        .query(
            "SELECT tenant_id, substr(email, 10, 8) FROM accounts ORDER BY id",
            &[],
        )
        .await
        .expect("stored")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_switched_tenant_seals_and_finds_with_its_own_key() {
    let store = tempfile::tempdir().unwrap();
    let ring = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
    for tenant in ["acme", "globex"] {
        tenant_keys::add_tenant(store.path(), tenant, &ring).unwrap();
    }
    let layer = ConfigLayer {
        tenant_keys_dir: Some(store.path().to_owned()),
        ..Default::default()
    };
    let f = RolesFixture::with_rules(RULES, SCHEMA, layer).await;
    let c = f.connect("app").await;

    // No tenant yet: a per-tenant column cannot be written.
    let e = c
        .batch_execute("INSERT INTO accounts (tenant_id, email) VALUES ('acme', 'a@x')")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));

    // A statement prepared while the session is acme's...
    c.batch_execute("SET pgshroud.tenant = 'acme'")
        .await
        .unwrap();
    let insert = c
        .prepare("INSERT INTO accounts (tenant_id, email) VALUES ($1, $2)")
        .await
        .unwrap();
    c.execute(&insert, &[&"acme", &"same@x"]).await.unwrap();
    c.batch_execute("INSERT INTO accounts (tenant_id, email) VALUES ('acme', 'lit@x')")
        .await
        .unwrap();
    // ...is bound under globex's key once the session is globex's; the same literal text,
    // planned before under acme, is sealed for globex too.
    c.batch_execute("SET pgshroud.tenant = 'globex'")
        .await
        .unwrap();
    c.execute(&insert, &[&"globex", &"same@x"]).await.unwrap();
    c.batch_execute("INSERT INTO accounts (tenant_id, email) VALUES ('globex', 'lit@x')")
        .await
        .unwrap();

    let acme = tenant_tag("acme").to_vec();
    let globex = tenant_tag("globex").to_vec();
    let tags = stored_tags(&f).await;
    let want: Vec<(String, Vec<u8>)> = vec![
        ("acme".into(), acme.clone()),
        ("acme".into(), acme),
        ("globex".into(), globex.clone()),
        ("globex".into(), globex),
    ];
    assert_eq!(tags, want);

    // Each tenant finds its own rows by value (the policy hides the other's), decrypted.
    for tenant in ["globex", "acme"] {
        c.batch_execute(&format!("SET pgshroud.tenant = '{tenant}'"))
            .await
            .unwrap();
        let rows = c
            .query(
                "SELECT tenant_id, email FROM accounts WHERE email = $1",
                &[&"same@x"],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{tenant}");
        assert_eq!(rows[0].get::<_, String>(0), tenant);
        assert_eq!(rows[0].get::<_, String>(1), "same@x");
        let found = c
            .simple_query("SELECT tenant_id FROM accounts WHERE email = 'lit@x'")
            .await
            .unwrap();
        let ids: Vec<String> = found
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect();
        assert_eq!(ids, [tenant]);
    }
}
