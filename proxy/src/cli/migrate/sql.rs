//! The statements a migration sends, written once: `--dry-run` prints them, the run executes
//! them. Every name is quoted; the session runs with `search_path = pg_catalog`, so the
//! built-in functions and operators are the ones meant.

use tokio_postgres::Client;

use super::convert::Direction;
use super::plan::{ColumnPlan, Plan, Rebuild};
use crate::cli::setup::connect;
use crate::protect::guard::{self, quote_ident};

/// The trigger function that keeps a column's shadow in step: a row written by anyone but
/// the migration (INSERT, or UPDATE of the column) gets its shadow emptied, so the fill (or
/// the swap) computes it again from the new value.
fn function_sql(c: &ColumnPlan) -> String {
    format!(
        "{}.{}",
        quote_ident(&c.schema),
        quote_ident(&format!(
            "pgshroud_migrate_{}_{}",
            c.attr.table_oid, c.attr.attnum
        ))
    )
}

fn trigger_names(c: &ColumnPlan) -> (String, String) {
    (
        quote_ident(&format!("pgshroud_migrate_{}_insert", c.attr.attnum)),
        quote_ident(&format!("pgshroud_migrate_{}_update", c.attr.attnum)),
    )
}

/// Shadow column and triggers of every column (one transaction per column: a shadow never
/// exists without the triggers that keep it honest).
pub fn prepare_statements(plan: &Plan, direction: Direction) -> Vec<String> {
    let mut out = Vec::new();
    for c in plan.columns.iter().filter(|c| !c.resumed) {
        out.extend(prepare_column(c, direction));
    }
    out
}

pub fn prepare_column(c: &ColumnPlan, direction: Direction) -> Vec<String> {
    let table = c.table_sql();
    let col = quote_ident(&c.column);
    let shadow = quote_ident(&c.shadow);
    let function = function_sql(c);
    let (insert, update) = trigger_names(c);
    vec![
        format!(
            "ALTER TABLE {table} ADD COLUMN {shadow} {}",
            c.shadow_type(direction)
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $pgshroud$ BEGIN NEW.{shadow} := NULL; RETURN NEW; END $pgshroud$"
        ),
        format!("CREATE TRIGGER {insert} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"),
        // Compared as text in the C collation: byte for byte, whatever the column's collation
        // or type considers equal.
        format!(
            "CREATE TRIGGER {update} BEFORE UPDATE OF {col} ON {table} FOR EACH ROW WHEN (OLD.{col}::text COLLATE \"C\" IS DISTINCT FROM NEW.{col}::text COLLATE \"C\") EXECUTE FUNCTION {function}()"
        ),
    ]
}

/// `UPDATE ... FROM unnest($1::text[] (ctids), $2 (values))`: one statement per batch.
pub fn fill_update(c: &ColumnPlan, direction: Direction) -> String {
    let (array, value) = match direction {
        Direction::Encrypt => ("bytea[]".to_owned(), "v.val".to_owned()),
        Direction::Decrypt => (
            "text[]".to_owned(),
            format!("v.val::{}", c.shadow_type(direction)),
        ),
    };
    format!(
        // The ANY lets PostgreSQL fetch the rows by TID instead of scanning the table.
        "UPDATE {} AS t SET {} = {value} FROM unnest($1::text[], $2::{array}) AS v(row_ctid, val) WHERE t.ctid = v.row_ctid::tid AND t.ctid = ANY($1::text[]::tid[])",
        c.table_sql(),
        quote_ident(&c.shadow)
    )
}

/// Indexes built on the shadows before the swap, without blocking writes.
pub fn index_statements(plan: &Plan) -> Vec<String> {
    plan.rebuilds
        .iter()
        .map(|r| create_index(plan, r))
        .collect()
}

pub fn create_index(plan: &Plan, r: &Rebuild) -> String {
    let shadowed = |name: &String| {
        let column = plan
            .columns
            .iter()
            .find(|c| c.table_sql() == r.table_sql && c.column == *name);
        quote_ident(column.map_or(name, |c| &c.shadow))
    };
    let keys: Vec<String> = r.old.keys.iter().map(shadowed).collect();
    let include: Vec<String> = r.old.include.iter().map(shadowed).collect();
    format!(
        // The index goes into the table's schema (CREATE INDEX takes no schema name).
        "CREATE {}INDEX CONCURRENTLY {} ON {} USING {} ({}){}",
        if r.old.unique { "UNIQUE " } else { "" },
        quote_ident(&r.new_name),
        r.table_sql,
        r.old.method,
        keys.join(", "),
        if include.is_empty() {
            String::new()
        } else {
            format!(" INCLUDE ({})", include.join(", "))
        }
    )
}

/// The swap, after the last rows are filled under the lock: the plaintext (or envelope)
/// column goes, the shadow takes its name, NOT NULL, indexes, constraints and foreign keys
/// come back, and the guard goes on (encrypt) or off (decrypt).
pub fn swap_statements(plan: &Plan, direction: Direction, with_dropped: bool) -> Vec<String> {
    let mut out = vec!["SET LOCAL lock_timeout = '10s'".to_owned()];
    let mut tables: Vec<String> = Vec::new();
    for c in &plan.columns {
        if !tables.contains(&c.table_sql()) {
            tables.push(c.table_sql());
        }
    }
    // Foreign-key partners are locked too: their constraints change.
    for fk in plan.foreign_keys.iter().chain(&plan.dropped_foreign_keys) {
        if !tables.contains(&fk.table_sql) {
            tables.push(fk.table_sql.clone());
        }
    }
    out.push(format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        tables.join(", ")
    ));
    out.push("-- fill the rows written since the last batch, under the lock".to_owned());
    let dropped: &[_] = if with_dropped {
        &plan.dropped_foreign_keys
    } else {
        &[]
    };
    for fk in plan.foreign_keys.iter().chain(dropped) {
        out.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            fk.table_sql,
            quote_ident(&fk.name)
        ));
    }
    for c in &plan.columns {
        let table = c.table_sql();
        let col = quote_ident(&c.column);
        let (insert, update) = trigger_names(c);
        out.push(format!("DROP TRIGGER {insert} ON {table}"));
        out.push(format!("DROP TRIGGER {update} ON {table}"));
        out.push(format!("DROP FUNCTION {}()", function_sql(c)));
        out.push(format!("ALTER TABLE {table} DROP COLUMN {col}"));
        out.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {col}",
            quote_ident(&c.shadow)
        ));
        if c.attr.not_null {
            out.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL"
            ));
        }
        if direction == Direction::Encrypt {
            // NOT VALID: the swap does not scan the table for it (every value was just
            // verified); it is validated right after, without blocking writes.
            out.push(format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({}) NOT VALID",
                quote_ident(&guard::constraint_name(&c.column)),
                guard::check_expression(&c.column, c.spec.context.as_str())
            ));
        }
    }
    for r in &plan.rebuilds {
        let new = quote_ident(&r.new_name);
        out.push(match &r.old.constraint {
            Some((kind, name)) => format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {new}",
                r.table_sql,
                quote_ident(name),
                if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" }
            ),
            None => format!(
                "ALTER INDEX {}.{new} RENAME TO {}",
                quote_ident(&r.schema),
                quote_ident(&r.old.name)
            ),
        });
    }
    for fk in &plan.foreign_keys {
        out.push(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID",
            fk.table_sql,
            quote_ident(&fk.name),
            fk.definition
        ));
    }
    out
}

/// After the swap's commit: the new constraints are validated (a scan that lets reads and
/// writes go on) and the planner's statistics refreshed.
pub fn after_swap_statements(plan: &Plan, direction: Direction) -> Vec<String> {
    let mut out = Vec::new();
    for c in &plan.columns {
        if direction == Direction::Encrypt {
            out.push(format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                c.table_sql(),
                quote_ident(&guard::constraint_name(&c.column))
            ));
        }
    }
    for fk in &plan.foreign_keys {
        out.push(format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            fk.table_sql,
            quote_ident(&fk.name)
        ));
    }
    let mut tables: Vec<String> = plan.columns.iter().map(ColumnPlan::table_sql).collect();
    tables.dedup();
    for t in tables {
        out.push(format!("ANALYZE {t}"));
    }
    out
}

/// An index left by an interrupted `CREATE INDEX CONCURRENTLY` is invalid: dropped so it can
/// be built again; a valid one is kept.
pub async fn index_state(client: &Client, r: &Rebuild) -> Result<Option<bool>, String> {
    let row = client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[&r.schema, &r.new_name],
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(row.map(|r| r.get(0)))
}

pub fn drop_index(r: &Rebuild) -> String {
    format!(
        "DROP INDEX CONCURRENTLY {}.{}",
        quote_ident(&r.schema),
        quote_ident(&r.new_name)
    )
}
