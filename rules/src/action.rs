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

impl Action {
    /// The order in which actions win where several protected columns can feed one result
    /// column: deny > null > ciphertext > mask > decrypt. Ciphertext ranks above a mask
    /// because deterministic ciphertext shows which values are equal, which a mask such as
    /// `redact` hides.
    fn strictness(self) -> u8 {
        match self {
            Action::Decrypt => 0,
            Action::Mask(_) => 1,
            Action::Ciphertext => 2,
            Action::Null => 3,
            Action::Deny => 4,
        }
    }

    /// The strictest of `actions` (`Decrypt` for none). Two different masks have no order
    /// (neither shows less than the other): `Err` names them, and the caller refuses.
    pub fn strictest(actions: impl IntoIterator<Item = Action>) -> Result<Action, (Mask, Mask)> {
        let mut strictest = Action::Decrypt;
        let mut conflict = None;
        for action in actions {
            if let (Action::Mask(a), Action::Mask(b)) = (strictest, action) {
                if a != b {
                    conflict.get_or_insert((a, b));
                }
            }
            if action.strictness() > strictest.strictness() {
                strictest = action;
            }
        }
        match (conflict, strictest) {
            (Some(masks), Action::Mask(_)) => Err(masks),
            _ => Ok(strictest),
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
    fn strictest_action_wins_in_the_documented_order() {
        let order = [
            Action::Decrypt,
            Action::Mask(Mask::Redact),
            Action::Ciphertext,
            Action::Null,
            Action::Deny,
        ];
        for (i, weaker) in order.iter().enumerate() {
            for stronger in &order[i..] {
                assert_eq!(Action::strictest([*weaker, *stronger]), Ok(*stronger));
                assert_eq!(Action::strictest([*stronger, *weaker]), Ok(*stronger));
            }
        }
        assert_eq!(Action::strictest([]), Ok(Action::Decrypt));
    }

    #[test]
    fn two_different_masks_have_no_order_unless_something_stricter_wins() {
        let email = Action::Mask(Mask::Email);
        let redact = Action::Mask(Mask::Redact);
        assert_eq!(
            Action::strictest([email, Action::Decrypt, redact]),
            Err((Mask::Email, Mask::Redact))
        );
        assert_eq!(Action::strictest([email, email]), Ok(email));
        assert_eq!(
            Action::strictest([email, redact, Action::Null]),
            Ok(Action::Null)
        );
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
