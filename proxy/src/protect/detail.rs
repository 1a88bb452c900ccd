//! What an error's DETAIL may show of protected values. PostgreSQL names the offending key of
//! a unique or foreign-key violation with its stored value (`Key (email)=(\x02...) already
//! exists.`): the proxy shows the caller's role's view of it (plaintext, a mask, the
//! ciphertext for a role that reads ciphertext) and drops the DETAIL whenever it cannot tell
//! which protected column a stored value belongs to.

use crate::crypto::envelope::{FORMAT_V1, FORMAT_V2, TAG_LEN};
use crate::protocol::error::PgError;

/// What becomes of a DETAIL.
#[derive(Debug, PartialEq, Eq)]
pub enum Detail {
    Keep,
    Replace(String),
    /// Not shown at all (as PostgreSQL omits it for a caller without SELECT on the columns).
    Drop,
}

/// How a key column's stored value reaches the caller.
pub trait KeyColumns {
    /// `None`: the column is not protected.
    type Column;
    fn protected(&self, column: &str) -> Option<Self::Column>;
    /// The role's view of a stored value (bytea hex text) as text; `None` when the role may
    /// see nothing of it.
    fn reveal(&mut self, column: &Self::Column, stored: &str) -> Result<Option<String>, PgError>;
}

/// The key-list DETAILs whose columns belong to the table the error names.
const SUFFIXES: [&str; 2] = [") already exists.", ") is not present in table "];

/// Rewrites `detail` for the caller. `columns` resolves the columns of the table the error
/// names (its `s` and `t` fields).
pub fn rewrite(detail: &str, columns: &mut impl KeyColumns) -> Detail {
    // Stored envelopes always print with a backslash (bytea hex or escape output).
    if !detail.contains('\\') {
        return Detail::Keep;
    }
    match rewrite_key(detail, columns) {
        Some(Detail::Keep) | None if may_hold_envelope(detail) => Detail::Drop,
        Some(detail) => detail,
        None => Detail::Keep,
    }
}

/// `Key (a, b)=(1, \x02...) already exists.`; `None` when `detail` is not of that form.
fn rewrite_key(detail: &str, columns: &mut impl KeyColumns) -> Option<Detail> {
    let rest = detail.strip_prefix("Key (")?;
    let (names, rest) = rest.split_once(")=(")?;
    let (at, suffix) = SUFFIXES
        .iter()
        .filter_map(|s| Some((rest.rfind(s)?, *s)))
        .max_by_key(|(at, _)| *at)?;
    if suffix == SUFFIXES[0] && at + suffix.len() != rest.len() {
        return None;
    }
    let (values, tail) = rest.split_at(at);
    let names: Vec<&str> = names.split(", ").collect();
    let values: Vec<&str> = values.split(", ").collect();
    // A value holding ", " (or an expression index) makes the lists ambiguous.
    if names.len() != values.len() {
        return None;
    }
    let mut shown = Vec::with_capacity(values.len());
    let mut changed = false;
    for (name, value) in names.iter().zip(&values) {
        let column = plain_identifier(name)?;
        match columns.protected(&column) {
            Some(col) => match columns.reveal(&col, value) {
                Ok(Some(text)) => {
                    // Even unchanged (a role that reads ciphertext), it is the role's view.
                    changed = true;
                    shown.push(text);
                }
                Ok(None) | Err(_) => return Some(Detail::Drop),
            },
            None if may_hold_envelope(value) => return Some(Detail::Drop),
            None => shown.push((*value).to_owned()),
        }
    }
    if !changed {
        return Some(Detail::Keep);
    }
    Some(Detail::Replace(format!(
        "Key ({})=({}{tail}",
        names.join(", "),
        shown.join(", ")
    )))
}

/// A column name as PostgreSQL prints it (quoted only when it must be); `None` for an
/// expression of an expression index.
fn plain_identifier(name: &str) -> Option<String> {
    if let Some(quoted) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return (!quoted.contains('"')).then(|| quoted.to_owned());
    }
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '$');
    ok.then(|| name.to_owned())
}

/// The error/notice fields other than a key DETAIL in which a stored value can appear: the
/// message (`RAISE ... '%', NEW.email`), hint, context (a function's statement with its values)
/// and internal query. A role's view cannot be placed there (no column is named), so envelopes
/// are taken out for every role.
pub const FREE_TEXT_FIELDS: [u8; 4] = [b'M', b'H', b'W', b'q'];

/// Stands in for a stored value taken out of a message.
pub const REMOVED: &str = "[protected value removed]";

/// `text` with every stored value taken out; `None` when it holds none. Hex output loses the
/// `\x..` run; escape output (`\002...`) has no clear end, so the whole text is replaced.
pub fn scrub(text: &str) -> Option<String> {
    if !text.contains('\\') || !may_hold_envelope(text) {
        return None;
    }
    if [FORMAT_V1, FORMAT_V2]
        .iter()
        .any(|&v| text.contains(&format!("\\{v:03o}")))
    {
        return Some(format!("{REMOVED} (the message held a stored value)"));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\x") {
        out.push_str(&rest[..at]);
        let run = &rest[at..];
        let digits = run[2..].bytes().take_while(u8::is_ascii_hexdigit).count();
        if may_hold_envelope(&run[..2 + digits]) {
            out.push_str(REMOVED);
        } else {
            out.push_str(&run[..2 + digits]);
        }
        rest = &run[2 + digits..];
    }
    out.push_str(rest);
    Some(out)
}

/// Whether text may hold a pgshroud envelope as bytea output: hex (`\x02` and at least a SIV
/// tag's worth of digits) or escape (`\002`).
fn may_hold_envelope(text: &str) -> bool {
    let hex = |v: u8| format!("\\x{v:02x}");
    let escape = |v: u8| format!("\\{v:03o}");
    [FORMAT_V1, FORMAT_V2].iter().any(|&v| {
        text.contains(&escape(v))
            || text.match_indices(&hex(v)).any(|(at, m)| {
                let digits = text[at + m.len()..]
                    .bytes()
                    .take_while(u8::is_ascii_hexdigit)
                    .count();
                digits >= 2 * TAG_LEN
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `email` is protected; its stored values are `\xab...`-style stand-ins revealed as "plain".
    struct Cols(Option<&'static str>);

    impl KeyColumns for Cols {
        type Column = ();
        fn protected(&self, column: &str) -> Option<()> {
            (column == "email").then_some(())
        }
        fn reveal(&mut self, _: &(), stored: &str) -> Result<Option<String>, PgError> {
            if stored == "\\xbad" {
                return Err(PgError::error(
                    crate::protocol::error::sqlstate::DATA_CORRUPTED,
                    "does not decrypt",
                ));
            }
            Ok(self.0.map(str::to_owned))
        }
    }

    fn envelope() -> String {
        format!("\\x02{}", "ab".repeat(30))
    }

    #[test]
    fn a_protected_key_shows_the_roles_view() {
        let detail = format!("Key (email)=({}) already exists.", envelope());
        assert_eq!(
            rewrite(&detail, &mut Cols(Some("a@example.com"))),
            Detail::Replace("Key (email)=(a@example.com) already exists.".into())
        );
        let detail = format!("Key (id, email)=(7, {}) already exists.", envelope());
        assert_eq!(
            rewrite(&detail, &mut Cols(Some("a***@example.com"))),
            Detail::Replace("Key (id, email)=(7, a***@example.com) already exists.".into())
        );
        let fk = format!(
            "Key (email)=({}) is not present in table \"people\".",
            envelope()
        );
        assert_eq!(
            rewrite(&fk, &mut Cols(Some("p"))),
            Detail::Replace("Key (email)=(p) is not present in table \"people\".".into())
        );
    }

    #[test]
    fn what_cannot_be_shown_drops_the_detail() {
        let detail = format!("Key (email)=({}) already exists.", envelope());
        // The role may see nothing of it (null).
        assert_eq!(rewrite(&detail, &mut Cols(None)), Detail::Drop);
        // It does not decrypt.
        let bad = "Key (email)=(\\xbad) already exists.";
        assert_eq!(rewrite(bad, &mut Cols(Some("x"))), Detail::Drop);
        // An envelope under a column the proxy cannot place.
        for detail in [
            format!("Key (other)=({}) already exists.", envelope()),
            format!("Key (lower(email))=({}) already exists.", envelope()),
            format!(
                "Key (email)=({}) is still referenced from table \"orders\".",
                envelope()
            ),
            format!("Failing row contains (1, {}, null).", envelope()),
            "Failing row contains (1, \\002\\000\\000\\000\\001).".into(),
        ] {
            assert_eq!(
                rewrite(&detail, &mut Cols(Some("x"))),
                Detail::Drop,
                "{detail}"
            );
        }
    }

    #[test]
    fn stored_values_are_taken_out_of_free_text() {
        let message = format!("duplicate customer {} (see \\x0a)", envelope());
        assert_eq!(
            scrub(&message).as_deref(),
            Some("duplicate customer [protected value removed] (see \\x0a)")
        );
        let context = format!(
            "SQL statement \"INSERT INTO audit VALUES ('{}', '{}')\"",
            envelope(),
            envelope()
        );
        assert_eq!(
            scrub(&context).as_deref(),
            Some(
                "SQL statement \"INSERT INTO audit VALUES ('[protected value removed]', '[protected value removed]')\""
            )
        );
        let escaped = "value \\002\\000\\000\\000\\001 seen";
        assert!(scrub(escaped).unwrap().starts_with(REMOVED));
        for kept in ["nothing here", "short \\x02ab", "path C:\\x"] {
            assert_eq!(scrub(kept), None, "{kept}");
        }
    }

    #[test]
    fn details_without_envelopes_are_kept() {
        for detail in [
            "Key (id)=(7) already exists.",
            "Key (name)=(a\\b) already exists.",
            "Failing row contains (1, null).",
        ] {
            assert_eq!(rewrite(detail, &mut Cols(Some("x"))), Detail::Keep);
        }
    }
}
