//! A hostile client against the tenant features, through pgshroud, as non-superuser roles:
//! a `choose_tenant` role (`*_app`, role `pooled`) and a role with no tenant (`*_dba`). The
//! table `shared` has no row-level security, so nothing but pgshroud's own sealing and
//! comparing stands between one tenant's values and another's: a cached plan or shape sealed
//! under one tenant must never answer for another. (Pipelined and failed switches are in
//! `rls.rs`; per-tenant writes with RLS in `tenant_switching.rs`.)

use pgshroud::cli::args::ForgetArgs;
use pgshroud::config::ConfigLayer;
use pgshroud::crypto::envelope::tenant_tag;
use pgshroud::crypto::tenant_keys;
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud_integration_tests::protected::{code, hex, MASTER_KEY};
use pgshroud_integration_tests::roles::RolesFixture;
use tokio_postgres::SimpleQueryMessage;

const RULES: &str = r#"
default_role = "pooled"

[[tables]]
name = "public.shared"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true
  key_context = "tenant-email"
  [[tables.columns]]
  name = "backup_email"
  type = "text"
  per_tenant = true
  key_context = "tenant-email"
  [[tables.columns]]
  name = "note"
  type = "text"
  per_tenant = true

[[roles]]
name = "pooled"
template = "app"
users = ["*_app", "*_dba"]
choose_tenant = true
"#;

const SCHEMA: &str = "
CREATE TABLE shared (id serial PRIMARY KEY, tenant_id text NOT NULL, email bytea,
                     backup_email bytea, note bytea);
";

async fn fixture() -> (RolesFixture, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let ring = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
    for tenant in ["acme", "globex"] {
        tenant_keys::add_tenant(store.path(), tenant, &ring).unwrap();
    }
    let layer = ConfigLayer {
        tenant_keys_dir: Some(store.path().to_owned()),
        ..Default::default()
    };
    (RolesFixture::with_rules(RULES, SCHEMA, layer).await, store)
}

async fn switch(c: &tokio_postgres::Client, tenant: &str) {
    c.batch_execute(&format!("SET pgshroud.tenant = '{tenant}'"))
        .await
        .unwrap();
}

fn ids(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// The tenant tag of `column` in each row, by tenant_id, read straight from PostgreSQL.
async fn tags(f: &RolesFixture, column: &str) -> Vec<(String, Option<Vec<u8>>)> {
    f.direct()
        .await
        .query(
            &format!("SELECT tenant_id, substr({column}, 10, 8) FROM shared ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// acme and globex each store `same@x` (two ciphertexts).
async fn both_store_the_same_email(c: &tokio_postgres::Client) {
    for tenant in ["acme", "globex"] {
        switch(c, tenant).await;
        c.execute(
            "INSERT INTO shared (tenant_id, email, note) VALUES ($1, 'same@x', $2)",
            &[&tenant, &tenant],
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_plan_or_shape_cached_under_one_tenant_never_answers_for_another() {
    let (f, _store) = fixture().await;
    let c = f.connect("app").await;
    both_store_the_same_email(&c).await;

    // Prepared under acme with the compared value a parameter (sealed at each Bind), and the
    // same literal text sent again and again in the simple protocol (the shape cache's and
    // the plan cache's path), across switches.
    switch(&c, "acme").await;
    let param = c
        .prepare("SELECT tenant_id FROM shared WHERE email = $1")
        .await
        .unwrap();
    let text = "SELECT tenant_id FROM shared WHERE email = 'same@x'";
    for tenant in ["acme", "globex", "acme", "globex"] {
        switch(&c, tenant).await;
        let by_param: Vec<String> = c
            .query(&param, &[&"same@x"])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(by_param, [tenant], "prepared parameter under {tenant}");
        assert_eq!(
            ids(&c.simple_query(text).await.unwrap()),
            [tenant],
            "simple query under {tenant}"
        );
        // The same text through the extended protocol, prepared afresh each time.
        let fresh: Vec<String> = c
            .query(text, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(fresh, [tenant], "unnamed statement under {tenant}");
    }
    // A second session, which shares the plan cache, under the other tenant.
    let other = f.connect("app").await;
    switch(&other, "acme").await;
    assert_eq!(ids(&other.simple_query(text).await.unwrap()), ["acme"]);
}

/// Found by the attacker's pass: a named statement prepared under acme with a compared
/// per-tenant literal kept acme's ciphertext in the server's copy of the statement; bound
/// after a switch to globex, it answered with acme's rows. A statement remembers the tenant
/// it was planned under and is parsed again before a Bind under another (`bind.rs` `reparse`).
#[tokio::test]
async fn a_statement_prepared_under_one_tenant_with_a_literal_answers_for_the_tenant_bound() {
    let (f, _store) = fixture().await;
    let c = f.connect("app").await;
    both_store_the_same_email(&c).await;
    switch(&c, "acme").await;
    let literal = c
        .prepare("SELECT tenant_id FROM shared WHERE email = 'same@x'")
        .await
        .unwrap();
    for tenant in ["acme", "globex"] {
        switch(&c, tenant).await;
        let found: Vec<String> = c
            .query(&literal, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(found, [tenant], "prepared literal under {tenant}");
    }
}

#[tokio::test]
async fn bound_names_values_and_copied_envelopes_do_not_move_a_session_to_another_tenant() {
    let (f, _store) = fixture().await;
    let c = f.connect("app").await;
    switch(&c, "acme").await;

    // set_config with a bound value or a bound name, in the extended protocol: refused.
    for (sql, params) in [
        (
            "SELECT set_config('pgshroud.tenant', $1, false)",
            vec!["globex"],
        ),
        (
            "SELECT set_config($1, 'globex', false)",
            vec!["pgshroud.tenant"],
        ),
        (
            "SELECT set_config($1, $2, false)",
            vec!["pgshroud.tenant", "globex"],
        ),
    ] {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let e = c.query(sql, &params).await.unwrap_err();
        assert_eq!(code(&e), "42501", "{sql}: {e}");
    }
    let held: String = c
        .query_one("SELECT current_setting('pgshroud.tenant')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, "acme");

    // Another tenant's envelope, sent as the value of a COPY row or a parameter, is only a
    // value: sealed for the session's tenant, it comes back as the same text.
    let globex_envelope: Vec<u8> = {
        switch(&c, "globex").await;
        c.execute(
            "INSERT INTO shared (tenant_id, email) VALUES ('globex', 'victim@x')",
            &[],
        )
        .await
        .unwrap();
        f.direct()
            .await
            .query_one("SELECT email FROM shared WHERE tenant_id = 'globex'", &[])
            .await
            .unwrap()
            .get(0)
    };
    let smuggled = format!("\\\\x{}", hex(&globex_envelope));
    switch(&c, "acme").await;
    {
        use futures_util::SinkExt as _;
        let sink = c
            .copy_in("COPY shared (tenant_id, email) FROM STDIN")
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from(format!("acme\t{smuggled}\n")))
            .await
            .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 1);
    }
    let stored = tags(&f, "email").await;
    assert_eq!(
        stored.last().unwrap(),
        &("acme".to_owned(), Some(tenant_tag("acme").to_vec()))
    );
    let back: String = c
        .query_one("SELECT email FROM shared WHERE tenant_id = 'acme'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, format!("\\x{}", hex(&globex_envelope)));
}

#[tokio::test]
async fn cross_tenant_copies_keep_their_tenant_and_a_forgotten_tenant_cannot_be_compared() {
    let (f, store) = fixture().await;
    let c = f.connect("app").await;
    both_store_the_same_email(&c).await;

    // A globex session copying acme's values server-side (no RLS on this table): the bytes
    // move unchanged, so the copy stays acme's value (readable as acme's, forgotten with it).
    switch(&c, "globex").await;
    let copied = c
        .execute(
            "INSERT INTO shared (tenant_id, email) SELECT 'copy', email FROM shared WHERE tenant_id = 'acme'",
            &[],
        )
        .await;
    let updated = c
        .execute(
            "UPDATE shared SET backup_email = email WHERE tenant_id = 'acme'",
            &[],
        )
        .await;
    let tags_now = tags(&f, "email").await;
    assert!(copied.is_ok(), "{copied:?}");
    assert_eq!(
        tags_now.last().unwrap(),
        &("copy".to_owned(), Some(tenant_tag("acme").to_vec())),
        "a copy keeps the tag of the tenant that sealed it"
    );
    assert!(updated.is_ok(), "{updated:?}");
    let backup = tags(&f, "backup_email").await;
    assert_eq!(
        backup[0],
        ("acme".to_owned(), Some(tenant_tag("acme").to_vec())),
        "{backup:?}"
    );
    // Into a column of another key context: refused, by pgshroud or by the guard.
    let e = c
        .execute(
            "UPDATE shared SET note = email WHERE tenant_id = 'acme'",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        ["42501", "0A000", "23514"].contains(&code(&e).as_str()),
        "{e}"
    );
    let notes = tags(&f, "note").await;
    assert_eq!(
        notes[0],
        ("acme".to_owned(), Some(tenant_tag("acme").to_vec()))
    );

    // A session with no tenant reads (RLS, not pgshroud, confines rows) but cannot compare.
    let none = f.connect("dba").await;
    let e = none
        .query(
            "SELECT tenant_id FROM shared WHERE email = $1",
            &[&"same@x"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    let e = none
        .simple_query("SELECT tenant_id FROM shared WHERE note = 'acme'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");

    // Forget acme: its values read as NULL, a session switched to it can neither write nor
    // compare, a join on the column pairs nothing across tenants, and globex is untouched.
    pgshroud::cli::forget::forget(
        &ForgetArgs {
            tenant: "acme".into(),
            tenant_keys_dir: store.path().to_owned(),
            yes: true,
            ..ForgetArgs::default()
        },
        &mut "".as_bytes(),
    )
    .unwrap();
    f.proxy.reload().unwrap();
    let c = f.connect("app").await;
    switch(&c, "acme").await;
    let e = c
        .query(
            "SELECT tenant_id FROM shared WHERE email = $1",
            &[&"same@x"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    let e = c
        .simple_query("SELECT tenant_id FROM shared WHERE email = 'same@x'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    let e = c
        .execute(
            "INSERT INTO shared (tenant_id, email) VALUES ('acme', 'again@x')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    switch(&c, "globex").await;
    let r = c
        .query(
            "SELECT tenant_id FROM shared WHERE email = $1",
            &[&"same@x"],
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<_, String>(0), "globex");
    let pairs = c
        .query(
            "SELECT a.tenant_id, b.tenant_id, a.email FROM shared a JOIN shared b ON a.email = b.email \
             WHERE a.id < b.id ORDER BY a.id, b.id",
            &[],
        )
        .await
        .unwrap();
    for p in &pairs {
        let (a, b): (String, String) = (p.get(0), p.get(1));
        assert!(
            a != "globex" && b != "globex",
            "globex's value pairs with nothing of another tenant: {a} {b}"
        );
        assert_eq!(
            p.get::<_, Option<String>>(2),
            None,
            "acme's values are NULL"
        );
    }
    let read: Vec<(String, Option<String>)> = c
        .query(
            "SELECT tenant_id, email FROM shared WHERE email IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(read.contains(&("globex".to_owned(), Some("same@x".to_owned()))));
    assert!(
        read.iter().all(|(t, v)| t == "globex" || v.is_none()),
        "{read:?}"
    );
}
