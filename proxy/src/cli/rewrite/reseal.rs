//! Re-sealing stored values in place, the engine of `pgshroud rotate` (master key versions)
//! and `pgshroud rotate --tenant` (one tenant's key versions): which values are still to do
//! is a [`Selector`], read both by PostgreSQL (a filter on the envelope's header bytes, so a
//! batch fetches only rows with work) and by this process (so a row's other values are left
//! as they are); the batches are those of [`super::batch`].
//!
//! Online: each batch is one short transaction that locks only its own rows (`FOR UPDATE`),
//! walking the table in `ctid` order; rows written meanwhile through pgshroud are already
//! under the active version and are skipped. Resumable: what is left is exactly what the
//! selector names, so after a kill a new run continues (committed batches stay done, the
//! interrupted one was rolled back) and nothing is sealed twice. A value whose plaintext
//! another row already holds under the active version (possible while two versions were
//! live: a unique index cannot see it) cannot be moved; it is left and named in the outcome.

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

use super::batch;
use super::progress::Progress;
use crate::cli::keys::StoredColumn;
use crate::cli::setup::connect;
use crate::crypto::envelope::{FORMAT_V2, FORMAT_V3, TENANT_TAG_LEN, TENANT_TAG_OFFSET};
use crate::crypto::ColumnCipher;
use crate::protect::guard::quote_ident;

/// The protected columns of one table that a run re-seals.
pub struct TableWork {
    pub table_sql: String,
    pub name: String,
    pub columns: Vec<StoredColumn>,
}

/// `columns` grouped by table, in first-seen order.
pub fn by_table(columns: Vec<StoredColumn>) -> Vec<TableWork> {
    let mut work: Vec<TableWork> = Vec::new();
    for c in columns {
        match work.iter_mut().find(|t| t.table_sql == c.table_sql()) {
            Some(t) => t.columns.push(c),
            None => work.push(TableWork {
                table_sql: c.table_sql(),
                name: format!("{}.{}", c.schema, c.table),
                columns: vec![c],
            }),
        }
    }
    work
}

/// Which stored values a run re-seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every value that is not a format-2 envelope under this master key version.
    NotUnderMaster { version: u32 },
    /// The format-3 values of the tenant with this tag that are not under this tenant-key
    /// version (other tenants' values are not touched).
    TenantNotUnder {
        tag: [u8; TENANT_TAG_LEN],
        version: u32,
    },
}

impl Selector {
    /// The first five bytes of an envelope under the active version.
    fn active_prefix(&self) -> Vec<u8> {
        let (format, version) = match self {
            Selector::NotUnderMaster { version } => (FORMAT_V2, version),
            Selector::TenantNotUnder { version, .. } => (FORMAT_V3, version),
        };
        let mut prefix = vec![format];
        prefix.extend_from_slice(&version.to_be_bytes());
        prefix
    }

    /// The SQL parameters the filter binds, `$1` first.
    pub fn params(&self) -> Vec<Vec<u8>> {
        match self {
            Selector::NotUnderMaster { .. } => vec![self.active_prefix()],
            Selector::TenantNotUnder { tag, .. } => vec![self.active_prefix(), tag.to_vec()],
        }
    }

    /// The SQL condition naming a column's values still to do (over [`Selector::params`]).
    pub fn column_filter(&self, column: &str) -> String {
        let col = quote_ident(column);
        match self {
            Selector::NotUnderMaster { .. } => {
                format!("({col} IS NOT NULL AND pg_catalog.substr({col}, 1, 5) <> $1::bytea)")
            }
            Selector::TenantNotUnder { .. } => format!(
                "({col} IS NOT NULL AND pg_catalog.substr({col}, {at}, {TENANT_TAG_LEN}) = $2::bytea \
                 AND pg_catalog.substr({col}, 1, 1) = pg_catalog.substr($1::bytea, 1, 1) \
                 AND pg_catalog.substr({col}, 1, 5) <> $1::bytea)",
                at = TENANT_TAG_OFFSET + 1
            ),
        }
    }

    /// The same decision for one value, in this process.
    pub fn needs(&self, stored: &[u8]) -> bool {
        let prefix = self.active_prefix();
        match self {
            Selector::NotUnderMaster { .. } => !stored.starts_with(&prefix),
            Selector::TenantNotUnder { tag, .. } => {
                stored.first() == Some(&FORMAT_V3)
                    && stored.get(TENANT_TAG_OFFSET..TENANT_TAG_OFFSET + TENANT_TAG_LEN)
                        == Some(tag.as_slice())
                    && !stored.starts_with(&prefix)
            }
        }
    }

    /// Rows of `t` with at least one value to do.
    fn rows_filter(&self, t: &TableWork) -> String {
        t.columns
            .iter()
            .map(|c| self.column_filter(&c.column))
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

/// What one run did.
#[derive(Default)]
pub struct Outcome {
    pub rows: u64,
    pub values: u64,
    pub batches: u64,
    /// (column, unique constraint) of values left because their plaintext is already under
    /// the active version in another row.
    pub duplicates: Vec<(String, String)>,
    /// Columns with values no live key opens (counted once per value).
    pub undecryptable: Vec<String>,
}

impl Outcome {
    /// The report's lines about values left (duplicates, values no key opens), each once.
    pub fn left_lines(&self, active: &str, again: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for (column, constraint) in &self.duplicates {
            let line = format!(
                "{column}: a value is left under its old key version because another row holds the same value under version {active} (unique constraint {constraint}); the unique index could not see the duplicate while two versions were live. Resolve the pair, then run {again} again."
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        for column in &self.undecryptable {
            let line = format!(
                "{column}: some values open under no live key version (a retired or wrong key, or damage); they are left as they are."
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        lines
    }
}

fn params_of(values: &[Vec<u8>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Rows of `t` with a value the selector names (0 for a view or a table not created yet).
pub async fn rows_left(client: &Client, t: &TableWork, sel: &Selector) -> Result<u64, String> {
    let sql = format!(
        "SELECT pg_catalog.count(*) FROM {} WHERE {}",
        t.table_sql,
        sel.rows_filter(t)
    );
    let values = sel.params();
    match client.query_one(&sql, &params_of(&values)).await {
        Ok(row) => Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
        // A view or a table not created yet: nothing stored to rotate.
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) if e.code() == Some(&SqlState::WRONG_OBJECT_TYPE) => Ok(0),
        Err(e) => Err(format!("{}: {}", t.name, connect::reason(&e))),
    }
}

/// Re-seals every value of `t` the selector names with `ciphers` (one per column of `t`, in
/// order: each opens the stored value and seals it under the active version).
#[allow(clippy::too_many_arguments)]
pub async fn reseal_table(
    client: &mut Client,
    ciphers: &mut [ColumnCipher],
    t: &TableWork,
    sel: &Selector,
    batch: i64,
    progress: &mut Progress,
    outcome: &mut Outcome,
) -> Result<(), String> {
    if rows_left(client, t, sel).await? == 0 {
        return Ok(());
    }
    let columns = t
        .columns
        .iter()
        .map(|c| quote_ident(&c.column))
        .collect::<Vec<_>>()
        .join(", ");
    let filter_params = sel.params();
    let n = filter_params.len();
    let select = batch::select_sql(
        &t.table_sql,
        &columns,
        &sel.rows_filter(t),
        n + 1,
        n + 2,
        true,
    );
    let mut cursor = batch::Cursor::default();
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(|e| connect::reason(&e))?;
        let after = cursor.after().to_owned();
        let mut params = params_of(&filter_params);
        params.push(&after);
        params.push(&batch);
        let rows = tx
            .query(&select, &params)
            .await
            .map_err(|e| format!("{}: {}", t.name, connect::reason(&e)))?;
        let Some(last) = rows.last() else {
            tx.rollback().await.map_err(|e| connect::reason(&e))?;
            return Ok(());
        };
        cursor.advance(last.get(0));
        let mut changes: Vec<RowChange> = Vec::new();
        for row in &rows {
            let mut values = Vec::new();
            for (i, cipher) in ciphers.iter_mut().enumerate() {
                let stored: Option<Vec<u8>> = row.get(i + 1);
                let new = match stored {
                    Some(stored) if sel.needs(&stored) => match cipher.open(&stored) {
                        Ok(plain) => Some(cipher.seal(&plain)),
                        Err(_) => {
                            outcome.undecryptable.push(t.columns[i].qualified());
                            None
                        }
                    },
                    _ => None,
                };
                values.push(new);
            }
            changes.push(RowChange {
                ctid: row.get(0),
                values,
            });
        }
        let rows_done = changes.len() as u64;
        match update_batch(&tx, t, &changes).await {
            Ok(()) => {
                tx.commit().await.map_err(|e| connect::reason(&e))?;
                count(outcome, &changes);
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Some value of the batch has a twin under the active version: redo the batch
                // row by row in a fresh transaction, leaving just those rows.
                tx.rollback().await.map_err(|e| connect::reason(&e))?;
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| connect::reason(&e))?;
                relock(&tx, t, &changes).await?;
                let mut applied = Vec::new();
                for change in changes {
                    if one_row(&tx, t, &change, outcome).await? {
                        applied.push(change);
                    }
                }
                tx.commit().await.map_err(|e| connect::reason(&e))?;
                // Rows left for their duplicates are not counted as re-encrypted.
                count(outcome, &applied);
            }
            Err(e) => return Err(format!("{}: {}", t.name, connect::reason(&e))),
        }
        outcome.batches += 1;
        progress.advance(rows_done);
    }
}

/// New envelopes of one row (`None`: the column stays as it is).
struct RowChange {
    ctid: String,
    values: Vec<Option<Vec<u8>>>,
}

fn count(outcome: &mut Outcome, changes: &[RowChange]) {
    outcome.rows += changes.len() as u64;
    outcome.values += changes
        .iter()
        .map(|c| c.values.iter().flatten().count() as u64)
        .sum::<u64>();
}

/// `UPDATE t SET c = COALESCE(v.c, t.c), ... FROM unnest($1::text[], $2::bytea[], ...)`: one
/// statement for the whole batch.
async fn update_batch(
    tx: &Transaction<'_>,
    t: &TableWork,
    changes: &[RowChange],
) -> Result<(), tokio_postgres::Error> {
    let mut sets = Vec::new();
    let mut args = vec!["$1::text[]".to_owned()];
    let mut names = vec!["row_ctid".to_owned()];
    for (i, c) in t.columns.iter().enumerate() {
        let col = quote_ident(&c.column);
        sets.push(format!("{col} = COALESCE(v.new_{i}, t.{col})"));
        args.push(format!("${}::bytea[]", i + 2));
        names.push(format!("new_{i}"));
    }
    let sql = format!(
        // The ANY lets PostgreSQL fetch the rows by TID instead of scanning the table.
        "UPDATE {} AS t SET {} FROM unnest({}) AS v({}) WHERE t.ctid = v.row_ctid::tid AND t.ctid = ANY($1::text[]::tid[])",
        t.table_sql,
        sets.join(", "),
        args.join(", "),
        names.join(", ")
    );
    let ctids: Vec<&str> = changes.iter().map(|c| c.ctid.as_str()).collect();
    let columns: Vec<Vec<Option<&[u8]>>> = (0..t.columns.len())
        .map(|i| changes.iter().map(|c| c.values[i].as_deref()).collect())
        .collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ctids];
    for column in &columns {
        params.push(column);
    }
    tx.execute(&sql, &params).await.map(drop)
}

/// Locks the batch's rows again after a rollback (they are where they were: only the
/// rolled-back UPDATE had moved them).
async fn relock(tx: &Transaction<'_>, t: &TableWork, changes: &[RowChange]) -> Result<(), String> {
    let ctids: Vec<&str> = changes.iter().map(|c| c.ctid.as_str()).collect();
    let sql = format!(
        "SELECT 1 FROM {} WHERE ctid = ANY($1::text[]::tid[]) FOR UPDATE",
        t.table_sql
    );
    tx.execute(&sql, &[&ctids])
        .await
        .map(drop)
        .map_err(|e| format!("{}: {}", t.name, connect::reason(&e)))
}

/// One row in a savepoint: a unique violation leaves it as it was and is reported (`false`).
async fn one_row(
    tx: &Transaction<'_>,
    t: &TableWork,
    change: &RowChange,
    outcome: &mut Outcome,
) -> Result<bool, String> {
    let reason = |e: tokio_postgres::Error| format!("{}: {}", t.name, connect::reason(&e));
    tx.batch_execute("SAVEPOINT pgshroud_rotate_row")
        .await
        .map_err(reason)?;
    let applied = match update_batch(tx, t, std::slice::from_ref(change)).await {
        Ok(()) => true,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let constraint = e
                .as_db_error()
                .and_then(|d| d.constraint())
                .unwrap_or("?")
                .to_owned();
            let column = t
                .columns
                .iter()
                .zip(&change.values)
                .filter(|(_, v)| v.is_some())
                .map(|(c, _)| c.qualified())
                .collect::<Vec<_>>()
                .join(", ");
            outcome.duplicates.push((column, constraint));
            tx.batch_execute("ROLLBACK TO SAVEPOINT pgshroud_rotate_row")
                .await
                .map_err(reason)?;
            false
        }
        Err(e) => return Err(reason(e)),
    };
    tx.batch_execute("RELEASE SAVEPOINT pgshroud_rotate_row")
        .await
        .map_err(reason)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(format: u8, version: u32, tag: [u8; 8]) -> Vec<u8> {
        let mut e = vec![format];
        e.extend_from_slice(&version.to_be_bytes());
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&tag);
        e.extend_from_slice(&[0; 16]);
        e
    }

    #[test]
    fn a_tenant_selector_names_only_that_tenants_values_under_other_versions() {
        let sel = Selector::TenantNotUnder {
            tag: [7; 8],
            version: 2,
        };
        assert!(sel.needs(&envelope(3, 1, [7; 8])));
        assert!(
            !sel.needs(&envelope(3, 2, [7; 8])),
            "already under the active version"
        );
        assert!(!sel.needs(&envelope(3, 1, [8; 8])), "another tenant");
        assert!(!sel.needs(&envelope(2, 1, [7; 8])), "a shared-key value");
        assert!(!sel.needs(&[3, 0]), "too short to hold a tag");
        assert_eq!(sel.params(), [vec![3, 0, 0, 0, 2], vec![7; 8]]);
        assert_eq!(
            sel.column_filter("body"),
            "(\"body\" IS NOT NULL AND pg_catalog.substr(\"body\", 10, 8) = $2::bytea AND pg_catalog.substr(\"body\", 1, 1) = pg_catalog.substr($1::bytea, 1, 1) AND pg_catalog.substr(\"body\", 1, 5) <> $1::bytea)"
        );
        let master = Selector::NotUnderMaster { version: 2 };
        assert!(master.needs(&envelope(2, 1, [0; 8])));
        assert!(master.needs(&envelope(1, 2, [0; 8])), "format 1 moves to 2");
        assert!(!master.needs(&envelope(2, 2, [0; 8])));
    }
}
