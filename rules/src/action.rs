//! What a role gets when it reads a protected column.

use std::fmt;

use crate::mask::Mask;

/// The read action for one protected column. `Display` gives the rules-file spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Plaintext, in the logical type.
    Decrypt,
    /// Decrypted, then masked; the client sees `text`.
    Mask(Mask),
    /// SQL NULL in place of the value.
    Null,
    /// The stored envelope as it is, typed `bytea`.
    Ciphertext,
    /// Any statement touching the column is refused.
    Deny,
}

impl Action {
    /// The spellings, for error messages.
    pub const SPELLINGS: &'static str = "decrypt, mask:<function>, null, ciphertext, deny";

    /// Parses a rules-file action; the error says what is wrong with it.
    pub fn parse(spec: &str) -> Result<Action, String> {
        let spec = spec.trim();
        if let Some(function) = spec.strip_prefix("mask:") {
            return Mask::parse(function).map(Action::Mask);
        }
        match spec {
            "decrypt" => Ok(Action::Decrypt),
            "null" => Ok(Action::Null),
            "ciphertext" => Ok(Action::Ciphertext),
            "deny" => Ok(Action::Deny),
            _ if Mask::parse(spec).is_ok() => Err(format!("is a mask; write \"mask:{spec}\"")),
            _ => Err(format!(
                "is not an action; write one of {}",
                Action::SPELLINGS
            )),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Decrypt => f.write_str("decrypt"),
            Action::Mask(mask) => write!(f, "mask:{mask}"),
            Action::Null => f.write_str("null"),
            Action::Ciphertext => f.write_str("ciphertext"),
            Action::Deny => f.write_str("deny"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_spelling() {
        for spec in [
            "decrypt",
            "mask:email",
            "mask:partial(1,1)",
            "null",
            "ciphertext",
            "deny",
        ] {
            assert_eq!(
                Action::parse(spec).map(|a| a.to_string()),
                Ok(spec.to_owned())
            );
        }
    }

    #[test]
    fn bare_mask_name_suggests_the_prefix() {
        let why = Action::parse("email").unwrap_err();
        assert!(why.contains("mask:email"), "{why}");
    }

    #[test]
    fn unknown_action_lists_the_choices() {
        let why = Action::parse("plaintext").unwrap_err();
        assert!(why.contains("decrypt, mask:<function>"), "{why}");
    }
}
