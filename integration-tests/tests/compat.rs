//! Drivers' and ORMs' default message sequences through pgshroud: sqlx's Close before Sync,
//! the backend pid drivers report, cancel requests, and unique-violation details.
//!
//! Raw sessions log in as `trust_user` and fixture sessions as `scram_user`: neither is a
//! superuser nor owns the protected tables (the fixture's admin creates them).

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::drivers::{run, Driver};
use pgshroud_integration_tests::faults::HeldCloseRelay;
use pgshroud_integration_tests::protected::{hex, proxy_with_rules, Fixture, MASTER_KEY};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::build::{
    bind, close_statement, execute, parse, pipeline, query, sync,
};
use pgshroud_integration_tests::raw::{build, error_codes, message, Msg, RawClient};
use pgshroud_integration_tests::roles::{self, RolesFixture};
use pgshroud_integration_tests::{cluster, users};
use tokio::io::AsyncReadExt;

const EMAIL: &str = "close@secret.example";

async fn raw(f: &Fixture) -> RawClient {
    RawClient::login_trust(f.proxy.port(), users::TRUST, &f.db).await
}

fn close_portal(name: &str) -> Vec<u8> {
    message(b'C', format!("P{name}\0").as_bytes())
}

fn describe_statement(name: &str) -> Vec<u8> {
    message(b'D', format!("S{name}\0").as_bytes())
}

/// The text values of the DataRows among `msgs`.
fn row_values(msgs: &[Msg]) -> Vec<Vec<u8>> {
    msgs.iter()
        .filter(|m| m.kind == b'D')
        .map(|m| {
            let len = i32::from_be_bytes([m.body[2], m.body[3], m.body[4], m.body[5]]);
            m.body[6..6 + len as usize].to_vec()
        })
        .collect()
}

async fn insert_email(f: &Fixture) {
    f.app()
        .await
        .execute("INSERT INTO customers (email) VALUES ($1)", &[&EMAIL])
        .await
        .expect("insert through the proxy");
    let stored = f.stored("SELECT email FROM customers").await;
    let stored = stored[0].as_deref().expect("stored");
    assert!(!stored.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes()));
}

async fn still_works(c: &mut RawClient) {
    c.send(&query("SELECT 1")).await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
}

#[tokio::test]
async fn rows_of_an_execute_followed_by_close_before_sync_are_decrypted() {
    let f = Fixture::new().await;
    insert_email(&f).await;
    let mut c = raw(&f).await;
    let select = "SELECT email FROM customers";
    // sqlx, unnamed statement: Parse/Describe/Bind/Execute/Close(statement)/Sync in one go.
    c.send(&pipeline(&[
        parse("", select),
        describe_statement(""),
        bind("", "", &[]),
        execute(""),
        close_statement(""),
        sync(),
    ]))
    .await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(row_values(&msgs), [EMAIL.as_bytes()]);
    // sqlx, named statement prepared before: Bind/Execute/Close(portal)/Sync.
    c.send(&pipeline(&[
        parse("s1", select),
        describe_statement("s1"),
        sync(),
    ]))
    .await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    for _ in 0..2 {
        c.send(&pipeline(&[
            bind("", "s1", &[]),
            execute(""),
            close_portal(""),
            sync(),
        ]))
        .await;
        let msgs = c.recv_until_ready().await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
        assert_eq!(row_values(&msgs), [EMAIL.as_bytes()]);
    }
    // Named statement closed right after its Execute.
    c.send(&pipeline(&[
        parse("s2", select),
        bind("p", "s2", &[]),
        execute("p"),
        close_portal("p"),
        close_statement("s2"),
        sync(),
    ]))
    .await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(row_values(&msgs), [EMAIL.as_bytes()]);
    still_works(&mut c).await;
    f.app()
        .await
        .simple_query("SELECT 1")
        .await
        .expect("proxy up");
}

/// sqlx sends Bind/Execute/Close(portal)/Sync (and Close of the statement when it does not
/// keep it): its rows must arrive decrypted.
#[tokio::test]
async fn sqlx_reads_protected_columns() {
    use sqlx::{Connection, Row};
    let f = Fixture::new().await;
    insert_email(&f).await;
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
        users::SCRAM,
        users::SCRAM_PASSWORD,
        f.proxy.port(),
        f.db
    );
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("sqlx connects");
    for persistent in [true, true, false] {
        let row = sqlx::query("SELECT email FROM customers")
            .persistent(persistent)
            .fetch_one(&mut conn)
            .await
            .expect("sqlx select");
        let email: String = row.get(0);
        assert_eq!(email, EMAIL);
    }
    sqlx::query("INSERT INTO customers (email) VALUES ($1)")
        .bind("second@secret.example")
        .execute(&mut conn)
        .await
        .expect("sqlx insert");
    let emails: Vec<String> = sqlx::query_scalar("SELECT email FROM customers ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("sqlx select all");
    assert_eq!(emails, [EMAIL, "second@secret.example"]);
    let stored = f.stored("SELECT email FROM customers ORDER BY id").await;
    assert!(stored[1]
        .as_deref()
        .is_some_and(|s| !s.windows(6).any(|w| w == b"second")));
    conn.close().await.expect("sqlx closes");
    f.app()
        .await
        .simple_query("SELECT 1")
        .await
        .expect("proxy up");
}

/// Logs in as the trust user and returns the connection with its BackendKeyData (pid, secret).
async fn login_with_key(port: u16, db: &str) -> (RawClient, i32, Vec<u8>) {
    RawClient::login_trust_with_key(port, users::TRUST, db).await
}

/// The first column of the first row of a simple query, as text.
async fn scalar(c: &mut RawClient, sql: &str) -> String {
    c.send(&query(sql)).await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    String::from_utf8(row_values(&msgs).remove(0)).unwrap()
}

#[tokio::test]
async fn the_backend_key_names_the_servers_backend_pid() {
    let db = cluster().fresh_database().await;
    let p = pgshroud_integration_tests::proxy().await;
    let (mut c, pid, _) = login_with_key(p.port(), &db).await;
    assert_eq!(
        scalar(&mut c, "SELECT pg_backend_pid()").await,
        pid.to_string()
    );
    still_works(&mut c).await;
}

#[tokio::test]
async fn psycopg_backend_pid_matches_the_server_for_notify_cancel_and_terminate() {
    let db = cluster().fresh_database().await;
    let p = pgshroud_integration_tests::proxy().await;
    let port = p.port();
    let out = tokio::task::spawn_blocking(move || {
        run(
            Driver::Psycopg,
            port,
            users::SCRAM,
            users::SCRAM_PASSWORD,
            &db,
            &[("SCENARIO", "backend_pid")],
        )
    })
    .await
    .unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).expect("JSON from the driver");
    assert_eq!(
        out,
        serde_json::json!({
            "pid_is_backend_pid": true,
            "pid_in_activity": 1,
            "notify_pids": [["hi", true], ["self", true]],
            "cancel": "57014",
            "after_cancel": 1,
            "terminated": true,
            // The server's FATAL reaches the client, then the connection closes.
            "after_terminate": "57P01",
            "closed": true
        })
    );
    // The proxy still serves.
    let (mut c, _, _) = login_with_key(p.port(), &cluster().fresh_database().await).await;
    still_works(&mut c).await;
}

#[tokio::test]
async fn a_cancel_connection_closes_only_after_the_server_took_the_request() {
    let db = cluster().fresh_database().await;
    let relay = HeldCloseRelay::start(([127, 0, 0, 1], cluster().port()).into()).await;
    let p = TestProxy::start(
        format!("postgres://{}?sslmode=disable", relay.addr),
        ConfigLayer::default(),
    )
    .await;
    let (mut c, pid, secret) = login_with_key(p.port(), &db).await;
    c.send(&query("SELECT pg_sleep(60)")).await;
    // Cancel once the sleep runs (a cancel of an idle backend does nothing).
    let admin = cluster().admin_client_for(&db).await;
    while admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
            &[&pid],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {}
    let mut cancel = RawClient::send_cancel(p.port(), pid, &secret).await;
    // The server took the request and closed its connection; the relay holds the proxy's
    // side open, so the proxy must still hold the client's.
    relay.server_closed().await;
    let mut byte = [0u8; 1];
    tokio::select! {
        read = cancel.read(&mut byte) => {
            panic!("the cancel connection closed before the server's did: {read:?}")
        }
        _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
    }
    relay.release();
    assert_eq!(cancel.read(&mut byte).await.unwrap(), 0);
    let msgs = c.recv_until_ready().await;
    assert_eq!(error_codes(&msgs), ["57014"], "{msgs:?}");
    still_works(&mut c).await;
    let (mut other, _, _) = login_with_key(p.port(), &db).await;
    still_works(&mut other).await;
}

/// The DETAIL of the unique violation an insert of `email` raises for `client`.
async fn duplicate_detail(client: &tokio_postgres::Client, email: &str) -> Option<String> {
    let error = client
        .execute("INSERT INTO customers (email) VALUES ($1)", &[&email])
        .await
        .expect_err("a duplicate email is refused");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "23505", "{db:?}");
    db.detail().map(str::to_owned)
}

#[tokio::test]
async fn a_unique_violation_detail_shows_the_key_as_the_role_reads_it() {
    let f = RolesFixture::new().await;
    // The fixture's roles, with support (mask:email) and dba (ciphertext) allowed to write
    // (and so to compare: a write is a comparison of its own).
    let rules = roles::RULES
        .replace(
            "template = \"support\"\n",
            "template = \"support\"\nwrite = true\n",
        )
        .replace(
            "template = \"dba\"\n",
            "template = \"dba\"\nwrite = true\ncompare = { \"*\" = true }\n",
        );
    let (_dir, p) = proxy_with_rules(&rules, MASTER_KEY).await;
    let connect = |suffix: &str| {
        let user = f.user(suffix);
        let p = &p;
        let db = f.db.clone();
        async move { p.connect(&user, roles::PASSWORD, &db).await }
    };
    let email = "dup@secret.example";
    let app = connect("app").await.unwrap();
    app.execute("INSERT INTO customers (email) VALUES ($1)", &[&email])
        .await
        .unwrap();
    let stored: Vec<u8> = f
        .direct()
        .await
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!stored.windows(email.len()).any(|w| w == email.as_bytes()));
    let stored_hex = format!("\\x{}", hex(&stored));
    // PostgreSQL itself names the ciphertext.
    let direct = f
        .direct()
        .await
        .execute("INSERT INTO customers (email) VALUES ($1)", &[&stored])
        .await
        .unwrap_err();
    assert!(direct
        .as_db_error()
        .unwrap()
        .detail()
        .unwrap()
        .contains(&stored_hex));

    // app reads plaintext.
    assert_eq!(
        duplicate_detail(&app, email).await.as_deref(),
        Some("Key (email)=(dup@secret.example) already exists.")
    );
    // support reads the mask it reads in results, never the plaintext nor the ciphertext.
    let support = connect("support").await.unwrap();
    let masked: String = support
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(masked, email);
    assert_eq!(
        duplicate_detail(&support, email).await,
        Some(format!("Key (email)=({masked}) already exists."))
    );
    // dba reads ciphertext, as it does in results.
    let dba = connect("dba").await.unwrap();
    assert_eq!(
        duplicate_detail(&dba, email).await,
        Some(format!("Key (email)=({stored_hex}) already exists."))
    );
    // Each connection goes on.
    for client in [&app, &support, &dba] {
        client
            .simple_query("SELECT 1")
            .await
            .expect("next statement");
    }
    assert_eq!(
        f.direct()
            .await
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    connect("app").await.expect("the proxy still serves");
}

/// The SQLSTATE and DETAIL of the error `sql` raises for `client`.
async fn error_detail(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> (String, Option<String>) {
    let error = client.execute(sql, params).await.expect_err("refused");
    let db = error.as_db_error().expect("a server error");
    (db.code().code().to_owned(), db.detail().map(str::to_owned))
}

#[tokio::test]
async fn foreign_key_and_not_null_details_never_show_ciphertext() {
    let f = Fixture::new().await;
    cluster()
        .admin_client_for(&f.db)
        .await
        .batch_execute(
            "ALTER TABLE people ADD UNIQUE (email);
             ALTER TABLE orders ADD FOREIGN KEY (customer_email) REFERENCES people (email);
             ALTER TABLE orders ALTER total SET NOT NULL;",
        )
        .await
        .expect("constraints");
    let app = f.app().await;
    // The referencing table's own key: shown as the role reads it.
    assert_eq!(
        error_detail(
            &app,
            "INSERT INTO orders (customer_email, total) VALUES ($1, 1)",
            &[&"nobody@secret.example"]
        )
        .await,
        (
            "23503".into(),
            Some(
                "Key (customer_email)=(nobody@secret.example) is not present in table \"people\"."
                    .into()
            )
        )
    );
    app.execute(
        "INSERT INTO people (email) VALUES ($1)",
        &[&"p@secret.example"],
    )
    .await
    .unwrap();
    let stored = f.stored("SELECT email FROM people").await;
    assert!(!stored[0].as_deref().unwrap().windows(2).any(|w| w == b"p@"));
    // A key of another table than the one the error names, and a whole failing row: the
    // proxy cannot place the stored values, so the DETAIL is dropped.
    app.execute(
        "INSERT INTO orders (customer_email, total) VALUES ($1, 1)",
        &[&"p@secret.example"],
    )
    .await
    .unwrap();
    assert_eq!(
        error_detail(
            &app,
            "DELETE FROM people WHERE email = $1",
            &[&"p@secret.example"]
        )
        .await,
        ("23503".into(), None)
    );
    assert_eq!(
        error_detail(
            &app,
            "INSERT INTO orders (customer_email) VALUES ($1)",
            &[&"p@secret.example"]
        )
        .await,
        ("23502".into(), None)
    );
    // The server does name the ciphertext there.
    let direct = cluster()
        .admin_client_for(&f.db)
        .await
        .execute("DELETE FROM people", &[])
        .await
        .unwrap_err();
    assert!(direct
        .as_db_error()
        .unwrap()
        .detail()
        .unwrap()
        .contains("\\x02"));
    app.simple_query("SELECT 1").await.expect("next statement");
    f.app()
        .await
        .simple_query("SELECT 1")
        .await
        .expect("proxy up");
}

/// Stored values a server-side function puts into a message (RAISE with NEW.email, a
/// statement in the CONTEXT) are taken out of errors and notices for every role.
#[tokio::test]
async fn stored_values_in_messages_hints_context_and_notices_are_taken_out() {
    let f = Fixture::new().await;
    cluster()
        .admin_client_for(&f.db)
        .await
        .batch_execute(
            r#"CREATE FUNCTION tell_customer() RETURNS trigger LANGUAGE plpgsql AS $f$
               BEGIN
                 RAISE NOTICE 'new customer %', NEW.email
                   USING DETAIL = 'stored ' || NEW.email::text, HINT = NEW.email::text;
                 IF NEW.name = 'refuse' THEN
                   RAISE EXCEPTION 'refusing %', NEW.email USING HINT = NEW.email::text;
                 END IF;
                 IF NEW.name = 'nested' THEN
                   EXECUTE format('SELECT 1/0 WHERE %L IS NOT NULL', NEW.email);
                 END IF;
                 RETURN NEW;
               END $f$;
               CREATE TRIGGER tell BEFORE INSERT ON customers
                 FOR EACH ROW EXECUTE FUNCTION tell_customer();"#,
        )
        .await
        .expect("trigger");
    let (client, mut connection) = tokio_postgres::connect(
        &f.proxy
            .conn_string(users::SCRAM, users::SCRAM_PASSWORD, &f.db),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect through the proxy");
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notice(n) = message {
                let _ = notices_tx.send(n);
            }
        }
    });
    let insert = "INSERT INTO customers (email, name) VALUES ($1, $2)";
    client
        .execute(insert, &[&"n@secret.example", &"ok"])
        .await
        .expect("insert");
    let notice = notices.recv().await.expect("the trigger's notice");
    let shown = [
        notice.message(),
        notice.detail().unwrap_or_default(),
        notice.hint().unwrap_or_default(),
    ]
    .join(" | ");
    assert!(shown.contains("[protected value removed]"), "{shown}");
    assert!(
        !shown.contains("\\x02"),
        "ciphertext in the notice: {shown}"
    );

    for name in ["refuse", "nested"] {
        let error = client
            .execute(insert, &[&"e@secret.example", &name])
            .await
            .expect_err("the trigger raises");
        let db = error.as_db_error().expect("a server error");
        let shown = format!(
            "{} | {:?} | {:?} | {:?}",
            db.message(),
            db.hint(),
            db.where_(),
            db.detail()
        );
        assert!(shown.contains("[protected value removed]"), "{shown}");
        assert!(!shown.contains("\\x02"), "ciphertext in the error: {shown}");
    }
    // The server does put the ciphertext there.
    let direct = cluster().admin_client_for(&f.db).await;
    let error = direct
        .execute(
            "INSERT INTO customers (email, name) VALUES ($1, 'refuse')",
            &[&vec![2u8; 40]],
        )
        .await
        .expect_err("the trigger raises");
    assert!(error.as_db_error().unwrap().message().contains("\\x02"));
    // The session goes on.
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}

/// The suites' rules: one protected table, which the database does not have.
const ABSENT_TABLE_RULES: &str = r#"
[[tables]]
name = "public.pgshroud_suites_canary"
  [[tables.columns]]
  name = "secret"
  type = "text"
"#;

/// asyncpg's tests/test_introspection.py::test_introspection_no_stmt_cache_03, as the server
/// logged it: asyncpg prepares an uncached statement as the unnamed one (Parse "", Describe,
/// Sync); before its first type introspection it runs `SELECT current_setting('jit'),
/// set_config('jit', 'off', false)` as a named statement; `set_config` makes pgshroud re-read
/// its catalog with a simple Query of its own behind that Sync, and a simple Query drops the
/// unnamed prepared statement, so asyncpg's Bind of it fails with 26000 ("unnamed prepared
/// statement does not exist"). Directly, the unnamed statement lives until the next Parse of
/// an unnamed statement or the next simple Query *of the client's*: the proxy's re-read runs
/// under names of its own in the extended protocol.
#[tokio::test]
async fn the_unnamed_statement_survives_the_proxys_catalog_reread() {
    let db = cluster().fresh_database().await;
    let (_dir, proxy) = proxy_with_rules(ABSENT_TABLE_RULES, MASTER_KEY).await;
    let mut c = RawClient::login_trust(proxy.port(), users::TRUST, &db).await;
    let jit = "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new";
    for round in [
        vec![
            build::parse("", "SELECT 41 + 1"),
            describe_statement(""),
            build::sync(),
        ],
        vec![
            build::parse("s1", jit),
            describe_statement("s1"),
            build::sync(),
        ],
        vec![
            build::bind("", "s1", &[]),
            build::execute(""),
            build::sync(),
        ],
    ] {
        c.send(&build::pipeline(&round)).await;
        let msgs = c.recv_until_ready().await;
        assert_eq!(error_codes(&msgs), Vec::<String>::new(), "{msgs:?}");
    }
    c.send(&build::pipeline(&[
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let msgs = c.recv_until_ready().await;
    assert_eq!(error_codes(&msgs), Vec::<String>::new(), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.kind == b'D'), "{msgs:?}");
    // The session goes on, and the proxy still serves.
    c.send(&build::query("SELECT 1")).await;
    let msgs = c.recv_until_ready().await;
    assert_eq!(error_codes(&msgs), Vec::<String>::new(), "{msgs:?}");
    assert!(proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .is_ok());
}

/// psycopg's named cursors over `query`, as the fixture user with `suffix` (JSON of what it saw).
async fn psycopg_named_cursors(f: &RolesFixture, suffix: &str, query: &str) -> serde_json::Value {
    let (port, user, db, query) = (
        f.proxy.port(),
        f.user(suffix),
        f.db.clone(),
        query.to_owned(),
    );
    let out = tokio::task::spawn_blocking(move || {
        run(
            Driver::Psycopg,
            port,
            &user,
            roles::PASSWORD,
            &db,
            &[("SCENARIO", "named_cursors"), ("CURSOR_QUERY", &query)],
        )
    })
    .await
    .unwrap();
    serde_json::from_str(&out).expect("JSON from the driver")
}

/// Every cursor variant psycopg has, each seeing `rows` (a scrollable cursor read twice from
/// the start of the second fetch), and the statements after them working.
fn all_cursors_saw(rows: serde_json::Value) -> serde_json::Value {
    let list = rows.as_array().expect("rows").clone();
    let mut scrolled = list[..1].to_vec();
    scrolled.extend(list.iter().cloned());
    serde_json::json!({
        "text": rows,
        "binary": rows,
        "scrollable": scrolled,
        "withhold": rows,
        "after": 1,
        "autocommit_withhold": rows,
        "autocommit_after": 1,
    })
}

#[tokio::test]
async fn psycopg_named_cursors_over_an_unprotected_table_work() {
    let f = RolesFixture::new().await;
    let app = f.connect("app").await;
    app.batch_execute("INSERT INTO notes (body) VALUES ('first'), ('second')")
        .await
        .unwrap();
    let out = psycopg_named_cursors(&f, "app", "SELECT id, body FROM notes ORDER BY id").await;
    assert_eq!(
        out,
        all_cursors_saw(serde_json::json!([[1, "first"], [2, "second"]]))
    );
    app.simple_query("SELECT 1")
        .await
        .expect("the proxy still serves");
}

#[tokio::test]
async fn psycopg_named_cursors_over_protected_columns_show_what_the_role_sees() {
    let f = RolesFixture::new().await;
    let app = f.connect("app").await;
    app.execute(
        "INSERT INTO customers (email, age, name) VALUES ($1, $2, 'Alice')",
        &[&"alice@example.com", &Some(41i32)],
    )
    .await
    .unwrap();
    let stored = f
        .direct()
        .await
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap();
    let stored: Vec<u8> = stored.get(0);
    assert!(
        !stored.windows(5).any(|w| w == b"alice"),
        "stored encrypted"
    );
    let query = "SELECT id, email, age, name FROM customers ORDER BY id";
    let out = psycopg_named_cursors(&f, "app", query).await;
    assert_eq!(
        out,
        all_cursors_saw(serde_json::json!([[1, "alice@example.com", 41, "Alice"]]))
    );
    // support: email masked (its domain kept), age null, as for any SELECT.
    let support = f.connect("support").await;
    let expected: Vec<serde_json::Value> = support
        .simple_query(query)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(serde_json::json!([
                1,
                r.get(1),
                serde_json::Value::Null,
                "Alice"
            ])),
            _ => None,
        })
        .collect();
    assert_eq!(expected.len(), 1);
    assert_ne!(expected[0][1], "alice@example.com");
    let out = psycopg_named_cursors(&f, "support", query).await;
    assert_eq!(out, all_cursors_saw(serde_json::Value::Array(expected)));
    app.simple_query("SELECT 1")
        .await
        .expect("the proxy still serves");
}

fn describe_portal(name: &str) -> Vec<u8> {
    message(b'D', format!("P{name}\0").as_bytes())
}

/// The type OID of each field of the RowDescription among `msgs`.
fn described_types(msgs: &[Msg]) -> Vec<u32> {
    let Some(desc) = msgs.iter().find(|m| m.kind == b'T') else {
        return Vec::new();
    };
    let n = u16::from_be_bytes([desc.body[0], desc.body[1]]);
    let mut at = 2;
    (0..n)
        .map(|_| {
            at += desc.body[at..].iter().position(|&b| b == 0).unwrap() + 1;
            let t = &desc.body[at + 6..at + 10];
            at += 18;
            u32::from_be_bytes([t[0], t[1], t[2], t[3]])
        })
        .collect()
}

#[tokio::test]
async fn a_describe_of_a_sql_cursor_shows_logical_types_and_unknown_portals_stay_refused() {
    let f = Fixture::new().await;
    insert_email(&f).await;
    let mut c = raw(&f).await;
    c.send(&query(
        "BEGIN; DECLARE c CURSOR FOR SELECT id, email FROM customers",
    ))
    .await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    c.send(&pipeline(&[describe_portal("c"), sync()])).await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    // int4 and text (the email's logical type), not bytea.
    assert_eq!(described_types(&msgs), [23, 25]);
    // Its rows, fetched through the protocol in binary, are decrypted.
    c.send(&pipeline(&[
        parse("", "FETCH ALL FROM c"),
        message(b'B', b"\0\0\0\0\0\0\0\x01\0\x01"),
        execute(""),
        sync(),
    ]))
    .await;
    let msgs = c.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let row = msgs.iter().find(|m| m.kind == b'D').expect("a row");
    assert!(
        row.body.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes()),
        "{msgs:?}"
    );
    c.send(&query("COMMIT")).await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    // A cursor that is gone (its transaction ended), one never declared, and one whose
    // DECLARE pgshroud refused (a UNION of protected columns): refused before the server.
    c.send(&query(
        "BEGIN; DECLARE u CURSOR FOR SELECT email FROM customers UNION SELECT email FROM customers",
    ))
    .await;
    assert_eq!(error_codes(&c.recv_until_ready().await), ["0A000"]);
    c.send(&query("ROLLBACK")).await;
    assert!(error_codes(&c.recv_until_ready().await).is_empty());
    for name in ["c", "nope", "u"] {
        c.send(&pipeline(&[describe_portal(name), sync()])).await;
        let msgs = c.recv_until_ready().await;
        assert_eq!(error_codes(&msgs), ["34000"], "{name}: {msgs:?}");
        let error = msgs.iter().find(|m| m.kind == b'E').expect("an error");
        assert!(error
            .field(b'M')
            .is_some_and(|m| m.contains("not bound through pgshroud")));
    }
    still_works(&mut c).await;
    f.app()
        .await
        .simple_query("SELECT 1")
        .await
        .expect("the proxy still serves");
}
