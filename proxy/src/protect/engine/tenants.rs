//! Per-tenant columns in planning and sessions: the tenant key store of this rules
//! generation, which contexts are per tenant, and the ciphers a tenant's statements seal with.

use std::sync::Arc;

use super::Protection;
use crate::crypto::tenant_keys::TenantStore;
use crate::crypto::ColumnCipher;
use crate::protect::codec::{Ciphers, ColumnSpec};
use crate::protect::tenancy::{self, SessionTenancy};
use crate::protocol::error::PgError;

impl Protection {
    /// This generation's tenant keys (loaded from `tenant_keys_dir`).
    pub fn with_tenant_store(mut self, store: Arc<TenantStore>) -> Protection {
        self.tenants = store;
        self
    }

    pub fn tenant_store(&self) -> &Arc<TenantStore> {
        &self.tenants
    }

    /// Whether any protected column is sealed per tenant.
    pub fn has_per_tenant(&self) -> bool {
        !self.per_tenant.is_empty()
    }

    /// The ciphers of a session whose tenant is `tenant`.
    pub fn session_ciphers(&self, tenant: Option<&str>) -> Ciphers {
        let ciphers = Ciphers::new(self.keys.clone());
        if !self.has_per_tenant() {
            return ciphers;
        }
        ciphers.with_tenancy(SessionTenancy {
            store: self.tenants.clone(),
            per_tenant: self.per_tenant.clone(),
            tenant: tenant.map(Arc::from),
        })
    }

    /// For a per-tenant column, the cipher sealing its literals for `tenant` (refused without
    /// one); `None` for a shared column (the planning ciphers seal it).
    pub(super) fn tenant_cipher(
        &self,
        spec: &ColumnSpec,
        tenant: Option<&str>,
    ) -> Result<Option<ColumnCipher>, PgError> {
        if !self.per_tenant.contains(&spec.context) {
            return Ok(None);
        }
        tenancy::sealing_cipher(&self.tenants, spec, tenant).map(Some)
    }

    /// How many key versions a compared value of `spec` is sealed under: the tenant key's
    /// live versions for a per-tenant column, the master key's otherwise.
    pub(super) fn live_versions_of(&self, spec: &ColumnSpec, tenant: Option<&str>) -> usize {
        if self.per_tenant.contains(&spec.context) {
            tenant.map_or(1, |t| self.tenants.versions(t).len().max(1))
        } else {
            self.keys.versions().len()
        }
    }

    /// The tenant key's live versions (0 without a tenant or per-tenant columns).
    pub(super) fn tenant_versions(&self, tenant: Option<&str>) -> usize {
        match tenant {
            Some(t) if self.has_per_tenant() => self.tenants.versions(t).len(),
            _ => 0,
        }
    }
}
