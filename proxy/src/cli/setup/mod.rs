//! `pgshroud setup` and `pgshroud check --upstream-url`: install the guard on every protected
//! column (idempotently) and report each column's state, over the operator's own connection.

pub mod connect;

use std::fmt::Write as _;
use std::path::Path;

use pgshroud_rules::Rules;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::crypto::envelope::{CONTEXT_TAG_OFFSET, FORMAT_V1, FORMAT_V2};
use crate::protect::catalog::{self, Catalog, CatalogColumn};
use crate::protect::guard::{self, GuardState};

/// A protected column as the rules name it (lower case, as the proxy matches it).
#[derive(Debug, Clone)]
struct RuleColumn {
    schema: String,
    table: String,
    column: String,
    context: String,
    /// Sealed with tenant keys: its guard accepts format 3 only.
    per_tenant: bool,
    /// Marked `migrating = true`: served in whichever form the database holds.
    migrating: bool,
}

impl RuleColumn {
    fn qualified(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }

    fn table_sql(&self) -> String {
        format!(
            "{}.{}",
            guard::quote_ident(&self.schema),
            guard::quote_ident(&self.table)
        )
    }
}

fn rule_columns(rules: &Rules) -> Vec<RuleColumn> {
    rules
        .tables
        .iter()
        .flat_map(|t| {
            t.columns.iter().map(move |c| RuleColumn {
                schema: t.schema.to_lowercase(),
                table: t.name.to_lowercase(),
                column: c.name.to_lowercase(),
                context: t.context_of(c),
                per_tenant: c.per_tenant,
                migrating: c.migrating,
            })
        })
        .collect()
}

/// What one column looks like in the database.
enum Found<'a> {
    NoTable,
    View,
    NoColumn,
    NotBytea(&'a str),
    /// A `pgshroud migrate` shadow column exists beside it: a migration is running or was
    /// interrupted (column's type, shadow's name and type).
    Migrating(&'a str, String, &'a str),
    Column(&'a CatalogColumn),
}

/// The database as the proxy's own look-up sees it, plus each table's kind and owner.
struct Database {
    catalog: Catalog,
    /// (schema, table) -> (relkind, owner).
    kinds: Vec<((String, String), (String, String))>,
}

impl Database {
    async fn read(client: &Client, rules: &Rules) -> Result<Database, String> {
        let tables: Vec<(String, String)> = rules
            .tables
            .iter()
            .map(|t| (t.schema.to_lowercase(), t.name.to_lowercase()))
            .collect();
        let catalog = Catalog::from_rows(text_rows(client, &catalog::lookup_query(&tables)).await?);
        let mut kinds = Vec::new();
        for (schema, table) in tables {
            let rows = text_rows(
                client,
                &format!(
                    "SELECT c.relkind::pg_catalog.text, pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text \
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                       ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                     WHERE n.nspname::pg_catalog.text OPERATOR(pg_catalog.=) {} \
                       AND c.relname::pg_catalog.text OPERATOR(pg_catalog.=) {}",
                    guard::quote_literal(&schema),
                    guard::quote_literal(&table)
                ),
            )
            .await?;
            if let Some(row) = rows.into_iter().next() {
                let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                kinds.push(((schema, table), (get(0), get(1))));
            }
        }
        Ok(Database { catalog, kinds })
    }

    fn kind(&self, c: &RuleColumn) -> Option<&(String, String)> {
        self.kinds
            .iter()
            .find(|((s, t), _)| *s == c.schema && *t == c.table)
            .map(|(_, k)| k)
    }

    fn find(&self, c: &RuleColumn) -> Found<'_> {
        match self.kind(c) {
            None => return Found::NoTable,
            Some((kind, _)) if kind == "v" || kind == "m" => return Found::View,
            Some(_) => {}
        }
        let Some(table) = self.catalog.table(&c.schema, &c.table) else {
            return Found::NoTable;
        };
        let shadow = crate::cli::rewrite::shadow_name(&c.column);
        let column = table.columns.iter().find(|col| col.name == c.column);
        if let (Some(col), Some(s)) = (column, table.columns.iter().find(|col| col.name == shadow))
        {
            return Found::Migrating(&col.type_name, shadow, &s.type_name);
        }
        match column {
            None => Found::NoColumn,
            Some(col) if col.type_name != "bytea" => Found::NotBytea(&col.type_name),
            Some(col) => Found::Column(col),
        }
    }
}

/// Rows of a simple query as text.
async fn text_rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The outcome of an operator command: its report, and whether everything is as it should be.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub ok: bool,
}

/// Installs the guard on every protected column of `rules` in the database of `url`.
pub async fn setup(url: &str, rules_path: &Path) -> Result<Report, String> {
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    let client = connect::connect(url).await?;
    // Our statements are written for these settings; a role's defaults must not change them.
    client
        .batch_execute(
            "SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; SET search_path = pg_catalog",
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    let db = Database::read(&client, &rules).await?;
    let mut text = String::new();
    let mut ok = true;
    for column in rule_columns(&rules) {
        let line = match guard_column(&client, &db, &column).await {
            Ok(done) => done,
            Err(problem) => {
                ok = false;
                format!("FAILED: {problem}")
            }
        };
        let _ = writeln!(text, "{}: {line}", column.qualified());
    }
    text.push_str(if ok {
        "Every protected column that exists is guarded: PostgreSQL now rejects any value in them that is not a pgshroud envelope of the column's key context."
    } else {
        "Some columns are not guarded (see FAILED above); pgshroud refuses writes to them while require_guard is on."
    });
    Ok(Report { text, ok })
}

/// Guards one column; says what it did.
async fn guard_column(client: &Client, db: &Database, c: &RuleColumn) -> Result<String, String> {
    let col = match db.find(c) {
        Found::NoTable => return Ok("table does not exist (yet): skipped; run setup again once it does".into()),
        Found::View => return Ok("a view: it cannot carry a guard; its base table's guard protects the data".into()),
        Found::NoColumn => return Err("the column does not exist in the table".into()),
        Found::NotBytea(t) => {
            return Err(format!(
                "the column is {t}, not bytea: protect its values with `pgshroud migrate --column {}` (pgshroud stores envelopes in bytea)",
                c.qualified()
            ))
        }
        Found::Migrating(..) => {
            return Err(format!(
                "a migration of the column is under way or was interrupted: finish it with `pgshroud migrate --column {}` (with --decrypt if it was going back)",
                c.qualified()
            ))
        }
        Found::Column(col) => col,
    };
    match GuardState::of_column(&col.guards, &col.name, &c.context, c.per_tenant) {
        GuardState::Guarded { name, validated: true } => return Ok(format!("already guarded ({name})")),
        GuardState::Guarded { name, validated: false } => {
            let upgraded = upgrade_format_1(client, c).await?;
            let sql = format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                c.table_sql(),
                guard::quote_ident(&name)
            );
            client.batch_execute(&sql).await.map_err(|e| not_envelopes(c, &e))?;
            return Ok(format!("guard {name} validated{upgraded}"));
        }
        GuardState::Unrecognised { name } => {
            return Err(format!(
                "constraint {name} is not the guard pgshroud installs for key context {:?}: it is for another key context (then the stored values were sealed for that one: restore the rules' key_context) or was changed by hand (drop it, then run setup again)",
                c.context
            ))
        }
        GuardState::Missing => {}
    }
    let name = guard::constraint_name(&c.column);
    let add = format!(
        "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
        c.table_sql(),
        guard::quote_ident(&name),
        guard::check_expression_of(&c.column, &c.context, c.per_tenant)
    );
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| connect::reason(&e))?;
    let result = async {
        let upgraded = upgrade_format_1(client, c).await?;
        client
            .batch_execute(&add)
            .await
            .map_err(|e| not_envelopes(c, &e))?;
        Ok::<_, String>(upgraded)
    }
    .await;
    match result {
        Ok(upgraded) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| connect::reason(&e))?;
            Ok(format!("guard {name} added{upgraded}"))
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Rewrites format-1 envelopes of the column as format 2: the same SIV and ciphertext with the
/// context tag inserted, so no key is needed and no plaintext is ever seen.
async fn upgrade_format_1(client: &Client, c: &RuleColumn) -> Result<String, String> {
    if c.per_tenant {
        // Format 1 predates tenant keys: a per-tenant column never held any.
        return Ok(String::new());
    }
    let col = guard::quote_ident(&c.column);
    let sql = format!(
        "UPDATE {table} SET {col} = '\\x{v2:02x}'::pg_catalog.bytea \
           OPERATOR(pg_catalog.||) pg_catalog.substring({col}, 2, 4) \
           OPERATOR(pg_catalog.||) '\\x{tag}'::pg_catalog.bytea \
           OPERATOR(pg_catalog.||) pg_catalog.substring({col}, {rest}) \
         WHERE pg_catalog.substring({col}, 1, 1) OPERATOR(pg_catalog.=) '\\x{v1:02x}'::pg_catalog.bytea \
           AND pg_catalog.length({col}) OPERATOR(pg_catalog.>=) 21",
        table = c.table_sql(),
        v2 = FORMAT_V2,
        v1 = FORMAT_V1,
        tag = guard::tag_hex(&c.context),
        rest = CONTEXT_TAG_OFFSET + 1,
    );
    let n = client
        .execute(&sql, &[])
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(match n {
        0 => String::new(),
        n => format!(" ({n} format-1 values rewritten to format 2)"),
    })
}

fn not_envelopes(c: &RuleColumn, e: &tokio_postgres::Error) -> String {
    match e.as_db_error().map(|d| d.code().code()) {
        Some("23514") => format!(
            "the column holds values that are not pgshroud envelopes of key context {:?} (plaintext, or values of another column): the guard was not added. Encrypt or remove them first",
            c.context
        ),
        _ => connect::reason(e),
    }
}

/// `pgshroud check --upstream-url`: each protected column's state in the database.
pub async fn database_report(url: &str, rules_path: &Path) -> Result<Report, String> {
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    let client = connect::connect(url).await?;
    let db = Database::read(&client, &rules).await?;
    let mut text = String::from("Columns in the database:\n");
    let mut ok = true;
    for c in rule_columns(&rules) {
        let owner = db.kind(&c).map(|(_, o)| o.as_str()).unwrap_or("-");
        let state = match db.find(&c) {
            Found::NoTable => "table does not exist".to_owned(),
            Found::View => "view (no guard; its base table's guard protects the data)".to_owned(),
            Found::NoColumn => {
                ok = false;
                "column does not exist".to_owned()
            }
            Found::NotBytea(t) if c.migrating => {
                ok = false;
                format!("PLAINTEXT ({t}), marked migrating: pgshroud serves it as a plain column; protect it with pgshroud migrate, or (after migrate --decrypt) remove it from the rules")
            }
            Found::NotBytea(t) => {
                ok = false;
                format!("STILL PLAINTEXT ({t}): protect it with pgshroud migrate; until then pgshroud refuses writes to it")
            }
            Found::Migrating(t, shadow, shadow_type) => {
                ok = false;
                let served = match c.migrating {
                    true => " (marked migrating: pgshroud serves it in whichever form it holds)",
                    false => "",
                };
                format!("MID-MIGRATION: {t}, with shadow column {shadow} ({shadow_type}); run pgshroud migrate again to finish{served}")
            }
            Found::Column(col) => {
                let state = GuardState::of_column(&col.guards, &col.name, &c.context, c.per_tenant);
                ok &= state.is_guarded();
                match c.migrating && state.is_guarded() {
                    true => {
                        format!("{state}; migration done: remove migrating = true from the rules")
                    }
                    false => state.to_string(),
                }
            }
        };
        let _ = writeln!(text, "  {:<40} owner {owner:<16} {state}", c.qualified());
    }
    text.push_str(
        "An owner of a table can drop its guard: connect applications through pgshroud as roles that do not own the protected tables.\n",
    );
    Ok(Report { text, ok })
}
