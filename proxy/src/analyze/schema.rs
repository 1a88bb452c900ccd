//! What the analyser knows about the database: which columns are protected (with their key
//! context) and, from the catalog, the ordered column names of tables.

use std::collections::HashMap;

/// Index of a protected column inside a [`ProtectedSchema`].
pub type ColumnId = usize;

#[derive(Debug, Clone)]
struct ProtectedColumn {
    schema: String,
    table: String,
    column: String,
    context: String,
}

/// Protected columns and catalog facts, built once per rules snapshot and shared read-only.
///
/// Names are stored lower-case; SQL identifiers are folded the way PostgreSQL folds them
/// before lookup (unquoted to lower case, quoted kept as written).
#[derive(Debug, Clone, Default)]
pub struct ProtectedSchema {
    columns: Vec<ProtectedColumn>,
    /// (schema, table, column) -> id.
    by_name: HashMap<(String, String, String), ColumnId>,
    /// (schema, table) -> ordered column names, from the catalog.
    table_columns: HashMap<(String, String), Vec<String>>,
    /// Lower-case unqualified protected table names, for the pre-filter.
    needles: Vec<String>,
}

impl ProtectedSchema {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a protected column. `context` is the key context: two protected columns may be
    /// compared or joined only when their contexts are equal.
    pub fn protect(&mut self, schema: &str, table: &str, column: &str, context: &str) -> ColumnId {
        let key = (lower(schema), lower(table), lower(column));
        if let Some(&id) = self.by_name.get(&key) {
            self.columns[id].context = context.to_string();
            return id;
        }
        let id = self.columns.len();
        if !self.needles.contains(&key.1) {
            self.needles.push(key.1.clone());
        }
        self.columns.push(ProtectedColumn {
            schema: key.0.clone(),
            table: key.1.clone(),
            column: key.2.clone(),
            context: context.to_string(),
        });
        self.by_name.insert(key, id);
        id
    }

    /// Records the ordered column names of a table (from the catalog), used for
    /// `INSERT INTO t VALUES` without a column list, `*` expansion and `COPY t` without columns.
    pub fn set_table_columns(&mut self, schema: &str, table: &str, columns: Vec<String>) {
        let columns = columns.iter().map(|c| lower(c)).collect();
        self.table_columns
            .insert((lower(schema), lower(table)), columns);
    }

    /// Cheap pre-filter: does the text mention any protected table name (ASCII
    /// case-insensitive substring)? `false` means the statement cannot touch protected data.
    pub fn mentions_protected_table(&self, sql: &str) -> bool {
        let hay = sql.as_bytes();
        self.needles
            .iter()
            .any(|needle| contains_ignore_ascii_case(hay, needle.as_bytes()))
    }

    /// (schema, table, column, context) of a protected column.
    ///
    /// # Panics
    /// If `id` did not come from this schema.
    pub fn column(&self, id: ColumnId) -> (&str, &str, &str, &str) {
        let c = &self.columns[id];
        (&c.schema, &c.table, &c.column, &c.context)
    }

    /// `schema.table.column` of a protected column, for messages.
    pub fn qualified_name(&self, id: ColumnId) -> String {
        let (s, t, c, _) = self.column(id);
        format!("{s}.{t}.{c}")
    }

    /// Key context of a protected column.
    pub fn context(&self, id: ColumnId) -> &str {
        &self.columns[id].context
    }

    /// Looks up a protected column by already-folded names.
    pub fn lookup(&self, schema: &str, table: &str, column: &str) -> Option<ColumnId> {
        // Avoid allocating a key tuple for the common miss: check the table first.
        if !self.has_protected_table(schema, table) {
            return None;
        }
        self.by_name
            .get(&(schema.to_string(), table.to_string(), column.to_string()))
            .copied()
    }

    /// Does this table (folded names) hold any protected column?
    pub fn has_protected_table(&self, schema: &str, table: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.schema == schema && c.table == table)
    }

    /// Protected columns of a table, in declaration order.
    pub fn protected_columns_of(&self, schema: &str, table: &str) -> Vec<ColumnId> {
        (0..self.columns.len())
            .filter(|&id| self.columns[id].schema == schema && self.columns[id].table == table)
            .collect()
    }

    /// Ordered catalog column names of a table, if known.
    pub fn table_columns(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.table_columns
            .get(&(schema.to_string(), table.to_string()))
            .map(Vec::as_slice)
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.len() > hay.len() {
        return false;
    }
    let first = needle[0];
    hay.windows(needle.len()).any(|w| {
        w[0].to_ascii_lowercase() == first
            && w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

impl ProtectedSchema {
    /// Is `column` (folded) the name of any protected column, in any table?
    pub fn is_protected_column_name(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c.column == column)
    }
}
