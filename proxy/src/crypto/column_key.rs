//! Key contexts and the column keys derived for them from a master key with HKDF-SHA-256.
//! One context = one column key; columns that must join share a named context.

use std::fmt;
use std::sync::Arc;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::master_key::MasterKey;

/// HKDF `info` prefix; the key context follows it.
pub const COLUMN_KEY_INFO_PREFIX: &str = "pgshroud/v1/column-key/";

/// HKDF `info` prefix of a per-tenant column key (the tenant key is the `ikm`).
pub const TENANT_COLUMN_KEY_INFO_PREFIX: &str = "pgshroud/v3/column-key/";

/// Length of a column key: AES-256-SIV takes two 256-bit keys (CMAC and CTR).
pub const COLUMN_KEY_LEN: usize = 64;

/// Names what a column key protects: a rule's `key_context`, or else `schema.table.column`.
///
/// It selects the column key and is also the associated data of every value, so a value
/// copied into a column of another context does not decrypt. Not secret. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyContext(Arc<str>);

impl KeyContext {
    /// A named context, e.g. a rule's `key_context = "customer_email"`.
    pub fn new(context: impl Into<Arc<str>>) -> KeyContext {
        KeyContext(context.into())
    }

    /// The default context of a column: `schema.table.column`, names as the rules spell them.
    pub fn for_column(schema: &str, table: &str, column: &str) -> KeyContext {
        KeyContext::new(format!("{schema}.{table}.{column}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The single AES-SIV associated-data element sealed with every value of this context.
    pub fn associated_data(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for KeyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyContext({:?})", &*self.0)
    }
}

/// A 64-byte AES-256-SIV key for one context and one master key. Zeroed on drop; Debug redacts.
pub struct ColumnKey(Zeroizing<[u8; COLUMN_KEY_LEN]>);

impl ColumnKey {
    /// HKDF-SHA-256 with ikm = master key, no salt, info = `pgshroud/v1/column-key/<context>`.
    ///
    /// Costs two HMAC passes and more: derive once per context and keep the result
    /// (the [`KeyRing`](super::KeyRing) caches), never per value.
    pub fn derive(master: &MasterKey, context: &KeyContext) -> ColumnKey {
        let hkdf = Hkdf::<Sha256>::new(None, master.as_bytes());
        let mut okm = Zeroizing::new([0u8; COLUMN_KEY_LEN]);
        hkdf.expand_multi_info(
            &[
                COLUMN_KEY_INFO_PREFIX.as_bytes(),
                context.as_str().as_bytes(),
            ],
            okm.as_mut_slice(),
        )
        .expect("64 bytes is far below HKDF-SHA-256's 8160-byte output limit");
        ColumnKey(okm)
    }

    /// HKDF-SHA-256 with ikm = a tenant's 32-byte key, no salt, info =
    /// `pgshroud/v3/column-key/<context>`: the column key of a per-tenant context.
    pub fn derive_for_tenant(tenant_key: &[u8; 32], context: &KeyContext) -> ColumnKey {
        let hkdf = Hkdf::<Sha256>::new(None, tenant_key);
        let mut okm = Zeroizing::new([0u8; COLUMN_KEY_LEN]);
        hkdf.expand_multi_info(
            &[
                TENANT_COLUMN_KEY_INFO_PREFIX.as_bytes(),
                context.as_str().as_bytes(),
            ],
            okm.as_mut_slice(),
        )
        .expect("64 bytes is far below HKDF-SHA-256's 8160-byte output limit");
        ColumnKey(okm)
    }

    /// A random key nothing was sealed with (an open-only cipher's placeholder).
    pub(super) fn random() -> ColumnKey {
        use rand::RngCore as _;
        let mut okm = Zeroizing::new([0u8; COLUMN_KEY_LEN]);
        rand::rng().fill_bytes(okm.as_mut_slice());
        ColumnKey(okm)
    }

    /// A key given directly, for known-answer tests.
    #[cfg(test)]
    pub(super) fn from_raw(bytes: [u8; COLUMN_KEY_LEN]) -> ColumnKey {
        ColumnKey(Zeroizing::new(bytes))
    }

    /// The raw key, for building the cipher only.
    pub(super) fn as_bytes(&self) -> &[u8; COLUMN_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for ColumnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ColumnKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master_0_to_31() -> MasterKey {
        MasterKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap()
    }

    /// Computed independently with Python `cryptography`'s HKDF (see `scripts/pgshroud_decrypt.py`).
    #[test]
    fn derivation_matches_fixed_vector() {
        let key = ColumnKey::derive(
            &master_0_to_31(),
            &KeyContext::for_column("public", "customers", "email"),
        );
        assert_eq!(
            hex::encode(key.as_bytes()),
            "1aec0bb8abfdc0b2c643edff995c2b77d1c80013b0634ab937431129957e3a93\
             a717db3b0ffe875173f691de06fd2b68da7fe6c7ac2bb2c93426264876bbf895"
        );
    }

    #[test]
    fn different_contexts_derive_different_keys() {
        let master = master_0_to_31();
        let email = ColumnKey::derive(&master, &KeyContext::new("public.customers.email"));
        let phone = ColumnKey::derive(&master, &KeyContext::new("public.customers.phone"));
        assert_ne!(email.as_bytes(), phone.as_bytes());
    }

    #[test]
    fn column_context_is_schema_table_column() {
        let context = KeyContext::for_column("public", "customers", "email");
        assert_eq!(context.as_str(), "public.customers.email");
        assert_eq!(context.associated_data(), b"public.customers.email");
    }

    #[test]
    fn column_key_debug_is_redacted() {
        let key = ColumnKey::derive(&master_0_to_31(), &KeyContext::new("c"));
        assert_eq!(format!("{key:?}"), "ColumnKey(<redacted>)");
    }
}
