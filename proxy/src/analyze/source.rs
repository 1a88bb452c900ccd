//! Maps sqlparser's line/column locations (1-based, counted in characters) to byte offsets in
//! the statement text, and finds the full source extent of a value expression (casts, signs,
//! typed strings) that sqlparser's own spans leave out.

use std::cell::Cell;
use std::ops::Range;

use sqlparser::ast::Expr;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan};

/// Precedence just below PostgreSQL's `::`, so re-parsing a value expression stops before any
/// binary operator that follows it in the source (PostgreSqlDialect's `::` is 140).
const BELOW_DOUBLE_COLON: u8 = 139;

/// How many tokens before the literal a value expression may start (`CAST ( 'x'`, `- 5`,
/// `timestamp with time zone '...'`).
const MAX_PREFIX_TOKENS: usize = 8;

/// How many tokens after the start a value expression may span (`::numeric(10, 2)`).
const MAX_EXPR_TOKENS: usize = 48;

/// The statement text with its line index and tokens.
pub struct SourceMap<'a> {
    sql: &'a str,
    /// Byte offset where each line starts (the tokenizer starts a line after `\n`).
    line_starts: Vec<usize>,
    ascii: bool,
    tokens: Vec<TokenWithSpan>,
    /// Last (line, column, byte) converted, so walking a long line left to right stays linear.
    cursor: Cell<(u64, u64, usize)>,
}

impl<'a> SourceMap<'a> {
    pub fn new(sql: &'a str, tokens: Vec<TokenWithSpan>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            sql,
            line_starts,
            ascii: sql.is_ascii(),
            tokens,
            cursor: Cell::new((0, 0, 0)),
        }
    }

    /// Byte offset of a location, `None` for the empty location or one outside the text.
    pub fn byte_of(&self, loc: Location) -> Option<usize> {
        if loc.line == 0 || loc.column == 0 {
            return None;
        }
        let line_start = *self.line_starts.get(usize::try_from(loc.line - 1).ok()?)?;
        let chars = usize::try_from(loc.column - 1).ok()?;
        if self.ascii {
            let byte = line_start + chars;
            return (byte <= self.sql.len()).then_some(byte);
        }
        let (c_line, c_col, c_byte) = self.cursor.get();
        let (mut col, mut byte) = if c_line == loc.line && c_col <= loc.column {
            (c_col, c_byte)
        } else {
            (1, line_start)
        };
        let mut rest = self.sql.get(byte..)?.chars();
        while col < loc.column {
            byte += rest.next()?.len_utf8();
            col += 1;
        }
        self.cursor.set((loc.line, loc.column, byte));
        Some(byte)
    }

    /// Where sqlparser's tokens start (comments included, white space not) and where its `;`
    /// tokens are, in bytes, for the comparison with PostgreSQL's scanner; `None` when a
    /// location cannot be mapped.
    pub fn token_offsets(&self) -> Option<super::agreement::SqlparserTokens> {
        use sqlparser::tokenizer::Whitespace;
        let mut seen = super::agreement::SqlparserTokens {
            starts: Vec::with_capacity(self.tokens.len()),
            semicolons: Vec::new(),
        };
        for t in &self.tokens {
            match &t.token {
                Token::EOF
                | Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab) => {
                    continue
                }
                _ => {}
            }
            let at = self.byte_of(t.span.start)?;
            if t.token == Token::SemiColon {
                seen.semicolons.push(at);
            }
            seen.starts.push(at);
        }
        Some(seen)
    }

    /// Byte range of a span (end exclusive), `None` when the span is empty or unmappable.
    pub fn byte_range(&self, span: Span) -> Option<Range<usize>> {
        let start = self.byte_of(span.start)?;
        let end = self.byte_of(span.end)?;
        (start < end).then_some(start..end)
    }

    /// The statement text in `range`.
    pub fn text(&self, range: Range<usize>) -> Option<&'a str> {
        self.sql.get(range)
    }

    /// Byte range of the whole value expression `expr` whose literal (or `$n`) token is at
    /// `anchor`. Plain literals map directly; casts, signs and typed strings are found by
    /// re-parsing the tokens around the anchor and accepting only a parse equal to `expr`.
    pub fn value_range(&self, expr: &Expr, anchor: Span) -> Option<Range<usize>> {
        if matches!(expr, Expr::Value(_)) {
            return self.byte_range(anchor);
        }
        let at = self.token_index(anchor.start)?;
        let mut start = at;
        for _ in 0..=MAX_PREFIX_TOKENS {
            if let Some(end) = self.parse_equal_from(start, at, expr) {
                let span = Span::new(self.tokens[start].span.start, self.tokens[end].span.end);
                return self.byte_range(span);
            }
            start = self.previous_significant(start)?;
        }
        None
    }

    /// The casts that end an `ARRAY[...]` argument whose last element ends at byte `from`:
    /// the byte range of each `::type` (outermost last), up to the `,` or `)` that ends the
    /// argument. `closers` is how many `]` / `)` belong to the argument (its `]` and the
    /// parentheses around it). `None` when anything else follows (e.g. an operator, or
    /// `CAST(... AS ...)`), so the caller refuses rather than guesses.
    pub fn trailing_casts(&self, from: usize, closers: usize) -> Option<Vec<Range<usize>>> {
        let first = self
            .tokens
            .iter()
            .position(|t| self.byte_of(t.span.start).is_some_and(|b| b >= from))?;
        let (mut depth, mut closed) = (0usize, 0usize);
        let mut casts = Vec::new();
        let mut cast_start: Option<usize> = None;
        let mut prev_end = from;
        for t in &self.tokens[first..] {
            let (start, end) = (self.byte_of(t.span.start)?, self.byte_of(t.span.end)?);
            match &t.token {
                Token::Whitespace(_) => continue,
                Token::DoubleColon if depth == 0 => {
                    casts.extend(cast_start.replace(start).map(|s| s..prev_end));
                }
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket if depth > 0 => depth -= 1,
                Token::RParen | Token::RBracket => {
                    casts.extend(cast_start.take().map(|s| s..prev_end));
                    if closed == closers {
                        return Some(casts);
                    }
                    closed += 1;
                }
                Token::Comma if depth == 0 => break,
                // Type names (words, numbers of a modifier, commas inside one) inside a cast.
                _ if cast_start.is_some() => {}
                _ => return None,
            }
            prev_end = end;
        }
        casts.extend(cast_start.map(|s| s..prev_end));
        (closed == closers).then_some(casts)
    }

    /// Index of the token starting exactly at `loc`.
    fn token_index(&self, loc: Location) -> Option<usize> {
        let key = (loc.line, loc.column);
        let i = self
            .tokens
            .partition_point(|t| (t.span.start.line, t.span.start.column) < key);
        let t = self.tokens.get(i)?;
        ((t.span.start.line, t.span.start.column) == key).then_some(i)
    }

    fn previous_significant(&self, i: usize) -> Option<usize> {
        (0..i)
            .rev()
            .find(|&j| !matches!(self.tokens[j].token, Token::Whitespace(_)))
    }

    /// Parses one value expression starting at token `start`; returns the index of its last
    /// token if it equals `expr` and covers the anchor token.
    fn parse_equal_from(&self, start: usize, anchor: usize, expr: &Expr) -> Option<usize> {
        let end = self.tokens.len().min(start + MAX_EXPR_TOKENS);
        let window = self.tokens.get(start..end)?.to_vec();
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(window);
        let parsed = parser.parse_subexpr(BELOW_DOUBLE_COLON).ok()?;
        if parsed != *expr {
            return None;
        }
        let consumed = parser.index();
        let last = (0..consumed.min(end - start))
            .rev()
            .find(|&j| !matches!(self.tokens[start + j].token, Token::Whitespace(_)))?;
        (start + last >= anchor).then_some(start + last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::tokenizer::Tokenizer;

    fn map(sql: &str) -> SourceMap<'_> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        SourceMap::new(sql, tokens)
    }

    #[test]
    fn character_columns_become_byte_offsets_after_multibyte_text() {
        let sql = "SELECT 'ü✓', 'x'";
        let m = map(sql);
        // 'x' starts at character column 14 (1-based): `SELECT ` 7, `'ü✓'` 4, `, ` 2.
        let b = m.byte_of(Location::new(1, 14)).unwrap();
        assert_eq!(&sql[b..], "'x'");
    }

    #[test]
    fn later_lines_are_offset_by_their_line_start() {
        let sql = "SELECT\n  'é',\r\n  'x'";
        let m = map(sql);
        let b = m.byte_of(Location::new(3, 3)).unwrap();
        assert_eq!(&sql[b..], "'x'");
    }

    #[test]
    fn empty_location_has_no_offset() {
        let m = map("SELECT 1");
        assert_eq!(m.byte_of(Location::new(0, 0)), None);
    }
}
