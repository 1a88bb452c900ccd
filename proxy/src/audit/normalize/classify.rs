//! What a normalised statement is: its kind and pgAudit class from the leading words, and the
//! tables it names.

use sqlparser::keywords::Keyword;

use crate::analyze::StatementKind;
use sqlparser::tokenizer::Token;

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

/// Names following FROM, JOIN, INTO, UPDATE, TABLE or COPY (and comma-separated FROM lists),
/// not followed by `(` (that would be a function).
pub(super) fn tables(tokens: &[&Token]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_keyword = matches!(
            tokens[i],
            Token::Word(w) if w.quote_style.is_none() && matches!(
                w.keyword,
                Keyword::FROM | Keyword::JOIN | Keyword::INTO | Keyword::UPDATE
                    | Keyword::TABLE | Keyword::COPY
            )
        );
        i += 1;
        if !after_keyword {
            continue;
        }
        while let Some((name, next)) = qualified_name(tokens, i) {
            if matches!(tokens.get(next), Some(Token::LParen)) && !is_copy_target(tokens, i) {
                break;
            }
            if !found.contains(&name) {
                found.push(name);
            }
            i = skip_alias(tokens, next);
            if matches!(tokens.get(i), Some(Token::Comma)) {
                i += 1;
                continue;
            }
            break;
        }
    }
    found
}

/// `COPY t (a, b)` and `INSERT INTO t (a, b)` name a table before their `(`.
pub(super) fn is_copy_target(tokens: &[&Token], at: usize) -> bool {
    at > 0
        && matches!(tokens[at - 1], Token::Word(w) if matches!(w.keyword, Keyword::COPY | Keyword::INTO))
}

/// `name` or `schema.name` (quoted parts keep their case) starting at `at`; and the index
/// after it. Keywords that cannot be names (`SELECT`, `LATERAL`, ...) are not names.
pub(super) fn qualified_name(tokens: &[&Token], at: usize) -> Option<(String, usize)> {
    let mut parts = Vec::new();
    let mut i = at;
    loop {
        match tokens.get(i) {
            Some(Token::Word(w)) => {
                if w.quote_style.is_none() && not_a_name(w.keyword) {
                    return None;
                }
                parts.push(match w.quote_style {
                    Some(_) => w.value.clone(),
                    None => w.value.to_lowercase(),
                });
            }
            _ => return None,
        }
        i += 1;
        if matches!(tokens.get(i), Some(Token::Period)) {
            i += 1;
            continue;
        }
        return Some((parts.join("."), i));
    }
}

pub(super) fn not_a_name(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::SELECT
            | Keyword::LATERAL
            | Keyword::ONLY
            | Keyword::STDIN
            | Keyword::STDOUT
            | Keyword::WHERE
            | Keyword::VALUES
            | Keyword::DEFAULT
            | Keyword::SET
    )
}

/// Skips `[AS] alias` after a table name.
pub(super) fn skip_alias(tokens: &[&Token], at: usize) -> usize {
    let mut i = at;
    if matches!(tokens.get(i), Some(Token::Word(w)) if w.keyword == Keyword::AS) {
        i += 1;
    }
    match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_some() || w.keyword == Keyword::NoKeyword => i + 1,
        _ => i,
    }
}
