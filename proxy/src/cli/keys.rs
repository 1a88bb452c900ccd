//! `pgshroud keys status` and `pgshroud keys retire`: how many stored values of each protected
//! column sit under each key version and envelope format (read from the envelope headers, no
//! key needed), and the refusal to retire a version that still holds values: a master key
//! version while values or tenant key files are under it, a tenant key version
//! (`--tenant ID`) while values of that tenant are under it. Retiring a tenant key version
//! destroys its wrapped key in the tenant's file.

use std::path::Path;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::setup::{connect, Report};
use crate::crypto::envelope::{
    tenant_tag, KeyVersion, FORMAT_V3, TENANT_TAG_LEN, TENANT_TAG_OFFSET,
};
use crate::crypto::tenant_keys::{self, file};
use crate::protect::guard::quote_ident;

/// One protected column of the rules, as the database names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    /// Its key context (the column's own name unless the rules share one).
    pub context: String,
    /// Sealed with tenant keys (format 3), not with the master key's column keys.
    pub per_tenant: bool,
}

impl StoredColumn {
    pub fn qualified(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }

    pub fn table_sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

/// Every protected column the rules name, in file order.
pub fn stored_columns(rules: &pgshroud_rules::Rules) -> Vec<StoredColumn> {
    rules
        .tables
        .iter()
        .flat_map(|t| {
            t.columns.iter().map(|c| StoredColumn {
                schema: t.schema.to_lowercase(),
                table: t.name.to_lowercase(),
                column: c.name.to_lowercase(),
                context: t.context_of(c),
                per_tenant: c.per_tenant,
            })
        })
        .collect()
}

pub use super::stored::VersionCount;

/// The counts of every protected column that exists (views and missing tables are skipped,
/// and named in the second list).
pub async fn counts(
    client: &Client,
    columns: &[StoredColumn],
) -> Result<(Vec<VersionCount>, Vec<String>), String> {
    let mut counts = Vec::new();
    let mut skipped = Vec::new();
    for c in columns {
        let is_table = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class r ON r.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace \
                 WHERE n.nspname = $1 AND r.relname = $2 AND a.attname = $3 AND r.relkind IN ('r', 'p') AND NOT a.attisdropped)",
                &[&c.schema, &c.table, &c.column],
            )
            .await
            .map_err(|e| connect::reason(&e))?
            .get::<_, bool>(0);
        if !is_table {
            skipped.push(c.qualified());
            continue;
        }
        let col = quote_ident(&c.column);
        // Bytes 2-5 of both envelope formats are the key version (big-endian).
        let sql = format!(
            "SELECT pg_catalog.get_byte({col}, 0), \
             (pg_catalog.get_byte({col}, 1)::int8 << 24) | (pg_catalog.get_byte({col}, 2) << 16) \
             | (pg_catalog.get_byte({col}, 3) << 8) | pg_catalog.get_byte({col}, 4), pg_catalog.count(*) \
             FROM {} WHERE {col} IS NOT NULL AND pg_catalog.length({col}) >= 5 GROUP BY 1, 2 ORDER BY 1, 2",
            c.table_sql()
        );
        for row in client
            .query(&sql, &[])
            .await
            .map_err(|e| format!("{}: {}", c.qualified(), connect::reason(&e)))?
        {
            counts.push(VersionCount {
                column: c.qualified(),
                format: u8::try_from(row.get::<_, i32>(0)).unwrap_or(0),
                version: u32::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                values: row.get(2),
            });
        }
    }
    Ok((counts, skipped))
}

fn table(counts: &[VersionCount], skipped: &[String]) -> String {
    let width = counts
        .iter()
        .map(|c| c.column.len())
        .chain(std::iter::once("COLUMN".len()))
        .max()
        .unwrap_or(6);
    let mut out = format!("{:width$}  FORMAT  KEY VERSION  VALUES\n", "COLUMN");
    for c in counts {
        out.push_str(&format!(
            "{:width$}  {:<6}  {:<11}  {}\n",
            c.column, c.format, c.version, c.values
        ));
    }
    if counts.is_empty() {
        out.push_str("(no stored values)\n");
    }
    for s in skipped {
        out.push_str(&format!(
            "{s}: not a column of a table in this database, skipped\n"
        ));
    }
    out
}

/// `pgshroud keys status`.
pub async fn status(url: &str, rules_path: &Path) -> Result<Report, String> {
    status_with_textfile(url, rules_path, None).await
}

/// `pgshroud keys status` with the per-tenant counts (tenants named from `tenant_keys_dir`).
pub async fn status_with_tenants(
    url: &str,
    rules_path: &Path,
    textfile: Option<&Path>,
    tenant_keys_dir: Option<&Path>,
) -> Result<Report, String> {
    let mut report = status_with_textfile(url, rules_path, textfile).await?;
    if let Some(section) = super::tenants::status_section(url, rules_path, tenant_keys_dir).await? {
        report.text = format!(
            "{}

{section}",
            report.text
        );
    }
    Ok(report)
}

/// `pgshroud keys status`, also writing the counts to a metrics textfile when given.
pub async fn status_with_textfile(
    url: &str,
    rules_path: &Path,
    textfile: Option<&Path>,
) -> Result<Report, String> {
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    let client = connect::connect(url).await?;
    let (counts, skipped) = counts(&client, &stored_columns(&rules)).await?;
    if let Some(path) = textfile {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        super::textfile::write(path, &super::textfile::key_versions(&counts, now))?;
    }
    Ok(Report {
        text: table(&counts, &skipped).trim_end().to_owned(),
        ok: true,
    })
}

/// `pgshroud keys retire --version N`: refused (not ok) while any value is under `version`.
pub async fn retire(url: &str, rules_path: &Path, version: u32) -> Result<Report, String> {
    retire_with_tenants(url, rules_path, version, None).await
}

/// `pgshroud keys retire --version N [--tenant-keys-dir DIR]`: refused (not ok) while any
/// shared-key value is under master version `version`, or any tenant key file is wrapped by
/// it. Without a store and with per-tenant columns in the rules, refused too: the files it
/// cannot see may be wrapped by that version, and retiring it would leave those tenants
/// unreadable (pgshroud would not start).
pub async fn retire_with_tenants(
    url: &str,
    rules_path: &Path,
    version: u32,
    tenant_keys_dir: Option<&Path>,
) -> Result<Report, String> {
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    let client = connect::connect(url).await?;
    let (counts, _) = counts(&client, &stored_columns(&rules)).await?;
    let report = retire_report(&counts, version);
    if !report.ok {
        return Ok(report);
    }
    let wrapped = match tenant_keys_dir {
        Some(dir) => wrapped_by(dir, version)?,
        None if rules.has_per_tenant_columns() => {
            return Ok(Report {
                text: format!(
                    "Key version {version} cannot be retired yet: the rules have per-tenant columns, whose tenant keys are wrapped by a master key version. Give --tenant-keys-dir so the tenant key files wrapped by version {version} are checked."
                ),
                ok: false,
            });
        }
        None => Vec::new(),
    };
    if wrapped.is_empty() {
        return Ok(report);
    }
    Ok(Report {
        text: format!(
            "Key version {version} cannot be retired: it still wraps tenant keys ({}). Run `pgshroud rotate --tenant-keys-dir DIR` with another active master key version (it wraps them under that one), then retire it.",
            wrapped.join(", ")
        ),
        ok: false,
    })
}

/// `tenant key version N` of each tenant file in `dir` wrapped by master version `version`.
fn wrapped_by(dir: &Path, version: u32) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for id in file::list(dir)? {
        let Some(stored) = file::read(dir, &id)? else {
            continue;
        };
        for v in stored
            .versions
            .iter()
            .filter(|v| v.master_key_version == version)
        {
            out.push(format!("tenant {id} key version {}", v.version));
        }
    }
    Ok(out)
}

/// Values of one tenant in one per-tenant column under one of its key versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantVersionCount {
    pub column: String,
    pub version: u32,
    pub values: i64,
}

/// Per column of `columns`, the values of the tenant whose tag is `tag`, by tenant-key
/// version (format 3: the version is bytes 2-5, the tag bytes 10-17; no key needed).
pub async fn tenant_version_counts(
    client: &Client,
    columns: &[StoredColumn],
    tag: &[u8; TENANT_TAG_LEN],
) -> Result<Vec<TenantVersionCount>, String> {
    let mut out = Vec::new();
    for c in columns {
        let col = quote_ident(&c.column);
        let sql = format!(
            "SELECT pg_catalog.substr({col}, 2, 4), pg_catalog.count(*) FROM {} \
             WHERE pg_catalog.substr({col}, 1, 1) = $1::bytea AND pg_catalog.substr({col}, {at}, {TENANT_TAG_LEN}) = $2::bytea \
             GROUP BY 1 ORDER BY 1",
            c.table_sql(),
            at = TENANT_TAG_OFFSET + 1,
        );
        let rows = match client
            .query(&sql, &[&[FORMAT_V3].as_slice(), &tag.as_slice()])
            .await
        {
            Ok(rows) => rows,
            // A view or a table not created yet holds nothing.
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => continue,
            Err(e) if e.code() == Some(&SqlState::WRONG_OBJECT_TYPE) => continue,
            Err(e) => return Err(format!("{}: {}", c.qualified(), connect::reason(&e))),
        };
        for row in rows {
            let version: Vec<u8> = row.get(0);
            out.push(TenantVersionCount {
                column: c.qualified(),
                version: <[u8; 4]>::try_from(version.as_slice())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0),
                values: row.get(1),
            });
        }
    }
    Ok(out)
}

/// `pgshroud keys retire --tenant ID --version N`: refused (not ok) while any value of the
/// tenant in a per-tenant column is under its key version N, or while N is its active
/// version; otherwise the version's wrapped key is removed from the tenant's file (replaced
/// atomically, the old file's bytes overwritten).
pub async fn retire_tenant(
    url: &str,
    rules_path: &Path,
    dir: &Path,
    tenant: &str,
    version: u32,
) -> Result<Report, String> {
    if !pgshroud_rules::is_valid_tenant_id(tenant) {
        return Err(format!("\"{tenant}\" is not a valid tenant id"));
    }
    let rules = pgshroud_rules::load(rules_path).map_err(|e| e.to_string())?;
    let client = connect::connect(url).await?;
    let columns: Vec<StoredColumn> = stored_columns(&rules)
        .into_iter()
        .filter(|c| c.per_tenant)
        .collect();
    let counts = tenant_version_counts(&client, &columns, &tenant_tag(tenant)).await?;
    let in_use: Vec<String> = counts
        .iter()
        .filter(|c| c.version == version)
        .map(|c| format!("{} ({} values)", c.column, c.values))
        .collect();
    if !in_use.is_empty() {
        return Ok(Report {
            text: format!(
                "Tenant {tenant} key version {version} cannot be retired: values of the tenant are still under it in {}. Run `pgshroud rotate --tenant {tenant}` until it reports nothing left, then retire it.",
                in_use.join(", ")
            ),
            ok: false,
        });
    }
    tenant_keys::retire_tenant_version(dir, tenant, KeyVersion::new(version))?;
    Ok(Report {
        text: format!(
            "Tenant {tenant} key version {version} retired: no value is under it, and its wrapped key is gone from {}. Reload every pgshroud (SIGHUP); a value still under it (in a backup taken before) can no longer be decrypted by anyone.",
            file::path_of(dir, tenant).display()
        ),
        ok: true,
    })
}

fn retire_report(counts: &[VersionCount], version: u32) -> Report {
    // A format-3 envelope's version is its tenant key's, not a master key's.
    let in_use: Vec<&VersionCount> = counts
        .iter()
        .filter(|c| c.version == version && c.format != FORMAT_V3)
        .collect();
    if in_use.is_empty() {
        return Report {
            text: format!(
                "No stored value is under key version {version}: it can go. Remove its [[keys]] entry from the keys file and reload pgshroud (SIGHUP) everywhere; keep a backup of the key for as long as backups of the database may hold values under it."
            ),
            ok: true,
        };
    }
    let list = in_use
        .iter()
        .map(|c| {
            format!(
                "{} ({} values, envelope format {})",
                c.column, c.values, c.format
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Report {
        text: format!(
            "Key version {version} cannot be retired: values are still under it in {list}. Run `pgshroud rotate` until it reports nothing left, then retire it."
        ),
        ok: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(column: &str, format: u8, version: u32, values: i64) -> VersionCount {
        VersionCount {
            column: column.into(),
            format,
            version,
            values,
        }
    }

    #[test]
    fn retiring_a_version_in_use_names_the_columns_and_counts() {
        let counts = [
            count("public.customers.email", 2, 1, 40),
            count("public.customers.email", 2, 2, 60),
            count("public.customers.age", 1, 1, 3),
        ];
        let refused = retire_report(&counts, 1);
        assert!(!refused.ok);
        assert!(refused
            .text
            .contains("public.customers.email (40 values, envelope format 2)"));
        assert!(refused
            .text
            .contains("public.customers.age (3 values, envelope format 1)"));
        let allowed = retire_report(&counts, 3);
        assert!(allowed.ok, "{}", allowed.text);
        let tenant_values = [count("public.notes.body", 3, 1, 9)];
        assert!(
            retire_report(&tenant_values, 1).ok,
            "a tenant key's version 1 is not the master key's"
        );
    }

    #[test]
    fn status_lines_up_columns_versions_and_counts() {
        let text = table(&[count("public.t.e", 2, 1, 5)], &["public.v.e".into()]);
        assert_eq!(
            text,
            "COLUMN      FORMAT  KEY VERSION  VALUES\npublic.t.e  2       1            5\npublic.v.e: not a column of a table in this database, skipped\n"
        );
    }
}
