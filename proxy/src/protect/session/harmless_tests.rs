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
