//! Statement text as audit may show it: every literal replaced by `?`, comments dropped,
//! whitespace collapsed, plus a fingerprint of the statement's shape, its kind and its
//! pgAudit class. PostgreSQL's own scanner tells a literal from a name (`tokens.rs`); the
//! grammar runs only for `BEGIN ATOMIC` bodies, whose `;` do not end the statement.
//!
//! `pg_query::normalize` is not used: it needs a parse (several times the scanner's cost, and
//! nothing for a text that does not parse), keeps comments, which may hold anything, and
//! numbers `$n` placeholders like the client's own parameters.

use std::ops::Range;
use std::sync::Arc;

use dashmap::DashMap;
use pg_query::protobuf::Token;
use sha2::{Digest, Sha256};

use crate::protocol::text_settings::TextMode;

mod classify;
mod tokens;

use self::classify::{classify_words, tables};
use self::tokens::{Kind, Tok};

/// What stands in for a literal.
pub const PLACEHOLDER: &str = "?";

/// What stands in for a whole text PostgreSQL's scanner rejects: nothing of it is shown.
pub const UNREADABLE: &str = "<statement not shown: it could not be tokenised>";

/// What stands in for a text sent while client_encoding was not UTF8: its bytes may read
/// differently here than in the server, so nothing of it is shown.
pub const OTHER_ENCODING: &str = "<statement not shown: client_encoding is not UTF8>";

/// What stands in for a text whose strings read differently with standard_conforming_strings
/// off (a backslash in a plain `'...'` string): the scanner pgshroud reads with knows only
/// the standard reading, so nothing of it is shown.
pub const BACKSLASH_STRINGS: &str =
    "<statement not shown: standard_conforming_strings is off and a string holds a backslash>";

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
    /// server and this reading may split a text differently), or an empty statement.
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
/// off a text whose reading that changes is not shown; in another client_encoding no text is.
pub fn normalize_in(sql: &str, mode: TextMode) -> Normalized {
    match mode {
        TextMode::Standard => normalize(sql),
        TextMode::BackslashEscapes => normalize_with(sql, true),
        TextMode::OtherEncoding => Normalized {
            statements: vec![withheld(sql, OTHER_ENCODING)],
        },
    }
}

/// Normalises a SQL text. Never fails: a text the scanner rejects is not shown at all.
pub fn normalize(sql: &str) -> Normalized {
    normalize_with(sql, false)
}

fn normalize_with(sql: &str, backslash_strings: bool) -> Normalized {
    let Ok(tokens) = tokens::scan(sql) else {
        // With backslash escapes the standard reading may fail where the server's does not
        // (`'it\'s'`): say which reading was missing.
        let shown = if backslash_strings && sql.contains('\\') {
            BACKSLASH_STRINGS
        } else {
            UNREADABLE
        };
        return Normalized {
            statements: vec![withheld(sql, shown)],
        };
    };
    if backslash_strings && tokens::reads_otherwise_without_standard_strings(&tokens) {
        return Normalized {
            statements: vec![withheld(sql, BACKSLASH_STRINGS)],
        };
    }
    let statements = split(sql, &tokens)
        .into_iter()
        .map(|range| statement_of(&tokens[range]))
        .collect();
    Normalized { statements }
}

/// The token ranges of the text's statements, empty ones left out (the server skips them).
/// Statements end at `;`, except inside a `BEGIN ATOMIC ... END` body: there the grammar's
/// statement boundaries are used (a text it rejects runs nothing, and is split at `;`).
fn split(sql: &str, tokens: &[Tok<'_>]) -> Vec<Range<usize>> {
    let significant = |r: &Range<usize>| {
        tokens[r.clone()]
            .iter()
            .any(|t| !matches!(t.kind, Kind::Comment | Kind::Semicolon))
    };
    let mut ranges = Vec::new();
    let by_grammar =
        tokens.iter().any(|t| t.token == Token::Atomic) && grammar_split(sql, tokens, &mut ranges);
    if !by_grammar {
        ranges.clear();
        let mut start = 0;
        for (i, t) in tokens.iter().enumerate() {
            if t.kind == Kind::Semicolon {
                ranges.push(start..i);
                start = i + 1;
            }
        }
        ranges.push(start..tokens.len());
    }
    ranges.retain(significant);
    ranges
}

/// Statement boundaries from PostgreSQL's grammar (`stmt_location`, `stmt_len`), as token
/// ranges; `false` when the text does not parse.
fn grammar_split(sql: &str, tokens: &[Tok<'_>], ranges: &mut Vec<Range<usize>>) -> bool {
    let Ok(parsed) = crate::sql_limits::pg::parse(sql) else {
        return false;
    };
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(len) => start + len,
        };
        let first = tokens.partition_point(|t| t.start < start);
        let last = tokens.partition_point(|t| t.start < end);
        ranges.push(first..last);
    }
    true
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

/// One statement's tokens, comments included: the text shows every token but literals (as
/// `?`) and comments, one space wherever white space or a comment was.
fn statement_of(all: &[Tok<'_>]) -> NormalStatement {
    let tokens: Vec<Tok<'_>> = all
        .iter()
        .filter(|t| !matches!(t.kind, Kind::Comment | Kind::Semicolon))
        .copied()
        .collect();
    let mut text = String::new();
    let mut shape = String::new();
    let mut end = None;
    for t in &tokens {
        if end.is_some_and(|e| e < t.start) {
            text.push(' ');
        }
        if end.is_some() {
            shape.push(' ');
        }
        end = Some(t.start + t.text.len());
        match t.kind {
            Kind::Literal => {
                text.push_str(PLACEHOLDER);
                shape.push_str(PLACEHOLDER);
            }
            Kind::Word => {
                text.push_str(t.text);
                shape.push_str(&t.text.to_lowercase());
            }
            // `!=` is `<>` to the server: one shape.
            Kind::Other if t.token == Token::NotEquals => {
                text.push_str(t.text);
                shape.push_str("<>");
            }
            _ => {
                text.push_str(t.text);
                shape.push_str(t.text);
            }
        }
    }
    let words: Vec<String> = tokens
        .iter()
        .take(64)
        .filter_map(tokens::upper_word)
        .collect();
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
        tables: tables(&tokens),
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
mod tests;
