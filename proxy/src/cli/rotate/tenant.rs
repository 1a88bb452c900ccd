//! `pgshroud rotate --tenant ID`: re-encrypts every value of one tenant in the rules'
//! per-tenant columns that is not under the tenant's active key version, with the same
//! online, resumable batches as the master rotation (`cli/rewrite/reseal.rs`). The values
//! are found in SQL by the envelope's tenant tag and version bytes; other tenants' values
//! are never selected, so they stay byte for byte as they were.
//!
//! It does not add a key version: `pgshroud tenants rotate ID` does, and every pgshroud must
//! have reloaded before this runs (else they keep writing under the old version, which the
//! final check then reports). Kept apart so that a run resumed after a kill never adds a
//! second version under the first one's work.

use std::sync::Arc;

use crate::cli::args::RotateArgs;
use crate::cli::keys::{self, StoredColumn, TenantVersionCount};
use crate::cli::rewrite::progress::Progress;
use crate::cli::rewrite::reseal::{self, Outcome, Selector};
use crate::cli::setup::Report;
use crate::config::keys::KeysFile;
use crate::crypto::envelope::tenant_tag;
use crate::crypto::tenant_keys::{file, ForgottenValues, TenantKeysConfig, TenantStore};
use crate::crypto::KeyContext;

pub async fn run(args: &RotateArgs, tenant: &str) -> Result<Report, String> {
    let dir = args
        .tenant_keys_dir
        .as_deref()
        .ok_or("--tenant needs --tenant-keys-dir (the proxy's tenant_keys_dir)")?;
    if !pgshroud_rules::is_valid_tenant_id(tenant) {
        return Err(format!("\"{tenant}\" is not a valid tenant id"));
    }
    let rules = pgshroud_rules::load(&args.rules).map_err(|e| e.to_string())?;
    let columns = tenant_columns(&rules);
    if columns.is_empty() {
        return Err(
            "the rules have no per-tenant column: nothing is sealed with tenant keys".into(),
        );
    }
    let active = active_version(dir, tenant)?;
    let ring = Arc::new(KeysFile::read(&args.keys_file)?.load()?.ring);
    let store = TenantStore::open(
        TenantKeysConfig {
            dir: Some(dir.to_owned()),
            create_missing: false,
            forgotten_values: ForgottenValues::Refuse,
        },
        ring,
    )?;
    let mut client = super::session(&args.upstream_url).await?;
    let tag = tenant_tag(tenant);
    let sel = Selector::TenantNotUnder {
        tag,
        version: active,
    };
    let work = reseal::by_table(columns.clone());
    let mut total = 0;
    for t in &work {
        total += reseal::rows_left(&client, t, &sel).await?;
    }
    if args.dry_run {
        let before = keys::tenant_version_counts(&client, &columns, &tag).await?;
        return Ok(Report {
            text: format!(
                "Dry run: {total} rows hold values of tenant {tenant} to re-encrypt under its key version {active}{}",
                describe_left(&left_values(&before, active))
            ),
            ok: true,
        });
    }

    let mut progress = Progress::new("rotate", total);
    let mut outcome = Outcome::default();
    let batch = i64::from(args.batch_size.max(1));
    for t in &work {
        let mut ciphers = Vec::new();
        for c in &t.columns {
            let context = KeyContext::new(c.context.clone());
            ciphers.push(
                store
                    .sealing_cipher(&context, tenant)
                    .map_err(|e| e.to_string())?,
            );
        }
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

    let after = keys::tenant_version_counts(&client, &columns, &tag).await?;
    let left = left_values(&after, active);
    let mut text = format!(
        "Re-encrypted {} values of tenant {tenant} in {} rows ({} batches) under its key version {active}.",
        outcome.values, outcome.rows, outcome.batches
    );
    for line in outcome.left_lines(
        &active.to_string(),
        &format!("pgshroud rotate --tenant {tenant}"),
    ) {
        text.push_str(&format!("\n{line}"));
    }
    if left.is_empty() {
        text.push_str(&format!(
            "\nFinal check: every value of tenant {tenant} is under its key version {active}; older versions can be retired (pgshroud keys retire --tenant {tenant} --version N)."
        ));
    } else {
        text.push_str(&format!(
            "\nFinal check failed{} A pgshroud not reloaded since `pgshroud tenants rotate {tenant}` still writes under the old version: reload every instance, then run again.",
            describe_left(&left)
        ));
    }
    Ok(Report {
        text,
        ok: left.is_empty(),
    })
}

/// The rules' per-tenant columns.
fn tenant_columns(rules: &pgshroud_rules::Rules) -> Vec<StoredColumn> {
    keys::stored_columns(rules)
        .into_iter()
        .filter(|c| c.per_tenant)
        .collect()
}

/// The tenant's active key version, from its file.
fn active_version(dir: &std::path::Path, tenant: &str) -> Result<u32, String> {
    let stored = file::read(dir, tenant)?
        .ok_or_else(|| format!("tenant \"{tenant}\" has no key file in {}", dir.display()))?;
    if stored.is_tombstone() {
        return Err(format!(
            "tenant \"{tenant}\" was forgotten; its values cannot be re-encrypted"
        ));
    }
    stored
        .versions
        .iter()
        .find(|v| v.active)
        .map(|v| v.version)
        .ok_or_else(|| format!("tenant \"{tenant}\" has no active key version"))
}

fn left_values(counts: &[TenantVersionCount], active: u32) -> Vec<&TenantVersionCount> {
    counts.iter().filter(|c| c.version != active).collect()
}

fn describe_left(left: &[&TenantVersionCount]) -> String {
    if left.is_empty() {
        return " (nothing is under another of its key versions).".to_owned();
    }
    let list = left
        .iter()
        .map(|c| {
            format!(
                "{} ({} values under tenant key version {})",
                c.column, c.values, c.version
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(": {list}.")
}
