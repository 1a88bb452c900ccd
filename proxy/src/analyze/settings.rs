//! Which session settings a text changes, as PostgreSQL's grammar reads it: the search_path
//! (which the server does not report, so the proxy must look it up again) and the settings
//! that change how later text is read (client_encoding, standard_conforming_strings). A word
//! list over the raw bytes misses spellings PostgreSQL decodes (`SET U&"search\005fpath"`,
//! `SELECT U&"set\005fconfig"(...)`); this reads the names the server will use.

use super::pg_reading::{self, Setting};
use super::spelling;

/// What a text may change. `true` is "maybe": unknown names, `RESET ALL`, `DISCARD ALL`, code
/// bodies that may set something, and texts PostgreSQL's grammar does not read all count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsChanged {
    /// The effective search_path (`search_path`, and `role` / `session_authorization`, whose
    /// change moves `"$user"`).
    pub search_path: bool,
    /// How later statement text is read: `client_encoding` (`SET NAMES`),
    /// `standard_conforming_strings`.
    pub text_reading: bool,
}

impl SettingsChanged {
    const ALL: SettingsChanged = SettingsChanged {
        search_path: true,
        text_reading: true,
    };
}

/// What `sql` changes. Texts without a word that can start a change (`SET`, `RESET`, `DISCARD`,
/// `set_config`, a `DO` block) and without forms PostgreSQL decodes are not parsed.
pub fn settings_changed(sql: &str) -> SettingsChanged {
    if !may_change_settings(sql) {
        return SettingsChanged::default();
    }
    let Ok(reading) = pg_reading::read(sql) else {
        return SettingsChanged::ALL;
    };
    let mut changed = SettingsChanged::default();
    for statement in &reading.statements {
        for setting in &statement.settings {
            changed = changed.with(setting);
        }
        if statement.bodies.iter().any(|b| may_change_settings(b)) {
            changed = SettingsChanged::ALL;
        }
    }
    changed
}

/// [`settings_changed`] of a text in the client's encoding, which need not be UTF-8 (a session
/// in another client_encoding still sends `SET client_encoding = 'UTF8'`). Text that is not
/// UTF-8 is not parsed (multi-byte encodings such as SJIS hide ASCII bytes inside characters):
/// it may change everything when the cheap gate finds a word that can start a change.
pub fn settings_changed_in(sql: &[u8]) -> SettingsChanged {
    match std::str::from_utf8(sql) {
        Ok(text) => settings_changed(text),
        Err(_) if may_change_settings(&String::from_utf8_lossy(sql)) => SettingsChanged::ALL,
        Err(_) => SettingsChanged::default(),
    }
}

impl SettingsChanged {
    fn with(self, setting: &Setting) -> SettingsChanged {
        let name = match setting {
            Setting::All | Setting::Unknown | Setting::Bound(_) => return SettingsChanged::ALL,
            Setting::Named(name) => name.as_str(),
        };
        SettingsChanged {
            search_path: self.search_path
                || matches!(name, "search_path" | "role" | "session_authorization"),
            text_reading: self.text_reading
                || matches!(name, "client_encoding" | "standard_conforming_strings"),
        }
    }
}

/// The cheap gate: a keyword that starts a change (keywords cannot be escaped), `set_config`
/// or `DO` as a whole word, or any form PostgreSQL decodes (which could spell a function name).
/// A text whose only such word is `set` is parsed only when PostgreSQL's scanner finds `SET`
/// starting a statement: `UPDATE t SET ...` (every UPDATE) then costs a scan (about 3 µs), not
/// a parse (about 26 µs and more).
pub(super) fn may_change_settings(sql: &str) -> bool {
    spelling::may_hide_text(sql) || changes_by_word(sql)
}

/// [`may_change_settings`] without the decoding forms (the identity gate asks for those
/// once for all its words): a keyword that starts a change, `set_config` or `DO` as a whole
/// word, or `SET` starting a statement. Words are split on bytes: every byte of a non-ASCII
/// character is part of a word, as the character is for PostgreSQL's scanner.
pub(super) fn changes_by_word(sql: &str) -> bool {
    let part_of_word =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$') || !b.is_ascii();
    let mut set_word = false;
    for word in sql.as_bytes().split(|b| !part_of_word(b)) {
        if word.len() < 2 || word.len() > 10 {
            continue;
        }
        if [&b"reset"[..], b"discard", b"set_config", b"do"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
        {
            return true;
        }
        set_word |= word.eq_ignore_ascii_case(b"set");
    }
    set_word && starts_a_statement_with_set(sql)
}

/// Whether PostgreSQL's scanner finds a `SET` keyword as the first token of a statement
/// (comments skipped). A text it cannot scan counts as one: unsure means look.
fn starts_a_statement_with_set(sql: &str) -> bool {
    use pg_query::protobuf::Token;
    let Ok(scanned) = pg_query::scan(sql) else {
        return true;
    };
    let mut at_start = true;
    for t in &scanned.tokens {
        if t.token == Token::SqlComment as i32 || t.token == Token::CComment as i32 {
            continue;
        }
        if at_start && t.token == Token::Set as i32 {
            return true;
        }
        at_start = t.token == Token::Ascii59 as i32;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(sql: &str) -> (bool, bool) {
        let c = settings_changed(sql);
        (c.search_path, c.text_reading)
    }

    #[test]
    fn every_spelling_of_a_search_path_change_is_seen() {
        for sql in [
            "SET search_path = app",
            "set LOCAL Search_Path TO app",
            "SET SCHEMA 'app'",
            r#"SET U&"search\005fpath" = app"#,
            r#"SET "search_path" = app"#,
            "RESET search_path",
            "RESET ALL",
            "DISCARD ALL",
            "SET ROLE other",
            "SET SESSION AUTHORIZATION other",
            "SELECT set_config('search_path', 'app', false)",
            r#"SELECT U&"set\005fconfig"('search_path', 'app', false)"#,
            "SELECT pg_catalog.set_config($1, 'app', false)",
            "DO $$ BEGIN PERFORM set_config('search_path', 'app', false); END $$",
            "SELECT 1; SET search_path = app",
        ] {
            assert!(changed(sql).0, "{sql}");
        }
    }

    #[test]
    fn text_reading_changes_are_seen() {
        for sql in [
            "SET NAMES 'LATIN1'",
            "SET client_encoding = 'LATIN1'",
            "SET standard_conforming_strings = off",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
        ] {
            assert!(changed(sql).1, "{sql}");
        }
    }

    #[test]
    fn set_only_counts_where_it_starts_a_statement() {
        assert!(starts_a_statement_with_set(
            "/* a /* nested */ comment */ SET search_path = x"
        ));
        assert!(starts_a_statement_with_set("SELECT 1; -- c\n set role x"));
        assert!(!starts_a_statement_with_set("UPDATE t SET a = 1"));
        assert!(!starts_a_statement_with_set(
            "ALTER TABLE t ALTER c SET DEFAULT 1"
        ));
        assert!(!starts_a_statement_with_set(
            "SELECT ';SET search_path = x'"
        ));
        assert!(changed("/* x */ SET search_path = app").0);
    }

    #[test]
    fn other_statements_change_nothing() {
        for sql in [
            "SELECT * FROM settings WHERE reset_at > now()",
            "UPDATE t SET a = 1",
            "SET statement_timeout = 0",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = app AS 'SELECT 1'",
            "ALTER ROLE r SET search_path = app",
            "SELECT 'SET search_path = x'",
        ] {
            assert_eq!(changed(sql), (false, false), "{sql}");
        }
    }
}
