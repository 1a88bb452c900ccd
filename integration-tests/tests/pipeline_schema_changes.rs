//! A schema change on a protected table and a statement that depends on it, sent together
//! before the proxy could read the catalog again (in one pipeline without a Sync between, or
//! in one simple Query string): the statement must be sealed or refused, never sent with a
//! protected value in plaintext, and the session must stay in step with the server.
//! As a non-superuser, end to end against PostgreSQL.

mod prefilter;

use prefilter::*;

const VIEW: &str = "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers";

/// The view's statement, its Bind and Execute, without a Sync.
fn make_view() -> Vec<Vec<u8>> {
    vec![
        build::parse("", VIEW),
        build::bind("", "", &[]),
        build::execute(""),
    ]
}

/// Sealed (alice found) or refused: never compared in plaintext.
fn sealed_or_refused(msgs: &[Msg]) {
    assert!(
        !error_codes(msgs).is_empty() || data_rows(msgs) == vec![vec![Some("1".to_owned())]],
        "the statement ran over the new view with a plaintext value: {msgs:?}"
    );
}

/// After whatever happened, the session answers the next statements as it should: the view
/// (made now, or made again) compares sealed values.
async fn still_in_step(c: &mut RawClient, db: &str) {
    let msgs = exchange(
        c,
        &[build::query(
            VIEW.replace("CREATE", "CREATE OR REPLACE").as_str(),
        )],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(c, &run(LOOKUP, &[SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
    all_sealed(db, "SELECT email FROM customers").await;
}

/// A statement parsed after the view in the same pipeline is refused with a message that
/// says what to do (the refusal fails the pipeline's implicit transaction: the view is
/// rolled back with it).
#[tokio::test]
async fn a_text_after_a_schema_change_in_the_same_pipeline_is_refused() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = make_view();
    pipeline.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    let refusal = msgs
        .iter()
        .find(|m| m.kind == b'E')
        .expect("refused: the view is unknown to the proxy until it reads the catalog");
    assert_eq!(refusal.field(b'C').as_deref(), Some("0A000"), "{msgs:?}");
    assert!(
        refusal.field(b'M').unwrap_or_default().contains("Sync"),
        "says what to do: {msgs:?}"
    );
    still_in_step(&mut c, &db).await;
}

/// A statement prepared while `notes` was the plain table, bound with a value after the view
/// shadowing it was made in the same pipeline.
#[tokio::test]
async fn a_statement_prepared_before_and_bound_after_a_schema_change_in_the_pipeline() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let msgs = exchange(&mut c, &[build::parse("s1", LOOKUP), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let mut pipeline = make_view();
    pipeline.extend([
        build::bind("", "s1", &[SECRET]),
        build::execute(""),
        build::sync(),
    ]);
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c, &db).await;
}

/// The same in one simple Query string: the view, then a statement over it with a literal.
#[tokio::test]
async fn a_statement_after_a_schema_change_in_one_query_string() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let text = format!("{VIEW}; SELECT id FROM notes WHERE body = '{SECRET}'");
    let msgs = exchange(&mut c, &[build::query(&text)]).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c, &db).await;
}

/// A simple Query sent after the view's Execute, before any Sync.
#[tokio::test]
async fn a_query_after_a_schema_change_in_an_unsynced_pipeline() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = make_view();
    let select = build::query(&format!("SELECT id FROM notes WHERE body = '{SECRET}'"));
    pipeline.push(select.clone());
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    // Refused until the pipeline is ended by a Sync, as the message says.
    let msgs = exchange(&mut c, &[select]).await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    exchange(&mut c, &[build::sync()]).await;
    still_in_step(&mut c, &db).await;
}

/// A schema change, then a Sync: what follows the Sync is planned against the new catalog.
#[tokio::test]
async fn a_schema_change_ended_by_sync_then_a_statement_over_it() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = make_view();
    pipeline.push(build::sync());
    let msgs = exchange(&mut c, &pipeline).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
}

/// A schema change prepared in one pipeline (nothing runs yet) and run by a Bind in a later
/// one: the catalog is read again after the Sync that follows it, so the next statement over
/// the new view is sealed.
#[tokio::test]
async fn a_schema_change_prepared_earlier_and_run_later() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let msgs = exchange(&mut c, &[build::parse("ddl", VIEW), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &[
            build::bind("", "ddl", &[]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    sealed_or_refused(&msgs);
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
}

/// Transaction control behind the change in the same pipeline goes on.
#[tokio::test]
async fn transaction_control_behind_a_schema_change_goes_on() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = vec![
        build::parse("", "BEGIN"),
        build::bind("", "", &[]),
        build::execute(""),
    ];
    pipeline.extend(make_view());
    pipeline.extend([
        build::parse("", "COMMIT"),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]);
    let msgs = exchange(&mut c, &pipeline).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
}

/// A driver's batch of schema changes without values (as JDBC sends `executeBatch`), ended
/// by one Sync, runs; so does a multi-statement string of them.
#[tokio::test]
async fn schema_changes_without_values_behind_one_another_run() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = make_view();
    pipeline.extend([
        build::parse(
            "",
            "CREATE TEMP VIEW more_notes AS SELECT id, body FROM notes",
        ),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]);
    let msgs = exchange(&mut c, &pipeline).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &run("select id from more_notes where body = $1", &[SECRET]),
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
    let text = "CREATE TEMP VIEW a_notes AS SELECT id, email AS body FROM customers; \
                CREATE TEMP VIEW b_notes AS SELECT id, body FROM a_notes";
    let msgs = exchange(&mut c, &[build::query(text)]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &run("select id from b_notes where body = $1", &[SECRET]),
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
}

/// A second schema change behind the first that holds a constant (a view's definition
/// comparing the new view's column with a literal) is refused: the literal would be stored
/// in the definition unsealed.
#[tokio::test]
async fn a_schema_change_with_a_constant_behind_another_is_refused() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let later = format!("CREATE TEMP VIEW alice AS SELECT id FROM notes WHERE body = '{SECRET}'");
    let mut pipeline = make_view();
    pipeline.extend([
        build::parse("", &later),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]);
    let msgs = exchange(&mut c, &pipeline).await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    let msgs = exchange(&mut c, &[build::query(&format!("{VIEW}; {later}"))]).await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    let text = String::from_utf8_lossy(&stored(&db, "SELECT coalesce(string_agg(definition, ''), '')::bytea FROM pg_views WHERE viewname = 'alice'").await.concat()).into_owned();
    assert!(!text.contains("secret"), "{text}");
    still_in_step(&mut c, &db).await;
}
