//! `numeric` that keeps its display scale (rules: `keep_scale = true`). The canonical form is
//! the value printed as `numeric_out` prints it, with exactly the display scale it was written
//! with (`85000.50`, `0.00`, `-1.5`; `NaN`, `Infinity`, `-Infinity`), so a value reads back as
//! PostgreSQL would return it. Values equal to PostgreSQL but written with different scales
//! therefore encrypt differently: the rules file says so where the option is set.

use super::{decode_binary_with_scale, from_canonical_any, parse_with_scale, Numeric, TY};
use crate::values::ValueError;

/// Largest display scale PostgreSQL keeps (`NUMERIC_DSCALE_MAX`); more is an error there too.
const MAX_DSCALE: i64 = 0x3FFF;

pub(in crate::values) fn from_text_keeping_scale(text: &str) -> Result<Vec<u8>, ValueError> {
    let (value, scale) = parse_with_scale(TY, text)?;
    if scale > MAX_DSCALE {
        return Err(ValueError::OutOfRange { ty: TY });
    }
    Ok(scaled_text(&value, scale as usize).into_bytes())
}

pub(in crate::values) fn from_binary_keeping_scale(bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    let (value, scale) = decode_binary_with_scale(bytes)?;
    Ok(scaled_text(&value, usize::from(scale)).into_bytes())
}

pub(in crate::values) fn to_text_keeping_scale(canonical: &[u8]) -> Result<String, ValueError> {
    let (value, scale) = read_canonical(canonical)?;
    Ok(scaled_text(&value, scale))
}

pub(in crate::values) fn to_binary_keeping_scale(canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    let (value, scale) = read_canonical(canonical)?;
    Ok(match value {
        Numeric::Finite(decimal) => decimal.binary_scaled(scale),
        other => other.binary(),
    })
}

fn scaled_text(value: &Numeric, scale: usize) -> String {
    match value {
        Numeric::Finite(decimal) => decimal.text_scaled(scale),
        other => other.canonical_text(),
    }
}

/// Reads canonical bytes back with their scale, refusing anything not exactly canonical.
fn read_canonical(canonical: &[u8]) -> Result<(Numeric, usize), ValueError> {
    let not_canonical = || ValueError::canonical(TY, "not a decimal with its display scale");
    let text = std::str::from_utf8(canonical).map_err(|_| not_canonical())?;
    let (value, scale) = from_canonical_any(text).ok_or_else(not_canonical)?;
    let scale = usize::try_from(scale).map_err(|_| not_canonical())?;
    if scaled_text(&value, scale) != text {
        return Err(not_canonical());
    }
    Ok((value, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: &str) -> String {
        String::from_utf8(from_text_keeping_scale(input).unwrap()).unwrap()
    }

    #[test]
    fn the_scale_written_is_the_scale_read() {
        for (input, stored) in [
            ("85000.50", "85000.50"),
            ("85000.5", "85000.5"),
            ("0.00", "0.00"),
            ("-0.00", "0.00"),
            ("+007.100", "7.100"),
            ("1.50e1", "15.0"),
            ("1.5e2", "150"),
            ("15e-3", "0.015"),
            ("  12 ", "12"),
            ("NaN", "NaN"),
            ("-inf", "-Infinity"),
        ] {
            assert_eq!(text(input), stored, "{input}");
            assert_eq!(to_text_keeping_scale(stored.as_bytes()).unwrap(), stored);
        }
    }

    #[test]
    fn binary_carries_the_scale_both_ways() {
        let canonical = from_text_keeping_scale("85000.50").unwrap();
        let binary = to_binary_keeping_scale(&canonical).unwrap();
        // ndigits 3 (8, 5000, .5000), weight 1, positive, dscale 2: numeric_send's bytes
        // (the integration test compares them with PostgreSQL's own).
        assert_eq!(
            binary,
            [0, 3, 0, 1, 0, 0, 0, 2, 0, 8, 0x13, 0x88, 0x13, 0x88]
        );
        assert_eq!(from_binary_keeping_scale(&binary).unwrap(), canonical);
        let zero = from_binary_keeping_scale(&[0, 0, 0, 0, 0, 0, 0, 3]).unwrap();
        assert_eq!(zero, b"0.000");
    }

    #[test]
    fn equal_values_of_other_scales_stay_apart() {
        assert_ne!(text("1.5"), text("1.50"));
        assert_eq!(text("1.50"), text("01.50"));
    }

    #[test]
    fn non_canonical_and_oversized_scales_are_refused() {
        for bad in ["1.50 ", "+1.50", "01.5", "1.5e0", "-0.0", "nan", ""] {
            assert!(to_text_keeping_scale(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let huge = format!("0.{}", "0".repeat(16_384));
        assert!(from_text_keeping_scale(&huge).is_err());
        let largest = format!("0.{}", "0".repeat(16_383));
        assert!(from_text_keeping_scale(&largest).is_ok());
    }
}
