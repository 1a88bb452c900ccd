//! `uuid`: canonical form is the 16 bytes, as `uuid_send` writes them.

use pgshroud_rules::LogicalType;

use super::{fixed, trim_pg_space, ValueError};

const TY: LogicalType = LogicalType::Uuid;

/// Accepts what `uuid_in` accepts: 32 hex digits in any case, optionally in braces, with a
/// hyphen allowed after any group of four digits. Surrounding whitespace is accepted too,
/// which `uuid_in` itself refuses.
pub(super) fn from_text(text: &str) -> Result<Vec<u8>, ValueError> {
    let trimmed = trim_pg_space(text);
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or(ValueError::syntax(TY, "unbalanced braces"))?,
        None => trimmed,
    };
    let bad = || ValueError::syntax(TY, "expected 32 hex digits, optionally grouped by hyphens");
    let mut out = Vec::with_capacity(16);
    let mut rest = inner.as_bytes();
    while out.len() < 16 {
        let [hi, lo, tail @ ..] = rest else {
            return Err(bad());
        };
        out.push(hex_value(*hi).ok_or_else(bad)? << 4 | hex_value(*lo).ok_or_else(bad)?);
        rest = tail;
        // Like uuid_in: a hyphen may follow every second byte, but not the last one.
        if out.len() % 2 == 0 && out.len() < 16 {
            if let [b'-', tail @ ..] = rest {
                rest = tail;
            }
        }
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

pub(super) fn from_binary(bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    fixed::<16>(bytes, ValueError::length(TY, 16)).map(|b| b.to_vec())
}

/// Lower-case `8-4-4-4-12`, as `uuid_out` prints.
pub(super) fn to_text(canonical: &[u8]) -> Result<String, ValueError> {
    let bytes = fixed::<16>(canonical, ValueError::canonical(TY, "expected 16 bytes"))?;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

pub(super) fn to_binary(canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    fixed::<16>(canonical, ValueError::canonical(TY, "expected 16 bytes")).map(|b| b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{
        binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
    };

    const LOWER: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

    #[test]
    fn every_accepted_spelling_gives_the_same_canonical() {
        let canonical = canonical_from_text(TY, LOWER).unwrap();
        for text in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
            "  a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\n",
        ] {
            assert_eq!(
                canonical_from_text(TY, text).unwrap(),
                canonical,
                "{text:?}"
            );
        }
        assert_eq!(text_from_canonical(TY, &canonical).unwrap(), LOWER);
        let binary = binary_from_canonical(TY, &canonical).unwrap();
        assert_eq!(binary.len(), 16);
        assert_eq!(canonical_from_binary(TY, &binary).unwrap(), canonical);
    }

    #[test]
    fn malformed_uuids_are_refused() {
        for text in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380aé",
        ] {
            assert!(canonical_from_text(TY, text).is_err(), "{text:?}");
        }
        assert!(canonical_from_binary(TY, &[0; 15]).is_err());
    }
}
