//! Validation of `[[tenants]]` and of what per-tenant columns need: a tenant id that is a
//! plain name, matchers that are valid patterns, and some way for a session to get a tenant
//! when any column is sealed per tenant.

use toml::Spanned;

use super::raw::RawTenant;
use super::File;
use crate::error::{Problem, RulesError};
use crate::glob::Glob;
use crate::role::Role;
use crate::table::Table;
use crate::tenant::{is_valid_tenant_id, TenantRule};

pub(super) fn build(raw: Vec<RawTenant>, file: &File) -> Result<Vec<TenantRule>, RulesError> {
    raw.into_iter().map(|t| build_one(t, file)).collect()
}

fn build_one(raw: RawTenant, file: &File) -> Result<TenantRule, RulesError> {
    let span = raw.id.span();
    let id = raw.id.into_inner();
    if !is_valid_tenant_id(&id) {
        return Err(file.error(span, Problem::BadTenantId { found: id }));
    }
    if raw.users.is_empty() && raw.cert_subjects.is_empty() {
        return Err(file.error(span, Problem::TenantWithoutMatcher { tenant: id }));
    }
    let users = globs(&id, "users", raw.users, file)?;
    let cert_subjects = globs(&id, "cert_subjects", raw.cert_subjects, file)?;
    Ok(TenantRule {
        id,
        users,
        cert_subjects,
    })
}

fn globs(
    tenant: &str,
    field: &'static str,
    raw: Vec<Spanned<String>>,
    file: &File,
) -> Result<Vec<Glob>, RulesError> {
    super::globs(raw, file, |found| Problem::BadTenantPattern {
        tenant: tenant.to_owned(),
        field,
        found,
    })
}

/// A per-tenant column nobody can get a tenant for could never be written: say so at load.
pub(super) fn check_sources(
    tables: &[Table],
    roles: &[Role],
    tenants: &[TenantRule],
    file: &File,
) -> Result<(), RulesError> {
    if !tenants.is_empty() || roles.iter().any(|r| r.choose_tenant) {
        return Ok(());
    }
    let first = tables
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
        .find(|(_, c)| c.per_tenant);
    match first {
        None => Ok(()),
        Some((table, column)) => Err(RulesError::Invalid {
            at: file.at(None),
            problem: Box::new(Problem::NoTenantSource {
                column: table.qualified_column(column),
            }),
        }),
    }
}
