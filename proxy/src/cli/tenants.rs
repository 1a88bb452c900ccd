//! `pgshroud tenants add|rotate ID`, `pgshroud forget --tenant ID` and the per-tenant part of
//! `keys status`: a tenant's key file in the store, and how many stored values each tenant
//! has (counted by the envelopes' tenant tags in SQL: no key needed).

use std::path::Path;

use tokio_postgres::Client;

pub use super::forget::{forget, forget_interactive};

use super::args::TenantKeysArgs;
use super::setup::connect;
use crate::config::keys::KeysConfig;
use crate::crypto::envelope::{tenant_tag, FORMAT_V3, TENANT_TAG_LEN, TENANT_TAG_OFFSET};
use crate::crypto::tenant_keys::{self, file, Added};
use crate::protect::guard::quote_ident;

fn ring(args: &TenantKeysArgs) -> Result<crate::crypto::KeyRing, String> {
    KeysConfig::from_settings(
        args.keys_file.as_deref(),
        args.master_key_file.as_deref(),
        args.master_key_command.as_deref(),
    )
    .load()
    .map(|loaded| loaded.ring)
}

/// `pgshroud tenants add ID`.
pub fn add(args: &TenantKeysArgs, tenant: &str) -> Result<String, String> {
    let ring = ring(args)?;
    let dir = &args.tenant_keys_dir;
    Ok(match tenant_keys::add_tenant(dir, tenant, &ring)? {
        Added::Created => format!(
            "tenant {tenant}: key version 1 created in {} (wrapped by master key version {}); reload pgshroud or let it find the tenant on its first write",
            file::path_of(dir, tenant).display(),
            ring.active_version()
        ),
        Added::Existing => format!("tenant {tenant} already has a key: left as it is"),
        Added::Forgotten => {
            return Err(format!(
                "tenant {tenant} was forgotten: its id stays retired (values sealed for it must never become readable again under a new key); choose another id"
            ))
        }
    })
}

/// `pgshroud tenants rotate ID`: a new key version, active from the next reload.
pub fn rotate(args: &TenantKeysArgs, tenant: &str) -> Result<String, String> {
    let ring = ring(args)?;
    let version = tenant_keys::rotate_tenant(&args.tenant_keys_dir, tenant, &ring)?;
    Ok(format!(
        "tenant {tenant}: key version {version} is active from the next reload (SIGHUP); earlier versions stay readable"
    ))
}

/// A tenant's stored values in one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCount {
    pub column: String,
    /// The tenant's id when known (the store or the rules name it), else its tag in hex.
    pub tenant: String,
    /// `keys`, `forgotten` or `unknown` (no store given, or no file for the tag).
    pub state: &'static str,
    pub values: i64,
}

/// Per per-tenant column, values by tenant tag.
pub async fn tenant_counts(
    client: &Client,
    rules: &pgshroud_rules::Rules,
    dir: Option<&Path>,
) -> Result<Vec<TenantCount>, String> {
    let mut names: Vec<(String, &'static str)> = rules
        .tenants
        .iter()
        .map(|t| (t.id.clone(), "unknown"))
        .collect();
    if let Some(dir) = dir {
        for id in file::list(dir)? {
            let state = match file::read(dir, &id)? {
                Some(f) if f.is_tombstone() => "forgotten",
                _ => "keys",
            };
            names.retain(|(n, _)| *n != id);
            names.push((id, state));
        }
    }
    let by_tag: std::collections::HashMap<[u8; TENANT_TAG_LEN], (String, &'static str)> = names
        .into_iter()
        .map(|(id, state)| (tenant_tag(&id), (id, state)))
        .collect();
    let mut out = Vec::new();
    for table in &rules.tables {
        for column in table.columns.iter().filter(|c| c.per_tenant) {
            let col = quote_ident(&column.name.to_lowercase());
            let qualified = table.qualified_column(column).to_lowercase();
            let sql = format!(
                "SELECT pg_catalog.substr({col}, {at}, {len}), pg_catalog.count(*) FROM {}.{} \
                 WHERE pg_catalog.get_byte({col}, 0) = {FORMAT_V3} AND pg_catalog.length({col}) >= {end} \
                 GROUP BY 1 ORDER BY 1",
                quote_ident(&table.schema.to_lowercase()),
                quote_ident(&table.name.to_lowercase()),
                at = TENANT_TAG_OFFSET + 1,
                len = TENANT_TAG_LEN,
                end = TENANT_TAG_OFFSET + TENANT_TAG_LEN,
            );
            let rows = client
                .query(&sql, &[])
                .await
                .map_err(|e| format!("{qualified}: {}", connect::reason(&e)))?;
            for row in rows {
                let tag: Vec<u8> = row.get(0);
                let known = <[u8; TENANT_TAG_LEN]>::try_from(tag.as_slice())
                    .ok()
                    .and_then(|t| by_tag.get(&t));
                let (tenant, state) = match known {
                    Some((id, state)) => (id.clone(), *state),
                    None => (format!("tag {}", hex::encode(&tag)), "unknown"),
                };
                out.push(TenantCount {
                    column: qualified.clone(),
                    tenant,
                    state,
                    values: row.get(1),
                });
            }
        }
    }
    Ok(out)
}

/// The table `keys status` prints after the key versions.
pub fn tenant_table(counts: &[TenantCount]) -> String {
    let width = counts
        .iter()
        .map(|c| c.column.len())
        .chain(std::iter::once("PER-TENANT COLUMN".len()))
        .max()
        .unwrap_or(17);
    let mut out = format!(
        "{:width$}  {:<20}  {:<9}  VALUES\n",
        "PER-TENANT COLUMN", "TENANT", "KEY"
    );
    for c in counts {
        out.push_str(&format!(
            "{:width$}  {:<20}  {:<9}  {}\n",
            c.column, c.tenant, c.state, c.values
        ));
    }
    out
}

/// `keys status`'s tenant section, when the rules have per-tenant columns.
pub async fn status_section(
    url: &str,
    rules_path: &Path,
    dir: Option<&Path>,
) -> Result<Option<String>, String> {
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    if !rules.has_per_tenant_columns() {
        return Ok(None);
    }
    let client = connect::connect(url).await?;
    let counts = tenant_counts(&client, &rules, dir).await?;
    Ok(Some(tenant_table(&counts).trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::ForgetArgs;

    #[test]
    fn a_forget_must_be_confirmed_with_the_tenant_id() {
        let dir = std::env::temp_dir().join(format!("pgshroud-cli-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let ring =
            crate::crypto::KeyRing::single(crate::crypto::MasterKey::from_bytes(&[1; 32]).unwrap());
        tenant_keys::add_tenant(&dir, "acme", &ring).unwrap();
        let textfile = dir.join("forget.prom");
        let args = ForgetArgs {
            tenant: "acme".into(),
            tenant_keys_dir: dir.clone(),
            yes: false,
            metrics_textfile: Some(textfile.clone()),
            ..ForgetArgs::default()
        };
        let err = forget(&args, &mut "globex\n".as_bytes()).unwrap_err();
        assert!(err.contains("not confirmed"), "{err}");
        assert!(!file::read(&dir, "acme").unwrap().unwrap().is_tombstone());
        let done = forget(&args, &mut "acme\n".as_bytes()).unwrap();
        assert!(done.contains("forgotten"), "{done}");
        assert!(file::read(&dir, "acme").unwrap().unwrap().is_tombstone());
        let metrics = std::fs::read_to_string(&textfile).unwrap();
        assert!(
            metrics.contains("pgshroud_tenants_forgotten_total 1"),
            "{metrics}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tenant_table_lines_up() {
        let text = tenant_table(&[TenantCount {
            column: "public.notes.body".into(),
            tenant: "acme".into(),
            state: "forgotten",
            values: 2,
        }]);
        assert_eq!(
            text,
            "PER-TENANT COLUMN  TENANT                KEY        VALUES\npublic.notes.body  acme                  forgotten  2\n"
        );
    }
}
