//! Deterministic column encryption (AES-256-SIV), keys and the stored envelope.
//! Knows nothing about SQL: callers hand in a key context and canonical plaintext bytes.
//!
//! The path of a value: [`MasterKey`] (loaded by [`MasterKeySource`]) -> [`KeyRing`] (master
//! keys by [`KeyVersion`]) -> [`ColumnCipher`] per [`KeyContext`] (column keys derived once,
//! via HKDF) -> `seal` / `open` of one value in the envelope format (`FORMAT.md`).

pub mod cipher;
pub mod column_key;
pub mod envelope;
pub mod key_ring;
pub mod key_source;
pub mod kms;
pub mod master_key;
pub mod tenant_keys;

#[cfg(test)]
mod wycheproof_tests;

pub use cipher::{ColumnCipher, OpenError, TenantKeyLookup, TenantOpenError};
pub use column_key::{ColumnKey, KeyContext};
pub use envelope::{Envelope, EnvelopeError, KeyVersion};
pub use key_ring::{KeyRing, KeyRingError};
pub use key_source::{KeyLoadError, KeyLoadWarning, LoadedMasterKey, MasterKeySource};
pub use master_key::{KeyFormatError, MasterKey, MASTER_KEY_ENV};
