//! `int2`, `int4`, `int8`: canonical form is the big-endian two's complement send format.

use pgshroud_rules::LogicalType;

use super::{trim_pg_space, ValueError};

/// Byte width of an integer type's binary form.
fn width(t: LogicalType) -> usize {
    match t {
        LogicalType::Int2 => 2,
        LogicalType::Int4 => 4,
        _ => 8,
    }
}

/// Accepts what `int2in`/`int4in`/`int8in` accept: optional surrounding whitespace, an
/// optional sign, then decimal digits (`'007'` is 7).
pub(super) fn from_text(t: LogicalType, text: &str) -> Result<Vec<u8>, ValueError> {
    let trimmed = trim_pg_space(text);
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::syntax(
            t,
            "expected an optionally signed decimal integer",
        ));
    }
    // Accumulate negatively so that the minimum value of each width parses too.
    let mut value: i64 = 0;
    for digit in digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(digit - b'0')))
            .ok_or(ValueError::OutOfRange { ty: t })?;
    }
    if !negative {
        value = value
            .checked_neg()
            .ok_or(ValueError::OutOfRange { ty: t })?;
    }
    encode(t, value)
}

/// Binary input is already canonical once its length is right.
pub(super) fn from_binary(t: LogicalType, bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    if bytes.len() != width(t) {
        return Err(ValueError::length(t, width(t)));
    }
    Ok(bytes.to_vec())
}

pub(super) fn to_text(t: LogicalType, canonical: &[u8]) -> Result<String, ValueError> {
    decode(t, canonical).map(|v| v.to_string())
}

pub(super) fn to_binary(t: LogicalType, canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    decode(t, canonical)?;
    Ok(canonical.to_vec())
}

fn encode(t: LogicalType, value: i64) -> Result<Vec<u8>, ValueError> {
    let out_of_range = ValueError::OutOfRange { ty: t };
    Ok(match t {
        LogicalType::Int2 => i16::try_from(value)
            .map_err(|_| out_of_range)?
            .to_be_bytes()
            .to_vec(),
        LogicalType::Int4 => i32::try_from(value)
            .map_err(|_| out_of_range)?
            .to_be_bytes()
            .to_vec(),
        _ => value.to_be_bytes().to_vec(),
    })
}

fn decode(t: LogicalType, canonical: &[u8]) -> Result<i64, ValueError> {
    let wrong_size = || ValueError::canonical(t, "wrong size");
    Ok(match t {
        LogicalType::Int2 => i64::from(i16::from_be_bytes(
            canonical.try_into().map_err(|_| wrong_size())?,
        )),
        LogicalType::Int4 => i64::from(i32::from_be_bytes(
            canonical.try_into().map_err(|_| wrong_size())?,
        )),
        _ => i64::from_be_bytes(canonical.try_into().map_err(|_| wrong_size())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{
        binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
    };
    use LogicalType::{Int2, Int4, Int8};

    #[test]
    fn leading_zeros_sign_and_whitespace_give_the_same_canonical() {
        let seven = 7i32.to_be_bytes().to_vec();
        for text in ["7", "007", "+7", " 7 ", "\t7\n"] {
            assert_eq!(canonical_from_text(Int4, text).unwrap(), seven, "{text:?}");
        }
        assert_eq!(canonical_from_binary(Int4, &seven).unwrap(), seven);
    }

    #[test]
    fn extremes_of_each_width_round_trip() {
        for (t, text) in [
            (Int2, "-32768"),
            (Int2, "32767"),
            (Int4, "-2147483648"),
            (Int4, "2147483647"),
            (Int8, "-9223372036854775808"),
            (Int8, "9223372036854775807"),
            (Int8, "0"),
        ] {
            let canonical = canonical_from_text(t, text).unwrap();
            assert_eq!(canonical.len(), width(t));
            assert_eq!(text_from_canonical(t, &canonical).unwrap(), text);
            let binary = binary_from_canonical(t, &canonical).unwrap();
            assert_eq!(canonical_from_binary(t, &binary).unwrap(), canonical);
        }
    }

    #[test]
    fn overflow_is_out_of_range() {
        for (t, text) in [
            (Int2, "32768"),
            (Int2, "-32769"),
            (Int4, "2147483648"),
            (Int8, "9223372036854775808"),
            (Int8, "-9223372036854775809"),
            (Int8, "99999999999999999999999"),
        ] {
            assert_eq!(
                canonical_from_text(t, text),
                Err(ValueError::OutOfRange { ty: t })
            );
        }
    }

    #[test]
    fn malformed_integers_are_syntax_errors() {
        for text in [
            "", " ", "-", "+", "1.0", "1e3", "12a", "1 2", "--1", "0x10", "١",
        ] {
            assert!(
                matches!(
                    canonical_from_text(Int4, text),
                    Err(ValueError::Syntax { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn binary_of_the_wrong_width_is_refused() {
        assert_eq!(
            canonical_from_binary(Int2, &[0, 0, 0, 7]),
            Err(ValueError::length(Int2, 2))
        );
        assert_eq!(
            canonical_from_binary(Int8, &[0; 4]),
            Err(ValueError::length(Int8, 8))
        );
        assert!(text_from_canonical(Int4, &[1, 2]).is_err());
    }
}
