//! COPY text format: finding row ends across chunks, splitting a row into raw fields, and
//! decoding/encoding backslash escapes, following PostgreSQL's `copyfromparse.c` and `copyto.c`.

use std::ops::Range;

use super::row_end::RowEnd;

/// Finds unescaped newlines; a backslash escapes the next byte even if it is a newline, so the
/// state must survive a chunk boundary falling between the two.
#[derive(Debug, Default)]
pub(crate) struct LineScanner {
    after_backslash: bool,
    after_bare_cr: bool,
}

impl LineScanner {
    /// Index in `bytes` of the newline ending the current row, if any.
    pub(crate) fn find_row_end(&mut self, bytes: &[u8]) -> Option<RowEnd> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.after_backslash {
                self.after_backslash = false;
                self.after_bare_cr = false;
                continue;
            }
            match b {
                b'\n' => {
                    let crlf = self.after_bare_cr;
                    *self = LineScanner::default();
                    return Some(RowEnd {
                        newline_at: i,
                        crlf,
                    });
                }
                b'\\' => {
                    self.after_backslash = true;
                    self.after_bare_cr = false;
                }
                _ => self.after_bare_cr = b == b'\r',
            }
        }
        None
    }
}

/// Raw byte ranges of the fields of `row` (line ending removed); escaped delimiters stay
/// inside their field.
pub(crate) fn split_fields(row: &[u8], delimiter: u8, spans: &mut Vec<Range<usize>>) {
    spans.clear();
    let mut start = 0;
    let mut i = 0;
    while i < row.len() {
        if row[i] == b'\\' {
            i += 2;
            continue;
        }
        if row[i] == delimiter {
            spans.push(start..i);
            start = i + 1;
        }
        i += 1;
    }
    spans.push(start..row.len());
}

/// Decodes one raw field into `buf`; returns false for NULL. NULL is recognised on the raw
/// text, before unescaping, as PostgreSQL does (so `\N` is NULL but `\\N` is the text `\N`).
pub(crate) fn decode_field(raw: &[u8], null: &[u8], buf: &mut Vec<u8>) -> bool {
    buf.clear();
    if raw == null {
        return false;
    }
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            buf.push(b);
            continue;
        }
        // A trailing lone backslash is dropped, like PostgreSQL does.
        let Some(&c) = raw.get(i) else { break };
        i += 1;
        match c {
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                buf.push((value & 0xff) as u8);
            }
            b'x' => match raw.get(i).and_then(|&d| hex_value(d)) {
                Some(first) => {
                    i += 1;
                    let mut value = first;
                    if let Some(second) = raw.get(i).and_then(|&d| hex_value(d)) {
                        value = value * 16 + second;
                        i += 1;
                    }
                    buf.push(value);
                }
                None => buf.push(b'x'),
            },
            b'b' => buf.push(0x08),
            b'f' => buf.push(0x0c),
            b'n' => buf.push(b'\n'),
            b'r' => buf.push(b'\r'),
            b't' => buf.push(b'\t'),
            b'v' => buf.push(0x0b),
            other => buf.push(other),
        }
    }
    true
}

fn hex_value(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Appends `value` as a text-format field: NULL as the null string, text with backslash,
/// control characters and the delimiter escaped.
pub(crate) fn encode_field(value: Option<&str>, delimiter: u8, null: &[u8], out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(null);
        return;
    };
    let start = out.len();
    for &b in value.as_bytes() {
        let escaped = match b {
            0x08 => Some(b'b'),
            0x0c => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            0x0b => Some(b'v'),
            b'\\' => Some(b'\\'),
            _ if b == delimiter => Some(b),
            _ => None,
        };
        match escaped {
            Some(e) => out.extend_from_slice(&[b'\\', e]),
            None => out.push(b),
        }
    }
    // A value spelled exactly like the null string would read back as NULL: write its first
    // byte as an octal escape instead, replacing that byte's whole spelling (a backslash
    // escape is two bytes). (An empty value with NULL '' cannot be told apart in text format
    // at all; PostgreSQL has the same limitation.)
    if !value.is_empty() && out[start..] == *null {
        let first = value.as_bytes()[0];
        let spelling = if out[start] == b'\\' { 2 } else { 1 };
        let octal = [
            b'\\',
            b'0' + (first >> 6),
            b'0' + ((first >> 3) & 7),
            b'0' + (first & 7),
        ];
        out.splice(start..start + spelling, octal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(raw: &str) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        decode_field(raw.as_bytes(), b"\\N", &mut buf).then_some(buf)
    }

    fn encoded(value: Option<&str>, null: &str) -> String {
        let mut out = Vec::new();
        encode_field(value, b'\t', null.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn fields(row: &str, delimiter: u8) -> Vec<&str> {
        let mut spans = Vec::new();
        split_fields(row.as_bytes(), delimiter, &mut spans);
        spans.into_iter().map(|r| &row[r]).collect()
    }

    #[test]
    fn simple_escapes_decode() {
        assert_eq!(
            decoded(r"a\bb\fc\nd\re\tf\vg\\h").unwrap(),
            b"a\x08b\x0cc\nd\re\tf\x0bg\\h"
        );
    }

    #[test]
    fn backslash_before_other_char_is_that_char() {
        assert_eq!(decoded(r"\a\.\N\,").unwrap(), b"a.N,");
    }

    #[test]
    fn octal_escapes_take_one_to_three_digits() {
        assert_eq!(decoded(r"\101").unwrap(), b"A");
        assert_eq!(decoded(r"\1012").unwrap(), b"A2");
        assert_eq!(decoded(r"\7x").unwrap(), b"\x07x");
        assert_eq!(decoded(r"\08").unwrap(), b"\x008");
        assert_eq!(decoded(r"\777").unwrap(), [0o777u32 as u8]);
    }

    #[test]
    fn hex_escapes_take_one_or_two_digits() {
        assert_eq!(decoded(r"\x41").unwrap(), b"A");
        assert_eq!(decoded(r"\x4g").unwrap(), b"\x04g");
        assert_eq!(decoded(r"\x414").unwrap(), b"A4");
        assert_eq!(decoded(r"\xg").unwrap(), b"xg");
        assert_eq!(decoded(r"\xFf").unwrap(), [0xff]);
    }

    #[test]
    fn null_is_matched_on_raw_text() {
        assert_eq!(decoded(r"\N"), None);
        assert_eq!(decoded(r"\\N").unwrap(), b"\\N");
        assert_eq!(decoded("").unwrap(), b"");
    }

    #[test]
    fn trailing_backslash_is_dropped() {
        assert_eq!(decoded("ab\\").unwrap(), b"ab");
    }

    #[test]
    fn split_keeps_escaped_delimiters_in_field() {
        assert_eq!(fields("a\\\tb\tc", b'\t'), ["a\\\tb", "c"]);
        assert_eq!(fields("a|b\\\\|c", b'|'), ["a", "b\\\\", "c"]);
        assert_eq!(fields("", b'\t'), [""]);
        assert_eq!(fields("\t", b'\t'), ["", ""]);
    }

    #[test]
    fn bytea_text_gets_its_backslash_doubled() {
        assert_eq!(encoded(Some(r"\x01ab"), r"\N"), r"\\x01ab");
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(
            encoded(Some("a\tb\nc\rd\x08\x0c\x0b"), r"\N"),
            r"a\tb\nc\rd\b\f\v"
        );
        let mut out = Vec::new();
        encode_field(Some("a|b"), b'|', b"\\N", &mut out);
        assert_eq!(out, b"a\\|b");
    }

    #[test]
    fn null_encodes_as_null_string() {
        assert_eq!(encoded(None, r"\N"), r"\N");
        assert_eq!(encoded(None, "NULL"), "NULL");
    }

    #[test]
    fn value_equal_to_null_string_is_disguised() {
        let out = encoded(Some("NULL"), "NULL");
        assert_eq!(out, r"\116ULL");
        let mut buf = Vec::new();
        assert!(decode_field(out.as_bytes(), b"NULL", &mut buf));
        assert_eq!(buf, b"NULL");
    }

    #[test]
    fn value_whose_escaped_spelling_is_the_null_string_is_disguised() {
        // Found by the copy_codec fuzz target: with NULL '\f', a form feed was spelled `\f`
        // and only its backslash replaced, which read back as the text `\f`.
        let out = encoded(Some("\x0c"), r"\f");
        assert_eq!(out, r"\014");
        let mut buf = Vec::new();
        assert!(decode_field(out.as_bytes(), br"\f", &mut buf));
        assert_eq!(buf, b"\x0c");
    }

    #[test]
    fn unicode_round_trips() {
        let value = "héllo\t世界 🎉";
        let out = encoded(Some(value), r"\N");
        assert_eq!(decoded(&out).unwrap(), value.as_bytes());
    }

    #[test]
    fn scanner_honours_escaped_newline_across_chunks() {
        let mut s = LineScanner::default();
        assert!(s.find_row_end(b"ab\\").is_none());
        assert!(s.find_row_end(b"\ncd").is_none());
        let end = s.find_row_end(b"\r\n").unwrap();
        assert_eq!(end.newline_at, 1);
        assert!(end.crlf);
    }

    #[test]
    fn scanner_escaped_cr_is_not_a_crlf_ending() {
        let mut s = LineScanner::default();
        let end = s.find_row_end(b"ab\\\r\n").unwrap();
        assert_eq!(end.newline_at, 4);
        assert!(!end.crlf);
    }
}
