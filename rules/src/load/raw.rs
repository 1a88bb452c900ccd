//! The rules file as TOML says it, before validation. Every value the validator may complain
//! about keeps its span, so errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub default_role: Option<Spanned<String>>,
    #[serde(default)]
    pub tables: Vec<RawTable>,
    #[serde(default)]
    pub roles: Vec<RawRole>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub id: Spanned<String>,
    #[serde(default)]
    pub users: Vec<Spanned<String>>,
    #[serde(default)]
    pub cert_subjects: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub name: Spanned<String>,
    #[serde(default)]
    pub columns: Vec<RawColumn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub logical: Spanned<String>,
    pub key_context: Option<Spanned<String>>,
    pub per_tenant: Option<Spanned<bool>>,
    pub keep_scale: Option<Spanned<bool>>,
    /// Mid-migration (`pgshroud migrate`): served in whichever form the database holds.
    #[serde(default)]
    pub migrating: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub name: Spanned<String>,
    pub template: Option<Spanned<String>>,
    #[serde(default)]
    pub users: Vec<Spanned<String>>,
    #[serde(default)]
    pub pg_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub cert_subjects: Vec<Spanned<String>>,
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    pub statements: Option<Vec<Spanned<String>>>,
    pub write: Option<bool>,
    /// `"*"` or `"schema.table.column"` -> may the role compare it with a value it supplies.
    #[serde(default)]
    pub compare: BTreeMap<Spanned<String>, bool>,
    #[serde(default)]
    pub columns: BTreeMap<Spanned<String>, Spanned<String>>,
    pub max_rows: Option<Spanned<u64>>,
    pub enforce: Option<bool>,
    pub max_protected_values_per_minute: Option<Spanned<u64>>,
    pub choose_tenant: Option<bool>,
}
