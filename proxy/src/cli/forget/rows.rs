//! `pgshroud forget --delete-rows`: after the key is gone, the rows holding the tenant's values
//! are deleted, chosen by the tenant tag every format-3 envelope carries in the clear (no key
//! needed), in short batches walked in `ctid` order.
//!
//! A row is deleted only when every per-tenant value in it is the forgotten tenant's (the others
//! NULL): a row that also holds another tenant's value is left, and counted, because deleting it
//! would erase a live tenant's data to remove values that are already unreadable.
//!
//! Resumable: each batch is one statement (its own transaction) that checks the choice again,
//! so a second run finds exactly the rows still to delete.

use tokio_postgres::Client;

use crate::cli::rewrite::batch::{select_sql, Cursor};
use crate::cli::rewrite::progress::Progress;
use crate::cli::setup::connect;
use crate::crypto::envelope::{tenant_tag, FORMAT_V3, TENANT_TAG_LEN, TENANT_TAG_OFFSET};
use crate::protect::guard::quote_ident;

/// A table with per-tenant columns, and its row choices for one tenant.
pub struct Table {
    /// `schema.table`, for messages.
    pub name: String,
    sql: String,
    /// Rows whose per-tenant values are all the tenant's (at least one).
    only_tenant: String,
    /// Rows holding the tenant's values and another tenant's.
    mixed: String,
}

/// The tables of `rules` with per-tenant columns, with their choices for `tenant`.
pub fn tables(rules: &pgshroud_rules::Rules, tenant: &str) -> Vec<Table> {
    let tag = hex::encode(tenant_tag(tenant));
    let has_tag = |col: &str| {
        // substr never fails on a short value (get_byte would); a short one does not match.
        format!(
            "(pg_catalog.substr({col}, 1, 1) = pg_catalog.decode('{FORMAT_V3:02x}', 'hex') \
             AND pg_catalog.substr({col}, {at}, {TENANT_TAG_LEN}) = pg_catalog.decode('{tag}', 'hex'))",
            at = TENANT_TAG_OFFSET + 1,
        )
    };
    rules
        .tables
        .iter()
        .filter_map(|table| {
            let cols: Vec<String> = table
                .columns
                .iter()
                .filter(|c| c.per_tenant)
                .map(|c| quote_ident(&c.name.to_lowercase()))
                .collect();
            if cols.is_empty() {
                return None;
            }
            let holds = cols.iter().map(|c| has_tag(c)).collect::<Vec<_>>();
            let other = cols
                .iter()
                .map(|c| format!("({c} IS NOT NULL AND NOT {})", has_tag(c)))
                .collect::<Vec<_>>()
                .join(" OR ");
            let holds = format!("COALESCE({}, false)", holds.join(" OR "));
            Some(Table {
                name: table.qualified().to_lowercase(),
                sql: format!(
                    "{}.{}",
                    quote_ident(&table.schema.to_lowercase()),
                    quote_ident(&table.name.to_lowercase())
                ),
                only_tenant: format!("{holds} AND NOT ({other})"),
                mixed: format!("{holds} AND ({other})"),
            })
        })
        .collect()
}

/// Stops before anything is destroyed when the role may not do the work: SELECT (to choose the
/// rows) and DELETE on every table.
pub async fn check_privileges(client: &Client, tables: &[Table]) -> Result<(), String> {
    let role: String = client
        .query_one("SELECT pg_catalog.current_user()::text", &[])
        .await
        .map_err(|e| connect::reason(&e))?
        .get(0);
    for t in tables {
        let row = client
            .query_one(
                "SELECT pg_catalog.has_table_privilege($1, 'SELECT'), pg_catalog.has_table_privilege($1, 'DELETE')",
                &[&t.sql],
            )
            .await
            .map_err(|e| format!("{}: {}", t.name, connect::reason(&e)))?;
        let missing: Vec<&str> = [(row.get::<_, bool>(0), "SELECT"), (row.get(1), "DELETE")]
            .into_iter()
            .filter(|(has, _)| !has)
            .map(|(_, p)| p)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "role {role} may not {} {}: --delete-rows needs SELECT and DELETE on every table with per-tenant columns (GRANT SELECT, DELETE ON {} TO {role}); nothing was changed",
                missing.join(" or "),
                t.name,
                t.sql
            ));
        }
    }
    Ok(())
}

/// What one run did to one table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub table: String,
    pub deleted: u64,
    /// Rows left because they hold another tenant's values too.
    pub mixed: u64,
    /// Rows still holding only the tenant's values after the run (written meanwhile, or
    /// hidden from this role by row-level security).
    pub left: u64,
    /// Row-level security may hide rows from this role.
    pub rls: bool,
}

async fn count(client: &Client, t: &Table, filter: &str) -> Result<u64, String> {
    let sql = format!("SELECT pg_catalog.count(*) FROM {} WHERE {filter}", t.sql);
    let n: i64 = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| format!("{}: {}", t.name, connect::reason(&e)))?
        .get(0);
    Ok(n as u64)
}

/// Whether policies may hide rows of `t` from this role (RLS on, and neither a bypass nor an
/// owner not forced to follow them).
async fn rls_applies(client: &Client, t: &Table) -> Result<bool, String> {
    let sql = "SELECT c.relrowsecurity AND NOT r.rolbypassrls \
               AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')) \
               FROM pg_catalog.pg_class c, pg_catalog.pg_roles r \
               WHERE c.oid = $1::text::regclass AND r.rolname = current_user";
    Ok(client
        .query_one(sql, &[&t.sql])
        .await
        .map_err(|e| format!("{}: {}", t.name, connect::reason(&e)))?
        .get(0))
}

/// Deletes, table by table, the rows holding only the tenant's values.
pub async fn delete(client: &Client, tables: &[Table], batch: u32) -> Result<Vec<Outcome>, String> {
    let limit = i64::from(batch.max(1));
    let mut todo = Vec::new();
    let mut total = 0;
    for t in tables {
        let n = count(client, t, &t.only_tenant).await?;
        total += n;
        todo.push(n);
    }
    let mut progress = Progress::new("forget", total);
    let mut out = Vec::new();
    for t in tables {
        let select = select_sql(&t.sql, "1", &t.only_tenant, 1, 2, false);
        let delete = format!(
            "DELETE FROM {} WHERE ctid = ANY($1::text[]::tid[]) AND {}",
            t.sql, t.only_tenant
        );
        let failed = |e: tokio_postgres::Error| {
            format!(
                "{}: {} (rows deleted so far stay deleted; fix this and run the command again to continue)",
                t.name,
                connect::reason(&e)
            )
        };
        let mut cursor = Cursor::default();
        let mut deleted = 0;
        loop {
            let rows = client
                .query(&select, &[&cursor.after(), &limit])
                .await
                .map_err(failed)?;
            let Some(last) = rows.last() else { break };
            let ctids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            cursor.advance(last.get(0));
            let n = client.execute(&delete, &[&ctids]).await.map_err(failed)?;
            deleted += n;
            progress.advance(n);
        }
        out.push(Outcome {
            table: t.name.clone(),
            deleted,
            mixed: count(client, t, &t.mixed).await?,
            left: count(client, t, &t.only_tenant).await?,
            rls: rls_applies(client, t).await?,
        });
    }
    progress.finish();
    Ok(out)
}

fn rows(n: u64) -> String {
    format!("{n} row{}", if n == 1 { "" } else { "s" })
}

/// The summary: a line per table, then the totals. `ok` is false when rows holding only the
/// tenant's values remain.
pub fn summary(tenant: &str, outcomes: &[Outcome]) -> (String, bool) {
    let mut text = String::new();
    for o in outcomes {
        text.push_str(&format!("{}: {} deleted", o.table, rows(o.deleted)));
        if o.mixed > 0 {
            text.push_str(&format!(
                "; {} left: {} values of other tenants too (tenant {tenant}'s values in {} read as NULL)",
                rows(o.mixed),
                if o.mixed == 1 { "it holds" } else { "they hold" },
                if o.mixed == 1 { "it" } else { "them" },
            ));
        }
        if o.left > 0 {
            text.push_str(&format!(
                "; {} still hold only tenant {tenant}'s values: run again",
                rows(o.left)
            ));
        }
        if o.rls {
            text.push_str(
                "; row-level security applies to this role: rows its policies hide were not seen",
            );
        }
        text.push('\n');
    }
    let deleted: u64 = outcomes.iter().map(|o| o.deleted).sum();
    let mixed: u64 = outcomes.iter().map(|o| o.mixed).sum();
    let left: u64 = outcomes.iter().map(|o| o.left).sum();
    text.push_str(&format!(
        "forget --delete-rows: {} deleted from {} table{}; {} left holding other tenants' values too; {} left to delete",
        rows(deleted),
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        rows(mixed),
        rows(left),
    ));
    (text, left == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_chosen_by_the_tag_of_every_per_tenant_column() {
        let rules = pgshroud_rules::parse(
            r#"
[[tables]]
name = "public.notes"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true
  [[tables.columns]]
  name = "Body"
  type = "text"
  per_tenant = true
  [[tables.columns]]
  name = "shared"
  type = "text"

[[tables]]
name = "public.plain"
  [[tables.columns]]
  name = "x"
  type = "text"

[[tenants]]
id = "acme"
users = ["*_app"]
"#,
            "rules.toml",
        )
        .unwrap();
        let t = tables(&rules, "acme");
        assert_eq!(t.len(), 1, "only tables with per-tenant columns");
        assert_eq!(t[0].name, "public.notes");
        let tag = hex::encode(tenant_tag("acme"));
        assert!(t[0].only_tenant.contains(&tag));
        assert!(t[0].only_tenant.contains("\"body\" IS NOT NULL AND NOT"));
        assert!(!t[0].only_tenant.contains("shared"));
        assert!(t[0].mixed.starts_with("COALESCE("));
    }

    #[test]
    fn the_summary_names_rows_left_and_why() {
        let (text, ok) = summary(
            "acme",
            &[Outcome {
                table: "public.notes".into(),
                deleted: 2,
                mixed: 1,
                left: 0,
                rls: false,
            }],
        );
        assert!(ok);
        assert!(
            text.starts_with(
                "public.notes: 2 rows deleted; 1 row left: it holds values of other tenants too"
            ),
            "{text}"
        );
        let (_, ok) = summary(
            "acme",
            &[Outcome {
                left: 3,
                ..Outcome::default()
            }],
        );
        assert!(!ok);
    }
}
