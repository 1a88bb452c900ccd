//! Tenant keys and their wrapping: 32 random bytes per tenant and version (never derived from
//! the master key, so destroying the stored copy destroys the key), sealed with AES-SIV under
//! a key-encryption key derived from a master key version.

use aes_siv::siv::Aes256Siv;
use aes_siv::{KeyInit as _, Tag};
use hkdf::Hkdf;
use rand::RngCore as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::envelope::{KeyVersion, TAG_LEN};
use crate::crypto::master_key::MasterKey;

/// HKDF `info` of the key-encryption key (ikm = master key, no salt, 64 bytes).
pub const TENANT_KEK_INFO: &str = "pgshroud/v3/tenant-kek";

/// Length of a tenant key.
pub const TENANT_KEY_LEN: usize = 32;

/// One version of a tenant's key. Zeroed on drop; never printed.
pub struct TenantKey(Zeroizing<[u8; TENANT_KEY_LEN]>);

impl TenantKey {
    /// A fresh random key (the operating system's CSPRNG via `rand`).
    pub fn generate() -> TenantKey {
        let mut key = Zeroizing::new([0u8; TENANT_KEY_LEN]);
        rand::rng().fill_bytes(key.as_mut_slice());
        TenantKey(key)
    }

    pub fn as_bytes(&self) -> &[u8; TENANT_KEY_LEN] {
        &self.0
    }

    #[cfg(test)]
    pub fn from_bytes(bytes: [u8; TENANT_KEY_LEN]) -> TenantKey {
        TenantKey(Zeroizing::new(bytes))
    }
}

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantKey(<redacted>)")
    }
}

fn kek(master: &MasterKey) -> Aes256Siv {
    let hkdf = Hkdf::<Sha256>::new(None, master.as_bytes());
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf.expand(TENANT_KEK_INFO.as_bytes(), okm.as_mut_slice())
        .expect("64 bytes is far below HKDF-SHA-256's output limit");
    Aes256Siv::new((&*okm).into())
}

/// The associated data of a wrapped key: the tenant id, the tenant-key version and the master
/// key version, so a wrapped key moved to another tenant, version or master does not unwrap.
fn wrap_ad(tenant: &str, version: KeyVersion, master_version: KeyVersion) -> [Vec<u8>; 3] {
    [
        tenant.as_bytes().to_vec(),
        version.get().to_be_bytes().to_vec(),
        master_version.get().to_be_bytes().to_vec(),
    ]
}

/// `SIV || ciphertext` (48 bytes) of a tenant key under `master`.
pub fn wrap(
    key: &TenantKey,
    tenant: &str,
    version: KeyVersion,
    master: &MasterKey,
    master_version: KeyVersion,
) -> Vec<u8> {
    let mut body = key.as_bytes().to_vec();
    let tag = kek(master)
        .encrypt_inout_detached(
            wrap_ad(tenant, version, master_version),
            body.as_mut_slice().into(),
        )
        .expect("three associated-data elements");
    let mut out = tag.to_vec();
    out.extend_from_slice(&body);
    zeroize::Zeroize::zeroize(&mut body);
    out
}

/// The tenant key in `wrapped`, or `None` when it does not unwrap (another master key, tenant
/// or version, or tampered).
pub fn unwrap(
    wrapped: &[u8],
    tenant: &str,
    version: KeyVersion,
    master: &MasterKey,
    master_version: KeyVersion,
) -> Option<TenantKey> {
    if wrapped.len() != TAG_LEN + TENANT_KEY_LEN {
        return None;
    }
    let tag = Tag::try_from(&wrapped[..TAG_LEN]).ok()?;
    let mut key = Zeroizing::new([0u8; TENANT_KEY_LEN]);
    key.copy_from_slice(&wrapped[TAG_LEN..]);
    kek(master)
        .decrypt_inout_detached(
            wrap_ad(tenant, version, master_version),
            key.as_mut_slice().into(),
            &tag,
        )
        .ok()?;
    Some(TenantKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn wrapped_key_unwraps_only_for_its_tenant_version_and_master() {
        let key = TenantKey::generate();
        let (v1, m1) = (KeyVersion::new(1), KeyVersion::new(1));
        let wrapped = wrap(&key, "acme", v1, &master(1), m1);
        assert_eq!(wrapped.len(), 48);
        let back = unwrap(&wrapped, "acme", v1, &master(1), m1).unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        assert!(unwrap(&wrapped, "globex", v1, &master(1), m1).is_none());
        assert!(unwrap(&wrapped, "acme", KeyVersion::new(2), &master(1), m1).is_none());
        assert!(unwrap(&wrapped, "acme", v1, &master(1), KeyVersion::new(2)).is_none());
        assert!(unwrap(&wrapped, "acme", v1, &master(2), m1).is_none());
        let mut tampered = wrapped.clone();
        tampered[20] ^= 1;
        assert!(unwrap(&tampered, "acme", v1, &master(1), m1).is_none());
        assert!(unwrap(&wrapped[..47], "acme", v1, &master(1), m1).is_none());
    }

    #[test]
    fn generated_keys_differ_and_debug_is_redacted() {
        let (a, b) = (TenantKey::generate(), TenantKey::generate());
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(format!("{a:?}"), "TenantKey(<redacted>)");
    }
}
