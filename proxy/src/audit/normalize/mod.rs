//! Statement text as audit may show it: every literal replaced by `?`, comments dropped,
//! whitespace collapsed, plus a fingerprint of the statement's shape, its kind and its
//! pgAudit class. Only the tokenizer runs (no parse): it is what tells a literal from a name.

use std::sync::Arc;

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use sqlparser::dialect::{Dialect, PostgreSqlDialect};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::protocol::text_settings::TextMode;

mod classify;

use self::classify::{classify_words, tables};

/// What stands in for a literal.
pub const PLACEHOLDER: &str = "?";

/// What stands in for a whole text the tokenizer could not read: nothing of it is shown.
pub const UNREADABLE: &str = "<statement not shown: it could not be tokenised>";

/// What stands in for a text sent while client_encoding was not UTF8: its bytes may read
/// differently here than in the server, so nothing of it is shown.
pub const OTHER_ENCODING: &str = "<statement not shown: client_encoding is not UTF8>";

/// The normalised statement field is cut here (after normalising, so only `?`s are cut).
const MAX_STATEMENT_CHARS: usize = 16 * 1024;

/// One statement of a text, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalStatement {
    /// The statement with literals replaced by `?`.
    pub text: String,
    /// Hex of the first 8 bytes of SHA-256 over the lower-cased normalised form.
    pub fingerprint: String,
    pub kind: &'static str,
    pub class: &'static str,
    /// Tables named after FROM, JOIN, INTO, UPDATE, TABLE, COPY (a token-level guess for
    /// statements the analyser did not read).
    pub tables: Vec<String>,
}

/// A whole text (a simple query may hold several statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub statements: Vec<NormalStatement>,
}

impl Normalized {
    /// Statement `index` of the text; the last one when the index runs past the end (the
    /// server and this tokenizer may split a text differently), or an empty statement.
    pub fn statement(&self, index: usize) -> NormalStatement {
        self.statements
            .get(index)
            .or(self.statements.last())
            .cloned()
            .unwrap_or_else(|| statement_of(&[]))
    }

    /// All statements joined, for events about the whole text (a refused simple query).
    pub fn whole(&self) -> NormalStatement {
        match self.statements.len() {
            0 | 1 => self.statement(0),
            _ => {
                let text = self
                    .statements
                    .iter()
                    .map(|s| s.text.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut first = self.statement(0);
                first.fingerprint = fingerprint(&text.to_lowercase());
                first.text = text;
                first.tables = self
                    .statements
                    .iter()
                    .flat_map(|s| s.tables.iter().cloned())
                    .fold(Vec::new(), |mut all, t| {
                        if !all.contains(&t) {
                            all.push(t);
                        }
                        all
                    });
                first
            }
        }
    }
}

/// Normalises a SQL text as the server read it under `mode`: with standard_conforming_strings
/// off a backslash escapes inside '...' (so `'it\'s secret'` is one literal); in another
/// client_encoding the text is not shown at all.
pub fn normalize_in(sql: &str, mode: TextMode) -> Normalized {
    match mode {
        TextMode::Standard => normalize(sql),
        TextMode::BackslashEscapes => normalize_with(sql, &BackslashStrings),
        TextMode::OtherEncoding => Normalized {
            statements: vec![withheld(sql, OTHER_ENCODING)],
        },
    }
}

/// Normalises a SQL text. Never fails: a text that does not tokenise is not shown at all.
pub fn normalize(sql: &str) -> Normalized {
    normalize_with(sql, &PostgreSqlDialect {})
}

/// PostgreSQL's lexing with standard_conforming_strings off: the PostgreSQL dialect in all
/// but backslashes in '...' (it claims to be that dialect, so the tokenizer's PostgreSQL
/// special cases still apply).
#[derive(Debug)]
struct BackslashStrings;

impl Dialect for BackslashStrings {
    fn dialect(&self) -> std::any::TypeId {
        std::any::TypeId::of::<PostgreSqlDialect>()
    }
    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_identifier_part(ch)
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_delimited_identifier_start(ch)
    }
    fn is_custom_operator_part(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_custom_operator_part(ch)
    }
    fn supports_unicode_string_literal(&self) -> bool {
        PostgreSqlDialect {}.supports_unicode_string_literal()
    }
    fn supports_nested_comments(&self) -> bool {
        PostgreSqlDialect {}.supports_nested_comments()
    }
    fn supports_string_escape_constant(&self) -> bool {
        PostgreSqlDialect {}.supports_string_escape_constant()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        PostgreSqlDialect {}.supports_numeric_literal_underscores()
    }
    fn supports_geometric_types(&self) -> bool {
        PostgreSqlDialect {}.supports_geometric_types()
    }
}

fn normalize_with(sql: &str, dialect: &dyn Dialect) -> Normalized {
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return Normalized {
            statements: vec![unreadable(sql)],
        };
    };
    let statements = tokens
        .split(|t| matches!(t, Token::SemiColon))
        .map(significant)
        .filter(|s| !s.is_empty())
        .map(|s| statement_of(&s))
        .collect();
    Normalized { statements }
}

/// The tokens that matter, each with whether whitespace or a comment came before it (comments
/// are dropped; any run of them and whitespace becomes one space).
fn significant(tokens: &[Token]) -> Vec<(&Token, bool)> {
    let mut out = Vec::new();
    let mut space = false;
    for t in tokens {
        match t {
            Token::Whitespace(_) => space = true,
            Token::EOF => {}
            t => {
                out.push((t, space && !out.is_empty()));
                space = false;
            }
        }
    }
    out
}

fn unreadable(sql: &str) -> NormalStatement {
    withheld(sql, UNREADABLE)
}

/// A statement shown only as `text`, with its kind when its leading word says it.
fn withheld(sql: &str, text: &str) -> NormalStatement {
    // The leading word, when it is a plain keyword, still says what kind of statement it was.
    let first: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    let (kind, class) = classify_words(&[first.as_str()]);
    NormalStatement {
        text: text.into(),
        fingerprint: fingerprint(text),
        kind,
        class,
        tables: Vec::new(),
    }
}

fn statement_of(spaced: &[(&Token, bool)]) -> NormalStatement {
    let tokens: Vec<&Token> = spaced.iter().map(|(t, _)| *t).collect();
    let tokens = tokens.as_slice();
    let mut text = String::new();
    let mut shape = String::new();
    for (i, (token, space)) in spaced.iter().enumerate() {
        if *space {
            text.push(' ');
        }
        if i > 0 {
            shape.push(' ');
        }
        if is_literal(token) {
            text.push_str(PLACEHOLDER);
            shape.push_str(PLACEHOLDER);
        } else {
            let shown = token.to_string();
            match token {
                Token::Word(w) if w.quote_style.is_none() => shape.push_str(&shown.to_lowercase()),
                _ => shape.push_str(&shown),
            }
            text.push_str(&shown);
        }
    }
    let words: Vec<String> = tokens.iter().take(64).filter_map(|t| keyword(t)).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (kind, class) = classify_words(&words);
    if text.len() > MAX_STATEMENT_CHARS {
        let mut cut = MAX_STATEMENT_CHARS;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" …");
    }
    NormalStatement {
        fingerprint: fingerprint(&shape),
        text,
        kind,
        class,
        tables: tables(tokens),
    }
}

/// Every token that carries a value rather than a name, keyword or operator. Unknown
/// characters count as values too: what the tokenizer cannot name is not shown.
fn is_literal(token: &Token) -> bool {
    match token {
        Token::Word(_) | Token::Placeholder(_) | Token::Whitespace(_) | Token::EOF => false,
        Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => true,
        _ => false,
    }
}

/// An unquoted word, upper-cased (keywords and plain names).
fn keyword(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// The audit fingerprint of a normalised shape.
pub fn fingerprint(shape: &str) -> String {
    let digest = Sha256::digest(shape.as_bytes());
    hex::encode(&digest[..8])
}

/// Normalised texts by SQL text, shared by all sessions. Texts longer than
/// [`CACHE_MAX_TEXT`] are not cached (they are nearly always unique); a full cache is cleared.
#[derive(Debug, Default)]
pub struct NormalizeCache {
    map: DashMap<Box<str>, Arc<Normalized>>,
}

/// Cache bounds.
const CACHE_MAX_ENTRIES: usize = 10_000;
const CACHE_MAX_TEXT: usize = 8 * 1024;

impl NormalizeCache {
    pub fn get(&self, sql: &str) -> Arc<Normalized> {
        if let Some(hit) = self.map.get(sql) {
            return hit.clone();
        }
        let normalized = Arc::new(normalize(sql));
        if sql.len() <= CACHE_MAX_TEXT {
            if self.map.len() >= CACHE_MAX_ENTRIES {
                self.map.clear();
            }
            self.map.insert(sql.into(), normalized.clone());
        }
        normalized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> NormalStatement {
        let n = normalize(sql);
        assert_eq!(n.statements.len(), 1, "{sql}: {n:?}");
        n.statements[0].clone()
    }

    #[test]
    fn literals_of_every_kind_become_placeholders() {
        let cases = [
            (
                "SELECT * FROM t WHERE a = 'secret'",
                "SELECT * FROM t WHERE a = ?",
            ),
            ("SELECT 42, -3.5e10, .5", "SELECT ?, -?, ?"),
            ("SELECT E'it\\'s secret\\n'", "SELECT ?"),
            ("SELECT $$secret$$, $tag$secret$tag$", "SELECT ?, ?"),
            (
                "SELECT ARRAY['secret1', 'secret2'], '{1,2}'::int[]",
                "SELECT ARRAY[?, ?], ?::int[]",
            ),
            (
                "SELECT B'1010', X'ff', U&'secr\\0065t', N'secret'",
                "SELECT ?, ?, ?, ?",
            ),
            ("SELECT 'it''s secret'", "SELECT ?"),
            ("SELECT date '2020-01-01'", "SELECT date ?"),
            (
                "INSERT INTO t (a, b) VALUES ('x', 1), ('y', 2)",
                "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
            ),
            (
                "ALTER ROLE bob PASSWORD 'hunter2'",
                "ALTER ROLE bob PASSWORD ?",
            ),
        ];
        for (sql, want) in cases {
            let got = one(sql);
            assert_eq!(got.text, want, "{sql}");
            for secret in ["secret", "hunter2", "42", "2020", "1010", "ff"] {
                assert!(!got.text.contains(secret), "{sql} leaked {secret}");
            }
        }
    }

    #[test]
    fn parameters_names_and_casts_are_kept() {
        let got = one("select u.email from public.users u where u.id = $1::int8");
        assert_eq!(
            got.text,
            "select u.email from public.users u where u.id = $1::int8"
        );
        assert_eq!(got.tables, vec!["public.users"]);
    }

    #[test]
    fn comments_are_dropped_and_whitespace_collapsed() {
        let got = one("SELECT /* token=abc */ a\n\t FROM t -- password=x\n");
        assert_eq!(got.text, "SELECT a FROM t");
    }

    #[test]
    fn untokenisable_text_is_not_shown_at_all() {
        let got = one("SELECT 'unterminated secret");
        assert_eq!(got.text, UNREADABLE);
        assert_eq!(got.kind, "select");
        assert!(!got.text.contains("secret"));
    }

    #[test]
    fn fingerprint_is_equal_for_the_same_shape_and_different_otherwise() {
        let a = one("SELECT * FROM t WHERE id = 1");
        let b = one("select *   from T where ID = 99 /* x */");
        let c = one("SELECT * FROM t WHERE id = 'x'");
        let d = one("SELECT * FROM t WHERE name = 1");
        let e = one("SELECT * FROM \"T\" WHERE id = 1");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint, c.fingerprint);
        assert_ne!(a.fingerprint, d.fingerprint);
        assert_ne!(a.fingerprint, e.fingerprint);
        assert_eq!(a.fingerprint.len(), 16);
    }

    #[test]
    fn a_simple_query_splits_into_statements() {
        let n = normalize("BEGIN; INSERT INTO t VALUES ('a;b'); COMMIT;");
        let texts: Vec<_> = n.statements.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["BEGIN", "INSERT INTO t VALUES (?)", "COMMIT"]);
        assert_eq!(n.statement(1).kind, "insert");
        assert_eq!(n.statement(7).text, "COMMIT");
        assert_eq!(n.whole().text, "BEGIN; INSERT INTO t VALUES (?); COMMIT");
    }

    #[test]
    fn kinds_and_classes() {
        let cases = [
            ("SELECT 1", "select", "READ"),
            ("WITH x AS (SELECT 1) SELECT * FROM x", "select", "READ"),
            ("WITH x AS (SELECT 1) DELETE FROM t", "delete", "WRITE"),
            ("INSERT INTO t VALUES (1)", "insert", "WRITE"),
            ("UPDATE t SET a = 1", "update", "WRITE"),
            ("DELETE FROM t", "delete", "WRITE"),
            ("TRUNCATE t", "ddl", "WRITE"),
            ("COPY t FROM STDIN", "copy", "WRITE"),
            ("COPY t TO STDOUT", "copy", "READ"),
            ("CREATE TABLE t (a int)", "ddl", "DDL"),
            ("CREATE ROLE r", "ddl", "ROLE"),
            ("GRANT SELECT ON t TO r", "ddl", "ROLE"),
            ("DO $$ BEGIN END $$", "other", "FUNCTION"),
            ("BEGIN", "transaction", "MISC"),
            ("SET search_path = public", "utility", "MISC"),
            ("frobnicate", "other", "MISC"),
        ];
        for (sql, kind, class) in cases {
            let s = one(sql);
            assert_eq!((s.kind, s.class), (kind, class), "{sql}");
        }
    }

    #[test]
    fn tables_are_guessed_from_tokens() {
        let s = one("SELECT * FROM a, s.b AS x JOIN \"C\" ON true WHERE id IN (SELECT id FROM d)");
        assert_eq!(s.tables, vec!["a", "s.b", "C", "d"]);
        let s = one("SELECT * FROM generate_series(1, 3)");
        assert!(s.tables.is_empty());
        assert_eq!(one("INSERT INTO t (a) VALUES (1)").tables, vec!["t"]);
        assert_eq!(one("COPY t (a) FROM STDIN").tables, vec!["t"]);
        assert_eq!(one("UPDATE t SET a = 1").tables, vec!["t"]);
    }

    #[test]
    fn backslash_escapes_are_read_when_standard_strings_are_off() {
        let sql = r"SELECT 'it\'s secret', 'x' FROM t WHERE a = E'\'also secret'";
        let got = normalize_in(sql, TextMode::BackslashEscapes);
        assert_eq!(got.statements.len(), 1);
        assert_eq!(got.statements[0].text, "SELECT ?, ? FROM t WHERE a = ?");
        // Read the standard way, the same text would show `secret` as a word.
        let standard = normalize_in(sql, TextMode::Standard);
        assert!(standard.statements[0].text.contains("secret"));
    }

    #[test]
    fn text_in_another_encoding_is_not_shown() {
        let got = normalize_in("INSERT INTO t VALUES ('secret')", TextMode::OtherEncoding);
        assert_eq!(got.statements[0].text, OTHER_ENCODING);
        assert_eq!(got.statements[0].kind, "insert");
    }

    #[test]
    fn cache_returns_the_same_normalisation() {
        let cache = NormalizeCache::default();
        let a = cache.get("SELECT 1");
        let b = cache.get("SELECT 1");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
