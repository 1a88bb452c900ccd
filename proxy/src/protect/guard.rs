//! The guard: a named CHECK constraint on every protected column that makes PostgreSQL itself
//! reject any value that is not a format-2 envelope of that column's key context (format 3,
//! sealed with a tenant key, for a per-tenant column: it never holds a shared-key value,
//! which forgetting a tenant could not erase). It is the
//! ground truth for writes: whatever path a write takes inside the server (views, rules,
//! triggers, functions, `DO`, defaults, COPY, child tables), plaintext never lands.
//!
//! This module names the constraint, writes its SQL (for `pgshroud setup`) and recognises it
//! in the catalog (for the proxy and `pgshroud check`).

use std::fmt;

use crate::crypto::envelope::{
    context_tag, CIPHERTEXT_OFFSET, CONTEXT_TAG_LEN, CONTEXT_TAG_OFFSET, FORMAT_V2, FORMAT_V3,
    V3_CIPHERTEXT_OFFSET,
};

/// The envelope format a column's guard accepts, and its minimum length.
fn shape(per_tenant: bool) -> (u8, usize) {
    if per_tenant {
        (FORMAT_V3, V3_CIPHERTEXT_OFFSET)
    } else {
        (FORMAT_V2, CIPHERTEXT_OFFSET)
    }
}

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
/// Functions and types are `pg_catalog`-qualified; the operators are plain (so migrations
/// and the proxy's own parser read it), and `pgshroud setup` creates it with
/// `search_path = pg_catalog`, so they bind to the built-in ones (a constraint stores what was
/// resolved at creation, never looked up again).
pub fn check_expression(column: &str, context: &str) -> String {
    check_expression_of(column, context, false)
}

/// [`check_expression`] of a column that is `per_tenant` (format 3) or not (format 2).
pub fn check_expression_of(column: &str, context: &str, per_tenant: bool) -> String {
    let c = quote_ident(column);
    let (format, min) = shape(per_tenant);
    format!(
        "{c} IS NULL OR (pg_catalog.length({c}) >= {min} \
         AND pg_catalog.\"substr\"({c}, 1, 1) = '\\x{format:02x}'::pg_catalog.bytea \
         AND pg_catalog.\"substr\"({c}, {tag_at}, {tag_len}) = '\\x{tag}'::pg_catalog.bytea)",
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
    /// A constraint named like a guard that is not this column's guard: one for another key
    /// context (the rules' context changed since setup), or one changed by hand.
    Unrecognised { name: String },
    /// No guard at all.
    Missing,
}

impl GuardState {
    /// The state of column `column` (its name now) of `context` with these guard constraints.
    /// A guard counts only if its definition is exactly the one `pgshroud setup` installs, as
    /// PostgreSQL prints it back: a constraint that merely mentions the tag is not a guard.
    pub fn of(found: &[FoundGuard], column: &str, context: &str) -> GuardState {
        GuardState::of_column(found, column, context, false)
    }

    /// [`GuardState::of`] for a column that is `per_tenant` (its guard accepts format 3).
    pub fn of_column(
        found: &[FoundGuard],
        column: &str,
        context: &str,
        per_tenant: bool,
    ) -> GuardState {
        let expected = normalize(&printed_definition(column, context, per_tenant));
        // PostgreSQL prints a constraint added NOT VALID (as migrate's swap adds the guard,
        // validated just after) with that suffix; it checks new writes all the same.
        let right = found.iter().find(|g| {
            let definition = match g.validated {
                true => g.definition.as_str(),
                false => g
                    .definition
                    .strip_suffix(" NOT VALID")
                    .unwrap_or(&g.definition),
            };
            normalize(definition) == expected
        });
        match (right, found.first()) {
            (Some(g), _) => GuardState::Guarded {
                name: g.name.clone(),
                validated: g.validated,
            },
            (None, Some(g)) => GuardState::Unrecognised {
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
            GuardState::Unrecognised { name } => write!(
                f,
                "constraint {name} is not the guard of this column's key context (another key context, or changed by hand)"
            ),
            GuardState::Missing => f.write_str("NOT GUARDED: run pgshroud setup"),
        }
    }
}

/// `pg_get_constraintdef` of the guard as PostgreSQL prints it (before [`normalize`]).
fn printed_definition(column: &str, context: &str, per_tenant: bool) -> String {
    let (format, min) = shape(per_tenant);
    format!(
        "CHECK ((({column} IS NULL) OR ((length({column}) >= {min}) \
         AND (substr({column}, 1, 1) = '\\x{format:02x}'::bytea) \
         AND (substr({column}, {tag_at}, {tag_len}) = '\\x{tag}'::bytea))))",
        tag_at = CONTEXT_TAG_OFFSET + 1,
        tag_len = CONTEXT_TAG_LEN,
        tag = tag_hex(context),
    )
}

/// What does not depend on the printing session: schema qualification (printed when another
/// schema shadows a built-in), identifier quotes, backslashes doubled under
/// `standard_conforming_strings = off`, and spacing.
fn normalize(definition: &str) -> String {
    definition
        .replace("pg_catalog.", "")
        .replace("\\\\", "\\")
        .chars()
        .filter(|c| *c != '"' && !c.is_whitespace())
        .collect()
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
    fn a_guard_added_not_valid_is_the_guard_until_and_after_it_is_validated() {
        let printed = printed_definition("email", "person-email", false);
        let found = |definition: String, validated: bool| FoundGuard {
            name: constraint_name("email"),
            definition,
            validated,
        };
        let unvalidated = found(format!("{printed} NOT VALID"), false);
        assert!(GuardState::of(&[unvalidated], "email", "person-email").is_guarded());
        assert!(
            GuardState::of(&[found(printed.clone(), true)], "email", "person-email").is_guarded()
        );
        // Only PostgreSQL's own suffix of a NOT VALID constraint is read past.
        let claimed = found(format!("{printed} NOT VALID"), true);
        assert!(!GuardState::of(&[claimed], "email", "person-email").is_guarded());
    }

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
        assert!(e.contains("pg_catalog.length(\"email\") >= 25"), "{e}");
        assert!(e.contains("'\\x02'::pg_catalog.bytea"), "{e}");
        assert!(e.contains("substr\"(\"email\", 6, 4)"), "{e}");
        assert!(e.contains("'\\x17ab4a2f'::pg_catalog.bytea"), "{e}");
    }

    #[test]
    fn expression_parses_as_the_proxy_reads_sql() {
        // Migrations may create a table with its guard through the proxy, which must parse it.
        let sql = format!(
            "CREATE TABLE people (id int, email bytea CONSTRAINT {} CHECK ({}))",
            constraint_name("email"),
            check_expression("email", "person-email")
        );
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &sql)
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    fn found(definition: &str) -> FoundGuard {
        FoundGuard {
            name: "pgshroud_guard_email".into(),
            definition: definition.into(),
            validated: true,
        }
    }

    #[test]
    fn state_follows_the_definition_as_postgresql_prints_it() {
        let ctx = "public.customers.email";
        // Printed by PostgreSQL 15: plain, with a shadowed built-in, backslashes doubled.
        for def in [
            r"CHECK (((email IS NULL) OR ((length(email) >= 25) AND (substr(email, 1, 1) = '\x02'::bytea) AND (substr(email, 6, 4) = '\x17ab4a2f'::bytea))))",
            r"CHECK (((email IS NULL) OR ((pg_catalog.length(email) >= 25) AND (substr(email, 1, 1) = '\\x02'::bytea) AND (substr(email, 6, 4) = '\\x17ab4a2f'::bytea))))",
        ] {
            assert!(
                GuardState::of(&[found(def)], "email", ctx).is_guarded(),
                "{def}"
            );
        }
        let quoted = r#"CHECK ((("Email x" IS NULL) OR ((length("Email x") >= 25) AND (substr("Email x", 1, 1) = '\x02'::bytea) AND (substr("Email x", 6, 4) = '\x17ab4a2f'::bytea))))"#;
        assert!(GuardState::of(&[found(quoted)], "Email x", ctx).is_guarded());
        let other = r"CHECK (((email IS NULL) OR ((length(email) >= 25) AND (substr(email, 1, 1) = '\x02'::bytea) AND (substr(email, 6, 4) = '\x00000000'::bytea))))";
        assert_eq!(
            GuardState::of(&[found(other)], "email", ctx),
            GuardState::Unrecognised {
                name: "pgshroud_guard_email".into()
            }
        );
        assert_eq!(GuardState::of(&[], "email", ctx), GuardState::Missing);
    }

    #[test]
    fn a_per_tenant_column_is_guarded_for_format_3_only() {
        let ctx = "public.customers.email";
        let e = check_expression_of("email", ctx, true);
        assert!(e.contains("pg_catalog.length(\"email\") >= 33"), "{e}");
        assert!(e.contains("'\\x03'::pg_catalog.bytea"), "{e}");
        assert!(e.contains("'\\x17ab4a2f'::pg_catalog.bytea"), "{e}");
        let v3 = r"CHECK (((email IS NULL) OR ((length(email) >= 33) AND (substr(email, 1, 1) = '\x03'::bytea) AND (substr(email, 6, 4) = '\x17ab4a2f'::bytea))))";
        assert!(GuardState::of_column(&[found(v3)], "email", ctx, true).is_guarded());
        // A shared column's guard is not a per-tenant column's, nor the other way round.
        assert!(!GuardState::of_column(&[found(v3)], "email", ctx, false).is_guarded());
        let v2 = r"CHECK (((email IS NULL) OR ((length(email) >= 25) AND (substr(email, 1, 1) = '\x02'::bytea) AND (substr(email, 6, 4) = '\x17ab4a2f'::bytea))))";
        assert!(!GuardState::of_column(&[found(v2)], "email", ctx, true).is_guarded());
    }

    #[test]
    fn a_constraint_that_only_mentions_the_tag_is_not_a_guard() {
        let ctx = "public.customers.email";
        let fake = "CHECK (((email IS NOT NULL) OR ('x02 x17ab4a2f'::text = 'x'::text)))";
        assert!(!GuardState::of(&[found(fake)], "email", ctx).is_guarded());
        let weaker = "CHECK (((email IS NULL) OR (length(email) >= 25)))";
        assert!(!GuardState::of(&[found(weaker)], "email", ctx).is_guarded());
    }
}
