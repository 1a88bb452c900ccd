//! A statement text as PostgreSQL's scanner reads it (libpg_query's `scan`, the server's own
//! scan.l): each token's bytes and what it is, for the normaliser. Only the scanner runs,
//! never the grammar, so this costs a few microseconds and reads texts that do not parse.

use pg_query::protobuf::{KeywordKind, Token};

/// What a token is, as far as audit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A value: a string in any form (`'..'`, `E'..'`, `U&'..'`, dollar-quoted, continued
    /// across lines), a bit string (`B'..'`, `X'..'`) or a number.
    Literal,
    /// An unquoted name or keyword.
    Word,
    /// A quoted name (`"..."`, `U&"..."`).
    Quoted,
    /// A comment (`--`, `/* */`, nested ones included): never shown.
    Comment,
    /// `;` between statements.
    Semicolon,
    /// Operators, punctuation, `$n`, `::`.
    Other,
}

/// One token of the text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tok<'a> {
    pub text: &'a str,
    pub kind: Kind,
    /// PostgreSQL's token (keywords each have their own).
    pub token: Token,
    /// Whether the keyword is reserved (or a type or function name): no table can be called
    /// that without quotes.
    pub reserved: bool,
    /// Byte offset in the text.
    pub start: usize,
}

/// The text's tokens, comments included, in order. `Err` when PostgreSQL's scanner rejects
/// the text (an unterminated string or comment, a NUL byte) or reports positions that do not
/// tile it; the caller then shows nothing of it.
pub(super) fn scan(sql: &str) -> Result<Vec<Tok<'_>>, ()> {
    let scanned = pg_query::scan(sql).map_err(|_| ())?;
    let mut out = Vec::with_capacity(scanned.tokens.len());
    let mut end = 0;
    for t in &scanned.tokens {
        let start = usize::try_from(t.start).map_err(|_| ())?;
        let stop = usize::try_from(t.end).map_err(|_| ())?;
        // Tokens in order, no overlap, only white space between them: otherwise some byte
        // would be shown or hidden on a reading this module did not check.
        let gap = sql.get(end..start).ok_or(())?;
        if stop <= start || !gap.bytes().all(|b| b.is_ascii_whitespace()) {
            return Err(());
        }
        let text = sql.get(start..stop).ok_or(())?;
        // An unknown token number is a value: what cannot be named is not shown.
        let token = Token::try_from(t.token).unwrap_or(Token::Sconst);
        let keyword = KeywordKind::try_from(t.keyword_kind).unwrap_or(KeywordKind::NoKeyword);
        out.push(Tok {
            text,
            kind: kind(token, keyword, text),
            token,
            reserved: matches!(
                keyword,
                KeywordKind::ReservedKeyword | KeywordKind::TypeFuncNameKeyword
            ),
            start,
        });
        end = stop;
    }
    let tail = sql.get(end..).ok_or(())?;
    if !tail.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(());
    }
    Ok(out)
}

fn kind(token: Token, keyword: KeywordKind, text: &str) -> Kind {
    match token {
        Token::Sconst
        | Token::Usconst
        | Token::Bconst
        | Token::Xconst
        | Token::Iconst
        | Token::Fconst => Kind::Literal,
        Token::SqlComment | Token::CComment => Kind::Comment,
        Token::Ascii59 => Kind::Semicolon,
        Token::Uident => Kind::Quoted,
        Token::Ident if text.starts_with('"') => Kind::Quoted,
        Token::Ident => Kind::Word,
        _ if keyword != KeywordKind::NoKeyword => Kind::Word,
        _ => Kind::Other,
    }
}

/// Whether PostgreSQL reads the text differently with standard_conforming_strings off: only
/// a plain `'...'` string (also after `N`, and its continuations across lines) that holds a
/// backslash changes (the backslash then escapes); `E''`, dollar quotes, names, comments and
/// bit strings read the same, and `U&''` is an error the server reports itself.
pub(super) fn reads_otherwise_without_standard_strings(tokens: &[Tok<'_>]) -> bool {
    tokens
        .iter()
        .any(|t| t.token == Token::Sconst && t.text.starts_with('\'') && t.text.contains('\\'))
}

/// The unquoted word, upper-cased (keywords and plain names), for the statement's kind.
pub(super) fn upper_word(t: &Tok<'_>) -> Option<String> {
    (t.kind == Kind::Word).then(|| t.text.to_ascii_uppercase())
}

/// A name as PostgreSQL stores it: unquoted folded to lower case (ASCII only, as the server
/// does in UTF8), `"..."` without its quotes and with `""` as one quote. `U&"..."` is kept as
/// written: audit's table list is a guess, and the escapes stay visible.
pub(super) fn name(t: &Tok<'_>) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text.to_ascii_lowercase()),
        Kind::Quoted if t.token == Token::Ident => {
            let inner = t.text.strip_prefix('"')?.strip_suffix('"')?;
            Some(inner.replace("\"\"", "\""))
        }
        Kind::Quoted => Some(t.text.to_owned()),
        _ => None,
    }
}
