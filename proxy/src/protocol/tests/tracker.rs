use super::*;

#[test]
fn sql_that_names_statements_is_recognised() {
    assert!(sql_effects("select 1; insert into t values (2)").is_empty());
    assert_eq!(
        sql_effects("DEALLOCATE s1; deallocate prepare \"S2\"; DEALLOCATE ALL"),
        vec![
            SqlEffect::Deallocate("s1".into()),
            SqlEffect::Deallocate("S2".into()),
            SqlEffect::DeallocateAll
        ]
    );
    assert_eq!(
        sql_effects("PREPARE Ins (text) AS INSERT INTO t VALUES ($1); discard all"),
        vec![SqlEffect::Prepare("ins".into()), SqlEffect::DiscardAll]
    );
    assert!(sql_effects("PREPARE TRANSACTION 'x'; DISCARD PLANS").is_empty());
    assert!(sql_effects("select 'deallocate s1'").is_empty());
}

#[test]
fn sql_that_declares_and_closes_cursors_is_recognised() {
    assert_eq!(
        sql_effects(
            "DECLARE \"Big\" BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1; \
             declare c cursor without hold for select 'with hold'; CLOSE \"Big\"; close all"
        ),
        vec![
            SqlEffect::Declare {
                name: "Big".into(),
                hold: true
            },
            SqlEffect::Declare {
                name: "c".into(),
                hold: false
            },
            SqlEffect::Close("Big".into()),
            SqlEffect::CloseAll,
        ]
    );
    assert!(sql_effects("select 'declare c cursor for select 1', closed FROM t").is_empty());
}

/// Names as PostgreSQL stores them, where sqlparser's tokenizer read another name (the
/// old reading's answer in each comment): a statement deallocated under one name while
/// the tracker forgets another would keep a stale plan under the first.
#[test]
fn names_are_decoded_and_truncated_as_the_server_does() {
    let long = "abcdefghij_abcdefghij_abcdefghij_abcdefghij_abcdefghij_abcdefghij_xyz";
    for (sql, want) in [
        // old: Prepare("u")
        (
            "PREPARE U&\"d!0061ta\" UESCAPE '!' AS SELECT 2",
            SqlEffect::Prepare("data".into()),
        ),
        // old: Deallocate("u")
        (
            "DEALLOCATE U&\"d\\0061ta\"",
            SqlEffect::Deallocate("data".into()),
        ),
        // old: the name untruncated; the server keeps 63 bytes (NAMEDATALEN - 1).
        (
            &format!("PREPARE {long} AS SELECT 4"),
            SqlEffect::Prepare(long[..63].into()),
        ),
        // old: nothing (`PREPARE` read as the optional keyword); the server deallocates
        // the statement named `prepare`.
        (
            "DEALLOCATE prepare",
            SqlEffect::Deallocate("prepare".into()),
        ),
        (
            "PREPARE \"a\"\"b\" AS SELECT 3",
            SqlEffect::Prepare("a\"b".into()),
        ),
        (
            "DECLARE hold CURSOR WITH HOLD FOR SELECT 1",
            SqlEffect::Declare {
                name: "hold".into(),
                hold: true,
            },
        ),
        (
            "DECLARE \"c\" NO SCROLL CURSOR /* WITH HOLD */ FOR SELECT 1",
            SqlEffect::Declare {
                name: "c".into(),
                hold: false,
            },
        ),
    ] {
        assert_eq!(sql_effects(sql), vec![want], "{sql}");
    }
}

/// Words inside strings, comments and dollar quotes are no statements; a text the grammar
/// rejects runs nothing (old: `[Prepare("p")]` for the last one, which the server never
/// prepares).
#[test]
fn only_statements_the_server_runs_count() {
    for sql in [
        "SELECT $a$; DEALLOCATE x; $a$",
        "SELECT 1 /* /* */ ; DEALLOCATE x; */",
        "SELECT E'\\'; DEALLOCATE x; --'",
        "SELECT 'a'\n'; DEALLOCATE x; --'",
        "SELECT 1 --- ; DEALLOCATE x\n",
        "PREPARE p AS SELECT 1; SELECT syntax error here",
    ] {
        assert!(sql_effects(sql).is_empty(), "{sql}");
    }
    assert_eq!(
        sql_effects("CLOSE all; close \"ALL\"; DISCARD PLANS; DISCARD TEMP"),
        vec![SqlEffect::CloseAll, SqlEffect::Close("ALL".into())]
    );
}

/// Backslashes escape in '...' when standard_conforming_strings is off, which libpg_query
/// cannot read: there the names are not trusted (the server's command tags then make the
/// tracker forget, see `SqlEffect::unrecognised`).
#[test]
fn texts_read_otherwise_by_the_server_have_no_trusted_effects() {
    let hidden = "SELECT 'a\\'; DEALLOCATE x; SELECT '; DEALLOCATE y; --'";
    assert_eq!(
        sql_effects_in(hidden, TextMode::Standard),
        vec![SqlEffect::Deallocate("x".into())]
    );
    assert!(sql_effects_in(hidden, TextMode::BackslashEscapes).is_empty());
    assert_eq!(
        sql_effects_in("DEALLOCATE x", TextMode::BackslashEscapes),
        vec![SqlEffect::Deallocate("x".into())]
    );
    assert!(sql_effects_in("DEALLOCATE \"é\"", TextMode::OtherEncoding).is_empty());
    assert_eq!(
        sql_effects_in("DEALLOCATE x", TextMode::OtherEncoding),
        vec![SqlEffect::Deallocate("x".into())]
    );
}

#[test]
fn cursors_end_with_their_transaction_unless_held_or_closed() {
    let mut t = T::default();
    for (name, hold) in [("c", false), ("h", true), ("gone", true)] {
        let d = t.sent(Effect::DeclareCursor {
            name: name.into(),
            hold,
        });
        assert!(t.cursor(name));
        t.confirm(d);
    }
    let close = t.sent(Effect::ClosePortal("gone".into()));
    assert!(!t.cursor("gone"));
    t.confirm(close);
    t.transaction_ended();
    assert!(!t.cursor("c"));
    assert!(t.cursor("h"));
    let all = t.sent(Effect::CloseAllPortals);
    assert!(!t.cursor("h"));
    t.skipped(all);
    assert!(t.cursor("h"));
    t.apply(Effect::DiscardAll);
    assert!(!t.cursor("h"));
}

type T = Tracker<&'static str, &'static str>;

fn known(t: &T, name: &str) -> Option<&'static str> {
    match t.statement(name)? {
        Held::Known(s) => Some(**s),
        Held::Foreign => Some("foreign"),
    }
}

fn prepare(name: &str, what: &'static str) -> Effect<&'static str, &'static str> {
    Effect::Prepare(name.into(), Held::Known(Arc::new(what)))
}

#[test]
fn a_parse_counts_for_later_messages_and_holds_once_confirmed() {
    let mut t = T::default();
    let parse = t.sent(prepare("s1", "insert"));
    assert_eq!(known(&t, "s1"), Some("insert"));
    assert!(t.confirmed_statement("s1").is_none());
    t.confirm(parse);
    assert!(t.confirmed_statement("s1").is_some());
    assert_eq!(known(&t, "s1"), Some("insert"));
}

#[test]
fn a_skipped_close_leaves_the_statement() {
    let mut t = T::default();
    let parse = t.sent(prepare("s1", "insert"));
    t.confirm(parse);
    let close = t.sent(Effect::CloseStatement("s1".into()));
    assert_eq!(known(&t, "s1"), None);
    assert!(t.statement_in_doubt("s1"));
    // An earlier error made the server skip the Close.
    t.skipped(close);
    assert_eq!(known(&t, "s1"), Some("insert"));
    assert!(!t.statement_in_doubt("s1"));
}

#[test]
fn a_skipped_parse_changes_nothing() {
    let mut t = T::default();
    let first = t.sent(prepare("s1", "select"));
    t.confirm(first);
    let second = t.sent(prepare("s1", "insert"));
    assert_eq!(known(&t, "s1"), Some("insert"));
    t.skipped(second);
    assert_eq!(known(&t, "s1"), Some("select"));
}

#[test]
fn a_simple_query_ends_the_unnamed_statement_and_portal() {
    let mut t = T::default();
    let p = t.sent(prepare("", "select"));
    let b = t.sent(Effect::Bind("".into(), Arc::new("portal")));
    let named = t.sent(prepare("keep", "select"));
    t.confirm(p);
    t.confirm(b);
    t.confirm(named);
    let q = t.sent(Effect::SimpleQuery);
    assert_eq!(known(&t, ""), None);
    assert!(t.portal("").is_none());
    t.confirm(q);
    assert_eq!(known(&t, ""), None);
    assert!(t.confirmed_portal("").is_none());
    assert_eq!(known(&t, "keep"), Some("select"));
}

#[test]
fn portals_end_with_the_transaction() {
    let mut t = T::default();
    let b = t.sent(Effect::Bind("p".into(), Arc::new("portal")));
    t.confirm(b);
    let later = t.sent(Effect::Bind("q".into(), Arc::new("later")));
    t.transaction_ended();
    assert!(t.portal("p").is_none());
    // A Bind sent after the transaction's end is not affected.
    assert!(t.portal("q").is_some());
    t.confirm(later);
    assert!(t.confirmed_portal("q").is_some());
}

#[test]
fn deallocate_and_discard_drop_statements() {
    let mut t = T::default();
    for name in ["a", "b"] {
        let p = t.sent(prepare(name, "select"));
        t.confirm(p);
    }
    t.apply(Effect::CloseStatement("a".into()));
    assert_eq!(known(&t, "a"), None);
    assert_eq!(known(&t, "b"), Some("select"));
    let all = t.sent(Effect::DeallocateAll);
    assert_eq!(known(&t, "b"), None);
    assert!(t.statement_in_doubt("b"));
    t.confirm(all);
    assert!(!t.statement_in_doubt("b"));
    let b = t.sent(Effect::Bind("p".into(), Arc::new("portal")));
    t.confirm(b);
    t.apply(Effect::DiscardAll);
    assert!(t.portal("p").is_none());
}

#[test]
fn sql_prepare_is_foreign() {
    let mut t = T::default();
    t.apply(Effect::Prepare("x".into(), Held::Foreign));
    assert_eq!(known(&t, "x"), Some("foreign"));
}

#[test]
fn refresh_replaces_the_record_everywhere() {
    let mut t = T::default();
    let old = Arc::new("old");
    let p = t.sent(Effect::Prepare("s".into(), Held::Known(old.clone())));
    t.confirm(p);
    t.refresh(&old, Arc::new("new"));
    assert_eq!(known(&t, "s"), Some("new"));
}

#[test]
fn the_effect_words_are_found_in_one_pass_in_any_case_anywhere() {
    for sql in [
        "PREPARE p AS SELECT 1",
        "deallocate p",
        "select 1; DiScArD ALL",
        "DECLARE c CURSOR FOR SELECT 1",
        "close c",
        "select 1 as xclose",
        "prepar close",
    ] {
        assert!(has_effect_word(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "select 1", "prepar", "dealloc", "disc", "clos", "", "p", "DECLAR",
    ] {
        assert!(!has_effect_word(sql.as_bytes()), "{sql}");
    }
    // A word at the very end, or split by case, still counts.
    assert!(has_effect_word(b"select 1 -- ClOsE"));
    assert!(sql_effects("select 1 -- close").is_empty());
}
