//! `bytea`: canonical form is the raw bytes. Text input takes both the hex and the escape
//! format; text output is the hex format (`bytea_output = hex`, the default).

use pgshroud_rules::LogicalType;

use super::ValueError;

const TY: LogicalType = LogicalType::Bytea;

/// Accepts what `byteain` accepts: `\x` followed by hex digit pairs (whitespace between
/// pairs allowed), or the escape format where `\\` is a backslash and `\ooo` an octal byte.
pub(super) fn from_text(text: &str) -> Result<Vec<u8>, ValueError> {
    match text.strip_prefix("\\x") {
        Some(hex_digits) => from_hex(hex_digits),
        None => from_escape(text.as_bytes()),
    }
}

fn from_hex(digits: &str) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::with_capacity(digits.len() / 2);
    let mut pending: Option<u8> = None;
    for c in digits.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r') && pending.is_none() {
            continue;
        }
        let nibble = c
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(ValueError::syntax(TY, "invalid hexadecimal digit"))?;
        match pending.take() {
            None => pending = Some(nibble),
            Some(high) => out.push(high << 4 | nibble),
        }
    }
    if pending.is_some() {
        return Err(ValueError::syntax(TY, "odd number of hexadecimal digits"));
    }
    Ok(out)
}

fn from_escape(input: &[u8]) -> Result<Vec<u8>, ValueError> {
    let bad = || ValueError::syntax(TY, "invalid escape: use \\\\ or \\ooo (octal)");
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'\\' {
            out.push(first);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', more @ ..] => {
                out.push(b'\\');
                rest = more;
            }
            [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', more @ ..] => {
                out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                rest = more;
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// `\x` and lower-case hex, as `byteaout` prints with `bytea_output = hex`.
pub(super) fn to_text(canonical: &[u8]) -> String {
    format!("\\x{}", hex::encode(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{
        binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
    };

    #[test]
    fn hex_and_escape_formats_give_the_same_bytes() {
        let expected = vec![0x0a, 0x0b, b'\\', 0xff];
        for text in [
            "\\x0a0b5cff",
            "\\x0A0B5CFF",
            "\\x0a 0b\n5c\tff",
            "\\012\\013\\\\\\377",
        ] {
            assert_eq!(canonical_from_text(TY, text).unwrap(), expected, "{text:?}");
        }
        assert_eq!(text_from_canonical(TY, &expected).unwrap(), "\\x0a0b5cff");
        assert_eq!(binary_from_canonical(TY, &expected).unwrap(), expected);
        assert_eq!(canonical_from_binary(TY, &expected).unwrap(), expected);
    }

    #[test]
    fn plain_text_is_its_own_escape_form_and_empty_is_empty() {
        assert_eq!(
            canonical_from_text(TY, "abc é").unwrap(),
            "abc é".as_bytes()
        );
        assert_eq!(canonical_from_text(TY, "").unwrap(), b"");
        assert_eq!(canonical_from_text(TY, "\\x").unwrap(), b"");
        assert_eq!(text_from_canonical(TY, b"").unwrap(), "\\x");
    }

    #[test]
    fn malformed_bytea_is_refused() {
        for text in [
            "\\x0", "\\x0g", "\\x0 a", "\\", "a\\b", "\\400", "\\01", "\\xé0",
        ] {
            assert!(canonical_from_text(TY, text).is_err(), "{text:?}");
        }
    }
}
