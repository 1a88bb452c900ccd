//! The pre-filter's memory attacked as a hostile client would: every text it lets skip the
//! readings must be exactly one the full path would have forwarded unchanged, and the state
//! the readings depend on besides the text (rules, catalog, tenant switch, names in use,
//! search_path) must still be followed.

use super::testing::*;
use super::ProtectedSession;

/// Whether the session remembers `sql` as harmless now.
fn remembered(s: &mut ProtectedSession, sql: &str) -> bool {
    let under = s.harmless_under();
    s.harmless.known(under, sql.as_bytes()).is_some()
}

/// Parses `sql` (unnamed) in its own pipeline, answered: the Parse's verdict.
fn parse_alone(s: &mut ProtectedSession, sql: &str) -> Verdict {
    let verdict = s.client_message(&parse("", sql));
    s.client_message(&sync());
    verdict
}

#[test]
fn a_harmless_text_is_remembered_and_forwarded_again_untouched() {
    let mut s = catalog_session("app");
    let sql = "select abalance from pgbench_accounts where aid = $1";
    assert_eq!(parse_alone(&mut s, sql), Verdict::Forward);
    answer(&mut s, &["1", "ZI"]);
    assert!(remembered(&mut s, sql));
    assert_eq!(parse_alone(&mut s, sql), Verdict::Forward);
    answer(&mut s, &["1", "ZI"]);
    // The statement is known to the tracker as any other: bound, executed.
    assert_eq!(s.client_message(&bind("", "")), Verdict::Forward);
    assert_eq!(s.client_message(&execute("")), Verdict::Forward);
}

#[test]
fn other_spellings_of_a_protected_name_are_never_taken_for_a_remembered_text() {
    let mut s = catalog_session("app");
    assert_eq!(
        parse_alone(&mut s, "select name from orders"),
        Verdict::Forward
    );
    answer(&mut s, &["1", "ZI"]);
    for sql in [
        "select email from customers",
        "select email from CUSTOMERS",
        "select email from \"customers\"",
        "select email from public.Customers",
        "select email from U&\"\\0063ustomers\"",
        "select email from U&\"!0063ustomers\" UESCAPE '!'",
    ] {
        for _ in 0..2 {
            let verdict = parse_alone(&mut s, sql);
            assert_ne!(verdict, Verdict::Forward, "{sql}");
            assert!(!remembered(&mut s, sql), "{sql}");
            // Whatever it was (planned with our Describe, or refused): its answers.
            s.pending.clear();
            s.names = Default::default();
        }
    }
}

#[test]
fn a_reload_forgets_what_the_old_rules_found_harmless() {
    let dir = std::env::temp_dir().join(format!("pgshroud-harmless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("rules.toml");
    let customers = "[[tables]]\nname = \"public.customers\"\n  [[tables.columns]]\n  name = \"email\"\n  type = \"text\"\n";
    std::fs::write(&path, customers).expect("rules");
    let mut s = session_from_file(&path, "app");
    let sql = "select note from orders where id = $1";
    assert_eq!(parse_alone(&mut s, sql), Verdict::Forward);
    answer(&mut s, &["1", "ZI"]);
    assert!(remembered(&mut s, sql));
    let orders = "[[tables]]\nname = \"public.orders\"\n  [[tables.columns]]\n  name = \"note\"\n  type = \"text\"\n";
    std::fs::write(&path, format!("{customers}{orders}")).expect("rules");
    s.live.reload().expect("reload");
    // The same bytes now name a protected table: planned (or refused), never forwarded.
    let verdict = s.client_message(&parse("", sql));
    assert_ne!(verdict, Verdict::Forward);
    assert!(!remembered(&mut s, sql));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_catalog_look_up_forgets_what_the_old_layout_found_harmless() {
    let mut s = catalog_session("app");
    let sql = "select 1 from orders";
    assert_eq!(parse_alone(&mut s, sql), Verdict::Forward);
    answer(&mut s, &["1", "ZI"]);
    assert!(remembered(&mut s, sql));
    s.apply_lookup();
    assert!(!remembered(&mut s, sql));
}

#[test]
fn a_name_in_use_or_in_doubt_is_followed_on_the_remembered_path() {
    let mut s = catalog_session("app");
    let sql = "select 1 from orders";
    s.client_message(&parse("s1", sql));
    s.client_message(&sync());
    answer(&mut s, &["1", "ZI"]);
    assert!(remembered(&mut s, sql));
    // In use: refused as PostgreSQL would.
    let again = s.client_message(&parse("s1", sql));
    assert_eq!(refusal_code(&again).as_deref(), Some("42P05"));
    s.client_message(&sync());
    answer(&mut s, &["1", "2"]);
    s.server_message(&error("42P05"));
    answer(&mut s, &["ZI"]);
    // DEALLOCATE sent, not answered: the name is in doubt, so our Close goes first.
    s.client_message(&query("DEALLOCATE s1"));
    let Verdict::Replace(out) = s.client_message(&parse("s1", sql)) else {
        panic!("a Parse of a name in doubt must be preceded by our Close");
    };
    assert_eq!(out[0], b'C');
    s.client_message(&sync());
    answer(&mut s, &["CDEALLOCATE\0", "ZI", "3", "1", "ZI"]);
    assert!(s.pending.is_empty(), "{:?}", s.pending);
    assert!(s.names.statement("s1").is_some());
}

#[test]
fn texts_that_change_what_the_session_follows_are_read_every_time() {
    let mut s = catalog_session("app");
    for sql in [
        "SET search_path = private, public",
        "set SEARCH_PATH to private",
        "DEALLOCATE ALL",
        "DISCARD ALL",
        "SET standard_conforming_strings = off",
        "FETCH 1 FROM c",
    ] {
        for _ in 0..2 {
            s.client_message(&parse("", sql));
            assert!(!remembered(&mut s, sql), "{sql}");
            let info = match s.names.statement("") {
                Some(crate::protocol::tracker::Held::Known(info)) => info.clone(),
                other => panic!("{sql}: {other:?}"),
            };
            assert!(
                info.unsettling || !info.effects.is_empty() || info.fetches,
                "{sql}: read as harmless"
            );
            s.client_message(&sync());
            s.pending.clear();
            s.unsettled = 0;
            s.path_changed_in_txn = false;
        }
    }
}

#[test]
fn a_search_path_change_in_the_pipeline_sends_the_next_text_through_the_full_path() {
    let mut s = catalog_session("app");
    let sql = "select 1 from orders";
    assert_eq!(parse_alone(&mut s, sql), Verdict::Forward);
    answer(&mut s, &["1", "ZI"]);
    s.client_message(&query("BEGIN"));
    answer(&mut s, &["CBEGIN\0", "ZT"]);
    s.client_message(&parse("", "SET search_path = private"));
    assert!(s.path_changed_in_txn);
    s.refresh_at_sync = false;
    // The remembered text is read again (a ROLLBACK in it would need a look-up) and, being
    // harmless, still forwarded; a rollback is followed.
    assert_eq!(s.client_message(&parse("", sql)), Verdict::Forward);
    assert!(!s.refresh_at_sync);
    s.client_message(&parse("", "ROLLBACK"));
    assert!(s.refresh_at_sync);
}

#[test]
fn identity_settings_are_refused_every_time() {
    let mut s = catalog_session("app");
    for _ in 0..2 {
        let v = s.client_message(&parse("", "SET pgshroud.role = 'admin'"));
        assert!(refusal_code(&v).is_some(), "{v:?}");
        s.client_message(&sync());
        s.pending.clear();
    }
}

/// Whether a remembered shape matches `sql` now (literal gates aside).
fn shape_known(s: &mut ProtectedSession, sql: &str) -> bool {
    let under = s.harmless_under();
    s.harmless.matching_shape(under, sql).is_some()
}

/// Sends `sql` as a simple Query and answers it: the Query's verdict.
fn query_alone(s: &mut ProtectedSession, sql: &str) -> Verdict {
    let verdict = s.client_message(&query(sql));
    s.pending.clear();
    verdict
}

const PGBENCH: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = {};";

fn pgbench(aid: u32) -> String {
    PGBENCH.replace("{}", &aid.to_string())
}

#[test]
fn a_harmless_shape_is_remembered_on_its_second_sight_and_matches_new_literals() {
    let mut s = catalog_session("app");
    assert_eq!(query_alone(&mut s, &pgbench(1)), Verdict::Forward);
    assert!(
        !shape_known(&mut s, &pgbench(2)),
        "scanned on the first sight"
    );
    assert_eq!(query_alone(&mut s, &pgbench(2)), Verdict::Forward);
    assert!(shape_known(&mut s, &pgbench(3)));
    // The shape's path queues the Query as the full path does.
    assert_eq!(s.client_message(&query(&pgbench(77))), Verdict::Forward);
    assert!(matches!(
        s.pending.front(),
        Some(super::Expect::Query {
            plan: None,
            refused: false,
            ..
        })
    ));
    // Another shape, or a literal of another kind, is not this one.
    assert!(!shape_known(
        &mut s,
        "SELECT abalance FROM pgbench_accounts WHERE aid = '3';"
    ));
    assert!(!shape_known(
        &mut s,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 3"
    ));
    assert!(!shape_known(
        &mut s,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 2147483648;"
    ));
}

/// A literal of a remembered shape that spells a protected table, a setting, SQL text or a
/// decoding form sends its text through the full path, which reads it as before.
#[test]
fn a_literal_that_opens_a_gate_takes_the_full_path() {
    let mut s = catalog_session("app");
    let text = |v: &str| format!("select count(*) from orders where note = '{v}'");
    for v in ["a", "b"] {
        assert_eq!(query_alone(&mut s, &text(v)), Verdict::Forward);
    }
    assert!(shape_known(&mut s, &text("c")));
    for v in [
        "customers",
        "CUSTOMERS",
        "select email from customers",
        "set_config",
        "pgshroud.tenant",
        "reset",
        "pg_stats",
        "execute",
        "u&''",
        "prepare",
        "fetch",
    ] {
        let sql = text(v);
        assert!(
            s.query_by_shape(sql.as_bytes()).is_none(),
            "{sql}: forwarded by the shape"
        );
        s.pending.clear();
    }
    // Where the full path then plans or refuses, so does the session.
    let sql = "select count(*) from orders where note = 'customers'";
    assert!(s.query_by_shape(sql.as_bytes()).is_none());
    // A regclass of a protected table in the same shape's place.
    let cast = |v: &str| format!("select '{v}'::regclass");
    for v in ["orders", "items"] {
        query_alone(&mut s, &cast(v));
    }
    assert!(shape_known(&mut s, &cast("x")));
    assert!(s.query_by_shape(cast("customers").as_bytes()).is_none());
    assert!(s
        .query_by_shape(cast("public.Customers").as_bytes())
        .is_none());
    // A setting's name alone changes nothing (no set_config in the text): the full path
    // forwards it too, and so does the shape.
    let sql = text("search_path");
    assert_eq!(s.query_by_shape(sql.as_bytes()), Some(Verdict::Forward));
}

#[test]
fn texts_whose_reading_rests_on_more_than_words_are_never_shapes() {
    let mut s = catalog_session("app");
    for sql in [
        // Words of a gate in the fixed text: read with the grammar every time.
        "select query_to_xml('select 1', true, true, '')",
        "select set_config('work_mem', '64MB', false)",
        "select * from pg_stat_activity where pid = 1",
        "SET work_mem = '64MB'",
        "declare c cursor for select 1",
        // Literals outside the plain forms, or decoding forms: no pattern, or not kept.
        "select E'a' from orders",
        "select $$a$$ from orders",
        "select $q$ ' $q$, 'a' from orders",
        "select U&'a' from orders",
        "select 'a\\' from orders",
        "select 'é' from orders",
        "select 'a'\n'b' from orders",
    ] {
        for _ in 0..3 {
            s.client_message(&query(sql));
            s.pending.clear();
            s.unsettled = 0;
            s.path_changed_in_txn = false;
        }
        assert!(!shape_known(&mut s, sql), "{sql}");
    }
}

#[test]
fn comments_and_quoted_names_stay_part_of_the_shape() {
    let mut s = catalog_session("app");
    let text =
        |v: u32| format!("select /* it's /* nested */ 'x' */ \"o'k\" from orders where id = {v}");
    for v in [1, 2] {
        assert_eq!(query_alone(&mut s, &text(v)), Verdict::Forward);
    }
    assert!(shape_known(&mut s, &text(3)));
    // The same literal moved out of the comment is another text.
    assert!(!shape_known(
        &mut s,
        "select /* it's /* nested */ 'x' \"o'k\" from orders where id = 3 */"
    ));
}

#[test]
fn a_shape_is_forgotten_with_the_rules_the_catalog_and_the_text_mode() {
    let mut s = catalog_session("app");
    for aid in [1, 2] {
        query_alone(&mut s, &pgbench(aid));
    }
    assert!(shape_known(&mut s, &pgbench(3)));
    s.apply_lookup();
    assert!(!shape_known(&mut s, &pgbench(3)));
    for aid in [1, 2] {
        query_alone(&mut s, &pgbench(aid));
    }
    assert!(shape_known(&mut s, &pgbench(3)));
    s.server_message(&message(b'S', b"standard_conforming_strings\0off\0"));
    assert!(!shape_known(&mut s, &pgbench(3)));
    s.server_message(&message(b'S', b"standard_conforming_strings\0on\0"));
    assert!(!shape_known(&mut s, &pgbench(3)), "forgotten, not hidden");
}

#[test]
fn the_session_s_own_state_is_checked_on_the_shape_s_path() {
    // A role with a statements list reads every text (its kinds): never by shape.
    let mut r = test_session("reader");
    for aid in [1, 2, 3] {
        assert_eq!(query_alone(&mut r, &pgbench(aid)), Verdict::Forward);
    }
    assert!(r.query_by_shape(pgbench(4).as_bytes()).is_none());
    let deleted = r.client_message(&query("delete from orders where id = 4"));
    assert!(matches!(deleted, Verdict::Replace(_)));
    // A search_path change in the open transaction: read whole (a ROLLBACK would need a look-up).
    let mut s = catalog_session("app");
    for aid in [1, 2] {
        query_alone(&mut s, &pgbench(aid));
    }
    s.path_changed_in_txn = true;
    assert!(s.query_by_shape(pgbench(3).as_bytes()).is_none());
}
