//! Unicode-escaped identifiers (`U&"d\0061ta"`, optionally followed by `UESCAPE '!'`):
//! sqlparser reads them as the word `U`, an `&` and a quoted word, so they are decoded here,
//! in the token stream, into the one quoted identifier PostgreSQL sees.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Word};

use super::refusal;
use super::Refusal;

/// Replaces every `U&"..." [UESCAPE 'c']` token sequence by one quoted word holding the
/// decoded name; refuses one PostgreSQL would reject (or that this decoder cannot read).
pub fn decode_escaped_identifiers(
    tokens: Vec<TokenWithSpan>,
) -> Result<Vec<TokenWithSpan>, Refusal> {
    if !tokens.iter().any(|t| t.token == Token::Ampersand) {
        return Ok(tokens);
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let Some(body) = escaped_identifier_at(&tokens, i) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let (escape, end) = match uescape_after(&tokens, i + 2)? {
            Some((escape, end)) => (escape, end),
            None => ('\\', i + 2),
        };
        let name = decode(body, escape).ok_or_else(refusal::undecodable_identifier)?;
        out.push(TokenWithSpan::new(
            Token::Word(Word {
                value: name,
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            }),
            Span::new(tokens[i].span.start, tokens[end].span.end),
        ));
        i = end + 1;
    }
    Ok(out)
}

/// The still-escaped body of a `U&"..."` starting at token `i`: the word `U`, `&` and a
/// double-quoted word, with nothing between them.
fn escaped_identifier_at(tokens: &[TokenWithSpan], i: usize) -> Option<&str> {
    let [u, amp, quoted] = tokens.get(i..i + 3)? else {
        return None;
    };
    let Token::Word(w) = &u.token else {
        return None;
    };
    let Token::Word(q) = &quoted.token else {
        return None;
    };
    let adjacent = u.span.end == amp.span.start && amp.span.end == quoted.span.start;
    (w.quote_style.is_none()
        && w.value.eq_ignore_ascii_case("u")
        && amp.token == Token::Ampersand
        && q.quote_style == Some('"')
        && adjacent)
        .then_some(q.value.as_str())
}

/// `UESCAPE 'c'` after the identifier ending at token `last` (whitespace and comments may come
/// between): the escape character and the index of its string token.
fn uescape_after(tokens: &[TokenWithSpan], last: usize) -> Result<Option<(char, usize)>, Refusal> {
    let next = |from: usize| {
        (from..tokens.len()).find(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
    };
    let Some(k) = next(last + 1) else {
        return Ok(None);
    };
    match &tokens[k].token {
        Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::UESCAPE => {}
        _ => return Ok(None),
    }
    let escape = next(k + 1).and_then(|s| match &tokens[s].token {
        Token::SingleQuotedString(c) => single_escape_char(c).map(|c| (c, s)),
        _ => None,
    });
    escape.map(Some).ok_or_else(refusal::undecodable_identifier)
}

/// PostgreSQL's rule for the UESCAPE character: one character, not a hex digit, `+`, a quote
/// or white space.
fn single_escape_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    let allowed = chars.next().is_none()
        && !c.is_ascii_hexdigit()
        && !matches!(c, '+' | '\'' | '"')
        && !c.is_whitespace();
    allowed.then_some(c)
}

/// Decodes `\XXXX`, `\+XXXXXX` and a doubled escape character as PostgreSQL does, surrogate
/// pairs included; `None` for anything PostgreSQL would reject.
pub fn decode(body: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != escape {
            if high.is_some() {
                return None;
            }
            out.push(c);
            continue;
        }
        let code = match chars.peek() {
            Some(&n) if n == escape => {
                chars.next();
                if high.is_some() {
                    return None;
                }
                out.push(escape);
                continue;
            }
            Some('+') => {
                chars.next();
                hex(&mut chars, 6)?
            }
            _ => hex(&mut chars, 4)?,
        };
        match (high.take(), code) {
            (None, 0xD800..=0xDBFF) => high = Some(code),
            (Some(h), 0xDC00..=0xDFFF) => out.push(char::from_u32(
                0x10000 + ((h - 0xD800) << 10) + (code - 0xDC00),
            )?),
            (None, _) if code != 0 => out.push(char::from_u32(code)?),
            _ => return None,
        }
    }
    (high.is_none() && !out.is_empty()).then_some(out)
}

fn hex(chars: &mut impl Iterator<Item = char>, digits: usize) -> Option<u32> {
    (0..digits).try_fold(0u32, |acc, _| Some(acc * 16 + chars.next()?.to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn words(sql: &str) -> Vec<(String, Option<char>)> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        decode_escaped_identifiers(tokens)
            .unwrap()
            .into_iter()
            .filter_map(|t| match t.token {
                Token::Word(w) => Some((w.value, w.quote_style)),
                _ => None,
            })
            .collect()
    }

    fn refused(sql: &str) -> bool {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        decode_escaped_identifiers(tokens).is_err()
    }

    #[test]
    fn escaped_identifier_becomes_one_quoted_word() {
        let w = words(r#"INSERT INTO U&"\0063ustomers" VALUES (1)"#);
        assert_eq!(w[2], ("customers".to_string(), Some('"')));
        let w = words(r#"SELECT 1 FROM u&"d\+000061t""a""#);
        assert_eq!(w[2], ("dat\"a".to_string(), Some('"')));
    }

    #[test]
    fn uescape_sets_the_escape_character_across_comments() {
        let w = words(r#"SELECT * FROM U&"!0063ustomers" /* c */ UESCAPE '!' WHERE x = 1"#);
        assert_eq!(w[2], ("customers".to_string(), Some('"')));
        assert_eq!(w[3].0, "WHERE");
    }

    #[test]
    fn surrogate_pairs_combine_and_lone_ones_are_refused() {
        assert_eq!(decode(r"\D83D\DE00", '\\').as_deref(), Some("\u{1F600}"));
        assert_eq!(decode(r"\D83Dx", '\\'), None);
        assert_eq!(decode(r"\DE00", '\\'), None);
        assert_eq!(decode(r"\12", '\\'), None);
        assert_eq!(decode(r"a\\b", '\\').as_deref(), Some("a\\b"));
    }

    #[test]
    fn bad_escapes_and_uescape_characters_are_refused() {
        assert!(refused(r#"SELECT * FROM U&"\00zz""#));
        assert!(refused(r#"SELECT * FROM U&"x" UESCAPE 'a'"#));
        assert!(refused(r#"SELECT * FROM U&"x" UESCAPE '!!'"#));
        assert!(refused(r#"SELECT * FROM U&"x" UESCAPE 1"#));
    }

    #[test]
    fn spaced_ampersand_is_an_operator_not_an_escape() {
        let w = words(r#"SELECT u & "x" FROM t"#);
        assert_eq!(w[1], ("u".to_string(), None));
        assert_eq!(w[2], ("x".to_string(), Some('"')));
    }
}
