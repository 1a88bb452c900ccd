//! The pre-filter's memory of harmless *shapes* (simple protocol, issue 25), attacked end to end
//! against PostgreSQL as a non-superuser: once a Query's shape is remembered as harmless, a
//! later Query of that shape with other literals skips the readings. Each test makes such a
//! text harmful (a temporary view shadowing its table, a literal spelling a protected table,
//! standard_conforming_strings turned off, a rules reload) and the proxy must answer as its
//! full path would: values sealed, protected columns decrypted, refusals where it cannot be
//! sure.

mod prefilter;

use prefilter::*;

/// Sends `sql` as a simple Query: its answers.
async fn query(c: &mut RawClient, sql: &str) -> Vec<Msg> {
    exchange(c, &[build::query(sql)]).await
}

/// Sends each text once, expecting no error (callers give two texts of each shape: the
/// second sight remembers a harmless shape).
async fn prime(c: &mut RawClient, texts: &[&str]) {
    for sql in texts {
        let msgs = query(c, sql).await;
        assert!(error_codes(&msgs).is_empty(), "{sql}: {msgs:?}");
    }
}

/// Shapes remembered while `notes` is the plain table; then a temporary view named `notes`
/// over customers shadows it. The same shapes with new literals now compare and write a
/// protected column: sealed (alice found, the insert stored as an envelope), never plaintext.
#[tokio::test]
async fn a_temp_view_shadowing_a_remembered_shape_gets_its_literals_sealed() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    prime(
        &mut c,
        &[
            "select id from notes where body = 'nobody@example.com'",
            "select id from notes where body = 'x'",
            "insert into notes (id, body) values (100, 'plain')",
            "insert into notes (id, body) values (101, 'plain')",
        ],
    )
    .await;
    let msgs = query(
        &mut c,
        "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers",
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = query(
        &mut c,
        &format!("select id from notes where body = '{SECRET}'"),
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
    let msgs = query(
        &mut c,
        "insert into notes (id, body) values (102, 'bob@secret.example')",
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_sealed(&db, "SELECT email FROM customers").await;
    assert_eq!(stored(&db, "SELECT email FROM customers").await.len(), 2);
}

/// A literal in a remembered shape's place that names the protected table (a regclass, SQL
/// text for a server function) is read by the full path: answered as a session that never
/// saw the shape answers it.
#[tokio::test]
async fn a_literal_naming_a_protected_table_is_answered_as_the_full_path_answers_it() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut fresh = login(&proxy, &db).await;
    prime(
        &mut c,
        &[
            "select 'notes'::regclass::text",
            "select 'leads'::regclass::text",
            "select length('a') from notes where id = 1",
            "select length('b') from notes where id = 1",
        ],
    )
    .await;
    for sql in [
        "select 'customers'::regclass::text",
        "select 'public.CUSTOMERS'::regclass::text",
        "select length('select email from customers') from notes where id = 1",
    ] {
        let shaped = query(&mut c, sql).await;
        let full = query(&mut fresh, sql).await;
        assert_eq!(error_codes(&shaped), error_codes(&full), "{sql}");
        assert_eq!(data_rows(&shaped), data_rows(&full), "{sql}");
    }
}

/// With standard_conforming_strings off, a backslash ends no string where the shape's reading
/// (the standard one) says it does: such a text is never taken by the shape. Here it reads
/// customers under PostgreSQL's reading, and the proxy refuses it (it analyses only standard
/// strings) instead of forwarding it as the remembered shape.
#[tokio::test]
async fn a_backslash_under_standard_conforming_strings_off_is_never_a_shape() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    prime(
        &mut c,
        &[
            "select count(*) from notes where body = 'a' or body = ' --'",
            "select count(*) from notes where body = 'b' or body = ' --'",
        ],
    )
    .await;
    let msgs = query(&mut c, "SET standard_conforming_strings = off").await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    // Standard reading: two strings; PostgreSQL's now: one string, then a union over customers.
    let attack = "select count(*) from notes where body = 'a\\' or body = ' union all select count(email) from customers --'";
    let msgs = query(&mut c, attack).await;
    assert!(
        !error_codes(&msgs).is_empty(),
        "read customers unseen: {msgs:?}"
    );
    // A harmless text of the shape still runs.
    let msgs = query(
        &mut c,
        "select count(*) from notes where body = 'c' or body = ' --'",
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
}

/// A rules reload that protects the table a remembered shape reads: the shape is forgotten,
/// and the same shape with a new literal is sealed.
#[tokio::test]
async fn a_reload_that_protects_a_remembered_shape_s_table_forgets_it() {
    let db = cluster().fresh_database().await;
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let notes = "\n[[tables]]\nname = \"public.notes\"\n  [[tables.columns]]\n  name = \"body\"\n  type = \"text\"\n";
    install_guards(&db, &format!("{RULES}{notes}")).await;
    let (dir, proxy) = proxy_with(RULES).await;
    let mut c = session(&proxy, &db).await;
    prime(
        &mut c,
        &[
            "select id from notes where body = 'x'",
            "select id from notes where body = 'y'",
        ],
    )
    .await;
    std::fs::write(dir.path().join("rules.toml"), format!("{RULES}{notes}")).expect("rules");
    proxy.reload().expect("reload");
    let msgs = query(
        &mut c,
        &format!("insert into notes (id, body) values (5, '{SECRET}')"),
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_sealed(&db, "SELECT body FROM notes").await;
    let msgs = query(
        &mut c,
        &format!("select id from notes where body = '{SECRET}'"),
    )
    .await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("5".to_owned())]],
        "{msgs:?}"
    );
}
