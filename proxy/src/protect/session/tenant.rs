//! The session's tenant: the one accessor everything per-tenant reads it through.
//!
//! This is the stub of the per-tenant-keys work: the tenant the rules' `[[tenants]]` map the
//! caller to, computed once at session start. The RLS work (per-request `SET pgshroud.tenant`
//! for `choose_tenant` roles) replaces `tenant` and `at_start`; when the tenant can change
//! within a session, call `self.ciphers.set_tenant(..)` where it changes (plans are already
//! keyed by the tenant passed to `plan_for`).

use std::sync::Arc;

use pgshroud_rules::Rules;

use super::ProtectedSession;
use crate::protect::policy::Caller;

impl ProtectedSession {
    /// The session's tenant, if it has one: per-tenant columns are written and compared
    /// under its key.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

/// The tenant the rules give `caller` (first matching `[[tenants]]` entry).
pub(super) fn at_start(rules: &Rules, caller: &Caller) -> Option<Arc<str>> {
    rules.tenant_for(&caller.identity()).map(Arc::from)
}
