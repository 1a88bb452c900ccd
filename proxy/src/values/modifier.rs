//! Type modifiers of protected columns (`numeric(12, 2)`, `varchar(100)`, `timestamp(3)`):
//! applied to a canonical value before encryption the way the typed column's input would
//! (round, or refuse with PostgreSQL's error), and to output where they change it (numeric's
//! display scale, so `85000.50` reads back as `85000.50`), and the `keep_scale` numeric,
//! whose canonical form keeps the scale each value was written with.
//!
//! Rounding keeps the canonical form normalised: a value the modifier does not change encrypts
//! exactly as it would without one, and equal values still encrypt alike.

use pgshroud_rules::{LogicalType, TypeModifier};

use super::{binary_from_canonical, numeric, text_from_canonical, ValueError};

/// Canonical bytes of a text-format client value under the column's modifier: what
/// [`super::canonical_from_text`] gives, except that `keep_scale` numerics keep their scale.
pub fn canonical_from_text_under(
    t: LogicalType,
    modifier: Option<TypeModifier>,
    text: &str,
) -> Result<Vec<u8>, ValueError> {
    match (t, modifier) {
        (LogicalType::Numeric, Some(TypeModifier::KeepScale)) => {
            numeric::from_text_keeping_scale(text)
        }
        _ => super::canonical_from_text(t, text),
    }
}

/// [`canonical_from_text_under`] for a binary-format client value.
pub fn canonical_from_binary_under(
    t: LogicalType,
    modifier: Option<TypeModifier>,
    bytes: &[u8],
) -> Result<Vec<u8>, ValueError> {
    match (t, modifier) {
        (LogicalType::Numeric, Some(TypeModifier::KeepScale)) => {
            numeric::from_binary_keeping_scale(bytes)
        }
        _ => super::canonical_from_binary(t, bytes),
    }
}

/// The canonical value as the typed column would store it.
pub fn apply_modifier(
    t: LogicalType,
    modifier: TypeModifier,
    canonical: Vec<u8>,
) -> Result<Vec<u8>, ValueError> {
    match (t, modifier) {
        (LogicalType::Numeric, TypeModifier::Numeric { precision, scale }) => {
            numeric::round_to(&canonical, precision, scale)
        }
        (LogicalType::Varchar | LogicalType::Text, TypeModifier::Length(limit)) => {
            fit_length(canonical, limit)
        }
        (LogicalType::Timestamp | LogicalType::Timestamptz, TypeModifier::Precision(p)) => {
            round_timestamp(t, &canonical, p)
        }
        _ => Ok(canonical),
    }
}

/// Text output under the modifier.
pub fn text_with_modifier(
    t: LogicalType,
    modifier: Option<TypeModifier>,
    canonical: &[u8],
) -> Result<String, ValueError> {
    match (t, modifier) {
        (LogicalType::Numeric, Some(TypeModifier::Numeric { scale, .. })) => {
            numeric::to_text_scaled(canonical, scale)
        }
        (LogicalType::Numeric, Some(TypeModifier::KeepScale)) => {
            numeric::to_text_keeping_scale(canonical)
        }
        _ => text_from_canonical(t, canonical),
    }
}

/// Binary output under the modifier.
pub fn binary_with_modifier(
    t: LogicalType,
    modifier: Option<TypeModifier>,
    canonical: &[u8],
) -> Result<Vec<u8>, ValueError> {
    match (t, modifier) {
        (LogicalType::Numeric, Some(TypeModifier::Numeric { scale, .. })) => {
            numeric::to_binary_scaled(canonical, scale)
        }
        (LogicalType::Numeric, Some(TypeModifier::KeepScale)) => {
            numeric::to_binary_keeping_scale(canonical)
        }
        _ => binary_from_canonical(t, canonical),
    }
}

/// [`text_with_modifier`] (`binary = false`) or [`binary_with_modifier`] of canonical bytes
/// the caller owns. Text types are their canonical bytes in both formats (UTF-8, as
/// `textout` and `textsend` write them), so those bytes are checked and handed back rather
/// than copied: every opened text value of a result row would otherwise be copied twice.
pub fn output_with_modifier(
    t: LogicalType,
    modifier: Option<TypeModifier>,
    canonical: Vec<u8>,
    binary: bool,
) -> Result<Vec<u8>, ValueError> {
    match t {
        LogicalType::Text | LogicalType::Varchar => String::from_utf8(canonical)
            .map(String::into_bytes)
            .map_err(|_| ValueError::canonical(t, "not valid UTF-8")),
        _ if binary => binary_with_modifier(t, modifier, &canonical),
        _ => text_with_modifier(t, modifier, &canonical).map(String::into_bytes),
    }
}

/// `varchar(n)` on assignment: longer text is an error, unless only spaces go past `n`, which
/// are cut off (as `varchar`'s length coercion does).
fn fit_length(canonical: Vec<u8>, limit: u32) -> Result<Vec<u8>, ValueError> {
    let text = std::str::from_utf8(&canonical)
        .map_err(|_| ValueError::canonical(LogicalType::Varchar, "not valid UTF-8"))?;
    let limit_chars = usize::try_from(limit).unwrap_or(usize::MAX);
    let Some((cut, _)) = text.char_indices().nth(limit_chars) else {
        return Ok(canonical);
    };
    if text[cut..].chars().all(|c| c == ' ') {
        Ok(canonical[..cut].to_vec())
    } else {
        Err(ValueError::TooLong { limit })
    }
}

/// `timestamp(p)`: microseconds rounded to `p` fractional digits, half away from zero, as
/// `AdjustTimestampForTypmod` does; the infinities stay.
fn round_timestamp(t: LogicalType, canonical: &[u8], precision: u8) -> Result<Vec<u8>, ValueError> {
    let bytes: [u8; 8] = canonical
        .try_into()
        .map_err(|_| ValueError::canonical(t, "not 8 bytes"))?;
    let micros = i64::from_be_bytes(bytes);
    if micros == i64::MAX || micros == i64::MIN || precision >= 6 {
        return Ok(canonical.to_vec());
    }
    let unit = 10i64.pow(u32::from(6 - precision));
    let half = unit / 2;
    let rounded = if micros >= 0 {
        (micros
            .checked_add(half)
            .ok_or(ValueError::OutOfRange { ty: t })?
            / unit)
            * unit
    } else {
        -((micros
            .checked_neg()
            .ok_or(ValueError::OutOfRange { ty: t })?
            + half)
            / unit)
            * unit
    };
    Ok(rounded.to_be_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::canonical_from_text;

    fn numeric(text: &str, precision: u16, scale: u16) -> Result<String, ValueError> {
        let m = TypeModifier::Numeric { precision, scale };
        let canonical = canonical_from_text(LogicalType::Numeric, text)?;
        let stored = apply_modifier(LogicalType::Numeric, m, canonical)?;
        text_with_modifier(LogicalType::Numeric, Some(m), &stored)
    }

    #[test]
    fn numeric_rounds_to_the_scale_and_prints_it() {
        assert_eq!(numeric("85000.50", 12, 2).unwrap(), "85000.50");
        assert_eq!(numeric("85000.5", 12, 2).unwrap(), "85000.50");
        assert_eq!(numeric("1.005", 12, 2).unwrap(), "1.01");
        assert_eq!(numeric("-1.005", 12, 2).unwrap(), "-1.01");
        assert_eq!(numeric("0.004", 12, 2).unwrap(), "0.00");
        assert_eq!(numeric("9.999", 12, 2).unwrap(), "10.00");
        assert_eq!(numeric("7", 5, 0).unwrap(), "7");
        assert_eq!(numeric("NaN", 5, 2).unwrap(), "NaN");
    }

    #[test]
    fn equal_numbers_in_any_spelling_store_alike_and_as_without_a_modifier() {
        let m = TypeModifier::Numeric {
            precision: 12,
            scale: 2,
        };
        let stored = |t: &str| {
            let c = canonical_from_text(LogicalType::Numeric, t).unwrap();
            apply_modifier(LogicalType::Numeric, m, c).unwrap()
        };
        assert_eq!(stored("85000.50"), stored("85000.5"));
        assert_eq!(stored("85000.500"), stored("8.50005e4"));
        assert_eq!(
            stored("85000.50"),
            canonical_from_text(LogicalType::Numeric, "85000.5").unwrap()
        );
    }

    #[test]
    fn numeric_overflow_is_refused_like_postgres() {
        assert_eq!(
            numeric("12345678901", 12, 2),
            Err(ValueError::NumericOverflow {
                precision: 12,
                scale: 2,
                infinite: false
            })
        );
        // Rounding up past the precision overflows too.
        assert!(numeric("9999999999.995", 12, 2).is_err());
        assert!(numeric("9999999999.99", 12, 2).is_ok());
        assert!(matches!(
            numeric("Infinity", 12, 2),
            Err(ValueError::NumericOverflow { infinite: true, .. })
        ));
    }

    #[test]
    fn numeric_binary_output_carries_the_scale() {
        let m = TypeModifier::Numeric {
            precision: 12,
            scale: 2,
        };
        let c = canonical_from_text(LogicalType::Numeric, "85000.5").unwrap();
        let binary = binary_with_modifier(LogicalType::Numeric, Some(m), &c).unwrap();
        // ndigits 3 (8, 5000 . 5000), weight 1, sign +, dscale 2.
        assert_eq!(
            binary,
            [0, 3, 0, 1, 0, 0, 0, 2, 0, 8, 0x13, 0x88, 0x13, 0x88]
        );
    }

    #[test]
    fn varchar_length_is_enforced_and_trailing_spaces_cut() {
        let fit = |t: &str| fit_length(t.as_bytes().to_vec(), 3);
        assert_eq!(fit("abc").unwrap(), b"abc");
        assert_eq!(fit("äbc  ").unwrap(), "äbc".as_bytes());
        assert_eq!(fit("abcd"), Err(ValueError::TooLong { limit: 3 }));
    }

    #[test]
    fn timestamps_round_to_their_precision() {
        let round = |micros: i64, p| {
            let out = round_timestamp(LogicalType::Timestamp, &micros.to_be_bytes(), p).unwrap();
            i64::from_be_bytes(out.try_into().unwrap())
        };
        assert_eq!(round(1_234_567, 3), 1_235_000);
        assert_eq!(round(-1_234_567, 3), -1_235_000);
        assert_eq!(round(1_234_499, 0), 1_000_000);
        assert_eq!(round(1_234_567, 6), 1_234_567);
    }
}
