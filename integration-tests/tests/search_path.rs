//! Unqualified names resolve as PostgreSQL resolves them: through the session's search_path
//! (its temporary schema first), followed as it changes, or refused where the proxy cannot be
//! sure which relation a name means. Every write that goes ahead is stored encrypted.

use pgshroud_integration_tests::protected::{
    code, install_guards, proxy_with_rules, rows, MASTER_KEY,
};
use pgshroud_integration_tests::{cluster, users};

const RULES: &str = r#"
[[tables]]
name = "crm.leads"
  [[tables.columns]]
  name = "email"
  type = "text"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
"#;

const SCHEMA: &str = "
CREATE SCHEMA crm;
CREATE TABLE crm.leads (id serial PRIMARY KEY, email bytea);
CREATE TABLE public.customers (id serial PRIMARY KEY, email bytea);
-- A plain table named like the protected one, in a schema the app may put first.
CREATE SCHEMA scratch;
CREATE TABLE scratch.customers (id serial PRIMARY KEY, email bytea);
GRANT USAGE ON SCHEMA crm, scratch TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA crm, public, scratch TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA crm, public, scratch TO PUBLIC;";

async fn setup() -> (
    String,
    tempfile::TempDir,
    pgshroud_integration_tests::proxy::TestProxy,
) {
    let db = cluster().fresh_database().await;
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    install_guards(&db, RULES).await;
    let (dir, proxy) = proxy_with_rules(RULES, MASTER_KEY).await;
    (db, dir, proxy)
}

async fn stored(db: &str, sql: &str) -> Vec<Vec<u8>> {
    cluster()
        .admin_client_for(db)
        .await
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn an_unqualified_name_follows_set_search_path_back_and_forth() {
    let (db, _dir, proxy) = setup().await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    // crm.leads is only reachable unqualified once crm is on the path.
    app.batch_execute("SET search_path = crm, public")
        .await
        .unwrap();
    app.execute("INSERT INTO leads (email) VALUES ($1)", &[&"lead@x.org"])
        .await
        .expect("encrypted into crm.leads");
    app.simple_query("INSERT INTO leads (email) VALUES ('lead2@x.org')")
        .await
        .expect("literal too");
    let got = rows(
        &app.simple_query("SELECT email FROM leads WHERE email = 'lead2@x.org'")
            .await
            .unwrap(),
    );
    assert_eq!(got, vec![vec![Some("lead2@x.org".to_owned())]]);
    // With scratch first, `customers` is scratch.customers (not protected): PostgreSQL writes
    // there, and the proxy knows it is not the protected table (or refuses when unsure).
    app.batch_execute("SET search_path = scratch, public")
        .await
        .unwrap();
    match app
        .simple_query("INSERT INTO customers (email) VALUES ('\\x00'::bytea)")
        .await
    {
        Ok(_) => {}
        Err(e) => assert_eq!(code(&e), "0A000", "{e}"),
    }
    // And back: public.customers again, encrypted.
    app.batch_execute("RESET search_path").await.unwrap();
    app.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"cust@x.org"],
    )
    .await
    .expect("public.customers");
    app.batch_execute("SELECT pg_catalog.set_config('search_path', 'crm', false)")
        .await
        .unwrap();
    app.execute("INSERT INTO leads (email) VALUES ($1)", &[&"lead3@x.org"])
        .await
        .expect("set_config is followed too");
    for value in stored(&db, "SELECT email FROM crm.leads")
        .await
        .into_iter()
        .chain(stored(&db, "SELECT email FROM public.customers").await)
    {
        assert_eq!(value[0], 2, "stored as an envelope");
        assert!(!String::from_utf8_lossy(&value).contains("x.org"));
    }
    let fresh = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    fresh
        .simple_query("SELECT 1")
        .await
        .expect("proxy still up");
}

#[tokio::test]
async fn a_temporary_table_shadowing_a_protected_one_is_never_mistaken_for_it() {
    let (db, _dir, proxy) = setup().await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    app.batch_execute("CREATE TEMP TABLE customers (id int, email text)")
        .await
        .unwrap();
    // PostgreSQL writes into the temp table; the proxy must not encrypt into it as if it were
    // the protected table, nor treat a protected table as plain: refusing is fine.
    match app
        .simple_query("INSERT INTO customers (id, email) VALUES (1, 'temp@x.org')")
        .await
    {
        Ok(_) => {
            let got = rows(
                &app.simple_query("SELECT email FROM pg_temp.customers")
                    .await
                    .unwrap(),
            );
            assert_eq!(got, vec![vec![Some("temp@x.org".to_owned())]]);
        }
        Err(e) => assert_eq!(code(&e), "0A000", "{e}"),
    }
    // Qualified, the protected table is still written encrypted.
    app.execute(
        "INSERT INTO public.customers (email) VALUES ($1)",
        &[&"real@x.org"],
    )
    .await
    .unwrap();
    let stored = stored(&db, "SELECT email FROM public.customers").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0][0], 2);
    app.simple_query("SELECT 1").await.expect("session usable");
}

#[tokio::test]
async fn a_search_path_change_undone_by_rollback_is_followed() {
    let (db, _dir, proxy) = setup().await;
    let app = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    app.batch_execute("BEGIN; SET search_path = crm; ROLLBACK")
        .await
        .unwrap();
    // The path is public again: `customers` is public.customers, encrypted.
    app.execute(
        "INSERT INTO customers (email) VALUES ($1)",
        &[&"after@x.org"],
    )
    .await
    .expect("public.customers after the rollback");
    let stored = stored(&db, "SELECT email FROM public.customers").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0][0], 2);
}
