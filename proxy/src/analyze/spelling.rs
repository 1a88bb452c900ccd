//! Byte-level signs that a text may spell something other than what its raw bytes show: the
//! forms PostgreSQL's scanner (scan.l) decodes before anyone reads them. A name, a function or
//! a code body can hide behind `U&"..."` / `U&'...'` escapes, backslash escapes in `E'...'`
//! strings, or string constants continued across a newline (`'cust'` newline `'omers'` is one
//! string). Every other way to write a name (plain or quoted identifiers, dollar quotes,
//! standard strings) keeps its bytes, so a substring search finds it. The cheap pre-filters
//! send a text with any of these signs on to PostgreSQL's reading, which decodes them.

/// Whether the `&` at byte `at` starts a Unicode escape (`U&"` or `U&'`, any case of `u`).
/// Inside a string or comment it is a harmless false alarm.
pub fn is_unicode_escape_at(sql: &[u8], at: usize) -> bool {
    at > 0
        && sql[at - 1].eq_ignore_ascii_case(&b'u')
        && sql.get(at) == Some(&b'&')
        && matches!(sql.get(at + 1), Some(b'"' | b'\''))
}

/// Whether a backslash may be an escape in an `E'...'` string: the text has an `E'` (any
/// case) somewhere. With standard_conforming_strings on (which pgshroud requires), a
/// backslash elsewhere is an ordinary character. Callers ask once per text, not per backslash.
pub fn has_escape_string(sql: &[u8]) -> bool {
    sql.windows(2)
        .any(|w| w[0].eq_ignore_ascii_case(&b'e') && w[1] == b'\'')
}

/// Whether the quote at byte `at` may end a string constant that continues after a newline:
/// PostgreSQL joins `'a'` and `'b'` separated by white space holding a newline (and `--`
/// comments on their own lines) into one constant.
pub fn is_continued_string_at(sql: &[u8], at: usize) -> bool {
    if sql.get(at) != Some(&b'\'') {
        return false;
    }
    let mut i = at + 1;
    let mut newline = false;
    while let Some(&b) = sql.get(i) {
        match b {
            b'\n' | b'\r' => newline = true,
            b' ' | b'\t' | b'\x0c' => {}
            b'-' if newline && sql.get(i + 1) == Some(&b'-') => {
                while sql.get(i).is_some_and(|&c| c != b'\n' && c != b'\r') {
                    i += 1;
                }
                continue;
            }
            b'\'' => return newline,
            _ => return false,
        }
        i += 1;
    }
    false
}

/// Whether anything in `sql` may decode to text its bytes do not show.
pub fn may_hide_text(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    (bytes.contains(&b'\\') && has_escape_string(bytes))
        || bytes.iter().enumerate().any(|(i, &b)| match b {
            b'&' => is_unicode_escape_at(bytes, i),
            b'\'' => is_continued_string_at(bytes, i),
            _ => false,
        })
}

/// Whether `text` contains one of `needles` (lower-case ASCII), ignoring ASCII case: the
/// pre-checks' word search, without the lower-cased copy of every statement it would take.
/// For a fixed list on every statement, [`Words`] answers the same in one pass.
pub fn contains_any_ignore_ascii_case(text: &str, needles: &[&str]) -> bool {
    let hay = text.as_bytes();
    (0..hay.len()).any(|i| {
        let first = hay[i].to_ascii_lowercase();
        needles.iter().any(|n| {
            let n = n.as_bytes();
            n.first() == Some(&first)
                && hay.len() - i >= n.len()
                && hay[i..i + n.len()].eq_ignore_ascii_case(n)
        })
    })
}

/// A fixed list of words searched for in every statement text of a session with rules: the
/// answer of [`contains_any_ignore_ascii_case`] for that list (anywhere in the text, ASCII
/// letters in any case, other bytes as they are), from one pass of an Aho-Corasick automaton
/// over the bytes instead of one comparison per byte and word. The profile of pgbench's
/// statements put the per-word loop first among pgshroud's own functions (4 % of the
/// rules instance's samples).
pub struct Words(aho_corasick::AhoCorasick);

impl Words {
    /// The matcher of `needles` (lower-case ASCII). Panics only if the automaton cannot be
    /// built, which for a handful of short constant words would be a bug: callers build
    /// theirs once, from constants, in a `LazyLock`.
    pub fn new(needles: &[&str]) -> Words {
        let automaton = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(needles)
            .expect("an automaton of constant words");
        Words(automaton)
    }

    /// Whether `text` holds one of the words.
    pub fn in_text(&self, text: &str) -> bool {
        self.0.is_match(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automaton_answers_as_the_word_loop_does() {
        let needles = ["pgshroud", "set_config", "u&", "_to_xml", "execute"];
        let words = Words::new(&needles);
        for text in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            "select SET_CONFIG('a', 'b', false)",
            "select * from U&\"x\"",
            "select query_TO_XML('x', true, false, '')",
            "PgShRoUd",
            "é pgshroud",
            "pgshrou",
            "ÉXECUTE",
            "EXECUTÉ",
            "",
            "select 'pg\nshroud'",
        ] {
            assert_eq!(
                words.in_text(text),
                contains_any_ignore_ascii_case(text, &needles),
                "{text}"
            );
        }
    }

    #[test]
    fn words_are_found_in_any_ascii_case_without_a_copy() {
        let words = ["execute", "pg_stat"];
        assert!(contains_any_ignore_ascii_case(
            "DO $$ BEGIN EXECUTE x; END $$",
            &words
        ));
        assert!(contains_any_ignore_ascii_case(
            "select * from PG_Stats",
            &words
        ));
        assert!(contains_any_ignore_ascii_case("é pg_stat", &words));
        assert!(!contains_any_ignore_ascii_case(
            "select 1 -- execut",
            &words
        ));
        assert!(!contains_any_ignore_ascii_case("", &words));
        assert!(!contains_any_ignore_ascii_case("ÉXECUTE", &["xecutex"]));
    }

    #[test]
    fn every_decoding_form_is_flagged() {
        for sql in [
            r#"SELECT * FROM U&"\0063ustomers""#,
            r#"SELECT * FROM u&"!0063ustomers" UESCAPE '!'"#,
            r"SELECT U&'\0063ustomers'::regclass",
            r"SELECT E'\x63ustomers'::regclass",
            r"SELECT e'\143ustomers'::regclass",
            "SELECT 'cust'\n'omers'::regclass",
            "SELECT 'cust' \r\n  'omers'::regclass",
            "SELECT 'cust'\n-- a comment\n'omers'::regclass",
            "DO E'BEGIN DELETE FROM \\x63ustomers; END'",
        ] {
            assert!(may_hide_text(sql), "{sql}");
        }
    }

    #[test]
    fn ordinary_text_is_not_flagged() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 123",
            "SELECT 'a' || 'b' FROM t WHERE x = 'c'\n  AND y = 2",
            "SELECT 'a' 'b'",
            r"SELECT '\d' FROM t",
            "SELECT u & 1, $$\\x$$",
        ] {
            assert!(!may_hide_text(sql), "{sql}");
        }
    }
}
