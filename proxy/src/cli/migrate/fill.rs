//! Filling a shadow column in batches (each one short transaction locking only its rows) and
//! verifying, value by value, that every shadow holds exactly what its column holds.

use tokio_postgres::{Client, GenericClient};

use super::convert::{self, Direction, Shadow};
use super::plan::ColumnPlan;
use super::sql;
use crate::cli::rewrite::batch::{self, Cursor, Raw};
use crate::cli::rewrite::progress::Progress;
use crate::cli::setup::connect;
use crate::crypto::ColumnCipher;
use crate::protect::guard::quote_ident;

/// Fills the column's shadow where it is empty, walking the table once in `ctid` order.
/// Rows written behind the walk are left for the next walk or the swap. Returns rows filled.
pub async fn walk(
    client: &mut Client,
    c: &ColumnPlan,
    direction: Direction,
    cipher: &mut ColumnCipher,
    size: i64,
    progress: &mut Progress,
) -> Result<u64, String> {
    let mut cursor = Cursor::default();
    let mut filled = 0;
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(|e| connect::reason(&e))?;
        let n = one_batch(&tx, c, direction, cipher, &mut cursor, size, true).await?;
        tx.commit().await.map_err(|e| connect::reason(&e))?;
        if n == 0 {
            return Ok(filled);
        }
        filled += n;
        progress.advance(n);
    }
}

/// Fills one batch after `cursor` on `client` (a transaction); 0 when the walk is over.
pub async fn one_batch<C: GenericClient>(
    client: &C,
    c: &ColumnPlan,
    direction: Direction,
    cipher: &mut ColumnCipher,
    cursor: &mut Cursor,
    size: i64,
    lock: bool,
) -> Result<u64, String> {
    let reason =
        |e: tokio_postgres::Error| format!("{}: {}", c.spec.qualified, connect::reason(&e));
    let select = batch::select_sql(
        &c.table_sql(),
        &quote_ident(&c.column),
        &c.to_fill(),
        1,
        2,
        lock,
    );
    let rows = client
        .query(&select, &[&cursor.after(), &size])
        .await
        .map_err(reason)?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    cursor.advance(last.get(0));
    let mut ctids: Vec<String> = Vec::with_capacity(rows.len());
    let mut envelopes: Vec<Vec<u8>> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for row in &rows {
        ctids.push(row.get(0));
        let Raw(stored) = row.get(1);
        match convert::convert(direction, &c.spec, cipher, &stored).map_err(|e| e.0)? {
            Shadow::Envelope(e) => envelopes.push(e),
            Shadow::Text(t) => texts.push(t),
        }
    }
    let update = sql::fill_update(c, direction);
    let result = match direction {
        Direction::Encrypt => client.execute(&update, &[&ctids, &envelopes]).await,
        Direction::Decrypt => client.execute(&update, &[&ctids, &texts]).await,
    };
    result.map_err(reason)?;
    Ok(rows.len() as u64)
}

/// What a verification found.
#[derive(Default)]
pub struct Verified {
    pub values: u64,
    /// Rows whose shadow differs from the column (never expected: the migration stops).
    pub wrong: u64,
    /// Rows written since their shadow was filled (the swap fills them under its lock).
    pub pending: u64,
}

/// Compares every filled shadow with its column, in batches without locks.
pub async fn verify(
    client: &Client,
    c: &ColumnPlan,
    direction: Direction,
    cipher: &mut ColumnCipher,
    size: i64,
) -> Result<Verified, String> {
    let reason =
        |e: tokio_postgres::Error| format!("{}: {}", c.spec.qualified, connect::reason(&e));
    let select = batch::select_sql(
        &c.table_sql(),
        &format!("{}, {}", quote_ident(&c.column), quote_ident(&c.shadow)),
        "true",
        1,
        2,
        false,
    );
    let mut cursor = Cursor::default();
    let mut out = Verified::default();
    loop {
        let rows = client
            .query(&select, &[&cursor.after(), &size])
            .await
            .map_err(reason)?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        cursor.advance(last.get(0));
        for row in &rows {
            let stored: Option<Raw> = row.get(1);
            let shadow: Option<Raw> = row.get(2);
            match (stored, shadow) {
                (None, None) => {}
                (Some(_), None) => out.pending += 1,
                (None, Some(_)) => out.wrong += 1,
                (Some(Raw(stored)), Some(Raw(shadow))) => {
                    out.values += 1;
                    if !convert::same(direction, &c.spec, cipher, &stored, &shadow) {
                        out.wrong += 1;
                    }
                }
            }
        }
    }
}
