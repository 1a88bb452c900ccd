//! COPY CSV format: finding row ends (quoted fields may hold newlines), splitting a row into raw
//! fields, and unquoting/quoting values, following PostgreSQL's `copyfromparse.c` and `copyto.c`.

use std::ops::Range;

use super::format::CopyFormat;
use super::row_end::RowEnd;

/// Finds newlines outside quotes. Mirrors PostgreSQL's line reader: a quote toggles the quoted
/// state anywhere in a field, and inside quotes an escape (when it differs from the quote)
/// protects the next quote.
#[derive(Debug)]
pub(crate) struct LineScanner {
    quote: u8,
    /// `None` when the escape equals the quote: then the quote is a plain toggle.
    escape: Option<u8>,
    in_quote: bool,
    last_was_escape: bool,
    after_bare_cr: bool,
}

impl LineScanner {
    pub(crate) fn new(format: &CopyFormat) -> Self {
        LineScanner {
            quote: format.quote,
            escape: (format.escape != format.quote).then_some(format.escape),
            in_quote: false,
            last_was_escape: false,
            after_bare_cr: false,
        }
    }

    /// Index in `bytes` of the newline ending the current row, if any.
    pub(crate) fn find_row_end(&mut self, bytes: &[u8]) -> Option<RowEnd> {
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' && !self.in_quote {
                let crlf = self.after_bare_cr;
                self.after_bare_cr = false;
                self.last_was_escape = false;
                return Some(RowEnd {
                    newline_at: i,
                    crlf,
                });
            }
            let is_escape = self.escape == Some(b);
            if self.in_quote && is_escape {
                self.last_was_escape = !self.last_was_escape;
            }
            if b == self.quote && !self.last_was_escape {
                self.in_quote = !self.in_quote;
            }
            if !is_escape {
                self.last_was_escape = false;
            }
            self.after_bare_cr = b == b'\r' && !self.in_quote;
        }
        None
    }
}

/// Where a field walk stopped.
struct FieldEnd {
    /// Index of the delimiter ending the field, or the row length.
    end: usize,
    saw_quote: bool,
}

/// The row ended inside a quoted section.
pub(crate) struct Unterminated;

/// Walks one field from `start`, feeding its unquoted bytes to `sink`. Like PostgreSQL, a quote
/// opens a quoted section anywhere in the field, not only at its start.
fn walk_field(
    row: &[u8],
    start: usize,
    format: &CopyFormat,
    mut sink: impl FnMut(u8),
) -> Result<FieldEnd, Unterminated> {
    let mut saw_quote = false;
    let mut in_quote = false;
    let mut i = start;
    while i < row.len() {
        let c = row[i];
        i += 1;
        if !in_quote {
            if c == format.delimiter {
                return Ok(FieldEnd {
                    end: i - 1,
                    saw_quote,
                });
            }
            if c == format.quote {
                saw_quote = true;
                in_quote = true;
            } else {
                sink(c);
            }
            continue;
        }
        // The escape is checked first because it may equal the quote.
        if c == format.escape {
            if let Some(&next) = row.get(i) {
                if next == format.escape || next == format.quote {
                    sink(next);
                    i += 1;
                    continue;
                }
            }
        }
        if c == format.quote {
            in_quote = false;
        } else {
            sink(c);
        }
    }
    if in_quote {
        return Err(Unterminated);
    }
    Ok(FieldEnd {
        end: row.len(),
        saw_quote,
    })
}

/// Raw byte ranges (quotes included) of the fields of `row`, line ending removed.
pub(crate) fn split_fields(
    row: &[u8],
    format: &CopyFormat,
    spans: &mut Vec<Range<usize>>,
) -> Result<(), Unterminated> {
    spans.clear();
    let mut start = 0;
    loop {
        let field = walk_field(row, start, format, |_| {})?;
        spans.push(start..field.end);
        if field.end >= row.len() {
            return Ok(());
        }
        start = field.end + 1;
    }
}

/// Unquotes one raw field into `buf`; returns false for NULL, which is the null string
/// written without any quotes (a quoted `""` is the empty string).
pub(crate) fn decode_field(
    raw: &[u8],
    format: &CopyFormat,
    buf: &mut Vec<u8>,
) -> Result<bool, Unterminated> {
    buf.clear();
    let field = walk_field(raw, 0, format, |b| buf.push(b))?;
    Ok(field.saw_quote || buf.as_slice() != format.null.as_bytes())
}

/// Appends `value` as a CSV field, quoted whenever it could otherwise be misread: when it holds
/// the delimiter, quote, CR or LF, equals the null string or the end marker `\.`, or is
/// empty (an unquoted empty field may mean NULL).
pub(crate) fn encode_field(value: Option<&str>, format: &CopyFormat, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(format.null.as_bytes());
        return;
    };
    let bytes = value.as_bytes();
    // The escape character means nothing outside quotes, so like PostgreSQL it does not force
    // quoting on its own (bytea text `\x..` stays unquoted with ESCAPE '\').
    let special =
        |b: &u8| matches!(*b, b'\n' | b'\r') || *b == format.delimiter || *b == format.quote;
    let needs_quotes =
        bytes.is_empty() || value == format.null || value == "\\." || bytes.iter().any(special);
    if !needs_quotes {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(format.quote);
    for &b in bytes {
        if b == format.quote || b == format.escape {
            out.push(format.escape);
        }
        out.push(b);
    }
    out.push(format.quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(row: &str, format: &CopyFormat) -> Vec<String> {
        let mut spans = Vec::new();
        assert!(split_fields(row.as_bytes(), format, &mut spans).is_ok());
        spans.into_iter().map(|r| row[r].to_owned()).collect()
    }

    fn decoded(raw: &str, format: &CopyFormat) -> Option<String> {
        let mut buf = Vec::new();
        let not_null = decode_field(raw.as_bytes(), format, &mut buf).ok().unwrap();
        not_null.then(|| String::from_utf8(buf).unwrap())
    }

    fn encoded(value: Option<&str>, format: &CopyFormat) -> String {
        let mut out = Vec::new();
        encode_field(value, format, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn backslash_escape() -> CopyFormat {
        CopyFormat {
            escape: b'\\',
            ..CopyFormat::csv()
        }
    }

    #[test]
    fn quoted_delimiters_stay_in_their_field() {
        let f = CopyFormat::csv();
        assert_eq!(fields(r#"a,"b,c",d"#, &f), ["a", r#""b,c""#, "d"]);
        assert_eq!(fields(r#""x""y",z"#, &f), [r#""x""y""#, "z"]);
        assert_eq!(fields(",", &f), ["", ""]);
    }

    #[test]
    fn quotes_may_open_mid_field() {
        let f = CopyFormat::csv();
        assert_eq!(fields(r#"ab"c,d"e,f"#, &f), [r#"ab"c,d"e"#, "f"]);
        assert_eq!(decoded(r#"ab"c,d"e"#, &f).unwrap(), "abc,de");
    }

    #[test]
    fn unterminated_quote_is_reported() {
        let mut spans = Vec::new();
        assert!(split_fields(br#"a,"bc"#, &CopyFormat::csv(), &mut spans).is_err());
    }

    #[test]
    fn doubled_quote_is_a_literal_quote() {
        assert_eq!(
            decoded(r#""say ""hi""""#, &CopyFormat::csv()).unwrap(),
            r#"say "hi""#
        );
    }

    #[test]
    fn distinct_escape_protects_quote_and_itself() {
        let f = backslash_escape();
        assert_eq!(decoded(r#""a\"b\\c\d""#, &f).unwrap(), r#"a"b\c\d"#);
        assert_eq!(fields(r#""a\",b",c"#, &f), [r#""a\",b""#, "c"]);
    }

    #[test]
    fn unquoted_empty_is_null_but_quoted_empty_is_empty_string() {
        let f = CopyFormat::csv();
        assert_eq!(decoded("", &f), None);
        assert_eq!(decoded(r#""""#, &f).unwrap(), "");
    }

    #[test]
    fn custom_null_string_matches_only_unquoted() {
        let f = CopyFormat {
            null: "NULL".into(),
            ..CopyFormat::csv()
        };
        assert_eq!(decoded("NULL", &f), None);
        assert_eq!(decoded(r#""NULL""#, &f).unwrap(), "NULL");
        assert_eq!(decoded("", &f).unwrap(), "");
    }

    #[test]
    fn empty_string_and_null_encode_differently() {
        let f = CopyFormat::csv();
        assert_eq!(encoded(None, &f), "");
        assert_eq!(encoded(Some(""), &f), r#""""#);
    }

    #[test]
    fn special_values_are_quoted() {
        let f = CopyFormat::csv();
        assert_eq!(encoded(Some("a,b"), &f), r#""a,b""#);
        assert_eq!(encoded(Some("a\nb"), &f), "\"a\nb\"");
        assert_eq!(encoded(Some("a\rb"), &f), "\"a\rb\"");
        assert_eq!(encoded(Some(r#"a"b"#), &f), r#""a""b""#);
        assert_eq!(encoded(Some(r"\."), &f), r#""\.""#);
        assert_eq!(encoded(Some(r"\x01ab"), &f), r"\x01ab");
        let nul = CopyFormat {
            null: "NULL".into(),
            ..CopyFormat::csv()
        };
        assert_eq!(encoded(Some("NULL"), &nul), r#""NULL""#);
    }

    #[test]
    fn distinct_escape_is_used_when_quoting() {
        let f = backslash_escape();
        let out = encoded(Some(r#"a"b\c"#), &f);
        assert_eq!(out, r#""a\"b\\c""#);
        assert_eq!(decoded(&out, &f).unwrap(), r#"a"b\c"#);
        assert_eq!(encoded(Some(r"\x01"), &f), r"\x01");
        assert_eq!(decoded(r"\x01", &f).unwrap(), r"\x01");
    }

    #[test]
    fn scanner_keeps_quoted_newlines_in_row() {
        let mut s = LineScanner::new(&CopyFormat::csv());
        assert!(s.find_row_end(b"a,\"b\n").is_none());
        assert!(s.find_row_end(b"c\r\n").is_none());
        let end = s.find_row_end(b"\",d\r\n").unwrap();
        assert_eq!(end.newline_at, 4);
        assert!(end.crlf);
    }

    #[test]
    fn scanner_escaped_quote_does_not_close_quotes() {
        let mut s = LineScanner::new(&backslash_escape());
        assert!(s.find_row_end(b"\"a\\\"\n").is_none());
        assert_eq!(s.find_row_end(b"\"\n").unwrap().newline_at, 1);
    }

    #[test]
    fn scanner_escaped_escape_lets_quote_close() {
        let mut s = LineScanner::new(&backslash_escape());
        let end = s.find_row_end(b"\"a\\\\\"\n").unwrap();
        assert_eq!(end.newline_at, 5);
    }
}
