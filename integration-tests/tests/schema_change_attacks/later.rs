//! Attacks of schema_change_attacks.rs across time: statements prepared before a change and
//! run after it, and changes undone by a rollback.

use super::*;

/// The proxy has read the catalog since the view was dropped: `notes` is the plain (empty)
/// table to it and to the server.
async fn notes_is_the_plain_table(c: &mut RawClient) {
    let msgs = exchange(c, &run("select count(*) from notes", &[])).await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("0".to_owned())]],
        "{msgs:?}"
    );
}
// --- Prepared before the change, run after ------------------------------------------------

/// A statement prepared in SQL while `notes` was the plain table, run by EXECUTE with a value
/// after the view shadowing it was made (PostgreSQL analyses it again against the view): the
/// EXECUTE is refused (0A000) as a simple Query, in a Parse, under EXPLAIN ANALYZE and in
/// CREATE TABLE AS; prepared again, the proxy reads it against the view and refuses its `$n`
/// at PREPARE. A statement prepared after the change runs with its arguments.
#[tokio::test]
async fn an_sql_prepared_statement_executed_after_the_view() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(
        &steps(
            &mut c,
            &[
                "PREPARE by_body(bytea) AS SELECT id FROM notes WHERE body = $1",
                "PREPARE by_id(int) AS SELECT id FROM notes WHERE id = $1",
                VIEW,
            ],
        )
        .await,
    );
    let execute = format!("EXECUTE by_body('{SECRET}')");
    for text in [
        execute.clone(),
        format!("EXPLAIN ANALYZE {execute}"),
        format!("CREATE TEMP TABLE found AS {execute}"),
    ] {
        let msgs = exchange(&mut c, &[build::query(&text)]).await;
        sealed_or_refused(&msgs);
        assert!(!error_codes(&msgs).is_empty(), "{text}: {msgs:?}");
    }
    let msgs = exchange(&mut c, &run(&execute, &[])).await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    let msgs = exchange(&mut c, &[build::query(&execute)]).await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.field(b'M').unwrap_or_default().contains("DEALLOCATE")),
        "says what to do: {msgs:?}"
    );
    // Without arguments there is no value to seal.
    let msgs = exchange(&mut c, &[build::query("DEALLOCATE by_body")]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &[build::query(
            "PREPARE by_body(bytea) AS SELECT id FROM notes WHERE body = $1",
        )],
    )
    .await;
    assert!(!error_codes(&msgs).is_empty(), "{msgs:?}");
    all_ran(
        &steps(
            &mut c,
            &["PREPARE by_id_now(int) AS SELECT id FROM notes WHERE id = $1"],
        )
        .await,
    );
    let msgs = exchange(&mut c, &[build::query("EXECUTE by_id_now(1)")]).await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("1".to_owned())]],
        "{msgs:?}"
    );
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

/// The view known to the proxy, dropped inside a transaction block (the proxy looks up:
/// `notes` is the plain table again), and the drop undone by `undo`: the view is back, and a
/// value compared with its column must be sealed. `pipelined` sends the undo and the value in
/// one pipeline without a Sync between.
async fn drop_undone_by(undo: &str, pipelined: bool) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &[VIEW, "BEGIN", "SAVEPOINT a", "DROP VIEW notes"]).await);
    // The proxy has read the catalog since the drop: `notes` is the plain table to it.
    notes_is_the_plain_table(&mut c).await;
    let msgs = match pipelined {
        true => {
            let mut pipeline = vec![
                build::parse("", undo),
                build::bind("", "", &[]),
                build::execute(""),
            ];
            pipeline.extend(run(LOOKUP, &[SECRET]));
            exchange(&mut c, &pipeline).await
        }
        false => {
            all_ran(&steps(&mut c, &[undo]).await);
            exchange(&mut c, &run(LOOKUP, &[SECRET])).await
        }
    };
    sealed_or_refused(&msgs);
    exchange(&mut c, &[build::query("ROLLBACK")]).await;
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    assert_eq!(
        data_rows(&msgs),
        vec![vec![Some("1".to_owned())]],
        "{msgs:?}"
    );
    still_in_step(&mut c).await;
}

#[tokio::test]
async fn a_dropped_view_restored_by_rollback_to_savepoint() {
    drop_undone_by("ROLLBACK TO SAVEPOINT a", false).await;
}

#[tokio::test]
async fn a_dropped_view_restored_by_rollback() {
    drop_undone_by("ROLLBACK", false).await;
}

/// The rollback and the value in one simple query string.
#[tokio::test]
async fn a_dropped_view_restored_by_rollback_to_savepoint_in_one_query_string() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &[VIEW, "BEGIN", "SAVEPOINT a", "DROP VIEW notes"]).await);
    notes_is_the_plain_table(&mut c).await;
    let text = format!("ROLLBACK TO SAVEPOINT a; SELECT id FROM notes WHERE body = '{SECRET}'");
    let msgs = exchange(&mut c, &[build::query(&text)]).await;
    sealed_or_refused(&msgs);
    exchange(&mut c, &[build::query("ROLLBACK")]).await;
    still_in_step(&mut c).await;
}

/// Statements that would be prepared while `leads` means the plain `public.leads` (in SQL and
/// by Parse), to be run after the path puts the protected `crm.leads` first (PostgreSQL would
/// analyse them again): the proxy refuses a `$n` compared with a name that a protected table
/// of another schema shares, at PREPARE and at Parse, so none is left to run.
#[tokio::test]
async fn statements_prepared_before_a_search_path_change() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let msgs = exchange(
        &mut c,
        &[build::query(
            "PREPARE by_email(bytea) AS SELECT id FROM leads WHERE email = $1",
        )],
    )
    .await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &[
            build::parse("by_email_p", "select id from leads where email = $1"),
            build::sync(),
        ],
    )
    .await;
    assert!(!error_codes(&msgs).is_empty(), "{msgs:?}");
    still_in_step(&mut c).await;
}

#[tokio::test]
async fn a_dropped_view_restored_by_rollback_to_savepoint_in_one_pipeline() {
    drop_undone_by("ROLLBACK TO SAVEPOINT a", true).await;
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

/// The rollback's text remembered as harmless by the pre-filter (parsed twice before, in a
/// transaction without schema changes): parsed again after the drop it still takes the
/// readings that follow the rollback (such texts are never remembered), so the restored view
/// is looked up and the value behind it sealed or refused.
#[tokio::test]
async fn a_remembered_rollback_text_still_restores_the_view_to_the_proxy() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let undo = "ROLLBACK TO SAVEPOINT a";
    all_ran(&steps(&mut c, &["BEGIN", "SAVEPOINT a"]).await);
    for _ in 0..2 {
        let msgs = exchange(&mut c, &run(undo, &[])).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    }
    all_ran(&steps(&mut c, &["COMMIT"]).await);
    all_ran(&steps(&mut c, &[VIEW, "BEGIN", "SAVEPOINT a", "DROP VIEW notes"]).await);
    notes_is_the_plain_table(&mut c).await;
    let msgs = exchange(&mut c, &run(undo, &[])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    sealed_or_refused(&msgs);
    exchange(&mut c, &[build::query("ROLLBACK")]).await;
    still_in_step(&mut c).await;
}

/// The rollback prepared as a named statement in its own pipeline (before or after the drop),
/// bound in a later one with the value behind it before the Sync: the Bind runs the rollback,
/// so what follows waits for the look-up as behind a Parse of it (sealed or refused, never
/// planned against the catalog without the view).
#[tokio::test]
async fn a_rollback_prepared_earlier_and_bound_with_a_value_behind_it_in_one_pipeline() {
    for (undo, parsed_after_drop) in [
        ("ROLLBACK TO SAVEPOINT a", false),
        ("ROLLBACK TO SAVEPOINT a", true),
        ("ROLLBACK", true),
    ] {
        let (db, _dir, proxy) = setup().await;
        let mut c = session(&proxy, &db).await;
        all_ran(&steps(&mut c, &[VIEW, "BEGIN", "SAVEPOINT a"]).await);
        let prepare = [build::parse("undo", undo), build::sync()];
        if !parsed_after_drop {
            assert!(error_codes(&exchange(&mut c, &prepare).await).is_empty());
        }
        all_ran(&steps(&mut c, &["DROP VIEW notes"]).await);
        if parsed_after_drop {
            assert!(error_codes(&exchange(&mut c, &prepare).await).is_empty());
        }
        notes_is_the_plain_table(&mut c).await;
        let mut pipeline = vec![build::bind("", "undo", &[]), build::execute("")];
        pipeline.extend(run(LOOKUP, &[SECRET]));
        let msgs = exchange(&mut c, &pipeline).await;
        sealed_or_refused(&msgs);
        exchange(&mut c, &[build::query("ROLLBACK")]).await;
        still_in_step(&mut c).await;
    }
}

/// A statement prepared in SQL while `notes` was plain, then the view; a PREPARE of the same
/// name after the view that the server refuses (the name exists; or the transaction has
/// failed, so a DEALLOCATE before it failed too): the server still holds the statement
/// prepared before the view, so EXECUTE with a value must still be refused — the record of
/// when a name was prepared follows what the server did, not what was sent.
#[tokio::test]
async fn a_failed_prepare_of_the_same_name_does_not_make_the_old_statement_new() {
    for (second, in_failed_block) in [
        ("PREPARE by_body(int) AS SELECT 1", false),
        ("DEALLOCATE by_body; PREPARE by_body(int) AS SELECT 1", true),
    ] {
        let (db, _dir, proxy) = setup().await;
        let mut c = session(&proxy, &db).await;
        all_ran(
            &steps(
                &mut c,
                &[
                    "PREPARE by_body(bytea) AS SELECT id FROM notes WHERE body = $1",
                    VIEW,
                ],
            )
            .await,
        );
        if in_failed_block {
            all_ran(&steps(&mut c, &["BEGIN"]).await);
            let msgs = exchange(&mut c, &[build::query("SELECT 1/0")]).await;
            assert_eq!(error_codes(&msgs), ["22012"], "{msgs:?}");
        }
        let msgs = exchange(&mut c, &[build::query(second)]).await;
        assert!(
            !error_codes(&msgs).is_empty(),
            "the server refuses it: {msgs:?}"
        );
        if in_failed_block {
            exchange(&mut c, &[build::query("ROLLBACK")]).await;
        }
        let execute = format!("EXECUTE by_body('{SECRET}')");
        let msgs = exchange(&mut c, &[build::query(&execute)]).await;
        assert_eq!(error_codes(&msgs), ["0A000"], "{second}: {msgs:?}");
        let msgs = exchange(&mut c, &run(&execute, &[])).await;
        assert_eq!(error_codes(&msgs), ["0A000"], "{second}: {msgs:?}");
        still_in_step(&mut c).await;
    }
}

/// A statement prepared by Parse (the protocol's namespace is the one SQL's EXECUTE runs
/// from) whose `$1` pgshroud seals at each Bind: run by SQL `EXECUTE` with a literal argument,
/// no Bind comes, so nothing would seal the value. Refused, before and after a schema change.
#[tokio::test]
async fn a_statement_prepared_by_parse_run_by_sql_execute_with_a_value() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let lookup = "select id from customers where email = $1";
    let msgs = exchange(&mut c, &[build::parse("by_email", lookup), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let execute = format!("EXECUTE by_email('{SECRET}')");
    let msgs = exchange(&mut c, &[build::query(&execute)]).await;
    sealed_or_refused(&msgs);
    assert!(!error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &run(&execute, &[])).await;
    assert!(!error_codes(&msgs).is_empty(), "{msgs:?}");
    still_in_step(&mut c).await;
}

/// The transaction's schema change read while an earlier Query is still unanswered (both in
/// one write): the earlier Query's ReadyForQuery `I` must not count as the end of the
/// transaction the later one opened. Then ROLLBACK brings the dropped view back, and a value
/// compared with its column must be sealed or refused.
#[tokio::test]
async fn a_schema_change_pipelined_behind_an_earlier_query_is_still_followed() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    all_ran(&steps(&mut c, &[VIEW]).await);
    let msgs = exchange(
        &mut c,
        &[
            build::query("SELECT 1"),
            build::query("BEGIN; DROP VIEW notes"),
        ],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    notes_is_the_plain_table(&mut c).await;
    all_ran(&steps(&mut c, &["ROLLBACK"]).await);
    let text = format!("SELECT id FROM notes WHERE body = '{SECRET}'");
    let msgs = exchange(&mut c, &[build::query(&text)]).await;
    sealed_or_refused(&msgs);
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    sealed_or_refused(&msgs);
    still_in_step(&mut c).await;
}
