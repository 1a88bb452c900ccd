//! What the analyser knows about the database: which columns are protected (with their key
//! context) and, from the catalog, the ordered column names of tables.

use std::collections::HashMap;

use pgshroud_rules::LogicalType;

use super::guard::PGSHROUD_NAMES;
use super::pg_reading::PgReading;
use super::scope::fold_name;
use super::search_path::{Resolution, SearchPath};
use super::spelling;

/// Index of a protected column inside a [`ProtectedSchema`].
pub type ColumnId = usize;

#[derive(Debug, Clone)]
struct ProtectedColumn {
    schema: String,
    table: String,
    column: String,
    context: String,
    /// What the application sees; `None` when the caller did not say (casts on its values
    /// cannot then be checked, so the shapes that need them are refused).
    logical: Option<LogicalType>,
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
    /// Lower-case unqualified protected table names, for the pre-filter; a name holding `"`
    /// is also listed as written inside a quoted identifier (`""`).
    needles: Vec<String>,
    /// Some needle is not ASCII: the pre-filter then also compares lower-cased text.
    unicode_needles: bool,
    /// Bit set of the (ASCII-lower-cased) first bytes of the needles, so the pre-filter looks
    /// closer only where a needle can start.
    first_bytes: [u64; 4],
    /// How unqualified table names resolve.
    search_path: SearchPath,
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
        self.add_needle(&key.1);
        self.columns.push(ProtectedColumn {
            schema: key.0.clone(),
            table: key.1.clone(),
            column: key.2.clone(),
            context: context.to_string(),
            logical: None,
        });
        self.by_name.insert(key, id);
        id
    }

    /// Makes the pre-filter send every text mentioning this relation name (folded) to
    /// analysis: protected tables, and views over them (whose computed outputs are checked
    /// per role).
    pub fn add_needle(&mut self, name: &str) {
        let name = lower(name);
        for needle in [name.clone(), name.replace('"', "\"\"")] {
            if !self.needles.contains(&needle) {
                self.unicode_needles |= !needle.is_ascii();
                if let Some(&b) = needle.as_bytes().first() {
                    let b = b.to_ascii_lowercase();
                    self.first_bytes[usize::from(b / 64)] |= 1 << (b % 64);
                }
                self.needles.push(needle);
            }
        }
    }

    /// Records the ordered column names of a table (from the catalog), used for
    /// `INSERT INTO t VALUES` without a column list, `*` expansion and `COPY t` without columns.
    pub fn set_table_columns(&mut self, schema: &str, table: &str, columns: Vec<String>) {
        let columns = columns.iter().map(|c| lower(c)).collect();
        self.table_columns
            .insert((lower(schema), lower(table)), columns);
    }

    /// Sets how unqualified table names resolve (default: `public`, see [`SearchPath`]).
    pub fn set_search_path(&mut self, path: SearchPath) {
        self.search_path = path;
    }

    /// Cheap pre-filter: may the text touch protected data or a guard? `false` means it cannot.
    /// True when it mentions a protected table name (case-insensitive substring), any
    /// `pgshroud` name (guards), or holds a form PostgreSQL decodes before reading it
    /// (`U&"..."`, `U&'...'`, backslash escapes in `E'...'`, strings continued across a newline;
    /// see `spelling.rs`), which may spell any name; such texts go to analysis, which reads
    /// them with PostgreSQL's scanner and grammar. No parsing happens here.
    pub fn mentions_protected_table(&self, sql: &str) -> bool {
        // One pass: a needle, `pgshroud` or a decoded form can start only at a few bytes.
        let hay = sql.as_bytes();
        // Whether a backslash may escape (an `E'` somewhere): looked up at the first one only.
        let mut escapes: Option<bool> = None;
        for (i, &byte) in hay.iter().enumerate() {
            let b = byte.to_ascii_lowercase();
            let at = &hay[i..];
            let found = match b {
                b'p' if starts_with_ignore_ascii_case(at, PGSHROUD_NAMES.as_bytes()) => true,
                b'&' if spelling::is_unicode_escape_at(hay, i) => true,
                b'\\' => *escapes.get_or_insert_with(|| spelling::has_escape_string(hay)),
                b'\'' if spelling::is_continued_string_at(hay, i) => true,
                _ if self.first_bytes[usize::from(b / 64)] & (1 << (b % 64)) != 0 => self
                    .needles
                    .iter()
                    .any(|needle| starts_with_ignore_ascii_case(at, needle.as_bytes())),
                _ => false,
            };
            if found {
                return true;
            }
        }
        if !self.unicode_needles || sql.is_ascii() {
            return false;
        }
        let lowered = sql.to_lowercase();
        self.needles
            .iter()
            .any(|needle| lowered.contains(needle.as_str()))
    }

    /// Whether no table name the pre-filter looks for could be found straddling a literal
    /// and the text beside it: none holds a quote, and a digit in one has only letters,
    /// digits and `_` beside it. (A literal's edge is its quote, or a digit next to a byte
    /// that is none of those: see `protect/session/harmless.rs`.)
    pub fn needles_stand_apart(&self) -> bool {
        let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
        self.needles.iter().all(|needle| {
            let bytes = needle.as_bytes();
            !bytes.contains(&b'\'')
                && !bytes.contains(&b'"')
                && bytes.iter().enumerate().all(|(i, b)| {
                    !b.is_ascii_digit()
                        || (i == 0 || word(&bytes[i - 1])) && bytes.get(i + 1).is_none_or(word)
                })
        })
    }

    /// Does PostgreSQL's reading of a text name a protected table or a `pgshroud` object in a
    /// decoded string other than a constant's value (relation, column, function, DDL object,
    /// code body)? The precise form of [`Self::mentions_protected_table`], for texts sqlparser
    /// cannot parse (catalog queries with `OPERATOR(pg_catalog.~) '^(customers)$'`).
    pub fn named_in_reading(&self, reading: &PgReading) -> bool {
        let needles: Vec<&str> = std::iter::once(PGSHROUD_NAMES)
            .chain(self.needles.iter().map(String::as_str))
            .collect();
        reading.names_any_outside_constants(&needles)
    }

    /// The relation a table name means: qualified names as written; an unqualified name of a
    /// protected table through the search path; `None` for names that are not plain identifiers.
    pub fn resolve_table(&self, parts: &[String]) -> Option<Resolution> {
        match parts {
            [table] => {
                let mut schemas: Vec<&str> = Vec::new();
                for c in self.columns.iter().filter(|c| &c.table == table) {
                    if !schemas.contains(&c.schema.as_str()) {
                        schemas.push(&c.schema);
                    }
                }
                if schemas.is_empty() {
                    return Some(Resolution::Table(
                        super::scope::DEFAULT_SCHEMA.to_string(),
                        table.clone(),
                    ));
                }
                Some(self.search_path.resolve(table, &schemas))
            }
            [.., schema, table] => Some(Resolution::Table(schema.clone(), table.clone())),
            [] => None,
        }
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

    /// Records the logical type of a protected column (for checking casts on its values).
    pub fn set_logical_type(&mut self, id: ColumnId, logical: LogicalType) {
        if let Some(c) = self.columns.get_mut(id) {
            c.logical = Some(logical);
        }
    }

    /// Logical type of a protected column, when known.
    pub fn logical_type(&self, id: ColumnId) -> Option<LogicalType> {
        self.columns.get(id).and_then(|c| c.logical)
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

    /// The protected tables whose name occurs anywhere in `text` (case-insensitively, also
    /// inside longer words): for statements whose every table reference the parser does not
    /// show (DDL), an over-approximation that errs on the side of refusing.
    pub fn tables_named_in(&self, text: &str) -> Vec<(String, String)> {
        let lower = text.to_lowercase();
        let mut found: Vec<(String, String)> = Vec::new();
        for c in &self.columns {
            let pair = (c.schema.clone(), c.table.clone());
            if lower.contains(&c.table) && !found.contains(&pair) {
                found.push(pair);
            }
        }
        found
    }

    /// Ordered catalog column names of a table, if known.
    pub fn table_columns(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.table_columns
            .get(&(schema.to_string(), table.to_string()))
            .map(Vec::as_slice)
    }
}

/// Names from the rules and the catalog are folded like identifiers in SQL text.
fn lower(s: &str) -> String {
    fold_name(s)
}

fn starts_with_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

impl ProtectedSchema {
    /// Is `column` (folded) the name of any protected column, in any table?
    pub fn is_protected_column_name(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c.column == column)
    }
}
