//! `pgshroud forget --tenant ID`: asks for the id again (unless `--yes`), then replaces the
//! tenant's key file with a tombstone (the proxy meets it at its next reload and says so in its
//! audit log). `--audit-file` records the forget as a chained audit segment (`record`);
//! `--delete-rows` then deletes the rows holding only the tenant's values (`rows`).
//!
//! Whatever could stop the run half-way (the audit key, the file, the connection, the role's
//! privileges) is checked before the key is destroyed, so a refused run changes nothing.

pub mod record;
pub mod rows;

use std::path::Path;

use crate::cli::args::ForgetArgs;
use crate::cli::setup::{connect, Report};
use crate::crypto::tenant_keys::{self, file};

/// The batch size when none was given (`ForgetArgs::default()`).
const DEFAULT_BATCH: u32 = 1000;

fn check_file(args: &ForgetArgs) -> Result<bool, String> {
    let (tenant, dir) = (&args.tenant, &args.tenant_keys_dir);
    match file::read(dir, tenant)? {
        None => Err(format!(
            "tenant \"{tenant}\" has no key file in {}",
            dir.display()
        )),
        Some(f) => Ok(f.is_tombstone()),
    }
}

fn confirm(args: &ForgetArgs, input: &mut dyn std::io::BufRead) -> Result<(), String> {
    let tenant = &args.tenant;
    if args.yes {
        return Ok(());
    }
    eprintln!(
        "This destroys the key of tenant {tenant}: every value sealed for it, in this database, its replicas and every backup, becomes unreadable for good.{} Type the tenant id to go on:",
        if args.delete_rows { " Then the rows holding only its values are deleted." } else { "" }
    );
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the confirmation: {e}"))?;
    if line.trim() != tenant.as_str() {
        return Err(format!(
            "not confirmed (expected \"{tenant}\"): nothing was changed"
        ));
    }
    Ok(())
}

/// Destroys the key (once), writes the metrics textfile and the record's `tenant_forgotten`.
fn destroy(args: &ForgetArgs, record: Option<&record::Record>) -> Result<String, String> {
    let (tenant, dir) = (&args.tenant, &args.tenant_keys_dir);
    let destroyed = tenant_keys::forget_tenant(dir, tenant)?;
    if let Some(path) = &args.metrics_textfile {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let text = format!(
            "# HELP pgshroud_tenants_forgotten_total Tenants whose key file is a tombstone\n\
             # TYPE pgshroud_tenants_forgotten_total gauge\n\
             pgshroud_tenants_forgotten_total {}\n\
             # HELP pgshroud_forget_last_run_timestamp_seconds When pgshroud forget last ran\n\
             # TYPE pgshroud_forget_last_run_timestamp_seconds gauge\n\
             pgshroud_forget_last_run_timestamp_seconds {now}\n",
            forgotten_in(dir)?
        );
        super::textfile::write(path, &text)?;
    }
    if destroyed {
        if let Some(record) = record {
            let at = file::read(dir, tenant)?.and_then(|f| f.forgotten_at);
            record.forgotten(tenant, at);
        }
    }
    Ok(if destroyed {
        format!(
            "tenant {tenant} forgotten: its key file is now a tombstone. Reload every pgshroud instance (SIGHUP) so none keeps the key in memory, and destroy backups of {} taken before now.",
            dir.display()
        )
    } else {
        format!("tenant {tenant} was already forgotten")
    })
}

/// `forget` without `--delete-rows`.
pub fn forget(args: &ForgetArgs, input: &mut dyn std::io::BufRead) -> Result<String, String> {
    if args.delete_rows {
        return Err("--delete-rows talks to PostgreSQL: use forget_and_delete".into());
    }
    if check_file(args)? {
        return Ok(format!("tenant {} was already forgotten", args.tenant));
    }
    let prepared = record::prepare(args)?;
    confirm(args, input)?;
    let record = prepared.map(record::Prepared::open).transpose()?;
    let said = destroy(args, record.as_ref());
    if let Some(record) = record {
        record.close();
    }
    said
}

/// `forget` reading the confirmation from standard input.
pub fn forget_interactive(args: &ForgetArgs) -> Result<String, String> {
    forget(args, &mut std::io::stdin().lock())
}

/// `forget --delete-rows`: the key first (when not already forgotten), then the rows. A
/// second run (the key already a tombstone) continues with the rows.
pub async fn forget_and_delete(
    args: &ForgetArgs,
    input: &mut dyn std::io::BufRead,
) -> Result<Report, String> {
    let (Some(url), Some(rules_path)) = (&args.upstream_url, &args.rules) else {
        return Err("--delete-rows needs --upstream-url and --rules".into());
    };
    let already = check_file(args)?;
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    let tables = rows::tables(&rules, &args.tenant);
    if tables.is_empty() {
        return Err(format!(
            "{} names no per-tenant column: no row holds a tenant's values",
            rules_path.display()
        ));
    }
    let client = connect::connect(url).await?;
    rows::check_privileges(&client, &tables).await?;
    let prepared = record::prepare(args)?;
    if !already {
        confirm(args, input)?;
    }
    let record = prepared.map(record::Prepared::open).transpose()?;
    let result = async {
        let said = destroy(args, record.as_ref())?;
        let batch = match args.batch_size {
            0 => DEFAULT_BATCH,
            n => n,
        };
        let outcomes = rows::delete(&client, &tables, batch).await?;
        if let Some(record) = &record {
            let touched = outcomes
                .iter()
                .filter(|o| o.deleted > 0)
                .map(|o| o.table.clone())
                .collect();
            let total = outcomes.iter().map(|o| o.deleted).sum();
            record.rows_deleted(&args.tenant, touched, total);
        }
        let (summary, ok) = rows::summary(&args.tenant, &outcomes);
        Ok(Report {
            text: format!("{said}\n{summary}"),
            ok,
        })
    }
    .await;
    if let Some(record) = record {
        record.close();
    }
    result
}

/// `forget --delete-rows` reading the confirmation from standard input.
pub async fn forget_and_delete_interactive(args: &ForgetArgs) -> Result<Report, String> {
    forget_and_delete(args, &mut std::io::stdin().lock()).await
}

/// Tenants whose key file is a tombstone.
pub fn forgotten_in(dir: &Path) -> Result<usize, String> {
    let mut n = 0;
    for id in file::list(dir)? {
        if file::read(dir, &id)?.is_some_and(|f| f.is_tombstone()) {
            n += 1;
        }
    }
    Ok(n)
}
