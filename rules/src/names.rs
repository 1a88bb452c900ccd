//! SQL names in the rules file: identifier checks and `schema.table[.column]` splitting.
//! Names are folded to lower case, as PostgreSQL folds unquoted identifiers.

/// The schema a table name without one belongs to.
pub const DEFAULT_SCHEMA: &str = "public";

/// PostgreSQL truncates identifiers beyond NAMEDATALEN - 1 bytes; refuse them instead.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// `true` for a name PostgreSQL accepts unquoted (plus upper case, which it folds).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && name.len() <= MAX_IDENTIFIER_BYTES
}

/// Splits `schema.table` or `table` (schema `public`) into lower-cased parts.
/// `Err(Some(part))` names a part that is no identifier; `Err(None)` means too many parts.
pub fn split_table(name: &str) -> Result<(String, String), Option<String>> {
    let parts = split_parts(name)?;
    match parts.as_slice() {
        [table] => Ok((DEFAULT_SCHEMA.to_owned(), table.clone())),
        [schema, table] => Ok((schema.clone(), table.clone())),
        _ => Err(None),
    }
}

/// Splits `schema.table.column` or `table.column` (schema `public`) into lower-cased parts.
pub fn split_column(name: &str) -> Option<(String, String, String)> {
    let parts = split_parts(name).ok()?;
    match parts.as_slice() {
        [table, column] => Some((DEFAULT_SCHEMA.to_owned(), table.clone(), column.clone())),
        [schema, table, column] => Some((schema.clone(), table.clone(), column.clone())),
        _ => None,
    }
}

fn split_parts(name: &str) -> Result<Vec<String>, Option<String>> {
    name.split('.')
        .map(|part| {
            let part = part.trim();
            if is_identifier(part) {
                Ok(part.to_ascii_lowercase())
            } else {
                Err(Some(part.to_owned()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_unquoted_postgres_rules() {
        assert!(is_identifier("customers"));
        assert!(is_identifier("_x$1"));
        assert!(is_identifier("Email"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("1st"));
        assert!(!is_identifier("first name"));
        assert!(!is_identifier("naïve"));
        assert!(!is_identifier(&"a".repeat(64)));
    }

    #[test]
    fn table_without_schema_lands_in_public() {
        assert_eq!(
            split_table("Customers"),
            Ok(("public".into(), "customers".into()))
        );
        assert_eq!(
            split_table("crm.people"),
            Ok(("crm".into(), "people".into()))
        );
        assert_eq!(split_table("a.b.c"), Err(None));
        assert_eq!(split_table("a.b c"), Err(Some("b c".into())));
    }

    #[test]
    fn column_names_split_with_default_schema() {
        assert_eq!(
            split_column("customers.email"),
            Some(("public".into(), "customers".into(), "email".into()))
        );
        assert_eq!(
            split_column("CRM.People.Email"),
            Some(("crm".into(), "people".into(), "email".into()))
        );
        assert_eq!(split_column("email"), None);
        assert_eq!(split_column("a.b.c.d"), None);
    }
}
