//! Attacks on the catalog pgshroud plans against: a schema change made in the session that
//! gives a name a protected column pgshroud does not know of (yet), followed by a statement
//! that carries a value compared with or written to that column. Every value must reach the
//! server sealed, or the statement be refused; the session must stay in step.
//! As a non-superuser, end to end against PostgreSQL (see pipeline_schema_changes.rs for the
//! plain `CREATE TEMP VIEW` in one pipeline or query string).

#[path = "schema_change_attacks/execute.rs"]
mod execute;
#[path = "schema_change_attacks/later.rs"]
mod later;
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
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("0".to_owned())]],
        "{msgs:?}"
    );
    let msgs = exchange(
        c,
        &run("select id from customers where email = $1", &[SECRET]),
    )
    .await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("1".to_owned())]],
        "{msgs:?}"
    );
}

/// `setup_steps` as separate queries (the one at `refused`, if any, must be refused by the
/// proxy, the others run), then `LOOKUP` over `notes` with alice, by Parse/Bind and as a
/// literal: sealed or refused when the attack made its view; when the proxy refused it,
/// `notes` is still the plain table (alice is not there).
async fn view_behind(setup_steps: &[&str], refused: Option<usize>) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let answers = steps(&mut c, setup_steps).await;
    for (i, msgs) in answers.iter().enumerate() {
        match Some(i) == refused {
            true => assert!(!error_codes(msgs).is_empty(), "not refused: {msgs:?}"),
            false => assert!(error_codes(msgs).is_empty(), "{msgs:?}"),
        }
    }
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    let text = format!("SELECT id FROM notes WHERE body = '{SECRET}'");
    let literal = exchange(&mut c, &[build::query(&text)]).await;
    match refused {
        None => {
            sealed_or_refused(&msgs);
            sealed_or_refused(&literal);
        }
        Some(_) => {
            assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
            assert!(data_rows(&msgs).is_empty(), "{msgs:?}");
        }
    }
    still_in_step(&mut c).await;
}

// --- Schema changes PostgreSQL runs inside code: not DDL to the planner -------------------

/// A view over the protected table, mapped by the proxy once made (a schema change, looked
/// up): code below makes `notes` over it without naming customers.
const HIDDEN: &str = "CREATE TEMP VIEW hidden AS SELECT id, email AS secret FROM customers";
const OVER_HIDDEN: &str = "CREATE TEMP VIEW notes AS SELECT id, secret AS body FROM hidden";

/// A `DO` block naming the protected table is refused (its body is not read).
#[tokio::test]
async fn a_do_block_making_a_view() {
    view_behind(&[&format!("DO $$BEGIN {VIEW}; END$$")], Some(0)).await;
}

/// A `DO` block whose static SQL makes `notes` over a view of the protected table (naming no
/// protected table): the mapped view counts as protected, the DO is refused (not read).
#[tokio::test]
async fn a_do_block_making_a_view_over_a_mapped_view() {
    view_behind(
        &[HIDDEN, &format!("DO $$BEGIN {OVER_HIDDEN}; END$$")],
        Some(1),
    )
    .await;
}

/// A procedure whose body names the protected table is refused at CREATE (not read).
#[tokio::test]
async fn a_procedure_called_making_a_view() {
    view_behind(
        &[&format!(
            "CREATE PROCEDURE make_notes() LANGUAGE plpgsql AS $$BEGIN {VIEW}; END$$"
        )],
        Some(0),
    )
    .await;
}

/// A plpgsql function that would make the view when called from a SELECT (no schema change
/// to the planner): refused at CREATE, since its body names the protected table.
#[tokio::test]
async fn a_function_called_in_a_select_making_a_view() {
    view_behind(&[&make_notes_function(VIEW)], Some(0)).await;
}

/// The same through a view already mapped (the body names no protected table, only the view).
#[tokio::test]
async fn a_function_called_in_a_select_making_a_view_over_a_mapped_view() {
    view_behind(&[HIDDEN, &make_notes_function(OVER_HIDDEN)], Some(1)).await;
}

fn make_notes_function(body: &str) -> String {
    format!("CREATE FUNCTION make_notes() RETURNS void LANGUAGE plpgsql AS $$BEGIN {body}; END$$")
}

/// The function called in the same query string as the statement with the value.
#[tokio::test]
async fn a_function_making_a_view_in_the_same_query_string() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let made = steps(&mut c, &[&make_notes_function(VIEW)]).await;
    assert!(!error_codes(&made[0]).is_empty(), "{made:?}");
    let text = format!("SELECT make_notes(); SELECT id FROM notes WHERE body = '{SECRET}'");
    let msgs = exchange(&mut c, &[build::query(&text)]).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c).await;
}

// --- Schema changes the planner sees -------------------------------------------------------

/// `CREATE SCHEMA ... CREATE VIEW` over the protected table: refused (not read).
#[tokio::test]
async fn a_view_made_inside_create_schema_then_put_on_the_path() {
    view_behind(
        &[
            "CREATE SCHEMA mine CREATE VIEW notes AS SELECT id, email AS body FROM public.customers",
            "SET search_path = mine, public",
        ],
        Some(0),
    )
    .await;
}

/// A view over a protected table renamed onto the plain name, as its own query.
#[tokio::test]
async fn a_view_renamed_onto_a_plain_name() {
    view_behind(
        &[
            "CREATE TEMP VIEW hidden AS SELECT id, email AS body FROM customers",
            "ALTER VIEW hidden RENAME TO notes",
        ],
        Some(1),
    )
    .await;
}

/// A view moved into the schema first on the path (`ALTER VIEW ... SET SCHEMA`): refused
/// as above.
#[tokio::test]
async fn a_view_moved_into_a_schema_first_on_the_path() {
    view_behind(
        &[
            "CREATE SCHEMA mine",
            "SET search_path = mine, public",
            "CREATE VIEW public.hidden AS SELECT id, email AS body FROM customers",
            "ALTER VIEW public.hidden SET SCHEMA mine",
        ],
        Some(3),
    )
    .await;
}

/// A view over a view of the protected table.
#[tokio::test]
async fn a_view_over_a_view_of_the_protected_table() {
    view_behind(&[HIDDEN, OVER_HIDDEN], None).await;
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

/// A copy of the protected column into a temporary table (`CREATE TEMP TABLE ... AS`) would
/// hold envelopes under a name the rules do not cover, and values compared with it would go
/// up unsealed: refused, as `INSERT INTO plain SELECT protected ...` is.
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
    assert!(
        made.iter().any(|a| !error_codes(a).is_empty()),
        "the copy was made: {made:?}"
    );
    sealed_or_refused(&msgs);
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
/// the protected `crm.leads`. Each of `moves` runs (the one at `refused`, if any, is refused
/// by the proxy), then a value compared with `leads.email`: sealed or refused once the path
/// moved.
async fn path_moved_by(moves: &[&str], refused: Option<usize>) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let stored = format!("INSERT INTO crm.leads (id, email) VALUES (1, '{SECRET}')");
    all_ran(&steps(&mut c, &[&stored]).await);
    let answers = steps(&mut c, moves).await;
    for (i, msgs) in answers.iter().enumerate() {
        match Some(i) == refused {
            true => assert!(!error_codes(msgs).is_empty(), "not refused: {msgs:?}"),
            false => assert!(error_codes(msgs).is_empty(), "{msgs:?}"),
        }
    }
    let msgs = exchange(&mut c, &run("select current_schemas(false)::text", &[])).await;
    let moved = data_rows(&msgs) == vec![vec![Some("{crm,public}".to_owned())]];
    // The attack moved the path on the server unless the proxy refused it.
    assert_eq!(moved, refused.is_none(), "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &run("select id from leads where email = $1", &[SECRET]),
    )
    .await;
    if moved {
        sealed_or_refused(&msgs);
    }
    exchange(&mut c, &[build::query("RESET search_path")]).await;
    still_in_step(&mut c).await;
}

/// A SQL function that calls set_config is refused at CREATE (code that could change
/// pgshroud's identity settings).
#[tokio::test]
async fn the_path_moved_by_a_function_called_in_a_select() {
    path_moved_by(
        &["CREATE FUNCTION to_crm() RETURNS text LANGUAGE sql \
           AS $$SELECT set_config('search_path', 'crm, public', false)$$"],
        Some(0),
    )
    .await;
}

/// A view whose column calls set_config, read with a text that names neither: the path
/// moves, and the value for crm.leads is still sealed or refused.
#[tokio::test]
async fn the_path_moved_by_reading_a_view() {
    path_moved_by(
        &[
            "CREATE TEMP VIEW pathway AS SELECT set_config('search_path', 'crm, public', false) AS p",
            "SELECT * FROM pathway",
        ],
        None,
    )
    .await;
}

/// A statement prepared in SQL that calls set_config, run by EXECUTE.
#[tokio::test]
async fn the_path_moved_by_execute_of_a_prepared_statement() {
    path_moved_by(
        &[
            "PREPARE to_crm AS SELECT set_config('search_path', 'crm, public', false)",
            "EXECUTE to_crm",
        ],
        None,
    )
    .await;
}

// --- The result side --------------------------------------------------------------------------

/// A statement without values reading the new view behind the change, before the Sync, as
/// drivers send it (Describe of the portal before Execute): the view is not mapped yet, so
/// its column meets the read backstop: the client receives the stored envelope as it is
/// (never plaintext: the proxy opens nothing it cannot place), or alice opened, or a refusal.
#[tokio::test]
async fn a_read_of_the_new_view_behind_the_change_gets_the_value_opened() {
    read_behind_the_change(true).await;
}

/// The same without a Describe.
#[tokio::test]
async fn a_read_of_the_new_view_behind_the_change_without_describe() {
    read_behind_the_change(false).await;
}

async fn read_behind_the_change(describe: bool) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = vec![
        build::parse("", VIEW),
        build::bind("", "", &[]),
        build::execute(""),
        build::parse("", "select id, body from notes"),
        build::bind("", "", &[]),
    ];
    if describe {
        pipeline.push(message(b'D', b"P\0"));
    }
    pipeline.extend([build::execute(""), build::sync()]);
    let msgs = exchange(&mut c, &pipeline).await;
    if error_codes(&msgs).is_empty() {
        let envelope = stored(&db, "SELECT email FROM customers").await.concat();
        let hex: String = envelope.iter().map(|b| format!("{b:02x}")).collect();
        let rows = data_rows(&msgs);
        assert!(
            rows == vec![vec![Some("1".to_owned()), Some(SECRET.to_owned())]]
                || rows == vec![vec![Some("1".to_owned()), Some(format!("\\x{hex}"))]],
            "{msgs:?}"
        );
    }
    still_in_step(&mut c).await;
}

// --- Protocol shapes -------------------------------------------------------------------------

/// The view's Execute ended by Flush (psycopg's pipeline mode), then the statement with the
/// value and the Sync: refused, the session in step.
#[tokio::test]
async fn a_flush_between_the_change_and_the_value() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = vec![
        build::parse("", VIEW),
        build::bind("", "", &[]),
        build::execute(""),
        message(b'H', b""),
    ];
    pipeline.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    still_in_step(&mut c).await;
}

/// An error before the change in the same pipeline: the server skips the rest up to the
/// Sync; the proxy's refusal of the value behind the change does not put the session out of
/// step, and nothing of the pipeline ran.
#[tokio::test]
async fn an_error_before_the_change_in_the_pipeline() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let mut pipeline = vec![
        build::parse("", "SELECT 1/0"),
        build::bind("", "", &[]),
        build::execute(""),
        build::parse("", VIEW),
        build::bind("", "", &[]),
        build::execute(""),
    ];
    pipeline.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &pipeline).await;
    sealed_or_refused(&msgs);
    assert_eq!(
        data_rows(&msgs),
        Vec::<Vec<Option<String>>>::new(),
        "{msgs:?}"
    );
    let views = stored(
        &db,
        "SELECT count(*)::text::bytea FROM pg_views WHERE viewname = 'notes'",
    )
    .await;
    assert_eq!(views, vec![b"0".to_vec()]);
    still_in_step(&mut c).await;
}
