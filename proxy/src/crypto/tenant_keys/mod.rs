//! Per-tenant keys: the key store (`tenant_keys_dir`, one file per tenant, see `file`), the
//! tenant keys it holds (wrapped by a master key version, see `wrap`), and the ciphers of
//! per-tenant contexts built from them. Forgetting a tenant replaces its file with a
//! tombstone: with the only copy of its key gone, its values cannot be decrypted anywhere.

pub mod file;
mod lifecycle;
pub mod wrap;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::cipher::{ColumnCipher, TenantKeyLookup, TenantOpenError};
use super::column_key::{ColumnKey, KeyContext};
use super::envelope::{tenant_tag, KeyVersion, TENANT_TAG_LEN};
use super::key_ring::KeyRing;
pub use lifecycle::{
    add_tenant, forget_tenant, retire_tenant_version, rewrap_tenant, rotate_tenant, Added,
};
use wrap::TenantKey;

/// How long a tenant (or tag) not found in the store is not looked for again: a write for an
/// unknown tenant must not read the directory per statement, yet a tenant added by another
/// instance is seen soon.
const MISS_TTL: Duration = Duration::from_secs(5);
/// Bound on remembered misses (cleared when full).
const MISS_LIMIT: usize = 10_000;

/// What a read of a forgotten tenant's value gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForgottenValues {
    /// SQL NULL (the default): the value is gone.
    #[default]
    Null,
    /// The statement fails (SQLSTATE 55000), for applications that must know.
    Refuse,
}

/// The store's settings (`tenant_keys_dir`, `tenant_keys_create`, `forgotten_tenant_values`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantKeysConfig {
    pub dir: Option<PathBuf>,
    /// Create a missing tenant's key on its first write.
    pub create_missing: bool,
    pub forgotten_values: ForgottenValues,
}

/// Why a session cannot seal for its tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantKeyError {
    #[error("tenant \"{tenant}\" has no key in the tenant key store; add it with `pgshroud tenants add {tenant}` (or set tenant_keys_create = true)")]
    NoKey { tenant: String },
    #[error(
        "tenant \"{tenant}\" was forgotten (its key destroyed); nothing can be written for it"
    )]
    Forgotten { tenant: String },
    #[error("no tenant_keys_dir is configured, so no tenant has a key; set tenant_keys_dir and add tenants with `pgshroud tenants add ID`")]
    NoStore,
    #[error("{0}")]
    Store(String),
}

/// A tenant as the store knows it.
pub enum Entry {
    Live {
        active: KeyVersion,
        keys: BTreeMap<KeyVersion, TenantKey>,
    },
    Forgotten,
}

#[derive(Default)]
struct State {
    tenants: HashMap<Arc<str>, Arc<Entry>>,
    by_tag: HashMap<[u8; TENANT_TAG_LEN], Arc<str>>,
    misses: HashMap<String, Instant>,
    last_scan: Option<Instant>,
}

/// The tenant keys of one key ring, loaded from the store; shared by every session of a
/// rules generation (a reload builds a new one).
pub struct TenantStore {
    config: TenantKeysConfig,
    ring: Arc<KeyRing>,
    state: RwLock<State>,
    derived: DashMap<(Arc<str>, KeyVersion, KeyContext), Arc<ColumnKey>>,
}

impl std::fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantStore")
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

impl TenantStore {
    /// Loads every tenant file of the configured directory (none without one). Fails on a
    /// file that cannot be read or unwrapped: a tenant whose values could not be read or
    /// written is better found at start-up.
    pub fn open(config: TenantKeysConfig, ring: Arc<KeyRing>) -> Result<Arc<TenantStore>, String> {
        let mut store = TenantStore {
            config,
            ring,
            state: RwLock::new(State::default()),
            derived: DashMap::new(),
        };
        if let Some(dir) = &store.config.dir {
            if !dir.is_dir() {
                return Err(format!(
                    "tenant_keys_dir {} is not a directory; create it (mode 0700) or fix the setting",
                    dir.display()
                ));
            }
            let mut state = State::default();
            for id in file::list(dir)? {
                if let Some(entry) = store.load_entry(&id)? {
                    insert(&mut state, &id, entry)?;
                }
            }
            state.last_scan = Some(Instant::now());
            store.state = RwLock::new(state);
        }
        Ok(Arc::new(store))
    }

    /// A store with no directory: per-tenant columns are read-only errors until one is set.
    pub fn empty(ring: Arc<KeyRing>) -> Arc<TenantStore> {
        TenantStore::open(TenantKeysConfig::default(), ring).expect("no directory, nothing to read")
    }

    /// The same settings read again, with the key ring of a reload.
    pub fn reloaded(&self, ring: Arc<KeyRing>) -> Result<Arc<TenantStore>, String> {
        TenantStore::open(self.config.clone(), ring)
    }

    /// Tenants forgotten here that `before` held keys for: their keys leave memory when this
    /// store replaces `before` (the audit's `tenant_forgotten`), with the time their tombstone
    /// records. A tenant whose key was never loaded is not listed: nothing left memory.
    pub fn forgotten_since(&self, before: &TenantStore) -> Vec<(String, Option<String>)> {
        let (now, then) = (self.read_state(), before.read_state());
        let mut out: Vec<(String, Option<String>)> = now
            .tenants
            .iter()
            .filter(|(id, e)| {
                matches!(***e, Entry::Forgotten)
                    && then
                        .tenants
                        .get(*id)
                        .is_some_and(|was| matches!(**was, Entry::Live { .. }))
            })
            .map(|(id, _)| {
                let at = self.config.dir.as_ref().and_then(|dir| {
                    file::read(dir, id)
                        .ok()
                        .flatten()
                        .and_then(|f| f.forgotten_at)
                });
                (id.to_string(), at)
            })
            .collect();
        out.sort();
        out
    }

    pub fn forgotten_values(&self) -> ForgottenValues {
        self.config.forgotten_values
    }

    /// Tenants by state, for the metrics: (with keys, forgotten).
    pub fn counts(&self) -> (usize, usize) {
        let state = self.read_state();
        let forgotten = state
            .tenants
            .values()
            .filter(|e| matches!(***e, Entry::Forgotten))
            .count();
        (state.tenants.len() - forgotten, forgotten)
    }

    /// The cipher of a per-tenant context that seals for `tenant`.
    pub fn sealing_cipher(
        self: &Arc<Self>,
        context: &KeyContext,
        tenant: &str,
    ) -> Result<ColumnCipher, TenantKeyError> {
        let entry = match self.entry(tenant)? {
            Some(entry) => entry,
            None if self.config.create_missing && self.config.dir.is_some() => {
                self.create(tenant)?;
                self.entry(tenant)?.ok_or_else(|| TenantKeyError::NoKey {
                    tenant: tenant.to_owned(),
                })?
            }
            None if self.config.dir.is_none() => return Err(TenantKeyError::NoStore),
            None => {
                return Err(TenantKeyError::NoKey {
                    tenant: tenant.to_owned(),
                })
            }
        };
        let Entry::Live { active, keys } = &*entry else {
            return Err(TenantKeyError::Forgotten {
                tenant: tenant.to_owned(),
            });
        };
        let id: Arc<str> = Arc::from(tenant);
        let key_of = |version: KeyVersion, key: &TenantKey| {
            (version, self.derive(&id, version, key, context))
        };
        let active_key = key_of(*active, &keys[active]);
        let others = keys
            .iter()
            .filter(|(v, _)| *v != active)
            .map(|(v, k)| key_of(*v, k))
            .collect();
        let lookup: Arc<dyn TenantKeyLookup> = self.clone();
        Ok(ColumnCipher::per_tenant(
            context.clone(),
            Some((id, active_key, others)),
            lookup,
        ))
    }

    /// The cipher of a per-tenant context for a session without a tenant: it opens any
    /// tenant's values and seals nothing.
    pub fn open_cipher(self: &Arc<Self>, context: &KeyContext) -> ColumnCipher {
        let lookup: Arc<dyn TenantKeyLookup> = self.clone();
        ColumnCipher::per_tenant(context.clone(), None, lookup)
    }

    /// The live key versions of a tenant (empty when it has none).
    pub fn versions(&self, tenant: &str) -> Vec<KeyVersion> {
        match self.entry(tenant).ok().flatten().as_deref() {
            Some(Entry::Live { keys, .. }) => keys.keys().copied().collect(),
            _ => Vec::new(),
        }
    }

    fn derive(
        &self,
        tenant: &Arc<str>,
        version: KeyVersion,
        key: &TenantKey,
        context: &KeyContext,
    ) -> Arc<ColumnKey> {
        let slot = (tenant.clone(), version, context.clone());
        if let Some(found) = self.derived.get(&slot) {
            return found.clone();
        }
        let derived = Arc::new(ColumnKey::derive_for_tenant(key.as_bytes(), context));
        self.derived.entry(slot).or_insert(derived).clone()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A tenant's entry, looked up in the directory again on a miss (not more often than
    /// every `MISS_TTL` per tenant).
    fn entry(&self, tenant: &str) -> Result<Option<Arc<Entry>>, TenantKeyError> {
        {
            let state = self.read_state();
            if let Some(entry) = state.tenants.get(tenant) {
                return Ok(Some(entry.clone()));
            }
            let recent = state
                .misses
                .get(tenant)
                .is_some_and(|at| at.elapsed() < MISS_TTL);
            if recent || self.config.dir.is_none() {
                return Ok(None);
            }
        }
        let loaded = self.load_entry(tenant).map_err(TenantKeyError::Store)?;
        let mut state = self.write_state();
        match loaded {
            Some(entry) => {
                insert(&mut state, tenant, entry).map_err(TenantKeyError::Store)?;
                state.misses.remove(tenant);
                Ok(state.tenants.get(tenant).cloned())
            }
            None => {
                if state.misses.len() >= MISS_LIMIT {
                    state.misses.clear();
                }
                state.misses.insert(tenant.to_owned(), Instant::now());
                Ok(None)
            }
        }
    }

    fn load_entry(&self, tenant: &str) -> Result<Option<Entry>, String> {
        let Some(dir) = &self.config.dir else {
            return Ok(None);
        };
        let Some(stored) = file::read(dir, tenant)? else {
            return Ok(None);
        };
        lifecycle::unwrap_file(&stored, &self.ring).map(Some)
    }

    fn create(&self, tenant: &str) -> Result<(), TenantKeyError> {
        let dir = self.config.dir.as_ref().ok_or(TenantKeyError::NoStore)?;
        add_tenant(dir, tenant, &self.ring).map_err(TenantKeyError::Store)?;
        self.write_state().misses.remove(tenant);
        Ok(())
    }

    /// Reads the directory again for tenants not yet known (a tag met on a read), at most
    /// every `MISS_TTL`.
    fn rescan(&self) {
        let Some(dir) = &self.config.dir else {
            return;
        };
        if self
            .read_state()
            .last_scan
            .is_some_and(|at| at.elapsed() < MISS_TTL)
        {
            return;
        }
        self.write_state().last_scan = Some(Instant::now());
        let Ok(ids) = file::list(dir) else {
            return;
        };
        for id in ids {
            if !self.read_state().tenants.contains_key(id.as_str()) {
                if let Ok(Some(entry)) = self.load_entry(&id) {
                    let _ = insert(&mut self.write_state(), &id, entry);
                }
            }
        }
    }
}

fn insert(state: &mut State, tenant: &str, entry: Entry) -> Result<(), String> {
    let tag = tenant_tag(tenant);
    let id: Arc<str> = Arc::from(tenant);
    if let Some(other) = state.by_tag.get(&tag).filter(|o| **o != id) {
        return Err(format!(
            "tenants \"{other}\" and \"{tenant}\" have the same tenant tag; rename one of them"
        ));
    }
    state.by_tag.insert(tag, id.clone());
    state.tenants.insert(id, Arc::new(entry));
    Ok(())
}

impl TenantKeyLookup for TenantStore {
    fn column_key(
        &self,
        tag: &[u8; TENANT_TAG_LEN],
        version: KeyVersion,
        context: &KeyContext,
    ) -> Result<(Arc<str>, Arc<ColumnKey>), TenantOpenError> {
        let found = |state: &State| {
            let id = state.by_tag.get(tag)?.clone();
            let entry = state.tenants.get(&id)?.clone();
            Some((id, entry))
        };
        let hit = found(&self.read_state());
        let (id, entry) = match hit {
            Some(hit) => hit,
            None => {
                self.rescan();
                found(&self.read_state()).ok_or(TenantOpenError::Unknown)?
            }
        };
        match &*entry {
            Entry::Forgotten => Err(TenantOpenError::Forgotten),
            Entry::Live { keys, .. } => {
                let key = keys.get(&version).ok_or(TenantOpenError::UnknownVersion)?;
                Ok((id.clone(), self.derive(&id, version, key, context)))
            }
        }
    }

    fn forgotten_as_null(&self) -> bool {
        self.config.forgotten_values == ForgottenValues::Null
    }
}

#[cfg(test)]
mod tests;
