//! Attacks on SQL `EXECUTE` with arguments (its literals reach the server with no Bind
//! pgshroud could seal) and on what ends a transaction that changed the schema: texts the
//! proxy reads otherwise than the server, the one namespace SQL and the protocol share, names
//! the server truncates or folds, server-side code that runs EXECUTE, and a failed block
//! ended by COMMIT. Attacks that fail are kept as tests too.

use super::*;

/// A statement prepared by Parse whose `$1` pgshroud seals at each Bind (an SQL EXECUTE of it
/// would bind a literal unsealed).
const BY_EMAIL: &str = "select id from customers where email = $1";

/// A session with alice stored and `by_email` prepared by Parse.
async fn with_by_email(proxy: &TestProxy, db: &str) -> RawClient {
    let mut c = session(proxy, db).await;
    let msgs = exchange(&mut c, &[build::parse("by_email", BY_EMAIL), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    c
}

/// A simple Query of raw bytes (text in another client_encoding).
fn query_bytes(text: &[u8]) -> Vec<u8> {
    message(b'Q', &[text, b"\0"].concat())
}

/// An unnamed Parse of raw bytes, bound without parameters, executed, synced.
fn run_bytes(text: &[u8]) -> Vec<Vec<u8>> {
    vec![
        message(b'P', &[b"\0", text, b"\0\0\0"].concat()),
        build::bind("", "", &[]),
        build::execute(""),
        build::sync(),
    ]
}

/// Refused by the proxy or the server: the statement did not run with a plaintext value.
fn refused(msgs: &[Msg], what: &str) {
    sealed_or_refused(msgs);
    assert!(!error_codes(msgs).is_empty(), "{what}: ran: {msgs:?}");
}

// --- Texts the proxy reads otherwise than the server ---------------------------------------

/// With standard_conforming_strings off, `'\'` opens a string for the server and closes one
/// for PostgreSQL's grammar as pgshroud runs it: an EXECUTE the server runs is, for the
/// grammar, inside a string or a syntax error (which pgshroud took for "not run by the server
/// either"). Refused now, as a simple Query and in a Parse.
#[tokio::test]
async fn execute_hidden_by_backslash_escapes() {
    let (db, _dir, proxy) = setup().await;
    let mut c = with_by_email(&proxy, &db).await;
    all_ran(&steps(&mut c, &["SET standard_conforming_strings = off"]).await);
    let hidden = format!(r"select '\' ; ' ; EXECUTE by_email('{SECRET}'); select '\' ; '");
    let msgs = exchange(&mut c, &[build::query(&hidden)]).await;
    refused(&msgs, &hidden);
    let single = format!(r"EXECUTE by_email('{SECRET}\'')");
    let msgs = exchange(&mut c, &run(&single, &[])).await;
    refused(&msgs, &single);
    let msgs = exchange(&mut c, &[build::query(&single)]).await;
    refused(&msgs, &single);
    all_ran(&steps(&mut c, &["SET standard_conforming_strings = on"]).await);
    still_in_step(&mut c).await;
}

/// In client_encoding LATIN1 a text that is not UTF-8 (`é` as the byte 0xE9, in a comment)
/// was forwarded unread: its EXECUTE with a value was not looked at. Refused now.
#[tokio::test]
async fn execute_in_a_text_of_another_client_encoding() {
    let (db, _dir, proxy) = setup().await;
    let mut c = with_by_email(&proxy, &db).await;
    all_ran(&steps(&mut c, &["SET client_encoding = 'LATIN1'"]).await);
    let text = [
        format!("EXECUTE by_email('{SECRET}') -- caf").as_bytes(),
        b"\xe9",
    ]
    .concat();
    let msgs = exchange(&mut c, &[query_bytes(&text)]).await;
    refused(&msgs, "simple query");
    let msgs = exchange(&mut c, &run_bytes(&text)).await;
    refused(&msgs, "parse");
    all_ran(&steps(&mut c, &["SET client_encoding = 'UTF8'"]).await);
    still_in_step(&mut c).await;
}

/// A name that reads as UTF-8 but means another name to the server in LATIN1: `"é"` was
/// prepared in SQL under UTF8 (the proxy holds `é` as SQL-prepared, now); `"Ã©"` (the UTF-8
/// bytes of `é` read as LATIN1) was prepared by Parse with a protected `$1`. In LATIN1,
/// `EXECUTE "é"(...)` sent as UTF-8 bytes is `"é"` to the proxy and `"Ã©"` to the server.
/// Refused now: the proxy does not read EXECUTE in a text it reads otherwise than the server.
#[tokio::test]
async fn execute_of_a_name_converted_by_another_client_encoding() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &["PREPARE \"\u{e9}\"(int) AS SELECT $1 + 1"]).await);
    let msgs = exchange(
        &mut c,
        &[build::parse("\u{c3}\u{a9}", BY_EMAIL), build::sync()],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_ran(&steps(&mut c, &["SET client_encoding = 'LATIN1'"]).await);
    let execute = format!("EXECUTE \"\u{e9}\"('{SECRET}')");
    let msgs = exchange(&mut c, &[build::query(&execute)]).await;
    refused(&msgs, &execute);
    let msgs = exchange(&mut c, &run(&execute, &[])).await;
    refused(&msgs, &execute);
    all_ran(&steps(&mut c, &["SET client_encoding = 'UTF8'"]).await);
    // In UTF8 the SQL-prepared one runs with its argument.
    let msgs = exchange(&mut c, &[build::query("EXECUTE \"\u{e9}\"(1)")]).await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("2".to_owned())]],
        "{msgs:?}"
    );
    still_in_step(&mut c).await;
}

// --- Server-side code runs EXECUTE ----------------------------------------------------------

/// plpgsql's dynamic SQL runs SQL `EXECUTE` of the session's prepared statements (checked on
/// PostgreSQL 15: `EXECUTE format('EXECUTE by_email(%L)', t) INTO n` works), so server-side
/// code could run the Parse-prepared `by_email` with a plaintext argument. A DO block and a
/// function made by the app role are refused (code that may run SQL text it builds).
#[tokio::test]
async fn a_statement_prepared_by_parse_run_by_plpgsql_dynamic_execute() {
    let (db, _dir, proxy) = setup().await;
    let mut c = with_by_email(&proxy, &db).await;
    let made = exchange(&mut c, &[build::query(LOOK)]).await;
    refused(&made, LOOK);
    let block = format!("DO $$BEGIN EXECUTE 'EXECUTE by_email(''{SECRET}'')'; END$$");
    let msgs = exchange(&mut c, &[build::query(&block)]).await;
    refused(&msgs, &block);
    still_in_step(&mut c).await;
}

/// A function that runs its argument as SQL, made by the owner (a helper a DBA left behind):
/// the app role calls it with `EXECUTE by_email('...')` in a string literal.
#[tokio::test]
#[ignore = "hole: an existing function that runs SQL text (plpgsql EXECUTE of its argument, made by another role) runs SQL EXECUTE of a statement the session prepared by Parse with a protected $1, binding the plaintext literal no Bind seals; pgshroud checks SQL handed to such functions only for roles whose opaque paths are closed (policy::check_sql_text), and sees no ExecuteStmt in a string"]
async fn a_statement_prepared_by_parse_run_by_an_owners_function() {
    let (db, _dir, proxy) = setup().await;
    let run_sql = "CREATE FUNCTION public.run_sql(t text) RETURNS int LANGUAGE plpgsql AS \
        $$DECLARE n int; BEGIN EXECUTE t INTO n; RETURN n; END$$";
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(run_sql)
        .await
        .expect("owner's function");
    let mut c = with_by_email(&proxy, &db).await;
    let call = format!("SELECT run_sql('EXECUTE by_email(''{SECRET}'')')");
    let msgs = exchange(&mut c, &[build::query(&call)]).await;
    sealed_or_refused(&msgs);
    let msgs = exchange(&mut c, &run(&call, &[])).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c).await;
}

const LOOK: &str = "CREATE FUNCTION look(t text) RETURNS int LANGUAGE plpgsql AS \
    $$DECLARE n int; BEGIN EXECUTE format('EXECUTE by_email(%L)', t) INTO n; RETURN n; END$$";

// --- One namespace for SQL and the protocol -------------------------------------------------

/// A name prepared in SQL, closed by the protocol's Close and prepared again by Parse with a
/// protected `$1`; or deallocated in SQL and prepared by Parse: EXECUTE with a value is
/// refused (the tracker holds the Parse).
#[tokio::test]
async fn a_sql_name_closed_by_protocol_or_deallocated_then_parsed() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    for (name, drop) in [
        ("p", build::close_statement("p")),
        ("q", build::query("DEALLOCATE q")),
        ("r", build::query("DISCARD ALL")),
        ("s", build::query("DEALLOCATE ALL")),
    ] {
        let prepare =
            format!("PREPARE {name}(bytea) AS SELECT id FROM public.leads WHERE email = $1");
        all_ran(&steps(&mut c, &[&prepare]).await);
        let msgs = match drop[0] {
            b'Q' => exchange(&mut c, &[drop]).await,
            _ => exchange(&mut c, &[drop, build::sync()]).await,
        };
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
        let msgs = exchange(&mut c, &[build::parse(name, BY_EMAIL), build::sync()]).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
        let execute = format!("EXECUTE {name}('{SECRET}')");
        let msgs = exchange(&mut c, &[build::query(&execute)]).await;
        refused(&msgs, &execute);
        // Bound with the value, it is sealed.
        let msgs = exchange(
            &mut c,
            &[
                build::bind("", name, &[SECRET]),
                build::execute(""),
                build::sync(),
            ],
        )
        .await;
        assert_eq!(
            data_rows(&msgs),
            vec![vec![Some("1".to_owned())]],
            "{msgs:?}"
        );
        let msgs = exchange(&mut c, &[build::close_statement(name), build::sync()]).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    }
    still_in_step(&mut c).await;
}

/// The server truncates SQL names to 63 bytes (the protocol's names are not truncated):
/// prepared in SQL under a 70-byte name, closed by the protocol under its 63-byte form and
/// prepared again by Parse with a protected `$1`, the 70-byte EXECUTE is refused. A driver's
/// own use (PREPARE long, EXECUTE long or its truncated form, a folded case) runs.
#[tokio::test]
async fn names_truncated_and_folded_as_the_server_does() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let long = "n".repeat(70);
    let short = &long[..63];
    let prepare = format!("PREPARE {long}(int) AS SELECT $1 + 1");
    all_ran(&steps(&mut c, &[&prepare, "PREPARE Folded(int) AS SELECT $1 + 2"]).await);
    for (execute, want) in [
        (format!("EXECUTE {long}(1)"), "2"),
        (format!("EXECUTE {short}(1)"), "2"),
        ("EXECUTE FOLDED(1)".to_owned(), "3"),
        ("EXECUTE \"folded\"(1)".to_owned(), "3"),
    ] {
        let msgs = exchange(&mut c, &[build::query(&execute)]).await;
        assert_eq!(
            data_rows(&msgs),
            vec![vec![Some(want.to_owned())]],
            "{execute}: {msgs:?}"
        );
    }
    let msgs = exchange(&mut c, &[build::close_statement(short), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &[build::parse(short, BY_EMAIL), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    for execute in [
        format!("EXECUTE {long}('{SECRET}')"),
        format!("EXECUTE {short}('{SECRET}')"),
        format!("EXECUTE U&\"{}\\006e\"('{SECRET}')", &short[..62]),
    ] {
        let msgs = exchange(&mut c, &[build::query(&execute)]).await;
        refused(&msgs, &execute);
    }
    // A quoted upper-case name is another name: the folded one's EXECUTE is the server's.
    let msgs = exchange(&mut c, &[build::query("EXECUTE \"Folded\"(1)")]).await;
    assert_eq!(error_codes(&msgs).len(), 1, "{msgs:?}");
    still_in_step(&mut c).await;
}

/// A driver's use that must run: PREPARE and EXECUTE in one query string, EXECUTE after a
/// DEALLOCATE ALL and a PREPARE again, and `U&` or quoted spellings of the same name.
#[tokio::test]
async fn a_drivers_own_prepare_and_execute_run() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let one = "PREPARE pa(int) AS SELECT $1 * 10; EXECUTE pa(4)";
    let msgs = exchange(&mut c, &[build::query(one)]).await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("40".to_owned())]],
        "{msgs:?}"
    );
    all_ran(
        &steps(
            &mut c,
            &["DEALLOCATE ALL", "PREPARE pa(int) AS SELECT $1 * 100"],
        )
        .await,
    );
    for execute in [
        "EXECUTE pa(2)",
        "EXECUTE U&\"p\\0061\"(2)",
        "EXECUTE \"pa\"(2)",
    ] {
        let msgs = exchange(&mut c, &[build::query(execute)]).await;
        assert_eq!(
            data_rows(&msgs),
            vec![vec![Some("200".to_owned())]],
            "{execute}: {msgs:?}"
        );
    }
    still_in_step(&mut c).await;
}

// --- A failed block ended by COMMIT, END or PREPARE TRANSACTION -----------------------------

/// In a transaction that dropped the view over the protected table, a failed statement: the
/// COMMIT (END, PREPARE TRANSACTION) that ends the failed block rolls it back, and the view
/// is back. A value behind it in the same query string, or in the same pipeline (the COMMIT
/// parsed then, or prepared earlier and bound now), was planned against the catalog without
/// the view. Sealed or refused now.
#[tokio::test]
async fn a_failed_block_ended_by_commit_with_a_value_behind_it() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &[VIEW]).await);
    let msgs = exchange(&mut c, &[build::parse("ending", "COMMIT"), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let literal = format!("SELECT id FROM notes WHERE body = '{SECRET}'");
    for end in [
        "COMMIT",
        "END",
        "PREPARE TRANSACTION 'x'",
        "named",
        "COMMIT by Parse",
    ] {
        all_ran(&steps(&mut c, &["BEGIN", "DROP VIEW notes"]).await);
        let failed = exchange(&mut c, &[build::query("SELECT 1/0")]).await;
        assert_eq!(error_codes(&failed), ["22012"], "{failed:?}");
        let msgs = match end {
            "named" => {
                let mut msgs = vec![build::bind("", "ending", &[]), build::execute("")];
                msgs.extend(run(LOOKUP, &[SECRET]));
                exchange(&mut c, &msgs).await
            }
            "COMMIT by Parse" => {
                let mut msgs = run("COMMIT", &[]);
                msgs.pop();
                msgs.extend(run(LOOKUP, &[SECRET]));
                exchange(&mut c, &msgs).await
            }
            end => exchange(&mut c, &[build::query(&format!("{end}; {literal}"))]).await,
        };
        sealed_or_refused(&msgs);
        exchange(&mut c, &[build::query("ROLLBACK")]).await;
        // The view is back: the proxy knows it again.
        let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
        assert_eq!(
            data_rows(&msgs),
            vec![vec![Some("1".to_owned())]],
            "{end}: {msgs:?}"
        );
    }
    still_in_step(&mut c).await;
}

// --- PostgreSQL's grammar within limits ----------------------------------------------------

/// A left-deep chain of set operations whose arms are lists: the lists' commas hid the chain
/// from the nesting bound (3 for any length), so the text was read inline on the session's
/// stack, which 5,000 arms overflowed, aborting the proxy (every session). Refused as too
/// deep (54001, or 42601 from the identity reading, which says why) or run now, as a simple Query and in a Parse, with EXECUTE in a comment (the
/// EXECUTE check reads it) or naming a protected table (the analysis reads it).
#[tokio::test]
async fn a_set_operation_chain_across_lists_leaves_the_proxy_up() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let arms = " UNION SELECT 1, 1".repeat(5_000);
    for text in [
        format!("SELECT 1, 1{arms} -- execute"),
        format!("SELECT id, email FROM customers{arms}"),
    ] {
        for msgs in [
            exchange(&mut c, &[build::query(&text)]).await,
            exchange(&mut c, &run(&text, &[])).await,
        ] {
            let codes = error_codes(&msgs);
            assert!(
                codes.is_empty() || codes == ["54001"] || codes == ["42601"],
                "{:.40}: {:?}",
                text,
                msgs.iter()
                    .filter_map(|m| m.field(b'M'))
                    .collect::<Vec<_>>()
            );
        }
    }
    still_in_step(&mut c).await;
}

// --- EXECUTE read at Parse, run at a later Bind ----------------------------------------------

/// `EXECUTE by_body('...')` prepared by Parse while `by_body` (SQL-prepared over the plain
/// `notes`) was current, bound after the view shadowing `notes` was made: the server analyses
/// `by_body` again against the view, and the literal would be compared with the protected
/// column. The Bind is refused (or the value sealed).
#[tokio::test]
async fn an_execute_parsed_before_the_view_bound_after_it() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(
        &steps(
            &mut c,
            &["PREPARE by_body(bytea) AS SELECT id FROM notes WHERE body = $1"],
        )
        .await,
    );
    let execute = format!("EXECUTE by_body('{SECRET}')");
    let msgs = exchange(&mut c, &[build::parse("ex", &execute), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_ran(&steps(&mut c, &[VIEW]).await);
    let msgs = exchange(
        &mut c,
        &[
            build::bind("", "ex", &[]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    refused(&msgs, "bound after the view");
    still_in_step(&mut c).await;
}

/// Pipelined simple Queries, sent in one write before any answer: `p` prepared again over the
/// plain `notes` (the record still holds the old `p` under the current epoch), the view, then
/// EXECUTE with the value. Refused: the EXECUTE waits for the look-up after the view.
#[tokio::test]
async fn prepare_again_view_and_execute_pipelined_in_one_write() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(
        &steps(
            &mut c,
            &["PREPARE p(bytea) AS SELECT id FROM public.leads WHERE email = $1"],
        )
        .await,
    );
    let execute = format!("EXECUTE p('{SECRET}')");
    let msgs = exchange(
        &mut c,
        &[
            build::query("DEALLOCATE p; PREPARE p(bytea) AS SELECT id FROM notes WHERE body = $1"),
            build::query(VIEW),
            build::query(&execute),
        ],
    )
    .await;
    refused(&msgs, &execute);
    assert_eq!(error_codes(&msgs), ["0A000"], "only the EXECUTE: {msgs:?}");
    // The view was made, and the proxy knows it.
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("1".to_owned())]],
        "{msgs:?}"
    );
    still_in_step(&mut c).await;
}

/// EXECUTE two levels down: `EXPLAIN ANALYZE CREATE TABLE ... AS EXECUTE` (PostgreSQL's
/// grammar explains a CREATE TABLE AS EXECUTE, and ANALYZE runs it). Refused.
#[tokio::test]
async fn execute_inside_create_table_as_inside_explain() {
    let (db, _dir, proxy) = setup().await;
    let mut c = with_by_email(&proxy, &db).await;
    for (i, explain) in ["EXPLAIN ANALYZE", "EXPLAIN (ANALYZE, COSTS OFF)"]
        .iter()
        .enumerate()
    {
        let text = format!("{explain} CREATE TEMP TABLE found{i} AS EXECUTE by_email('{SECRET}')");
        let msgs = exchange(&mut c, &[build::query(&text)]).await;
        refused(&msgs, &text);
        let msgs = exchange(&mut c, &run(&text, &[])).await;
        refused(&msgs, &text);
    }
    still_in_step(&mut c).await;
}

/// In a transaction that changed the schema, `END`, `COMMIT` or `PREPARE` as words of a
/// statement that ends nothing (`CASE ... END`, a column `commit_id`) neither refuse it nor
/// what follows it in the pipeline: only transaction control counts (PostgreSQL's grammar).
#[tokio::test]
async fn end_and_commit_as_words_in_a_schema_changing_transaction_run() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &["BEGIN", VIEW]).await);
    let case = "select case when $1::int = 1 then 'one' end as commit_id";
    let mut msgs = vec![
        build::parse("case_end", case),
        build::bind("", "case_end", &["1"]),
        build::execute(""),
    ];
    msgs.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &msgs).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("one".to_owned())], vec![Some("1".to_owned())]],
        "{msgs:?}"
    );
    // Bound again later (the named statement's path).
    let mut msgs = vec![build::bind("", "case_end", &["1"]), build::execute("")];
    msgs.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &msgs).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_ran(&steps(&mut c, &["COMMIT"]).await);
    still_in_step(&mut c).await;
}

/// `EXECUTE p('alice@...')` Parsed while `p` was SQL-prepared (allowed), then `p` closed and
/// Parsed again by the protocol with a protected `$1`, then the EXECUTE bound: it would run
/// the new `p` with the literal unsealed. Checked again at each Bind: refused, in separate
/// pipelines and in one.
#[tokio::test]
async fn an_execute_parsed_earlier_bound_after_its_name_was_parsed_again() {
    for one_pipeline in [false, true] {
        let (db, _dir, proxy) = setup().await;
        let mut c = session(&proxy, &db).await;
        all_ran(&steps(&mut c, &["PREPARE p AS SELECT $1::text"]).await);
        let execute = format!("EXECUTE p('{SECRET}')");
        let parse_ex = [build::parse("ex", &execute), build::sync()];
        assert!(error_codes(&exchange(&mut c, &parse_ex).await).is_empty());
        let swap = [
            build::close_statement("p"),
            build::parse("p", BY_EMAIL),
            build::sync(),
        ];
        let run_ex = [
            build::bind("", "ex", &[]),
            build::execute(""),
            build::sync(),
        ];
        let msgs = if one_pipeline {
            exchange(&mut c, &[swap.as_slice(), run_ex.as_slice()].concat()).await
        } else {
            assert!(error_codes(&exchange(&mut c, &swap).await).is_empty());
            exchange(&mut c, &run_ex).await
        };
        sealed_or_refused(&msgs);
        assert!(error_codes(&msgs).contains(&"0A000".to_owned()), "{msgs:?}");
        still_in_step(&mut c).await;
    }
}

/// PostgreSQL tells statement and portal names apart by their first 63 bytes only: a Close
/// and a Parse of a 70-byte name would act on the 63-byte statement a SQL PREPARE made while
/// pgshroud recorded another name. Longer names are refused (42622); the session goes on and
/// the SQL-prepared statement is still the one EXECUTE runs.
#[tokio::test]
async fn protocol_names_longer_than_postgresql_keys_are_refused() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let short = "n".repeat(63);
    let long = "n".repeat(70);
    all_ran(&steps(&mut c, &[&format!("PREPARE {short} AS SELECT $1::text")]).await);
    let msgs = exchange(
        &mut c,
        &[
            build::close_statement(&long),
            build::parse(&long, BY_EMAIL),
            build::sync(),
        ],
    )
    .await;
    assert_eq!(error_codes(&msgs), ["42622"], "{msgs:?}");
    let msgs = exchange(&mut c, &[build::query(&format!("EXECUTE {short}('x')"))]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("x".to_owned())]]);
    still_in_step(&mut c).await;
}
