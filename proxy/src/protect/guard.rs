//! The guard: a named CHECK constraint on every protected column that makes PostgreSQL itself
//! reject any value that is not a format-2 envelope of that column's key context. It is the
//! ground truth for writes: whatever path a write takes inside the server (views, rules,
//! triggers, functions, `DO`, defaults, COPY, child tables), plaintext never lands.
//!
//! This module names the constraint, writes its SQL (for `pgshroud setup`) and recognises it
//! in the catalog (for the proxy and `pgshroud check`).

use std::fmt;

use crate::crypto::envelope::{
    context_tag, CIPHERTEXT_OFFSET, CONTEXT_TAG_LEN, CONTEXT_TAG_OFFSET, FORMAT_V2,
};

/// Every guard's name starts with this; DDL naming it is refused through the proxy.
pub const NAME_PREFIX: &str = "pgshroud_guard_";

/// PostgreSQL truncates identifiers to 63 bytes.
const MAX_IDENTIFIER: usize = 63;

/// The guard's constraint name for a column: `pgshroud_guard_<column>`, shortened with a hash
/// when the column name is too long to fit (names are per table, so the column suffices).
pub fn constraint_name(column: &str) -> String {
    let name = format!("{NAME_PREFIX}{column}");
    if name.len() <= MAX_IDENTIFIER {
        return name;
    }
    let hash = hex::encode(&context_tag(column)[..]);
    let room = MAX_IDENTIFIER - NAME_PREFIX.len() - hash.len() - 1;
    let mut cut = room;
    while !column.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{NAME_PREFIX}{}_{hash}", &column[..cut])
}

/// The tag of a key context as it appears in the guard, lower-case hex.
pub fn tag_hex(context: &str) -> String {
    hex::encode(context_tag(context))
}

/// The CHECK expression for `column` (an identifier, quoted here) of `context`: NULL, or at
/// least an empty plaintext's envelope, starting with format 2, carrying the context's tag.
/// Every function and operator is `pg_catalog`-qualified, so the session's search_path at
/// creation cannot bind another one (a constraint stores what was resolved then).
pub fn check_expression(column: &str, context: &str) -> String {
    let c = quote_ident(column);
    format!(
        "{c} IS NULL OR (pg_catalog.length({c}) OPERATOR(pg_catalog.>=) {min} \
         AND pg_catalog.substring({c}, 1, 1) OPERATOR(pg_catalog.=) '\\x{format:02x}'::pg_catalog.bytea \
         AND pg_catalog.substring({c}, {tag_at}, {tag_len}) OPERATOR(pg_catalog.=) '\\x{tag}'::pg_catalog.bytea)",
        min = CIPHERTEXT_OFFSET,
        format = FORMAT_V2,
        tag_at = CONTEXT_TAG_OFFSET + 1,
        tag_len = CONTEXT_TAG_LEN,
        tag = tag_hex(context),
    )
}

/// A guard constraint found on a column by the catalog look-up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FoundGuard {
    pub name: String,
    /// `pg_get_constraintdef` of the constraint.
    pub definition: String,
    /// `false` for a constraint added `NOT VALID` (new writes are still checked).
    pub validated: bool,
}

/// What protects a column in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardState {
    /// A guard for the column's key context.
    Guarded { name: String, validated: bool },
    /// Guards exist, but none for this key context (the rules' context changed since setup).
    OtherContext { name: String },
    /// No guard at all.
    Missing,
}

impl GuardState {
    /// The state of a column of `context` with these guard constraints.
    pub fn of(found: &[FoundGuard], context: &str) -> GuardState {
        let tag = tag_hex(context);
        let format = format!("x{FORMAT_V2:02x}");
        let right = found.iter().find(|g| {
            let def = g.definition.to_ascii_lowercase();
            def.contains(&format!("x{tag}")) && def.contains(&format)
        });
        match (right, found.first()) {
            (Some(g), _) => GuardState::Guarded {
                name: g.name.clone(),
                validated: g.validated,
            },
            (None, Some(g)) => GuardState::OtherContext {
                name: g.name.clone(),
            },
            (None, None) => GuardState::Missing,
        }
    }

    pub fn is_guarded(&self) -> bool {
        matches!(self, GuardState::Guarded { .. })
    }
}

impl fmt::Display for GuardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardState::Guarded {
                name,
                validated: true,
            } => write!(f, "guarded ({name})"),
            GuardState::Guarded {
                name,
                validated: false,
            } => write!(
                f,
                "guarded ({name}, NOT VALID: existing rows were not checked)"
            ),
            GuardState::OtherContext { name } => write!(
                f,
                "guard {name} is for another key context than the rules name: run pgshroud setup"
            ),
            GuardState::Missing => f.write_str("NOT GUARDED: run pgshroud setup"),
        }
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (for standard_conforming_strings = on).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_prefix_and_column() {
        assert_eq!(constraint_name("email"), "pgshroud_guard_email");
    }

    #[test]
    fn long_column_names_are_shortened_to_an_identifier() {
        let long = "é".repeat(40);
        let name = constraint_name(&long);
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with(NAME_PREFIX));
        assert_ne!(
            constraint_name(&"a".repeat(60)),
            constraint_name(&"a".repeat(61))
        );
    }

    #[test]
    fn expression_checks_format_length_and_tag() {
        let e = check_expression("email", "public.customers.email");
        assert!(e.starts_with("\"email\" IS NULL OR"), "{e}");
        assert!(e.contains("OPERATOR(pg_catalog.>=) 25"), "{e}");
        assert!(e.contains("'\\x02'::pg_catalog.bytea"), "{e}");
        assert!(e.contains("substring(\"email\", 6, 4)"), "{e}");
        assert!(e.contains("'\\x17ab4a2f'::pg_catalog.bytea"), "{e}");
    }

    #[test]
    fn state_follows_the_tag_in_the_definition() {
        let def = |tag: &str| {
            FoundGuard {
            name: "pgshroud_guard_email".into(),
            definition: format!(
                "CHECK (((email IS NULL) OR ((length(email) >= 25) AND (\"substring\"(email, 1, 1) = '\\x02'::bytea) AND (\"substring\"(email, 6, 4) = '\\x{tag}'::bytea))))"
            ),
            validated: true,
        }
        };
        let ctx = "public.customers.email";
        assert!(GuardState::of(&[def("17ab4a2f")], ctx).is_guarded());
        assert_eq!(
            GuardState::of(&[def("00000000")], ctx),
            GuardState::OtherContext {
                name: "pgshroud_guard_email".into()
            }
        );
        assert_eq!(GuardState::of(&[], ctx), GuardState::Missing);
    }
}
