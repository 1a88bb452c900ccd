//! What a normalised statement is: its kind and pgAudit class from the leading words, and the
//! tables it names (PostgreSQL's tokens, read for a guess: the analysis names the tables of
//! statements on protected ones).

use pg_query::protobuf::Token;

use super::tokens::{name, Kind, Tok};
use crate::analyze::StatementKind;

/// The statement kind (the one classification, [`StatementKind::of_leading_words`]) and the
/// pgAudit class, from the statement's leading words.
pub(super) fn classify_words(words: &[&str]) -> (&'static str, &'static str) {
    let kind = StatementKind::of_leading_words(words);
    let first = words.first().copied().unwrap_or("");
    let second = words.get(1).copied().unwrap_or("");
    let class = match kind {
        StatementKind::Select => "READ",
        StatementKind::Insert
        | StatementKind::Update
        | StatementKind::Delete
        | StatementKind::Merge => "WRITE",
        StatementKind::Copy if words.contains(&"FROM") => "WRITE",
        StatementKind::Copy => "READ",
        StatementKind::Ddl if first == "TRUNCATE" => "WRITE",
        StatementKind::Ddl
            if matches!(first, "GRANT" | "REVOKE")
                || (matches!(first, "CREATE" | "ALTER" | "DROP")
                    && (matches!(second, "ROLE" | "USER" | "GROUP")
                        || (second == "DEFAULT" && words.contains(&"PRIVILEGES")))) =>
        {
            "ROLE"
        }
        StatementKind::Ddl => "DDL",
        StatementKind::Other if matches!(first, "DO" | "CALL") => "FUNCTION",
        StatementKind::Transaction | StatementKind::Utility | StatementKind::Other => "MISC",
    };
    (kind.as_str(), class)
}

/// Names following FROM, JOIN, INTO, UPDATE, TABLE or COPY (past `ONLY`, and comma-separated
/// FROM lists), not followed by `(` (that would be a function).
pub(super) fn tables(tokens: &[Tok<'_>]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_keyword = matches!(
            tokens[i].token,
            Token::From | Token::Join | Token::Into | Token::Update | Token::Table | Token::Copy
        );
        i += 1;
        if !after_keyword {
            continue;
        }
        if tokens.get(i).is_some_and(|t| t.token == Token::Only) {
            i += 1;
        }
        while let Some((name, next)) = qualified_name(tokens, i) {
            if tokens.get(next).is_some_and(|t| t.token == Token::Ascii40)
                && !is_copy_target(tokens, i)
            {
                break;
            }
            if !found.contains(&name) {
                found.push(name);
            }
            i = skip_alias(tokens, next);
            if tokens.get(i).is_some_and(|t| t.token == Token::Ascii44) {
                i += 1;
                continue;
            }
            break;
        }
    }
    found
}

/// `COPY t (a, b)` and `INSERT INTO t (a, b)` name a table before their `(`.
fn is_copy_target(tokens: &[Tok<'_>], at: usize) -> bool {
    at > 0 && matches!(tokens[at - 1].token, Token::Copy | Token::Into)
}

/// `name` or `schema.name` starting at `at`, and the index after it. Reserved keywords (and
/// `STDIN`, `STDOUT`, `VALUES`, `SET`, which end a table list) are not names.
fn qualified_name(tokens: &[Tok<'_>], at: usize) -> Option<(String, usize)> {
    let mut parts = Vec::new();
    let mut i = at;
    loop {
        let t = tokens.get(i)?;
        if t.kind == Kind::Word && not_a_name(t) {
            return None;
        }
        parts.push(name(t)?);
        i += 1;
        if tokens.get(i).is_some_and(|t| t.token == Token::Ascii46) {
            i += 1;
            continue;
        }
        return Some((parts.join("."), i));
    }
}

fn not_a_name(t: &Tok<'_>) -> bool {
    t.reserved
        || matches!(
            t.token,
            Token::Stdin | Token::Stdout | Token::Values | Token::Set
        )
}

/// Skips `[AS] alias` after a table name (without AS, only a plain or quoted name is one).
fn skip_alias(tokens: &[Tok<'_>], at: usize) -> usize {
    let mut i = at;
    let with_as = tokens.get(i).is_some_and(|t| t.token == Token::As);
    if with_as {
        i += 1;
    }
    match tokens.get(i) {
        Some(t) if t.token == Token::Ident || t.token == Token::Uident => i + 1,
        Some(t) if with_as && t.kind == Kind::Word => i + 1,
        _ => i,
    }
}
