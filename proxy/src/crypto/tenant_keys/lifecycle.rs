//! A tenant's key over its life, as files in the store: added (one random key, wrapped by the
//! active master key), rotated (a new version becomes active, the old ones stay readable),
//! forgotten (the file becomes a tombstone). Used by the CLI and by the proxy when it
//! creates a missing tenant's key on its first write.

use std::collections::BTreeMap;
use std::path::Path;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::file::{self, StoredVersion, TenantFile};
use super::wrap::{self, TenantKey};
use super::Entry;
use crate::crypto::envelope::KeyVersion;
use crate::crypto::key_ring::KeyRing;

fn now() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn check_id(tenant: &str) -> Result<(), String> {
    if pgshroud_rules::is_valid_tenant_id(tenant) {
        Ok(())
    } else {
        Err(format!(
            "\"{tenant}\" is not a valid tenant id: 1 to 63 letters, digits, `_`, `-` or `.`, starting with a letter or digit"
        ))
    }
}

fn new_version(tenant: &str, version: KeyVersion, ring: &KeyRing) -> StoredVersion {
    let master_version = ring.active_version();
    let master = ring
        .master(master_version)
        .expect("the active version is always in the ring");
    let wrapped = wrap::wrap(
        &TenantKey::generate(),
        tenant,
        version,
        master,
        master_version,
    );
    StoredVersion {
        version: version.get(),
        master_key_version: master_version.get(),
        wrapped: StoredVersion::encode(&wrapped),
        created_at: now(),
        active: true,
    }
}

/// What `add_tenant` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new key file was written.
    Created,
    /// The tenant already had one (possibly written by a racing instance): kept as it is.
    Existing,
    /// The tenant was forgotten: it gets no new key (its id stays retired).
    Forgotten,
}

/// Gives a tenant its first key, unless it has a file already.
pub fn add_tenant(dir: &Path, tenant: &str, ring: &KeyRing) -> Result<Added, String> {
    check_id(tenant)?;
    let stored = TenantFile {
        tenant: tenant.to_owned(),
        forgotten_at: None,
        versions: vec![new_version(tenant, KeyVersion::INITIAL, ring)],
    };
    if file::create(dir, &stored)? {
        return Ok(Added::Created);
    }
    match file::read(dir, tenant)? {
        Some(existing) if existing.is_tombstone() => Ok(Added::Forgotten),
        _ => Ok(Added::Existing),
    }
}

/// A new key version for a tenant, active from now on; earlier versions stay (readable,
/// compared) until `pgshroud rotate --tenant` has re-encrypted their values.
pub fn rotate_tenant(dir: &Path, tenant: &str, ring: &KeyRing) -> Result<KeyVersion, String> {
    check_id(tenant)?;
    let mut stored = file::read(dir, tenant)?
        .ok_or_else(|| format!("tenant \"{tenant}\" has no key file in {}", dir.display()))?;
    if stored.is_tombstone() {
        return Err(format!(
            "tenant \"{tenant}\" was forgotten; it has no key to rotate"
        ));
    }
    let next = stored.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    for version in &mut stored.versions {
        version.active = false;
    }
    let version = KeyVersion::new(next);
    stored.versions.push(new_version(tenant, version, ring));
    file::replace(dir, &stored)?;
    Ok(version)
}

/// Wraps every key version of a tenant that another master key version wraps again under
/// the ring's active version (the tenant keys themselves do not change, so no stored value
/// does). Returns how many versions were rewrapped (0 for a tombstone, or when all are
/// already under the active master version).
pub fn rewrap_tenant(dir: &Path, tenant: &str, ring: &KeyRing) -> Result<usize, String> {
    check_id(tenant)?;
    let Some(mut stored) = file::read(dir, tenant)? else {
        return Ok(0);
    };
    let active = ring.active_version();
    let master = ring
        .master(active)
        .expect("the active version is always in the ring");
    let mut rewrapped = 0;
    for version in &mut stored.versions {
        if version.master_key_version == active.get() {
            continue;
        }
        let v = KeyVersion::new(version.version);
        let mv = KeyVersion::new(version.master_key_version);
        let old = ring.master(mv).ok_or_else(|| {
            format!("tenant \"{tenant}\" key version {v} is wrapped by master key version {mv}, which is not in the keys file; put it back to rewrap the tenant key")
        })?;
        let key = version
            .wrapped_bytes()
            .and_then(|w| wrap::unwrap(&w, tenant, v, old, mv))
            .ok_or_else(|| {
                format!("tenant \"{tenant}\" key version {v} does not unwrap with master key version {mv}: another master key, or the file was altered")
            })?;
        version.wrapped = StoredVersion::encode(&wrap::wrap(&key, tenant, v, master, active));
        version.master_key_version = active.get();
        rewrapped += 1;
    }
    if rewrapped > 0 {
        file::replace(dir, &stored)?;
    }
    Ok(rewrapped)
}

/// Why a tenant key version cannot be retired (the store's side; values still under it are
/// the CLI's check, in the database).
pub fn retire_tenant_version(dir: &Path, tenant: &str, version: KeyVersion) -> Result<(), String> {
    check_id(tenant)?;
    let mut stored = file::read(dir, tenant)?
        .ok_or_else(|| format!("tenant \"{tenant}\" has no key file in {}", dir.display()))?;
    if stored.is_tombstone() {
        return Err(format!(
            "tenant \"{tenant}\" was forgotten; it has no key version to retire"
        ));
    }
    let at = stored
        .versions
        .iter()
        .position(|v| v.version == version.get())
        .ok_or_else(|| {
            format!("tenant \"{tenant}\" has no key version {version} (already retired?)")
        })?;
    if stored.versions[at].active {
        return Err(format!(
            "tenant \"{tenant}\" key version {version} is the active one; rotate first (pgshroud tenants rotate {tenant}, then pgshroud rotate --tenant {tenant})"
        ));
    }
    stored.versions.remove(at);
    file::replace_destroying_old(dir, &stored)
}

/// Destroys a tenant's key: the file's bytes are overwritten, then it is replaced by a
/// tombstone. Returns whether it held keys (false: already forgotten).
pub fn forget_tenant(dir: &Path, tenant: &str) -> Result<bool, String> {
    check_id(tenant)?;
    let stored = file::read(dir, tenant)?
        .ok_or_else(|| format!("tenant \"{tenant}\" has no key file in {}", dir.display()))?;
    if stored.is_tombstone() {
        return Ok(false);
    }
    file::overwrite_in_place(dir, tenant)?;
    file::replace(dir, &TenantFile::tombstone(tenant, now()))?;
    Ok(true)
}

/// The keys of a tenant's file, unwrapped with the ring's master keys.
pub(super) fn unwrap_file(stored: &TenantFile, ring: &KeyRing) -> Result<Entry, String> {
    let tenant = &stored.tenant;
    if stored.is_tombstone() {
        return Ok(Entry::Forgotten);
    }
    let mut keys = BTreeMap::new();
    let mut active = None;
    for version in &stored.versions {
        let v = KeyVersion::new(version.version);
        let mv = KeyVersion::new(version.master_key_version);
        let master = ring.master(mv).ok_or_else(|| {
            format!("tenant \"{tenant}\" key version {v} is wrapped by master key version {mv}, which is not live; keep that master key version live until the tenant key is rotated")
        })?;
        let key = version
            .wrapped_bytes()
            .and_then(|w| wrap::unwrap(&w, tenant, v, master, mv))
            .ok_or_else(|| {
                format!("tenant \"{tenant}\" key version {v} does not unwrap with master key version {mv}: another master key, or the file was altered")
            })?;
        if version.active {
            if active.is_some() {
                return Err(format!(
                    "tenant \"{tenant}\" has more than one active key version"
                ));
            }
            active = Some(v);
        }
        if keys.insert(v, key).is_some() {
            return Err(format!(
                "tenant \"{tenant}\" key version {v} is given twice"
            ));
        }
    }
    let active = active.ok_or_else(|| format!("tenant \"{tenant}\" has no active key version"))?;
    Ok(Entry::Live { active, keys })
}
