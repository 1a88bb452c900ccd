//! Attacks on the catalog pgshroud plans against: a schema change made in the session that
//! gives a name a protected column pgshroud does not know of (yet), followed by a statement
//! that carries a value compared with or written to that column. Every value must reach the
//! server sealed, or the statement be refused; the session must stay in step.
//! As a non-superuser, end to end against PostgreSQL (see pipeline_schema_changes.rs for the
//! plain `CREATE TEMP VIEW` in one pipeline or query string).

mod prefilter;

use prefilter::*;

const VIEW: &str = "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers";

/// Sealed (alice found) or refused: never compared in plaintext (a plaintext value compared
/// with the stored envelope finds nothing).
fn sealed_or_refused(msgs: &[Msg]) {
    assert!(
        !error_codes(msgs).is_empty() || data_rows(msgs) == vec![vec![Some("1".to_owned())]],
        "the statement ran with a plaintext value: {msgs:?}"
    );
}

/// Each of `steps` as its own simple Query (so the proxy may read the catalog between them):
/// the answers, in order.
async fn steps(c: &mut RawClient, steps: &[&str]) -> Vec<Vec<Msg>> {
    let mut out = Vec::new();
    for step in steps {
        out.push(exchange(c, &[build::query(step)]).await);
    }
    out
}

/// Every step ran (no refusal): the attack's schema change is in place.
fn all_ran(answers: &[Vec<Msg>]) {
    for msgs in answers {
        assert!(error_codes(msgs).is_empty(), "{msgs:?}");
    }
}

/// The session answers the next statement right after the attack: a statement on the plain
/// table `public.leads` (never protected) and one on the protected customers.
async fn still_in_step(c: &mut RawClient) {
    let msgs = exchange(c, &run("select count(*) from public.leads", &[])).await;
    assert_eq!(data_rows(&msgs), vec![vec![Some("0".to_owned())]], "{msgs:?}");
    let msgs = exchange(
        c,
        &run("select id from customers where email = $1", &[SECRET]),
    )
    .await;
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]], "{msgs:?}");
}

/// `steps` as separate queries, then `LOOKUP` over `notes` with alice: sealed or refused.
async fn view_behind(setup_steps: &[&str]) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let answers = steps(&mut c, setup_steps).await;
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    if answers.iter().all(|a| error_codes(a).is_empty()) {
        sealed_or_refused(&msgs);
    }
    let text = format!("SELECT id FROM notes WHERE body = '{SECRET}'");
    let msgs = exchange(&mut c, &[build::query(&text)]).await;
    if answers.iter().all(|a| error_codes(a).is_empty()) {
        sealed_or_refused(&msgs);
    }
    still_in_step(&mut c).await;
}

// --- Schema changes PostgreSQL runs inside code: not DDL to the planner -------------------

/// A `DO` block's static SQL makes the temp view: the DO is not a schema change to the
/// planner, so the catalog is never read again.
#[tokio::test]
#[ignore = "hole: a DO block (StatementKind::Other) that runs CREATE TEMP VIEW over a protected \
            table does not make the catalog stale; the next statement's value over the view \
            goes up unsealed (no look-up until another reason)"]
async fn a_do_block_making_a_view() {
    view_behind(&[&format!("DO $$BEGIN {VIEW}; END$$")]).await;
}

/// A plpgsql function that makes the view, created (a schema change: looked up, nothing new)
/// and then called from a SELECT.
#[tokio::test]
#[ignore = "hole: a function made earlier whose body runs CREATE TEMP VIEW, called from a \
            SELECT: the SELECT is not a schema change; the next statement's value over the \
            view goes up unsealed"]
async fn a_function_called_in_a_select_making_a_view() {
    view_behind(&[
        &format!(
            "CREATE FUNCTION make_notes() RETURNS void LANGUAGE plpgsql AS $$BEGIN {VIEW}; END$$"
        ),
        "SELECT make_notes()",
    ])
    .await;
}

/// The same from a procedure run by `CALL`.
#[tokio::test]
#[ignore = "hole: CALL of a procedure whose body runs CREATE TEMP VIEW (StatementKind::Other) \
            does not make the catalog stale; the next value over the view goes up unsealed"]
async fn a_procedure_called_making_a_view() {
    view_behind(&[
        &format!("CREATE PROCEDURE make_notes() LANGUAGE plpgsql AS $$BEGIN {VIEW}; END$$"),
        "CALL make_notes()",
    ])
    .await;
}

/// The function called in the same query string as the statement with the value.
#[tokio::test]
#[ignore = "hole: SELECT make_notes(); SELECT ... WHERE body = '<value>' in one query string: \
            the function's CREATE TEMP VIEW is unseen, the literal goes up unsealed"]
async fn a_function_making_a_view_in_the_same_query_string() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let made = steps(
        &mut c,
        &[&format!(
            "CREATE FUNCTION make_notes() RETURNS void LANGUAGE plpgsql AS $$BEGIN {VIEW}; END$$"
        )],
    )
    .await;
    all_ran(&made);
    let text = format!("SELECT make_notes(); SELECT id FROM notes WHERE body = '{SECRET}'");
    let msgs = exchange(&mut c, &[build::query(&text)]).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c).await;
}

// --- Schema changes the planner sees -------------------------------------------------------

/// `CREATE SCHEMA ... CREATE VIEW` and the path moved onto it (both seen: looked up).
#[tokio::test]
async fn a_view_made_inside_create_schema_then_put_on_the_path() {
    view_behind(&[
        "CREATE SCHEMA mine CREATE VIEW notes AS SELECT id, email AS body FROM public.customers",
        "SET search_path = mine, public",
    ])
    .await;
}

/// A view over a protected table renamed onto the plain name, as its own query.
#[tokio::test]
async fn a_view_renamed_onto_a_plain_name() {
    view_behind(&[
        "CREATE TEMP VIEW hidden AS SELECT id, email AS body FROM customers",
        "ALTER VIEW hidden RENAME TO notes",
    ])
    .await;
}

/// A view moved into the schema first on the path (`ALTER VIEW ... SET SCHEMA`).
#[tokio::test]
async fn a_view_moved_into_a_schema_first_on_the_path() {
    view_behind(&[
        "CREATE SCHEMA mine",
        "SET search_path = mine, public",
        "CREATE VIEW public.hidden AS SELECT id, email AS body FROM customers",
        "ALTER VIEW public.hidden SET SCHEMA mine",
        "ALTER VIEW mine.hidden RENAME TO notes",
    ])
    .await;
}

/// A view over a view of the protected table.
#[tokio::test]
async fn a_view_over_a_view_of_the_protected_table() {
    view_behind(&[
        "CREATE TEMP VIEW hidden AS SELECT id, email AS secret FROM customers",
        "CREATE TEMP VIEW notes AS SELECT id, secret AS body FROM hidden",
    ])
    .await;
}

/// The rename in one pipeline with the statement over its new name, no Sync between.
#[tokio::test]
async fn a_rename_and_a_statement_over_the_new_name_in_one_pipeline() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(
        &steps(
            &mut c,
            &["CREATE TEMP VIEW hidden AS SELECT id, email AS body FROM customers"],
        )
        .await,
    );
    let mut pipeline = vec![
        build::parse("", "ALTER VIEW hidden RENAME TO notes"),
        build::bind("", "", &[]),
        build::execute(""),
    ];
    pipeline.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c).await;
}

/// A copy of the protected column into a temporary table (`CREATE TEMP TABLE ... AS`): the
/// copy holds envelopes under a name the rules do not cover.
#[tokio::test]
async fn a_copy_made_by_create_table_as() {
    copy_behind("CREATE TEMP TABLE copied AS SELECT id, email AS body FROM customers").await;
}

/// The same by `SELECT ... INTO TEMP`.
#[tokio::test]
async fn a_copy_made_by_select_into() {
    copy_behind("SELECT id, email AS body INTO TEMP copied FROM customers").await;
}

async fn copy_behind(make: &str) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let made = steps(&mut c, &[make]).await;
    let msgs = exchange(
        &mut c,
        &run("select id from copied where body = $1", &[SECRET]),
    )
    .await;
    if made.iter().all(|a| error_codes(a).is_empty()) {
        sealed_or_refused(&msgs);
    }
    still_in_step(&mut c).await;
}

// --- Writes redirected into the protected column ------------------------------------------

/// A rule made by a DO block on the session's own temporary table redirects its inserts into
/// customers: the value must not be stored in plaintext.
#[tokio::test]
async fn a_rule_made_in_a_do_block_redirecting_inserts_into_the_protected_column() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    steps(
        &mut c,
        &[
            "CREATE TEMP TABLE inbox (id int, body bytea)",
            "DO $$BEGIN CREATE RULE redirect AS ON INSERT TO inbox DO INSTEAD \
             INSERT INTO customers (id, email) VALUES (NEW.id, NEW.body); END$$",
        ],
    )
    .await;
    exchange(
        &mut c,
        &run(
            "insert into inbox (id, body) values ($1, $2)",
            &["7", SECRET],
        ),
    )
    .await;
    exchange(
        &mut c,
        &[build::query(&format!(
            "INSERT INTO inbox (id, body) VALUES (8, '{SECRET}')"
        ))],
    )
    .await;
    all_sealed(&db, "SELECT email FROM customers").await;
    still_in_step(&mut c).await;
}

// --- The search_path moved by code the planner does not read -------------------------------

/// `leads` is the plain `public.leads` until crm is first on the path; alice is stored in
/// the protected `crm.leads`. Each of `moves` runs, then a value compared with `leads.email`.
async fn path_moved_by(moves: &[&str]) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let stored = format!("INSERT INTO crm.leads (id, email) VALUES (1, '{SECRET}')");
    all_ran(&steps(&mut c, &[&stored]).await);
    let answers = steps(&mut c, moves).await;
    let msgs = exchange(
        &mut c,
        &run("select id from leads where email = $1", &[SECRET]),
    )
    .await;
    if answers.iter().all(|a| error_codes(a).is_empty()) {
        sealed_or_refused(&msgs);
    }
    exchange(&mut c, &[build::query("RESET search_path")]).await;
    still_in_step(&mut c).await;
}

/// A SQL function made earlier that calls set_config, called from a SELECT.
#[tokio::test]
#[ignore = "hole: SELECT of a function whose body calls set_config('search_path', ...) is not \
            seen as a search_path change (its text names no setting); the proxy keeps \
            resolving `leads` as public.leads and the value for crm.leads goes up unsealed"]
async fn the_path_moved_by_a_function_called_in_a_select() {
    path_moved_by(&[
        "CREATE FUNCTION to_crm() RETURNS text LANGUAGE sql \
         AS $$SELECT set_config('search_path', 'crm, public', false)$$",
        "SELECT to_crm()",
    ])
    .await;
}

/// A view whose column calls set_config, read with a text that names neither.
#[tokio::test]
#[ignore = "hole: SELECT * FROM a view whose definition calls set_config('search_path', ...) \
            moves the path unseen; the value for crm.leads goes up unsealed"]
async fn the_path_moved_by_reading_a_view() {
    path_moved_by(&[
        "CREATE TEMP VIEW pathway AS SELECT set_config('search_path', 'crm, public', false) AS p",
        "SELECT * FROM pathway",
    ])
    .await;
}

/// A statement prepared in SQL that calls set_config, run by EXECUTE.
#[tokio::test]
#[ignore = "hole: EXECUTE of an SQL-prepared SELECT set_config('search_path', ...) is not seen \
            as a search_path change; the value for crm.leads goes up unsealed"]
async fn the_path_moved_by_execute_of_a_prepared_statement() {
    path_moved_by(&[
        "PREPARE to_crm AS SELECT set_config('search_path', 'crm, public', false)",
        "EXECUTE to_crm",
    ])
    .await;
}

// --- Prepared before the change, run after ------------------------------------------------

/// A statement prepared in SQL while `notes` was the plain table, run by EXECUTE with a value
/// after the view shadowing it was made (PostgreSQL analyses it again against the view).
#[tokio::test]
async fn an_sql_prepared_statement_executed_after_the_view() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let answers = steps(
        &mut c,
        &[
            "PREPARE by_body(bytea) AS SELECT id FROM notes WHERE body = $1",
            VIEW,
        ],
    )
    .await;
    let msgs = exchange(
        &mut c,
        &[build::query(&format!("EXECUTE by_body('{SECRET}')"))],
    )
    .await;
    if answers.iter().all(|a| error_codes(a).is_empty()) {
        sealed_or_refused(&msgs);
    }
    still_in_step(&mut c).await;
}

// --- Transaction blocks ---------------------------------------------------------------------

/// The view made after a SAVEPOINT and rolled back to it: `notes` is the plain table again,
/// and a value written to it is stored as sent (not sealed for a column that is not
/// protected), then read back the same.
#[tokio::test]
async fn a_view_rolled_back_to_a_savepoint() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(
        &steps(
            &mut c,
            &["BEGIN", "SAVEPOINT a", VIEW, "ROLLBACK TO SAVEPOINT a"],
        )
        .await,
    );
    let msgs = exchange(
        &mut c,
        &run(
            "insert into notes (id, body) values ($1, $2)",
            &["5", "plain"],
        ),
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_ran(&steps(&mut c, &["COMMIT"]).await);
    let body = stored(&db, "SELECT body FROM notes WHERE id = 5").await;
    assert_eq!(body, vec![b"plain".to_vec()]);
    still_in_step(&mut c).await;
}

/// The view made inside a transaction block in a pipeline, with the value behind it before
/// the Sync: refused, and the block (failed) ends with ROLLBACK.
#[tokio::test]
async fn a_view_and_a_value_inside_a_transaction_block_in_one_pipeline() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &["BEGIN", "SAVEPOINT a"]).await);
    let mut pipeline = vec![
        build::parse("", VIEW),
        build::bind("", "", &[]),
        build::execute(""),
    ];
    pipeline.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    all_ran(&steps(&mut c, &["ROLLBACK TO SAVEPOINT a", "COMMIT"]).await);
    still_in_step(&mut c).await;
}

// --- The result side --------------------------------------------------------------------------

/// A statement without values reading the new view behind the change, before the Sync: the
/// client receives alice opened, or a refusal, never the envelope.
#[tokio::test]
async fn a_read_of_the_new_view_behind_the_change_gets_the_value_opened() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = vec![
        build::parse("", VIEW),
        build::bind("", "", &[]),
        build::execute(""),
    ];
    pipeline.extend(run("select id, body from notes", &[]));
    let msgs = exchange(&mut c, &pipeline).await;
    if error_codes(&msgs).is_empty() {
        assert_eq!(
            data_rows(&msgs),
            vec![vec![Some("1".to_owned()), Some(SECRET.to_owned())]],
            "{msgs:?}"
        );
    }
    still_in_step(&mut c).await;
}
