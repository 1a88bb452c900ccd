//! One batch of a column rewrite: the SQL that selects the next rows after a `ctid` (locked),
//! and the cursor that remembers where the walk is.

use tokio_postgres::types::{FromSql, Type};

/// Where a walk over a table in `ctid` order is: the last row of the previous batch.
pub struct Cursor {
    after: String,
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor {
            after: "(0,0)".to_owned(),
        }
    }
}

impl Cursor {
    /// The `ctid` (text) the next batch starts after.
    pub fn after(&self) -> &str {
        &self.after
    }

    /// Moves past the batch whose last row is `ctid`.
    pub fn advance(&mut self, ctid: String) {
        self.after = ctid;
    }
}

/// `SELECT ctid::text AS row_ctid, <columns> FROM <table> WHERE ctid > $<after> AND (<filter>)
/// ORDER BY ctid LIMIT $<limit> [FOR UPDATE]`: the next batch. `after` binds the cursor (text),
/// `limit` the batch size (int8).
pub fn select_sql(
    table_sql: &str,
    columns: &str,
    filter: &str,
    after: usize,
    limit: usize,
    lock: bool,
) -> String {
    format!(
        // Ordered by the tid itself (an output column named ctid would sort as text), so the
        // last row of a batch is where the next one starts; `ctid >` is a TID range scan.
        "SELECT ctid::text AS row_ctid, {columns} FROM {table_sql} WHERE ctid > ${after}::text::tid AND ({filter}) ORDER BY {table_sql}.ctid LIMIT ${limit}{}",
        if lock { " FOR UPDATE" } else { "" }
    )
}

/// A value as the server sent it in binary format, whatever its type: values are turned into
/// their canonical form by the same functions the proxy uses, never by a driver's reading.
pub struct Raw(pub Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_the_next_rows_after_the_cursor_in_ctid_order() {
        assert_eq!(
            select_sql("\"public\".\"t\"", "\"a\"", "\"a\" IS NOT NULL", 1, 2, true),
            "SELECT ctid::text AS row_ctid, \"a\" FROM \"public\".\"t\" WHERE ctid > $1::text::tid AND (\"a\" IS NOT NULL) ORDER BY \"public\".\"t\".ctid LIMIT $2 FOR UPDATE"
        );
        let mut c = Cursor::default();
        assert_eq!(c.after(), "(0,0)");
        c.advance("(3,7)".into());
        assert_eq!(c.after(), "(3,7)");
    }
}
