//! `KeyRing`: the master keys by version, which one is active, and the column ciphers derived
//! from them, cached per key context so that derivation happens once, not per value.

use std::collections::btree_map::{BTreeMap, Entry};
use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;

use super::cipher::ColumnCipher;
use super::column_key::{ColumnKey, KeyContext};
use super::envelope::KeyVersion;
use super::master_key::MasterKey;

/// Why a set of master keys does not make a key ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("active key version {version} has no master key")]
    ActiveVersionMissing { version: KeyVersion },
    #[error("key version {version} is given more than once")]
    DuplicateVersion { version: KeyVersion },
}

/// Master keys of every live version and the active one. Build once, share as `Arc<KeyRing>`;
/// a rotation builds a new ring and swaps it in whole.
///
/// Reads follow the key version in each envelope; writes use the active version; equality
/// look-ups match the envelopes of every live version ([`ColumnCipher::seal_all_versions`]).
pub struct KeyRing {
    active: KeyVersion,
    active_master: MasterKey,
    /// Live versions other than the active one.
    others: BTreeMap<KeyVersion, MasterKey>,
    /// One prototype per context; bounded by the contexts the rules name.
    ciphers: DashMap<KeyContext, ColumnCipher>,
}

impl KeyRing {
    /// A ring of one master key as [`KeyVersion::INITIAL`]: the normal, never-rotated case.
    pub fn single(master: MasterKey) -> KeyRing {
        KeyRing {
            active: KeyVersion::INITIAL,
            active_master: master,
            others: BTreeMap::new(),
            ciphers: DashMap::new(),
        }
    }

    /// A ring of several live versions, `active` among them.
    pub fn new(
        active: KeyVersion,
        masters: impl IntoIterator<Item = (KeyVersion, MasterKey)>,
    ) -> Result<KeyRing, KeyRingError> {
        let mut by_version = BTreeMap::new();
        for (version, master) in masters {
            match by_version.entry(version) {
                Entry::Vacant(slot) => slot.insert(master),
                Entry::Occupied(_) => return Err(KeyRingError::DuplicateVersion { version }),
            };
        }
        let active_master = by_version
            .remove(&active)
            .ok_or(KeyRingError::ActiveVersionMissing { version: active })?;
        Ok(KeyRing {
            active,
            active_master,
            others: by_version,
            ciphers: DashMap::new(),
        })
    }

    /// The version new values are sealed with.
    pub fn active_version(&self) -> KeyVersion {
        self.active
    }

    /// Every live version, ascending.
    pub fn versions(&self) -> Vec<KeyVersion> {
        let mut versions: Vec<_> = self.others.keys().copied().collect();
        let at = versions.partition_point(|&version| version < self.active);
        versions.insert(at, self.active);
        versions
    }

    /// The master key of a live version (wrapping tenant keys).
    pub(super) fn master(&self, version: KeyVersion) -> Option<&MasterKey> {
        if version == self.active {
            return Some(&self.active_master);
        }
        self.others.get(&version)
    }

    /// The cipher of a context. Derives its column keys on first request only; afterwards a
    /// clone of the cached cipher (shared keys, no derivation). Keep the clone for as long as
    /// convenient (a statement, a session): it builds its AES-SIV state once, on first use.
    pub fn cipher_for(&self, context: &KeyContext) -> ColumnCipher {
        if let Some(cached) = self.ciphers.get(context) {
            return cached.clone();
        }
        let derived = self.derive(context);
        self.ciphers
            .entry(context.clone())
            .or_insert(derived)
            .clone()
    }

    /// The key of the `hash` mask for a context: HKDF-SHA-256 of the active master key with
    /// info `pgshroud/v1/mask-hash/<context>`, so pseudonyms are stable per value within a
    /// context (analysts can count and join) and differ between contexts.
    pub fn mask_hash_key(&self, context: &KeyContext) -> zeroize::Zeroizing<[u8; 32]> {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, self.active_master.as_bytes());
        let mut okm = zeroize::Zeroizing::new([0u8; 32]);
        hkdf.expand_multi_info(
            &[b"pgshroud/v1/mask-hash/", context.as_str().as_bytes()],
            okm.as_mut_slice(),
        )
        .expect("32 bytes is far below HKDF-SHA-256's output limit");
        okm
    }

    fn derive(&self, context: &KeyContext) -> ColumnCipher {
        let key_of = |master: &MasterKey| Arc::new(ColumnKey::derive(master, context));
        let others = self
            .others
            .iter()
            .map(|(&version, master)| (version, key_of(master)))
            .collect();
        let active = (self.active, key_of(&self.active_master));
        ColumnCipher::new(context.clone(), active, others)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("versions", &self.versions())
            .field("cached_contexts", &self.ciphers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cipher::OpenError;

    fn master(first_byte: u8) -> MasterKey {
        MasterKey::from_bytes(&(first_byte..first_byte + 32).collect::<Vec<_>>()).unwrap()
    }

    fn email() -> KeyContext {
        KeyContext::for_column("public", "customers", "email")
    }

    fn rotated_ring() -> KeyRing {
        KeyRing::new(
            KeyVersion::new(2),
            [
                (KeyVersion::new(1), master(0)),
                (KeyVersion::new(2), master(1)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn single_key_ring_seals_with_version_1() {
        let ring = KeyRing::single(master(0));
        let stored = ring.cipher_for(&email()).seal(b"alice@example.com");
        assert_eq!(&stored[..5], &[0x02, 0, 0, 0, 1]);
    }

    #[test]
    fn rotated_ring_seals_with_active_version() {
        let stored = rotated_ring()
            .cipher_for(&email())
            .seal(b"alice@example.com");
        assert_eq!(&stored[..5], &[0x02, 0, 0, 0, 2]);
    }

    #[test]
    fn key_ring_picks_key_by_version_in_envelope() {
        let old = KeyRing::single(master(0))
            .cipher_for(&email())
            .seal(b"alice@example.com");
        let ring = rotated_ring();
        let new = ring.cipher_for(&email()).seal(b"alice@example.com");
        let mut cipher = ring.cipher_for(&email());
        assert_eq!(cipher.open(&old).unwrap(), b"alice@example.com");
        assert_eq!(cipher.open(&new).unwrap(), b"alice@example.com");
    }

    #[test]
    fn envelope_of_a_retired_version_is_unknown() {
        let retired = rotated_ring()
            .cipher_for(&email())
            .seal(b"alice@example.com");
        let err = KeyRing::single(master(0))
            .cipher_for(&email())
            .open(&retired)
            .unwrap_err();
        assert!(matches!(
            err,
            OpenError::UnknownKeyVersion { version, .. } if version == KeyVersion::new(2)
        ));
    }

    #[test]
    fn seal_all_versions_gives_active_first_then_every_live_version() {
        let ring = rotated_ring();
        let all = ring
            .cipher_for(&email())
            .seal_all_versions(b"alice@example.com");
        let v1_alone = KeyRing::single(master(0))
            .cipher_for(&email())
            .seal(b"alice@example.com");
        let v2_only = ring.cipher_for(&email()).seal(b"alice@example.com");
        assert_eq!(all, vec![v2_only, v1_alone]);
        let versions: Vec<_> = ring.cipher_for(&email()).live_versions().collect();
        assert_eq!(versions, [KeyVersion::new(2), KeyVersion::new(1)]);
    }

    #[test]
    fn cipher_for_caches_one_cipher_per_context() {
        let ring = KeyRing::single(master(0));
        let first = ring.cipher_for(&email());
        let again = ring.cipher_for(&email());
        let other = ring.cipher_for(&KeyContext::new("customer_phone"));
        assert!(first.shares_keys_with(&again));
        assert!(!first.shares_keys_with(&other));
        assert_eq!(ring.ciphers.len(), 2);
    }

    #[test]
    fn active_version_without_master_key_is_refused() {
        let err = KeyRing::new(KeyVersion::new(3), [(KeyVersion::new(1), master(0))]).unwrap_err();
        assert_eq!(
            err,
            KeyRingError::ActiveVersionMissing {
                version: KeyVersion::new(3)
            }
        );
    }

    #[test]
    fn duplicate_version_is_refused() {
        let err = KeyRing::new(
            KeyVersion::new(1),
            [
                (KeyVersion::new(1), master(0)),
                (KeyVersion::new(1), master(1)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            KeyRingError::DuplicateVersion {
                version: KeyVersion::new(1)
            }
        );
    }

    #[test]
    fn debug_shows_versions_but_no_keys() {
        let ring = rotated_ring();
        assert_eq!(
            format!("{ring:?}"),
            "KeyRing { active: KeyVersion(2), versions: [KeyVersion(1), KeyVersion(2)], cached_contexts: 0 }"
        );
    }
}
