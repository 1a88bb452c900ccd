//! `jsonb`: canonical form is compact JSON text with object keys sorted bytewise, duplicate
//! keys resolved last-wins (as jsonb does), numbers normalised like `numeric` and strings
//! escaped the way jsonb prints them. Two documents jsonb considers equal get equal bytes.
//!
//! A hand-written parser, because the number text must survive exactly (a generic JSON
//! crate would round numbers through f64). Output follows `jsonb_out`: `{"a": 1, "b": [1, 2]}`
//! with keys shorter-first, then bytewise. One difference from PostgreSQL: numbers lose their
//! written scale (`1.50` prints as `1.5`), as for `numeric`.

use pgshroud_rules::LogicalType;

use super::numeric;
use super::ValueError;

const TY: LogicalType = LogicalType::Jsonb;
/// Deepest nesting of arrays and objects accepted; keeps recursion far from the stack limit.
const MAX_DEPTH: usize = 256;
/// The only version of jsonb's binary format: a version byte, then the JSON text.
const BINARY_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Json {
    Null,
    Bool(bool),
    /// Canonical numeric text.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Keys unique and sorted bytewise.
    Object(Vec<(String, Json)>),
}

/// How a document is printed: canonical (compact, bytewise key order) or as `jsonb_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Canonical,
    Postgres,
}

pub(super) fn from_text(text: &str) -> Result<Vec<u8>, ValueError> {
    Ok(parse(text)?.print(Style::Canonical).into_bytes())
}

pub(super) fn from_binary(bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    let Some((&BINARY_VERSION, text)) = bytes.split_first() else {
        return Err(ValueError::binary(TY, "unsupported jsonb binary version"));
    };
    let text = std::str::from_utf8(text).map_err(|_| ValueError::binary(TY, "not valid UTF-8"))?;
    from_text(text)
}

pub(super) fn to_text(canonical: &[u8]) -> Result<String, ValueError> {
    let not_json = |_| ValueError::canonical(TY, "not a JSON document");
    let text =
        std::str::from_utf8(canonical).map_err(|_| ValueError::canonical(TY, "not valid UTF-8"))?;
    Ok(parse(text).map_err(not_json)?.print(Style::Postgres))
}

/// `jsonb_send`: the version byte, then the same text `jsonb_out` prints.
pub(super) fn to_binary(canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    let mut out = vec![BINARY_VERSION];
    out.extend_from_slice(to_text(canonical)?.as_bytes());
    Ok(out)
}

fn parse(text: &str) -> Result<Json, ValueError> {
    let mut parser = Parser {
        rest: text.as_bytes(),
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if !parser.rest.is_empty() {
        return Err(syntax("unexpected text after the JSON value"));
    }
    Ok(value)
}

fn syntax(reason: &'static str) -> ValueError {
    ValueError::syntax(TY, reason)
}

/// A recursive-descent JSON (RFC 8259) parser over the remaining input.
struct Parser<'a> {
    rest: &'a [u8],
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn advance(&mut self, n: usize) {
        self.rest = &self.rest[n.min(self.rest.len())..];
    }

    fn skip_whitespace(&mut self) {
        let n = self
            .rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.advance(n);
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), ValueError> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return Err(syntax(reason));
        }
        self.advance(1);
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Json, ValueError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.keyword(b"true", Json::Bool(true)),
            Some(b'f') => self.keyword(b"false", Json::Bool(false)),
            Some(b'n') => self.keyword(b"null", Json::Null),
            _ => Err(syntax("expected a JSON value")),
        }
    }

    fn keyword(&mut self, word: &[u8], value: Json) -> Result<Json, ValueError> {
        match self.rest.starts_with(word) {
            true => {
                self.advance(word.len());
                Ok(value)
            }
            false => Err(syntax("invalid literal, expected true, false or null")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ValueError> {
        if depth > MAX_DEPTH {
            return Err(syntax("nested too deeply"));
        }
        self.advance(1);
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.advance(1);
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.advance(1),
                Some(b']') => {
                    self.advance(1);
                    return Ok(Json::Array(items));
                }
                _ => return Err(syntax("expected ',' or ']' in an array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ValueError> {
        if depth > MAX_DEPTH {
            return Err(syntax("nested too deeply"));
        }
        self.advance(1);
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.advance(1);
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(syntax("expected a string as object key"));
            }
            let key = self.string()?;
            self.expect(b':', "expected ':' after an object key")?;
            members.push((key, self.value(depth)?));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.advance(1),
                Some(b'}') => {
                    self.advance(1);
                    return Ok(Json::Object(unique_sorted(members)));
                }
                _ => return Err(syntax("expected ',' or '}' in an object")),
            }
        }
    }

    /// JSON number grammar, then the value normalised as `numeric` does (jsonb stores
    /// numbers as numeric).
    fn number(&mut self) -> Result<Json, ValueError> {
        let bad = || syntax("invalid JSON number");
        let digits = |bytes: &[u8], from: usize| {
            bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let bytes = self.rest;
        let mut len = usize::from(bytes.first() == Some(&b'-'));
        let whole = digits(bytes, len);
        if whole == 0 || (whole > 1 && bytes[len] == b'0') {
            return Err(bad());
        }
        len += whole;
        if bytes.get(len) == Some(&b'.') {
            let fraction = digits(bytes, len + 1);
            if fraction == 0 {
                return Err(bad());
            }
            len += 1 + fraction;
        }
        if matches!(bytes.get(len), Some(b'e' | b'E')) {
            len += 1 + usize::from(matches!(bytes.get(len + 1), Some(b'+' | b'-')));
            let exponent = digits(bytes, len);
            if exponent == 0 {
                return Err(bad());
            }
            len += exponent;
        }
        let text = std::str::from_utf8(&bytes[..len]).map_err(|_| bad())?;
        let value = numeric::parse(TY, text)?;
        self.advance(len);
        Ok(Json::Number(value.canonical_text()))
    }

    /// A string literal, unescaped. `\u0000` is refused, as jsonb refuses it; surrogate
    /// escapes must pair up.
    fn string(&mut self) -> Result<String, ValueError> {
        self.advance(1);
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(syntax("unterminated string"));
            };
            self.advance(1);
            match byte {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                0x00..=0x1f => return Err(syntax("control character in a string must be escaped")),
                _ => out.push(byte),
            }
        }
        // The input was a &str and escapes produce whole chars, so this cannot fail.
        String::from_utf8(out).map_err(|_| syntax("invalid UTF-8 in a string"))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ValueError> {
        let Some(byte) = self.peek() else {
            return Err(syntax("unterminated string"));
        };
        self.advance(1);
        let simple = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(syntax("invalid escape in a string")),
        };
        out.push(simple);
        Ok(())
    }

    /// After `\u`: four hex digits, and for a high surrogate a following `\uDC00`-`\uDFFF`.
    fn unicode_escape(&mut self) -> Result<char, ValueError> {
        let first = self.hex4()?;
        let code = match first {
            0 => return Err(syntax("\\u0000 cannot be stored in jsonb")),
            0xD800..=0xDBFF => {
                if !self.rest.starts_with(b"\\u") {
                    return Err(syntax("high surrogate not followed by a low surrogate"));
                }
                self.advance(2);
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(syntax("high surrogate not followed by a low surrogate"));
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(syntax("low surrogate without a high surrogate")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| syntax("invalid unicode escape"))
    }

    fn hex4(&mut self) -> Result<u32, ValueError> {
        let digits = self
            .rest
            .get(..4)
            .ok_or_else(|| syntax("expected four hex digits after \\u"))?;
        let text = std::str::from_utf8(digits)
            .map_err(|_| syntax("expected four hex digits after \\u"))?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(syntax("expected four hex digits after \\u"));
        }
        let value = u32::from_str_radix(text, 16)
            .map_err(|_| syntax("expected four hex digits after \\u"))?;
        self.advance(4);
        Ok(value)
    }
}

/// Object members sorted bytewise by key, keeping the last of duplicate keys as jsonb does.
fn unique_sorted(mut members: Vec<(String, Json)>) -> Vec<(String, Json)> {
    members.reverse();
    // Stable: among equal keys the last written now comes first, and dedup keeps the first.
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, earlier| later.0 == earlier.0);
    members
}

impl Json {
    fn print(&self, style: Style) -> String {
        let mut out = String::new();
        self.write(style, &mut out);
        out
    }

    fn write(&self, style: Style, out: &mut String) {
        let (comma, colon) = match style {
            Style::Canonical => (",", ":"),
            Style::Postgres => (", ", ": "),
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    item.write(style, out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                let mut ordered: Vec<&(String, Json)> = members.iter().collect();
                if style == Style::Postgres {
                    // jsonb's key order: shorter keys first, then bytewise.
                    ordered.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
                }
                out.push('{');
                for (i, (key, value)) in ordered.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    write_string(key, out);
                    out.push_str(colon);
                    value.write(style, out);
                }
                out.push('}');
            }
        }
    }
}

/// A string literal escaped as PostgreSQL's `escape_json` does.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
