//! `pgshroud rotate`: re-encrypts, under the active key version, every stored value of a
//! protected column that is under another version or in envelope format 1, while applications
//! keep working through pgshroud.
//!
//! Online: each batch is one short transaction that locks only its own rows (`FOR UPDATE`),
//! walking each table in `ctid` order; rows written meanwhile through pgshroud are already
//! under the active version and are skipped. Resumable: what is left is exactly what is not
//! under the active version, so after a kill a new run continues (committed batches stay
//! done, the interrupted one was rolled back) and nothing is sealed twice. A value whose
//! plaintext another row already holds under the active version (possible while two versions
//! were live: a unique index cannot see it) cannot be moved; it is left, named in the report,
//! and the final check fails until an operator resolves it.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use super::args::RotateArgs;
use super::keys::{self, StoredColumn};
use super::rewrite::batch;
use super::rewrite::progress::Progress;
use super::setup::{connect, Report};
use crate::config::keys::KeysFile;
use crate::crypto::{ColumnCipher, KeyContext, KeyRing};
use crate::protect::guard::quote_ident;

/// The protected columns of one table.
struct TableWork {
    table_sql: String,
    name: String,
    columns: Vec<StoredColumn>,
}

/// What one run did.
#[derive(Default)]
struct Outcome {
    rows: u64,
    values: u64,
    batches: u64,
    /// (column, unique constraint) of values left because their plaintext is already under
    /// the active version in another row.
    duplicates: Vec<(String, String)>,
    /// Columns with values no live key opens (counted once per value).
    undecryptable: Vec<String>,
}

pub async fn run(args: &RotateArgs) -> Result<Report, String> {
    let rules = pgshroud_rules::load(&args.rules).map_err(|e| e.to_string())?;
    let ring = KeysFile::read(&args.keys_file)?.load()?.ring;
    let mut client = connect::connect(&args.upstream_url).await?;
    client
        .batch_execute(
            "SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; SET search_path = pg_catalog",
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    let active = ring.active_version();
    let mut prefix = vec![0x02];
    prefix.extend_from_slice(&active.get().to_be_bytes());

    let (counts, _) = keys::counts(&client, &keys::stored_columns(&rules)).await?;
    let work = tables(&rules);
    let mut total = 0;
    for t in &work {
        total += rows_left(&client, t, &prefix).await?;
    }
    if args.dry_run {
        let left = left_values(&counts, active.get());
        return Ok(Report {
            text: format!(
                "Dry run: {total} rows hold values to re-encrypt under key version {active}{}",
                describe_left(&left)
            ),
            ok: true,
        });
    }

    let mut progress = Progress::new("rotate", total)
        .with_textfile(args.metrics_textfile.clone(), active.get())?;
    let mut outcome = Outcome::default();
    let batch = i64::from(args.batch_size.max(1));
    for t in &work {
        rotate_table(
            &mut client,
            &ring,
            t,
            &prefix,
            batch,
            &mut progress,
            &mut outcome,
        )
        .await?;
    }
    progress.finish();

    let (after, _) = keys::counts(&client, &keys::stored_columns(&rules)).await?;
    let left = left_values(&after, active.get());
    let mut text = format!(
        "Re-encrypted {} values in {} rows ({} batches) under key version {active}.",
        outcome.values, outcome.rows, outcome.batches
    );
    for (column, constraint) in dedup(&outcome.duplicates) {
        text.push_str(&format!(
            "\n{column}: a value is left under its old key version because another row holds the same value under version {active} (unique constraint {constraint}); the unique index could not see the duplicate while two versions were live. Resolve the pair, then run pgshroud rotate again."
        ));
    }
    for column in dedup_names(&outcome.undecryptable) {
        text.push_str(&format!(
            "\n{column}: some values open under no live key version (a retired or wrong key, or damage); they are left as they are."
        ));
    }
    progress.finish_textfile(outcome.values, left.is_empty())?;
    if left.is_empty() {
        text.push_str(&format!(
            "\nFinal check: every stored value is under key version {active} in envelope format 2; other versions can be retired (pgshroud keys retire --version N)."
        ));
    } else {
        text.push_str(&format!("\nFinal check failed{}", describe_left(&left)));
    }
    Ok(Report {
        text,
        ok: left.is_empty(),
    })
}

/// Tables with protected columns that exist in the database.
fn tables(rules: &pgshroud_rules::Rules) -> Vec<TableWork> {
    let mut work: Vec<TableWork> = Vec::new();
    for c in keys::stored_columns(rules) {
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

/// `(c IS NOT NULL AND substr(c, 1, 5) <> $1) OR ...`: rows with a value to re-encrypt.
fn needs_work(t: &TableWork) -> String {
    t.columns
        .iter()
        .map(|c| {
            let col = quote_ident(&c.column);
            format!("({col} IS NOT NULL AND pg_catalog.substr({col}, 1, 5) <> $1::bytea)")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

async fn rows_left(client: &Client, t: &TableWork, prefix: &[u8]) -> Result<u64, String> {
    let sql = format!(
        "SELECT pg_catalog.count(*) FROM {} WHERE {}",
        t.table_sql,
        needs_work(t)
    );
    match client.query_one(&sql, &[&prefix]).await {
        Ok(row) => Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
        // A view or a table not created yet: nothing stored to rotate.
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) if e.code() == Some(&SqlState::WRONG_OBJECT_TYPE) => Ok(0),
        Err(e) => Err(format!("{}: {}", t.name, connect::reason(&e))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn rotate_table(
    client: &mut Client,
    ring: &KeyRing,
    t: &TableWork,
    prefix: &[u8],
    batch: i64,
    progress: &mut Progress,
    outcome: &mut Outcome,
) -> Result<(), String> {
    if rows_left(client, t, prefix).await? == 0 {
        return Ok(());
    }
    let mut ciphers: Vec<ColumnCipher> = t
        .columns
        .iter()
        .map(|c| ring.cipher_for(&KeyContext::new(c.context.clone())))
        .collect();
    let columns = t
        .columns
        .iter()
        .map(|c| quote_ident(&c.column))
        .collect::<Vec<_>>()
        .join(", ");
    let select = batch::select_sql(&t.table_sql, &columns, &needs_work(t), 2, 3, true);
    let mut cursor = batch::Cursor::default();
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(|e| connect::reason(&e))?;
        let rows = tx
            .query(&select, &[&prefix, &cursor.after(), &batch])
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
                    Some(stored) if !stored.starts_with(prefix) => match cipher.open(&stored) {
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
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Some value of the batch has a twin under the active version: redo the batch
                // row by row in a fresh transaction, leaving just those rows.
                tx.rollback().await.map_err(|e| connect::reason(&e))?;
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| connect::reason(&e))?;
                relock(&tx, t, &changes).await?;
                for change in &changes {
                    one_row(&tx, t, change, outcome).await?;
                }
                tx.commit().await.map_err(|e| connect::reason(&e))?;
                count(outcome, &changes);
                outcome.batches += 1;
                progress.advance(rows_done);
                continue;
            }
            Err(e) => return Err(format!("{}: {}", t.name, connect::reason(&e))),
        }
        tx.commit().await.map_err(|e| connect::reason(&e))?;
        count(outcome, &changes);
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
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&ctids];
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

/// One row in a savepoint: a unique violation leaves it as it was and is reported.
async fn one_row(
    tx: &Transaction<'_>,
    t: &TableWork,
    change: &RowChange,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let reason = |e: tokio_postgres::Error| format!("{}: {}", t.name, connect::reason(&e));
    tx.batch_execute("SAVEPOINT pgshroud_rotate_row")
        .await
        .map_err(reason)?;
    match update_batch(tx, t, std::slice::from_ref(change)).await {
        Ok(()) => {}
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
        }
        Err(e) => return Err(reason(e)),
    }
    tx.batch_execute("RELEASE SAVEPOINT pgshroud_rotate_row")
        .await
        .map_err(reason)
}

/// Values not under `active` in format 2.
fn left_values(counts: &[keys::VersionCount], active: u32) -> Vec<&keys::VersionCount> {
    counts
        .iter()
        .filter(|c| c.format != 2 || c.version != active)
        .collect()
}

fn describe_left(left: &[&keys::VersionCount]) -> String {
    if left.is_empty() {
        return " (nothing is under another key version or envelope format).".to_owned();
    }
    let list = left
        .iter()
        .map(|c| {
            format!(
                "{} ({} values under key version {}, envelope format {})",
                c.column, c.values, c.version, c.format
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(": {list}.")
}

fn dedup(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in pairs {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

fn dedup_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}
