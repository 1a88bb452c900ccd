//! `pgshroud migrate`: turns populated plaintext columns into guarded protected columns holding
//! envelopes (or back, with `--decrypt`), while applications keep writing.
//!
//! How: a shadow column `<column>__pgshroud` (added without a default: no rewrite) and two
//! triggers that empty a row's shadow whenever anyone else writes the column; the shadow is
//! filled in `ctid`-ordered batches of short transactions (rewrite engine shared with rotate),
//! indexes are built on it `CONCURRENTLY`, every value is verified, then one short transaction
//! locks the tables, fills the few rows written since, and swaps the shadow in. Resumable by
//! construction: an empty shadow is exactly what is left to do, and the swap is atomic.

mod catalog;
pub mod convert;
mod fill;
mod plan;
mod render;
mod sql;

use std::fmt::Write as _;
use std::time::Instant;

use tokio_postgres::Client;

use super::args::MigrateArgs;
use super::rewrite::batch::Cursor;
use super::rewrite::progress::Progress;
use super::setup::{connect, Report};
use crate::config::keys::KeysFile;
use crate::crypto::{ColumnCipher, KeyContext, KeyRing};
use crate::protect::codec::ColumnSpec;
use convert::Direction;
use plan::{ColumnPlan, Plan};

pub async fn run(args: &MigrateArgs) -> Result<Report, String> {
    let rules = pgshroud_rules::load(&args.rules).map_err(|e| e.to_string())?;
    let ring = KeysFile::read(&args.keys_file)?.load()?.ring;
    let direction = match args.decrypt {
        true => Direction::Decrypt,
        false => Direction::Encrypt,
    };
    let specs = args
        .columns
        .iter()
        .map(|name| column_spec(&rules, name))
        .collect::<Result<Vec<_>, String>>()?;
    let mut client = connect::connect(&args.upstream_url).await?;
    client
        .batch_execute(
            "SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; SET search_path = pg_catalog",
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    let plan = Plan::read(&client, direction, specs).await?;
    let batch = args.batch_size.max(1);
    if args.dry_run {
        return Ok(Report {
            text: format!(
                "{}{}Dry run: nothing was changed.",
                plan.render(batch),
                marker_notes(&rules, &args.columns)
            ),
            ok: plan.problems.is_empty(),
        });
    }
    if !plan.problems.is_empty() {
        return Ok(Report {
            text: format!(
                "{}Nothing was changed: resolve the problems above, then run again.",
                plan.render(batch)
            ),
            ok: false,
        });
    }
    if !plan.incompatible.is_empty() && !args.drop_incompatible {
        return Ok(Report {
            text: format!("{}Nothing was changed: what cannot be kept (above) goes only with --drop-incompatible.", plan.render(batch)),
            ok: false,
        });
    }
    if plan.columns.is_empty() {
        // A run killed after its swap committed left the guard NOT VALID: validate it now.
        for (table, guard) in &plan.unvalidated {
            client
                .batch_execute(&format!("ALTER TABLE {table} VALIDATE CONSTRAINT {guard}"))
                .await
                .map_err(|e| format!("{table}: {}", connect::reason(&e)))?;
        }
        return Ok(Report {
            text: format!(
                "Nothing to do: {} already {}.",
                plan.done.join(", "),
                match direction {
                    Direction::Encrypt => "holds envelopes under its guard",
                    Direction::Decrypt => "holds plaintext",
                }
            ),
            ok: true,
        });
    }
    migrate(&mut client, &plan, direction, &ring, i64::from(batch)).await
}

/// What the proxy does with each column during the run: served in whichever form the
/// database holds when the rules it serves mark it `migrating = true`, else refused until
/// the rules follow the swap.
fn marker_notes(rules: &pgshroud_rules::Rules, columns: &[String]) -> String {
    let mut text = String::new();
    for name in columns {
        let mut parts = name.splitn(3, '.');
        let (Some(schema), Some(table), Some(column)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some((_, c)) = rules.column(schema, table, column) else {
            continue;
        };
        let _ = match c.migrating {
            true => writeln!(
                text,
                "  marker: {name} is marked migrating = true: pgshroud, serving these rules, serves it in whichever form the database holds, before and after the swap (no reload); remove the marker once the run is done"
            ),
            false => writeln!(
                text,
                "  marker: {name} is not marked migrating = true: pgshroud serving these rules refuses writes to it until the swap (add `migrating = true` to serve it throughout)"
            ),
        };
    }
    text
}

/// The protected column `schema.table.column` as the rules describe it.
fn column_spec(
    rules: &pgshroud_rules::Rules,
    name: &str,
) -> Result<(String, String, String, ColumnSpec), String> {
    let mut parts = name.splitn(3, '.');
    let (Some(schema), Some(table), Some(column)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "--column {name}: write the column as schema.table.column"
        ));
    };
    let (t, c) = rules
        .column(schema, table, column)
        .ok_or_else(|| format!("--column {name}: not a protected column in the rules file (add it there first, with its type and key context)"))?;
    Ok((
        t.schema.clone(),
        t.name.clone(),
        c.name.clone(),
        ColumnSpec {
            qualified: format!("{}.{}.{}", t.schema, t.name, c.name),
            logical: c.logical,
            modifier: c.modifier,
            context: KeyContext::new(t.context_of(c)),
        },
    ))
}

async fn migrate(
    client: &mut Client,
    plan: &Plan,
    direction: Direction,
    ring: &KeyRing,
    batch: i64,
) -> Result<Report, String> {
    let mut text = String::new();
    for c in plan.columns.iter().filter(|c| !c.resumed) {
        let tx = client
            .transaction()
            .await
            .map_err(|e| connect::reason(&e))?;
        for s in sql::prepare_column(c, direction) {
            tx.batch_execute(&s)
                .await
                .map_err(|e| format!("{}: {}", c.spec.qualified, connect::reason(&e)))?;
        }
        tx.commit().await.map_err(|e| connect::reason(&e))?;
    }
    let mut ciphers: Vec<ColumnCipher> = plan
        .columns
        .iter()
        .map(|c| ring.cipher_for(&c.spec.context))
        .collect();

    let mut progress = Progress::new("migrate", plan.columns.iter().map(|c| c.to_fill).sum());
    for (c, cipher) in plan.columns.iter().zip(&mut ciphers) {
        fill::walk(client, c, direction, cipher, batch, &mut progress).await?;
        // Rows written behind the walk: once more while they are many; the rest are filled
        // under the swap's lock.
        if c.left_to_fill(client).await? > u64::try_from(batch).unwrap_or(0) {
            fill::walk(client, c, direction, cipher, batch, &mut progress).await?;
        }
    }
    progress.finish();

    for r in &plan.rebuilds {
        let statements = match sql::index_state(client, r).await? {
            Some(true) => continue,
            // An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index behind.
            Some(false) => vec![sql::drop_index(r), sql::create_index(plan, r)],
            None => vec![sql::create_index(plan, r)],
        };
        for s in statements {
            client
                .batch_execute(&s)
                .await
                .map_err(|e| format!("{}: {}", r.old.name, connect::reason(&e)))?;
        }
    }

    for (c, cipher) in plan.columns.iter().zip(&mut ciphers) {
        let v = fill::verify(client, c, direction, cipher, batch.max(1000)).await?;
        if v.wrong > 0 {
            return Ok(Report {
                text: format!(
                    "{text}{}: verification FAILED: {} of {} values in the shadow column {} do not hold what the column holds. Nothing was swapped; the column is unchanged.",
                    c.spec.qualified, v.wrong, v.values, c.shadow
                ),
                ok: false,
            });
        }
        let _ = writeln!(
            text,
            "{}: {} values {}, each verified to hold what the column held{}.",
            c.spec.qualified,
            v.values,
            match direction {
                Direction::Encrypt => "encrypted",
                Direction::Decrypt => "decrypted",
            },
            match v.pending {
                0 => String::new(),
                n => format!(" ({n} rows written meanwhile are filled before the swap)"),
            }
        );
    }

    // Rows written during the index builds and the verification are filled now, outside the
    // lock, so the swap has only the last moments' rows to do while it holds it.
    let mut left = 0;
    for c in &plan.columns {
        left += c.left_to_fill(client).await?;
    }
    let mut catch_up = Progress::new("migrate", left);
    for (c, cipher) in plan.columns.iter().zip(&mut ciphers) {
        fill::walk(client, c, direction, cipher, batch, &mut catch_up).await?;
    }

    let started = Instant::now();
    swap(client, plan, direction, &mut ciphers, batch).await?;
    let swap_ms = started.elapsed().as_millis();
    for s in sql::after_swap_statements(plan, direction) {
        client
            .batch_execute(&s)
            .await
            .map_err(|e| format!("after the swap: {s}: {}", connect::reason(&e)))?;
    }
    let _ = writeln!(
        text,
        "Swap: one transaction, tables locked for {swap_ms} ms.{}",
        kept(plan)
    );
    text.push_str(match direction {
        Direction::Encrypt => "Done: the columns hold envelopes under their guards. Columns marked migrating = true are served protected already: remove the marker at leisure. Otherwise reload pgshroud's rules (SIGHUP) if it does not list them yet; sessions that prepared statements on the old column type must prepare them again.",
        Direction::Decrypt => "Done: the columns hold plaintext again. Columns marked migrating = true are served as plain columns already; remove them from pgshroud's rules (and reload) at leisure.",
    });
    Ok(Report { text, ok: true })
}

/// What was kept, for the report.
fn kept(plan: &Plan) -> String {
    let mut kept: Vec<String> = plan
        .rebuilds
        .iter()
        .map(|r| {
            r.old
                .constraint
                .as_ref()
                .map_or(&r.old.name, |(_, n)| n)
                .clone()
        })
        .collect();
    kept.extend(plan.foreign_keys.iter().map(|f| f.name.clone()));
    kept.extend(
        plan.columns
            .iter()
            .filter(|c| c.attr.not_null)
            .map(|c| format!("NOT NULL on {}", c.column)),
    );
    match kept.is_empty() {
        true => String::new(),
        false => format!(" Kept: {}.", kept.join(", ")),
    }
}

/// The final transaction. A failure rolls all of it back: the run can simply be repeated.
async fn swap(
    client: &mut Client,
    plan: &Plan,
    direction: Direction,
    ciphers: &mut [ColumnCipher],
    batch: i64,
) -> Result<(), String> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| connect::reason(&e))?;
    for s in sql::swap_statements(plan, direction, true) {
        if s.starts_with("--") {
            for (c, cipher) in plan.columns.iter().zip(ciphers.iter_mut()) {
                fill_locked(&tx, c, direction, cipher, batch).await?;
            }
            continue;
        }
        tx.batch_execute(&s).await.map_err(|e| {
            format!(
                "the swap was rolled back, nothing changed ({s}): {}. Run pgshroud migrate again (it resumes)",
                connect::reason(&e)
            )
        })?;
    }
    tx.commit().await.map_err(|e| connect::reason(&e))
}

/// Fills the shadow's last empty rows inside the swap (the table is locked), then checks that
/// no row has one of column and shadow NULL without the other.
async fn fill_locked(
    tx: &tokio_postgres::Transaction<'_>,
    c: &ColumnPlan,
    direction: Direction,
    cipher: &mut ColumnCipher,
    batch: i64,
) -> Result<(), String> {
    let mut cursor = Cursor::default();
    while fill::one_batch(tx, c, direction, cipher, &mut cursor, batch, false).await? > 0 {}
    let col = crate::protect::guard::quote_ident(&c.column);
    let shadow = crate::protect::guard::quote_ident(&c.shadow);
    let odd = catalog::rows_to_fill(
        tx.client(),
        &c.table_sql(),
        &format!("({col} IS NULL) <> ({shadow} IS NULL)"),
    )
    .await;
    match odd {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "{}: {n} rows have a value in only one of {} and {} under the lock; the swap was rolled back",
            c.spec.qualified, c.column, c.shadow
        )),
        Err(e) => Err(e),
    }
}
