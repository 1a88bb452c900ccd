//! `pgshroud rotate`: re-encrypts, under the active master key version, every stored value of
//! a shared-key protected column that is under another version or in envelope format 1, while
//! applications keep working through pgshroud; and wraps every tenant key file again under
//! the active master version (`rewrap`), so the old master version can be retired. With
//! `--tenant ID` it re-encrypts that tenant's per-tenant values instead (`tenant`).
//!
//! The batches, their locking and why a run is resumable are the rewrite engine's
//! (`cli/rewrite/reseal.rs`). Per-tenant columns are not re-encrypted here: their values are
//! under tenant keys, which a master rotation does not change (it rewraps them).

mod rewrap;
pub mod tenant;

use tokio_postgres::Client;

use super::args::RotateArgs;
use super::keys::{self, StoredColumn};
use super::rewrite::progress::Progress;
use super::rewrite::reseal::{self, Outcome, Selector};
use super::setup::{connect, Report};
use crate::config::keys::KeysFile;
use crate::crypto::{KeyContext, KeyRing};

pub async fn run(args: &RotateArgs) -> Result<Report, String> {
    if let Some(tenant) = &args.tenant {
        return tenant::run(args, tenant).await;
    }
    let rules = pgshroud_rules::load(&args.rules).map_err(|e| e.to_string())?;
    let ring = KeysFile::read(&args.keys_file)?.load()?.ring;
    let mut client = session(&args.upstream_url).await?;
    let active = ring.active_version();
    let sel = Selector::NotUnderMaster {
        version: active.get(),
    };
    let shared = shared_columns(&rules);

    let (counts, _) = keys::counts(&client, &shared).await?;
    let work = reseal::by_table(shared.clone());
    let mut total = 0;
    for t in &work {
        total += reseal::rows_left(&client, t, &sel).await?;
    }
    let tenant_files = match &args.tenant_keys_dir {
        Some(dir) => Some(rewrap::plan(dir, &ring)?),
        None => None,
    };
    if args.dry_run {
        let left = left_values(&counts, active.get());
        let mut text = format!(
            "Dry run: {total} rows hold values to re-encrypt under key version {active}{}",
            describe_left(&left)
        );
        if let Some(plan) = &tenant_files {
            text.push_str(&format!("\n{}", plan.dry_run_line(active.get())));
        }
        return Ok(Report { text, ok: true });
    }

    // Tenant key files first: cheap, and independent of the data.
    let tenant_line = match &args.tenant_keys_dir {
        Some(dir) => Some(rewrap::run(dir, &ring)?),
        None => None,
    };
    let mut progress = Progress::new("rotate", total)
        .with_textfile(args.metrics_textfile.clone(), active.get())?;
    let mut outcome = Outcome::default();
    let batch = i64::from(args.batch_size.max(1));
    for t in &work {
        let mut ciphers = ciphers(&ring, &t.columns);
        reseal::reseal_table(
            &mut client,
            &mut ciphers,
            t,
            &sel,
            batch,
            &mut progress,
            &mut outcome,
        )
        .await?;
    }
    progress.finish();

    let (after, _) = keys::counts(&client, &shared).await?;
    let left = left_values(&after, active.get());
    let mut text = format!(
        "Re-encrypted {} values in {} rows ({} batches) under key version {active}.",
        outcome.values, outcome.rows, outcome.batches
    );
    for line in outcome.left_lines(&active.to_string(), "pgshroud rotate") {
        text.push_str(&format!("\n{line}"));
    }
    let mut ok = left.is_empty();
    match tenant_line {
        Some(line) => text.push_str(&format!("\n{line}")),
        None if rules.has_per_tenant_columns() => {
            ok = false;
            text.push_str("\nThe rules have per-tenant columns but no --tenant-keys-dir was given: the tenant key files were not rewrapped under the active master key version, so older master versions must stay live. Run again with --tenant-keys-dir.");
        }
        None => {}
    }
    progress.finish_textfile(outcome.values, ok)?;
    if left.is_empty() {
        text.push_str(&format!(
            "\nFinal check: every stored value is under key version {active} in envelope format 2; other versions can be retired (pgshroud keys retire --version N)."
        ));
    } else {
        text.push_str(&format!("\nFinal check failed{}", describe_left(&left)));
    }
    Ok(Report { text, ok })
}

/// An owner's connection set up for rewriting: text in the server's canonical forms.
pub(super) async fn session(url: &str) -> Result<Client, String> {
    let client = connect::connect(url).await?;
    client
        .batch_execute(
            "SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; SET search_path = pg_catalog",
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(client)
}

/// The protected columns sealed with the master key's column keys (not per tenant).
fn shared_columns(rules: &pgshroud_rules::Rules) -> Vec<StoredColumn> {
    keys::stored_columns(rules)
        .into_iter()
        .filter(|c| !c.per_tenant)
        .collect()
}

fn ciphers(ring: &KeyRing, columns: &[StoredColumn]) -> Vec<crate::crypto::ColumnCipher> {
    columns
        .iter()
        .map(|c| ring.cipher_for(&KeyContext::new(c.context.clone())))
        .collect()
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
