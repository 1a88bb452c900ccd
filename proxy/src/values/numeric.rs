//! `numeric`: canonical form is normalised decimal text (`-12.5`, `0`, `NaN`, `Infinity`):
//! no `+`, no leading zeros, no trailing fractional zeros, exponents expanded, `-0` is `0`.
//!
//! Text, not the base-10000 binary format, because the binary format carries the display
//! scale: `1.50` and `1.5` are equal to PostgreSQL but differ in bytes. The price: output
//! cannot restore the scale the client wrote (PostgreSQL prints `1.50` back, pgshroud `1.5`),
//! unless the rules file declares `numeric(p, s)`: then values are rounded to `s` and printed
//! with `s` digits, as the typed column would (`modifier.rs`).
//! A column with `keep_scale = true` keeps the written scale instead (`numeric/scale.rs`),
//! at the price of equality between scales.

use pgshroud_rules::LogicalType;

use super::{trim_pg_space, ValueError};

const TY: LogicalType = LogicalType::Numeric;
/// Most digits before the decimal point: base-10000 weight up to `i16::MAX`.
const MAX_INTEGER_DIGITS: i64 = 131_072;
/// Most digits after the decimal point (`NUMERIC_DSCALE_MAX`).
const MAX_FRACTION_DIGITS: i64 = 16_383;
/// Exponents beyond this cannot give a representable value; refusing early avoids overflow.
const MAX_EXPONENT: i64 = 1_000_000_000;

/// Binary sign words, as `numeric_send` writes them.
const SIGN_POSITIVE: u16 = 0x0000;
const SIGN_NEGATIVE: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_INFINITY: u16 = 0xD000;
const SIGN_NEG_INFINITY: u16 = 0xF000;

/// A numeric value, reduced so that equal values are equal here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Numeric {
    NaN,
    Infinity,
    NegInfinity,
    Finite(Decimal),
}

/// `(-1)^negative * digits * 10^exponent`, where `digits` (ASCII) has no leading or trailing
/// zeros; zero is no digits, not negative, exponent 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

pub(super) fn from_text(text: &str) -> Result<Vec<u8>, ValueError> {
    Ok(parse(TY, text)?.canonical_text().into_bytes())
}

pub(super) fn from_binary(bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    Ok(decode_binary(bytes)?.canonical_text().into_bytes())
}

pub(super) fn to_text(canonical: &[u8]) -> Result<String, ValueError> {
    Ok(from_canonical(canonical)?.canonical_text())
}

pub(super) fn to_binary(canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    Ok(from_canonical(canonical)?.binary())
}

/// Text output with at least `scale` fractional digits, as a `numeric(p, scale)` column prints.
pub(super) fn to_text_scaled(canonical: &[u8], scale: u16) -> Result<String, ValueError> {
    Ok(match from_canonical(canonical)? {
        Numeric::Finite(decimal) => decimal.text_scaled(usize::from(scale)),
        other => other.canonical_text(),
    })
}

/// Binary output with display scale `scale`.
pub(super) fn to_binary_scaled(canonical: &[u8], scale: u16) -> Result<Vec<u8>, ValueError> {
    Ok(match from_canonical(canonical)? {
        Numeric::Finite(decimal) => decimal.binary_scaled(usize::from(scale)),
        other => other.binary(),
    })
}

/// The canonical value rounded to `scale` fractional digits (half away from zero, as
/// `apply_typmod` does), refused when it then needs more than `precision - scale` integer
/// digits. NaN passes; the infinities do not fit any `numeric(p, s)`.
pub(super) fn round_to(
    canonical: &[u8],
    precision: u16,
    scale: u16,
) -> Result<Vec<u8>, ValueError> {
    let overflow = |infinite| ValueError::NumericOverflow {
        precision,
        scale,
        infinite,
    };
    let decimal = match from_canonical(canonical)? {
        Numeric::NaN => return Ok(canonical.to_vec()),
        Numeric::Infinity | Numeric::NegInfinity => return Err(overflow(true)),
        Numeric::Finite(decimal) => decimal,
    };
    let scale_i = i64::from(scale);
    let rounded = if -decimal.exponent <= scale_i {
        decimal
    } else {
        // Digits below the scale; at least one, at most all of them and then some.
        let drop = usize::try_from(-decimal.exponent - scale_i).unwrap_or(usize::MAX);
        let keep = decimal.digits.len().saturating_sub(drop);
        let round_up = drop <= decimal.digits.len() && decimal.digits[keep] >= b'5';
        let mut kept = decimal.digits[..keep].to_vec();
        if round_up {
            increment(&mut kept);
        }
        Decimal::new(TY, decimal.negative, kept, -scale_i)?
    };
    let integer_digits = rounded.digits.len() as i64 + rounded.exponent;
    if !rounded.digits.is_empty() && integer_digits > i64::from(precision) - scale_i {
        return Err(overflow(false));
    }
    Ok(Numeric::Finite(rounded).canonical_text().into_bytes())
}

/// Adds one to a decimal digit string (ASCII), growing it on carry.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// Reads what `numeric_in` reads: surrounding whitespace, `NaN`, `[+-]Infinity`, `[+-]inf`
/// (any case), or `[+-]digits[.digits][e[+-]digits]` with at least one digit.
/// `ty` names the type in errors (jsonb reuses this for its numbers).
pub(super) fn parse(ty: LogicalType, text: &str) -> Result<Numeric, ValueError> {
    parse_with_scale(ty, text).map(|(value, _)| value)
}

/// [`parse`], with the display scale `numeric_in` gives the value: the digits written after
/// the point less the exponent, at least 0 (`1.50` has 2, `1.5e1` 0, `NaN` 0).
fn parse_with_scale(ty: LogicalType, text: &str) -> Result<(Numeric, i64), ValueError> {
    let trimmed = trim_pg_space(text);
    match trimmed.to_ascii_lowercase().as_str() {
        "nan" => return Ok((Numeric::NaN, 0)),
        "infinity" | "+infinity" | "inf" | "+inf" => return Ok((Numeric::Infinity, 0)),
        "-infinity" | "-inf" => return Ok((Numeric::NegInfinity, 0)),
        _ => {}
    }
    let bad = || ValueError::syntax(ty, "expected a decimal number");
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed.as_bytes()[1..]),
        Some(b'+') => (false, &trimmed.as_bytes()[1..]),
        _ => (false, trimmed.as_bytes()),
    };
    let mantissa_len = unsigned
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    let (mantissa, exponent_part) = unsigned.split_at(mantissa_len);
    let (whole, fraction) = match mantissa.iter().position(|b| *b == b'.') {
        Some(point) => (&mantissa[..point], &mantissa[point + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    if whole.len() + fraction.len() == 0 || fraction.contains(&b'.') {
        return Err(bad());
    }
    let exponent = match exponent_part {
        [] => 0,
        [b'e' | b'E', rest @ ..] => parse_exponent(ty, rest)?,
        _ => return Err(bad()),
    };
    let digits = [whole, fraction].concat();
    let fraction_len = i64::try_from(fraction.len()).map_err(|_| ValueError::OutOfRange { ty })?;
    let scale = (fraction_len - exponent).max(0);
    Decimal::new(ty, negative, digits, exponent - fraction_len).map(|d| (Numeric::Finite(d), scale))
}

fn parse_exponent(ty: LogicalType, text: &[u8]) -> Result<i64, ValueError> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ValueError::syntax(ty, "expected digits in the exponent"));
    }
    let mut value: i64 = 0;
    for digit in digits {
        value = value * 10 + i64::from(digit - b'0');
        if value > MAX_EXPONENT {
            return Err(ValueError::OutOfRange { ty });
        }
    }
    Ok(if negative { -value } else { value })
}

/// Any decimal text with its display scale, or `None`.
fn from_canonical_any(text: &str) -> Option<(Numeric, i64)> {
    parse_with_scale(TY, text).ok()
}

/// Reads canonical bytes back, refusing anything that is not exactly canonical.
fn from_canonical(canonical: &[u8]) -> Result<Numeric, ValueError> {
    let not_canonical = || ValueError::canonical(TY, "not a normalised decimal");
    let text = std::str::from_utf8(canonical).map_err(|_| not_canonical())?;
    let value = parse(TY, text).map_err(|_| not_canonical())?;
    if value.canonical_text() != text {
        return Err(not_canonical());
    }
    Ok(value)
}

/// Reads `numeric_send`'s format: ndigits, weight, sign, dscale (16 bits each), then
/// ndigits base-10000 digits. Digits hidden by dscale are truncated, as `numeric_recv` does.
fn decode_binary(bytes: &[u8]) -> Result<Numeric, ValueError> {
    decode_binary_with_scale(bytes).map(|(value, _)| value)
}

/// [`decode_binary`], with the display scale the value carries.
fn decode_binary_with_scale(bytes: &[u8]) -> Result<(Numeric, u16), ValueError> {
    let word = |i: usize| {
        bytes
            .get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
    };
    let header = (word(0), word(1), word(2), word(3));
    let (Some(ndigits), Some(weight), Some(sign), Some(dscale)) = header else {
        return Err(ValueError::binary(TY, "shorter than the 8-byte header"));
    };
    let ndigits = usize::from(ndigits);
    if bytes.len() != 8 + 2 * ndigits {
        return Err(ValueError::binary(
            TY,
            "length does not match the digit count",
        ));
    }
    let negative = match sign {
        SIGN_POSITIVE => false,
        SIGN_NEGATIVE => true,
        SIGN_NAN => return Ok((Numeric::NaN, 0)),
        SIGN_INFINITY => return Ok((Numeric::Infinity, 0)),
        SIGN_NEG_INFINITY => return Ok((Numeric::NegInfinity, 0)),
        _ => return Err(ValueError::binary(TY, "invalid sign")),
    };
    if dscale > 0x3FFF {
        return Err(ValueError::binary(TY, "invalid scale"));
    }
    let mut digits = Vec::with_capacity(4 * ndigits);
    for i in 0..ndigits {
        let digit = word(4 + i).unwrap_or(u16::MAX);
        if digit >= 10_000 {
            return Err(ValueError::binary(TY, "invalid base-10000 digit"));
        }
        digits.extend_from_slice(format!("{digit:04}").as_bytes());
    }
    let weight = i64::from(weight as i16);
    // ndigits is at most u16::MAX, so this cannot overflow.
    let mut exponent = 4 * (weight + 1 - ndigits as i64);
    let hidden = -exponent - i64::from(dscale);
    if hidden > 0 {
        let keep = digits
            .len()
            .saturating_sub(usize::try_from(hidden).unwrap_or(usize::MAX));
        digits.truncate(keep);
        exponent = -i64::from(dscale);
    }
    Decimal::new(TY, negative, digits, exponent).map(|d| (Numeric::Finite(d), dscale))
}

impl Numeric {
    pub(super) fn canonical_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".to_owned(),
            Numeric::Infinity => "Infinity".to_owned(),
            Numeric::NegInfinity => "-Infinity".to_owned(),
            Numeric::Finite(decimal) => decimal.text(),
        }
    }

    fn binary(&self) -> Vec<u8> {
        let special = |sign: u16, dscale: u16| {
            [0u16, 0, sign, dscale]
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect()
        };
        // PostgreSQL sends dscale 32 for the infinities (an artefact of reading their header
        // as a short numeric); receivers ignore it, but matching it keeps bytes identical.
        match self {
            Numeric::NaN => special(SIGN_NAN, 0),
            Numeric::Infinity => special(SIGN_INFINITY, 32),
            Numeric::NegInfinity => special(SIGN_NEG_INFINITY, 32),
            Numeric::Finite(decimal) => decimal.binary(),
        }
    }
}

impl Decimal {
    /// Normalises and range-checks `(-1)^negative * digits * 10^exponent`.
    fn new(
        ty: LogicalType,
        negative: bool,
        mut digits: Vec<u8>,
        mut exponent: i64,
    ) -> Result<Self, ValueError> {
        let leading = digits.iter().take_while(|d| **d == b'0').count();
        digits.drain(..leading);
        while digits.last() == Some(&b'0') {
            digits.pop();
            exponent += 1;
        }
        if digits.is_empty() {
            return Ok(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        let integer_digits = digits.len() as i64 + exponent;
        if integer_digits > MAX_INTEGER_DIGITS || -exponent > MAX_FRACTION_DIGITS {
            return Err(ValueError::OutOfRange { ty });
        }
        Ok(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    /// Digits before and after the decimal point, without sign; "0" when there are none before.
    fn split(&self) -> (String, String) {
        let digits = String::from_utf8_lossy(&self.digits);
        // Both counts are bounded by the range check in `new`.
        let fraction_len = usize::try_from(-self.exponent).unwrap_or(0);
        let zeros_after = usize::try_from(self.exponent).unwrap_or(0);
        if fraction_len == 0 {
            let whole = if self.digits.is_empty() {
                "0".to_owned()
            } else {
                format!("{digits}{}", "0".repeat(zeros_after))
            };
            return (whole, String::new());
        }
        if self.digits.len() > fraction_len {
            let (whole, fraction) = digits.split_at(self.digits.len() - fraction_len);
            (whole.to_owned(), fraction.to_owned())
        } else {
            (
                "0".to_owned(),
                format!("{}{digits}", "0".repeat(fraction_len - self.digits.len())),
            )
        }
    }

    fn split_scaled(&self, scale: usize) -> (String, String) {
        let (whole, mut fraction) = self.split();
        if fraction.len() < scale {
            fraction.push_str(&"0".repeat(scale - fraction.len()));
        }
        (whole, fraction)
    }

    fn text(&self) -> String {
        self.text_scaled(0)
    }

    /// Text with the fraction padded with zeros to at least `scale` digits.
    fn text_scaled(&self, scale: usize) -> String {
        let (whole, fraction) = self.split_scaled(scale);
        let sign = if self.negative { "-" } else { "" };
        match fraction.is_empty() {
            true => format!("{sign}{whole}"),
            false => format!("{sign}{whole}.{fraction}"),
        }
    }

    /// `numeric_send`'s format: base-10000 digits aligned on the decimal point, leading and
    /// trailing zero digits dropped, dscale = digits after the point.
    fn binary(&self) -> Vec<u8> {
        self.binary_scaled(0)
    }

    /// `numeric_send`'s format with display scale at least `scale`.
    fn binary_scaled(&self, scale: usize) -> Vec<u8> {
        let (whole, fraction) = self.split_scaled(scale);
        let dscale = fraction.len();
        let whole = format!("{}{whole}", "0".repeat((4 - whole.len() % 4) % 4));
        let fraction = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
        let groups: Vec<u16> = whole
            .as_bytes()
            .chunks(4)
            .chain(fraction.as_bytes().chunks(4))
            .map(|chunk| chunk.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0')))
            .collect();
        // Bounded by MAX_INTEGER_DIGITS / MAX_FRACTION_DIGITS, so these fit in 16 bits.
        let mut weight = (whole.len() / 4) as i64 - 1;
        let first = groups.iter().position(|g| *g != 0);
        let last = groups.iter().rposition(|g| *g != 0);
        let significant = match (first, last) {
            (Some(first), Some(last)) => {
                weight -= first as i64;
                &groups[first..=last]
            }
            _ => {
                weight = 0;
                &groups[..0]
            }
        };
        let sign = if self.negative {
            SIGN_NEGATIVE
        } else {
            SIGN_POSITIVE
        };
        let mut out = Vec::with_capacity(8 + 2 * significant.len());
        out.extend_from_slice(&(significant.len() as u16).to_be_bytes());
        out.extend_from_slice(&(weight as i16).to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&(dscale as u16).to_be_bytes());
        for group in significant {
            out.extend_from_slice(&group.to_be_bytes());
        }
        out
    }
}

mod scale;
pub(super) use scale::{
    from_binary_keeping_scale, from_text_keeping_scale, to_binary_keeping_scale,
    to_text_keeping_scale,
};

#[cfg(test)]
mod tests;
