//! The master rotation's part in the tenant key store: every tenant key version wrapped by
//! another master key version is wrapped again under the active one. The tenant keys do not
//! change, so no stored value does; afterwards the old master version wraps nothing and can
//! be retired (`keys retire` checks the store for that).

use std::path::Path;

use crate::crypto::tenant_keys::{self, file};
use crate::crypto::KeyRing;

/// What a rotation would rewrap.
pub struct Plan {
    /// (tenant, key versions under another master version)
    pub tenants: Vec<(String, usize)>,
}

impl Plan {
    pub fn dry_run_line(&self, active: u32) -> String {
        let versions: usize = self.tenants.iter().map(|(_, n)| n).sum();
        format!(
            "Tenant key files: {versions} key versions of {} tenants would be rewrapped under master key version {active}.",
            self.tenants.len()
        )
    }
}

/// Counts the tenant key versions not wrapped by the active master version.
pub fn plan(dir: &Path, ring: &KeyRing) -> Result<Plan, String> {
    let active = ring.active_version().get();
    let mut tenants = Vec::new();
    for id in file::list(dir)? {
        let Some(stored) = file::read(dir, &id)? else {
            continue;
        };
        let n = stored
            .versions
            .iter()
            .filter(|v| v.master_key_version != active)
            .count();
        if n > 0 {
            tenants.push((id, n));
        }
    }
    Ok(Plan { tenants })
}

/// Rewraps every tenant file of `dir`; the report's line.
pub fn run(dir: &Path, ring: &KeyRing) -> Result<String, String> {
    let active = ring.active_version();
    let (mut versions, mut tenants) = (0, 0);
    for id in file::list(dir)? {
        let n = tenant_keys::rewrap_tenant(dir, &id, ring)?;
        if n > 0 {
            versions += n;
            tenants += 1;
        }
    }
    Ok(format!(
        "Tenant key files: rewrapped {versions} key versions of {tenants} tenants under master key version {active}; every tenant key in {} is now wrapped by it.",
        dir.display()
    ))
}
