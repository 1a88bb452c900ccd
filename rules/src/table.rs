//! Protected tables and columns as the rules file lists them, with their key contexts.

use crate::logical_type::{LogicalType, TypeModifier};

/// A table with protected columns. Names are lower case (see [`crate::names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

/// A protected column: stored as `bytea`, seen by the application as `logical`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub logical: LogicalType,
    /// `numeric(12, 2)`, `varchar(100)`, `timestamp(3)`: what the typed column would enforce.
    pub modifier: Option<TypeModifier>,
    /// A shared key context, for columns whose values must compare equal across columns
    /// (join keys); `None` means the column's own `schema.table.column`.
    pub key_context: Option<String>,
    /// Sealed with the session's tenant key instead of the master key's column key.
    pub per_tenant: bool,
    /// `pgshroud migrate` is turning this column into a protected one (or back): the proxy
    /// serves it in whichever form the database holds it, plaintext or guarded envelopes.
    pub migrating: bool,
}

impl Table {
    /// `schema.table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `schema.table.column` of one of this table's columns.
    pub fn qualified_column(&self, column: &Column) -> String {
        format!("{}.{}.{}", self.schema, self.name, column.name)
    }

    /// The key context of a column: its `key_context`, else `schema.table.column`. It selects
    /// the column key and is bound into every ciphertext, so it must never change once data
    /// is stored.
    pub fn context_of(&self, column: &Column) -> String {
        match &column.key_context {
            Some(context) => context.clone(),
            None => self.qualified_column(column),
        }
    }

    /// The column named `name` (compared case-insensitively).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// `true` when this is `schema.name` (compared case-insensitively).
    pub fn is(&self, schema: &str, name: &str) -> bool {
        self.schema.eq_ignore_ascii_case(schema) && self.name.eq_ignore_ascii_case(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers() -> Table {
        Table {
            schema: "public".into(),
            name: "customers".into(),
            columns: vec![
                Column {
                    name: "email".into(),
                    logical: LogicalType::Text,
                    modifier: None,
                    key_context: None,
                    per_tenant: false,
                    migrating: false,
                },
                Column {
                    name: "id".into(),
                    logical: LogicalType::Int8,
                    modifier: None,
                    key_context: Some("customer-id".into()),
                    per_tenant: false,
                    migrating: false,
                },
            ],
        }
    }

    #[test]
    fn context_defaults_to_qualified_column() {
        let t = customers();
        assert_eq!(t.qualified(), "public.customers");
        assert_eq!(t.context_of(&t.columns[0]), "public.customers.email");
        assert_eq!(t.context_of(&t.columns[1]), "customer-id");
    }

    #[test]
    fn column_lookup_ignores_case() {
        let t = customers();
        assert!(t.is("PUBLIC", "Customers"));
        assert_eq!(
            t.column("EMAIL").map(|c| c.logical),
            Some(LogicalType::Text)
        );
        assert!(t.column("phone").is_none());
    }
}
