//! `bool`: canonical form is one byte, 0 or 1, as `boolsend` writes it.

use pgshroud_rules::LogicalType;

use super::{trim_pg_space, ValueError};

const TY: LogicalType = LogicalType::Bool;

/// Accepts what `boolin` accepts: `t`/`true`/`yes`/`on`/`1` and `f`/`false`/`no`/`off`/`0`,
/// in any case, surrounded by whitespace, or any unique prefix of the words (`o` alone is
/// ambiguous between `on` and `off`).
pub(super) fn from_text(text: &str) -> Result<Vec<u8>, ValueError> {
    let word = trim_pg_space(text).to_ascii_lowercase();
    let is_prefix_of =
        |full: &str, min_len: usize| word.len() >= min_len && full.starts_with(&word);
    let value = if is_prefix_of("true", 1)
        || is_prefix_of("yes", 1)
        || is_prefix_of("on", 2)
        || word == "1"
    {
        true
    } else if is_prefix_of("false", 1)
        || is_prefix_of("no", 1)
        || is_prefix_of("off", 2)
        || word == "0"
    {
        false
    } else {
        return Err(ValueError::syntax(
            TY,
            "expected true/false, yes/no, on/off or 1/0",
        ));
    };
    Ok(vec![u8::from(value)])
}

/// `boolrecv` reads any non-zero byte as true.
pub(super) fn from_binary(bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    match bytes {
        [b] => Ok(vec![u8::from(*b != 0)]),
        _ => Err(ValueError::length(TY, 1)),
    }
}

pub(super) fn to_text(canonical: &[u8]) -> Result<String, ValueError> {
    Ok(if decode(canonical)? { "t" } else { "f" }.to_owned())
}

pub(super) fn to_binary(canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    decode(canonical).map(|v| vec![u8::from(v)])
}

fn decode(canonical: &[u8]) -> Result<bool, ValueError> {
    match canonical {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(ValueError::canonical(TY, "expected one byte, 0 or 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{canonical_from_binary, canonical_from_text, text_from_canonical};

    #[test]
    fn every_spelling_postgres_accepts_is_canonicalised() {
        for text in ["t", "TRUE", "tr", " yes ", "Y", "on", "ON", "1"] {
            assert_eq!(canonical_from_text(TY, text).unwrap(), [1], "{text:?}");
        }
        for text in ["f", "False", "fal", "no", "N", "off", "of", "0", "\tf\n"] {
            assert_eq!(canonical_from_text(TY, text).unwrap(), [0], "{text:?}");
        }
    }

    #[test]
    fn ambiguous_or_unknown_words_are_refused() {
        for text in ["o", "", "2", "truee", "yess", "01", "t rue", "nope"] {
            assert!(canonical_from_text(TY, text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn binary_nonzero_is_true_and_output_is_t_or_f() {
        assert_eq!(canonical_from_binary(TY, &[7]).unwrap(), [1]);
        assert_eq!(canonical_from_binary(TY, &[0]).unwrap(), [0]);
        assert!(canonical_from_binary(TY, &[0, 1]).is_err());
        assert_eq!(text_from_canonical(TY, &[1]).unwrap(), "t");
        assert_eq!(text_from_canonical(TY, &[0]).unwrap(), "f");
        assert!(text_from_canonical(TY, &[2]).is_err());
    }
}
