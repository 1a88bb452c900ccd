//! Per-tenant columns in a session: which key contexts are sealed per tenant, the session's
//! tenant, the ciphers that follow from them, and the refusals when a value cannot be
//! sealed for a tenant (none in the session, no key, forgotten) or read (forgotten).

use std::collections::HashSet;
use std::sync::Arc;

use super::spec::ColumnSpec;
use crate::crypto::tenant_keys::{TenantKeyError, TenantStore};
use crate::crypto::{ColumnCipher, KeyContext};
use crate::protocol::error::{sqlstate, PgError};

/// What a session's ciphers need to seal and open per-tenant contexts.
#[derive(Debug, Clone)]
pub struct SessionTenancy {
    pub store: Arc<TenantStore>,
    /// The key contexts of the rules' `per_tenant` columns.
    pub per_tenant: Arc<HashSet<KeyContext>>,
    /// The session's tenant (see `ProtectedSession::tenant`).
    pub tenant: Option<Arc<str>>,
}

impl SessionTenancy {
    pub fn is_per_tenant(&self, context: &KeyContext) -> bool {
        self.per_tenant.contains(context)
    }

    pub fn open_cipher(&self, context: &KeyContext) -> ColumnCipher {
        self.store.open_cipher(context)
    }

    pub fn sealing_cipher(&self, spec: &ColumnSpec) -> Result<ColumnCipher, PgError> {
        sealing_cipher(&self.store, spec, self.tenant.as_deref())
    }
}

/// The cipher sealing `spec`'s values for `tenant` (planning and sessions alike).
pub fn sealing_cipher(
    store: &Arc<TenantStore>,
    spec: &ColumnSpec,
    tenant: Option<&str>,
) -> Result<ColumnCipher, PgError> {
    let tenant = tenant.ok_or_else(|| no_tenant(spec))?;
    store
        .sealing_cipher(&spec.context, tenant)
        .map_err(|e| key_refusal(spec, e))
}

/// A write or comparison of a per-tenant column in a session that has no tenant.
pub fn no_tenant(spec: &ColumnSpec) -> PgError {
    PgError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!(
            "column {} is encrypted per tenant, and this session has no tenant: pgshroud cannot write or compare its values",
            spec.qualified
        ),
    )
    .with_hint("Connect as a user the rules' [[tenants]] map to a tenant, or, for a role with choose_tenant = true, SET pgshroud.tenant first.")
}

fn key_refusal(spec: &ColumnSpec, error: TenantKeyError) -> PgError {
    let code = match error {
        TenantKeyError::Store(_) => sqlstate::INTERNAL_ERROR,
        _ => sqlstate::INSUFFICIENT_PRIVILEGE,
    };
    PgError::error(
        code,
        format!(
            "pgshroud cannot seal a value of per-tenant column {}: {error}",
            spec.qualified
        ),
    )
}

/// A read of a forgotten tenant's value when `forgotten_tenant_values = "refuse"`.
pub fn forgotten(spec: &ColumnSpec) -> PgError {
    PgError::error(
        sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "a value of column {} belongs to a forgotten tenant: its key was destroyed, and the value can no longer be read",
            spec.qualified
        ),
    )
    .with_hint("Delete such rows (`pgshroud forget --tenant ID --delete-rows`), or set forgotten_tenant_values = \"null\" to read them as NULL.")
}
