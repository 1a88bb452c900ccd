//! `text` and `varchar`: canonical form is the UTF-8 bytes, as `textsend` writes them for a
//! UTF-8 database. A `varchar(n)` length from the rules file is enforced in `modifier.rs`.

use pgshroud_rules::LogicalType;

use super::ValueError;

/// PostgreSQL text cannot hold NUL characters; refusing them here keeps the canonical form of
/// a value the same as what the database would have accepted.
pub(super) fn from_text(t: LogicalType, text: &str) -> Result<Vec<u8>, ValueError> {
    if text.contains('\0') {
        return Err(ValueError::syntax(t, "text cannot contain NUL characters"));
    }
    Ok(text.as_bytes().to_vec())
}

pub(super) fn from_binary(t: LogicalType, bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ValueError::binary(t, "not valid UTF-8"))?;
    if text.contains('\0') {
        return Err(ValueError::binary(t, "text cannot contain NUL characters"));
    }
    Ok(bytes.to_vec())
}

pub(super) fn to_text(t: LogicalType, canonical: &[u8]) -> Result<String, ValueError> {
    String::from_utf8(canonical.to_vec()).map_err(|_| ValueError::canonical(t, "not valid UTF-8"))
}

pub(super) fn to_binary(t: LogicalType, canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    to_text(t, canonical).map(String::into_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{
        binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
    };
    use LogicalType::{Text, Varchar};

    #[test]
    fn text_is_kept_byte_for_byte_including_whitespace() {
        for text in ["", " padded ", "Grüße, 世界 🎉", "line\nbreak"] {
            let canonical = canonical_from_text(Varchar, text).unwrap();
            assert_eq!(canonical, text.as_bytes());
            assert_eq!(text_from_canonical(Varchar, &canonical).unwrap(), text);
            assert_eq!(
                binary_from_canonical(Text, &canonical).unwrap(),
                text.as_bytes()
            );
            assert_eq!(
                canonical_from_binary(Text, text.as_bytes()).unwrap(),
                canonical
            );
        }
    }

    #[test]
    fn invalid_utf8_and_nul_are_refused() {
        assert!(canonical_from_binary(Text, &[0xff, 0xfe]).is_err());
        assert!(canonical_from_binary(Text, b"a\0b").is_err());
        assert!(canonical_from_text(Text, "a\0b").is_err());
        assert!(text_from_canonical(Text, &[0xc3]).is_err());
    }
}
