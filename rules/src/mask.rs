//! Masking functions: turn a value's text form into a deterministic, less revealing text.
//! Same input, same output, so masked columns still group and compare among themselves.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::logical_type::LogicalType;

/// What `redact` shows, and what every mask falls back to when the value does not fit it.
pub const REDACTED: &str = "****";

/// Hex characters of the HMAC kept by `hash`: 64 bits, enough to tell values apart.
const HASH_HEX_CHARS: usize = 16;

/// A masking function from the rules file (`mask:<function>[(args)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Always `****`.
    Redact,
    /// Keep `first` and `last` characters, one `*` per hidden character.
    Partial { first: usize, last: usize },
    /// First character of the local part and the domain: `a****@example.com`.
    Email,
    /// `****` and the last four characters: `****1234`.
    Last4,
    /// Keyed pseudonym: HMAC-SHA-256, first 16 hex characters.
    Hash,
    /// Dates and timestamps generalised to their year.
    Year,
    /// Numbers generalised to a bucket of `step`: `30-39`.
    Range { step: u64 },
}

impl Mask {
    /// The function names, for error messages.
    pub const NAMES: &'static str =
        "redact, partial(first, last), email, last4, hash, year, range(step)";

    /// Parses `name` or `name(args)`; the error says what is wrong, for a load error.
    pub fn parse(spec: &str) -> Result<Mask, String> {
        let spec = spec.trim();
        let (name, args) = match spec.split_once('(') {
            None => (spec, Vec::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix(')')
                    .ok_or_else(|| "is missing its closing `)`".to_owned())?;
                (name.trim(), parse_args(inner)?)
            }
        };
        let mask = match (name, args.as_slice()) {
            ("redact", []) => Mask::Redact,
            ("email", []) => Mask::Email,
            ("last4", []) => Mask::Last4,
            ("hash", []) => Mask::Hash,
            ("year", []) => Mask::Year,
            ("partial", &[first, last]) => Mask::Partial {
                first: usize::try_from(first).map_err(|_| "has too large an argument")?,
                last: usize::try_from(last).map_err(|_| "has too large an argument")?,
            },
            ("range", &[step]) if step > 0 => Mask::Range { step },
            ("range", &[_]) => return Err("needs a step of at least 1: range(10)".into()),
            ("partial", _) => return Err("takes two counts: partial(1, 1)".into()),
            ("range", _) => return Err("takes one step: range(10)".into()),
            ("redact" | "email" | "last4" | "hash" | "year", _) => {
                return Err(format!("takes no arguments; write mask:{name}"))
            }
            _ => {
                return Err(format!(
                    "uses an unknown mask function; write one of {}",
                    Mask::NAMES
                ))
            }
        };
        Ok(mask)
    }

    /// Whether the mask makes sense for values of `logical`; `Err` carries the hint.
    pub fn check_type(&self, logical: LogicalType) -> Result<(), &'static str> {
        use LogicalType::*;
        match self {
            Mask::Year if !matches!(logical, Date | Timestamp | Timestamptz) => {
                Err("year is for date, timestamp and timestamptz columns")
            }
            Mask::Range { .. } if !matches!(logical, Int2 | Int4 | Int8 | Numeric) => {
                Err("range is for int2, int4, int8 and numeric columns")
            }
            _ => Ok(()),
        }
    }

    /// Masks a value given in its text form. `hash_key` keys `hash` (callers pass a key
    /// derived for the column's context, so pseudonyms do not link across contexts).
    pub fn apply(&self, text: &str, hash_key: &[u8]) -> String {
        match self {
            Mask::Redact => REDACTED.to_owned(),
            Mask::Partial { first, last } => partial(text, *first, *last),
            Mask::Email => email(text),
            Mask::Last4 => last4(text),
            Mask::Hash => hash(text, hash_key),
            Mask::Year => year(text),
            Mask::Range { step } => range(text, *step),
        }
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Redact => f.write_str("redact"),
            Mask::Partial { first, last } => write!(f, "partial({first},{last})"),
            Mask::Email => f.write_str("email"),
            Mask::Last4 => f.write_str("last4"),
            Mask::Hash => f.write_str("hash"),
            Mask::Year => f.write_str("year"),
            Mask::Range { step } => write!(f, "range({step})"),
        }
    }
}

fn parse_args(inner: &str) -> Result<Vec<u64>, String> {
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<u64>()
                .map_err(|_| format!("has argument \"{}\", which is not a whole number", a.trim()))
        })
        .collect()
}

fn partial(text: &str, first: usize, last: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    // Keeping every character would reveal the value: hide it whole instead.
    if chars.len() <= first.saturating_add(last) {
        return REDACTED.to_owned();
    }
    let hidden = chars.len() - first - last;
    let mut out: String = chars[..first].iter().collect();
    out.extend(std::iter::repeat_n('*', hidden));
    out.extend(&chars[chars.len() - last..]);
    out
}

fn email(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((local, domain)) if !domain.is_empty() => match local.chars().next() {
            Some(first) => format!("{first}{REDACTED}@{domain}"),
            None => REDACTED.to_owned(),
        },
        _ => REDACTED.to_owned(),
    }
}

fn last4(text: &str) -> String {
    let count = text.chars().count();
    if count <= 4 {
        return REDACTED.to_owned();
    }
    let tail: String = text.chars().skip(count - 4).collect();
    format!("{REDACTED}{tail}")
}

fn hash(text: &str, key: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; redact rather than panic anyway.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return REDACTED.to_owned();
    };
    mac.update(text.as_bytes());
    let mut digest = hex::encode(mac.finalize().into_bytes());
    digest.truncate(HASH_HEX_CHARS);
    digest
}

/// `2024-03-05`, `2024-03-05 10:00:00+01` -> `2024`; `0044-03-15 BC` -> `0044 BC`;
/// `infinity` and `-infinity` reveal nothing and stay.
fn year(text: &str) -> String {
    let text = text.trim();
    if text == "infinity" || text == "-infinity" {
        return text.to_owned();
    }
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() < 4 || !text[digits.len()..].starts_with('-') {
        return REDACTED.to_owned();
    }
    if text.ends_with(" BC") {
        format!("{digits} BC")
    } else {
        digits
    }
}

/// `34` with step 10 -> `30-39`; `-5` -> `-10 to -1`; `12.5` -> `10-19` (buckets hold the
/// integer part, rounded down).
fn range(text: &str, step: u64) -> String {
    let Some(value) = floor_integer(text.trim()) else {
        return REDACTED.to_owned();
    };
    let step = i128::from(step);
    let low = value.div_euclid(step) * step;
    let high = low + step - 1;
    if low < 0 {
        format!("{low} to {high}")
    } else {
        format!("{low}-{high}")
    }
}

/// The floor of a decimal in PostgreSQL's text form (`-12.50`), if it fits in an `i128`.
fn floor_integer(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let has_fraction = fraction.bytes().any(|b| b != b'0');
    Some(match (negative, has_fraction) {
        (true, true) => -whole - 1,
        (true, false) => -whole,
        (false, _) => whole,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test hash key";

    fn apply(mask: &str, text: &str) -> String {
        Mask::parse(mask).expect("valid mask").apply(text, KEY)
    }

    #[test]
    fn redact_is_fixed_whatever_the_value() {
        assert_eq!(apply("redact", "alice"), "****");
        assert_eq!(apply("redact", ""), "****");
    }

    #[test]
    fn partial_keeps_ends_and_counts_characters() {
        assert_eq!(apply("partial(1,1)", "Johnson"), "J*****n");
        assert_eq!(apply("partial(2, 0)", "Zoë Ünal"), "Zo******");
        assert_eq!(apply("partial(1,2)", "éàüö"), "é*üö");
    }

    #[test]
    fn partial_hides_values_too_short_to_mask() {
        assert_eq!(apply("partial(1,1)", "ab"), "****");
        assert_eq!(apply("partial(0,0)", ""), "****");
    }

    #[test]
    fn email_keeps_first_character_and_domain() {
        assert_eq!(apply("email", "alice@example.com"), "a****@example.com");
        assert_eq!(apply("email", "élise@exämple.de"), "é****@exämple.de");
        assert_eq!(apply("email", "not an email"), "****");
        assert_eq!(apply("email", "@example.com"), "****");
        assert_eq!(apply("email", "alice@"), "****");
    }

    #[test]
    fn last4_keeps_last_four_characters() {
        assert_eq!(apply("last4", "4111 1111 1111 1234"), "****1234");
        assert_eq!(apply("last4", "+44 20 7946 0958"), "****0958");
        assert_eq!(apply("last4", "1234"), "****");
    }

    #[test]
    fn hash_is_stable_keyed_and_short() {
        let a = apply("hash", "alice@example.com");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, apply("hash", "alice@example.com"));
        assert_ne!(a, apply("hash", "bob@example.com"));
        assert_ne!(a, Mask::Hash.apply("alice@example.com", b"another key"));
    }

    #[test]
    fn hash_matches_hmac_sha256_reference() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            Mask::Hash.apply("what do ya want for nothing?", b"Jefe"),
            "5bdcc146bf60754e"
        );
    }

    #[test]
    fn year_generalises_dates_and_timestamps() {
        assert_eq!(apply("year", "2024-03-05"), "2024");
        assert_eq!(apply("year", "2024-03-05 10:11:12.5+01"), "2024");
        assert_eq!(apply("year", "0044-03-15 BC"), "0044 BC");
        assert_eq!(apply("year", "infinity"), "infinity");
        assert_eq!(apply("year", "March 2024"), "****");
    }

    #[test]
    fn range_buckets_numbers() {
        assert_eq!(apply("range(10)", "34"), "30-39");
        assert_eq!(apply("range(10)", "0"), "0-9");
        assert_eq!(apply("range(10)", "40"), "40-49");
        assert_eq!(apply("range(10)", "12.5"), "10-19");
        assert_eq!(apply("range(1000)", "52345.00"), "52000-52999");
    }

    #[test]
    fn range_handles_negative_numbers() {
        assert_eq!(apply("range(10)", "-5"), "-10 to -1");
        assert_eq!(apply("range(10)", "-10"), "-10 to -1");
        assert_eq!(apply("range(10)", "-0.5"), "-10 to -1");
        assert_eq!(apply("range(10)", "-11"), "-20 to -11");
    }

    #[test]
    fn range_redacts_what_is_not_a_number() {
        assert_eq!(apply("range(10)", "NaN"), "****");
        assert_eq!(apply("range(10)", "1e5"), "****");
        assert_eq!(apply("range(10)", &"9".repeat(60)), "****");
    }

    #[test]
    fn masks_display_in_rules_file_spelling() {
        for spec in [
            "redact",
            "partial(1,2)",
            "email",
            "last4",
            "hash",
            "year",
            "range(10)",
        ] {
            assert_eq!(
                Mask::parse(spec).map(|m| m.to_string()),
                Ok(spec.to_owned())
            );
        }
    }

    #[test]
    fn bad_mask_specs_are_refused() {
        assert!(Mask::parse("shuffle")
            .unwrap_err()
            .contains("unknown mask function"));
        assert!(Mask::parse("partial(1)")
            .unwrap_err()
            .contains("two counts"));
        assert!(Mask::parse("partial(1,x)")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(Mask::parse("range(0)").unwrap_err().contains("at least 1"));
        assert!(Mask::parse("range(10").unwrap_err().contains("closing"));
        assert!(Mask::parse("email(3)")
            .unwrap_err()
            .contains("no arguments"));
        assert_eq!(Mask::parse("hash()"), Ok(Mask::Hash));
    }

    #[test]
    fn year_and_range_only_fit_their_types() {
        assert!(Mask::Year.check_type(LogicalType::Date).is_ok());
        assert!(Mask::Year.check_type(LogicalType::Text).is_err());
        assert!(Mask::Range { step: 5 }
            .check_type(LogicalType::Numeric)
            .is_ok());
        assert!(Mask::Range { step: 5 }
            .check_type(LogicalType::Date)
            .is_err());
        assert!(Mask::Email.check_type(LogicalType::Varchar).is_ok());
    }
}
