//! `tenant_keys_dir`, `tenant_keys_create` and `forgotten_tenant_values`: where per-tenant keys
//! live and what happens to writes for tenants without a key and to reads of forgotten ones.

use super::error::{invalid, ConfigError};
use super::layer::ConfigLayer;
use crate::crypto::tenant_keys::{ForgottenValues, TenantKeysConfig};

pub(super) fn resolve(layer: &ConfigLayer) -> Result<TenantKeysConfig, ConfigError> {
    let forgotten_values = match layer.forgotten_tenant_values().as_str() {
        "null" => ForgottenValues::Null,
        "refuse" => ForgottenValues::Refuse,
        other => {
            return Err(invalid(
                "forgotten_tenant_values",
                format!("`{other}` is not null or refuse"),
            ))
        }
    };
    let dir = layer.tenant_keys_dir.clone();
    if let Some(dir) = &dir {
        if !dir.is_dir() {
            return Err(invalid(
                "tenant_keys_dir",
                format!(
                    "{} is not a directory; create it (mode 0700, on a volume every instance shares)",
                    dir.display()
                ),
            ));
        }
    }
    let create_missing = layer.tenant_keys_create();
    if create_missing && dir.is_none() {
        return Err(invalid(
            "tenant_keys_create",
            "needs tenant_keys_dir (where the new keys are written)",
        ));
    }
    Ok(TenantKeysConfig {
        dir,
        create_missing,
        forgotten_values,
    })
}
