//! The store and the per-tenant ciphers together, on a real directory; and the known-answer
//! vectors of format 3 and of a wrapped tenant key (computed independently with Python
//! `cryptography`, as in FORMAT.md and `scripts/pgshroud_decrypt.py`).

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::crypto::cipher::OpenError;
use crate::crypto::master_key::MasterKey;

const FORMAT_3_VECTOR: &str = "030000000117ab4a2f8388c9b136fe103f6e84fcbcc4da687892fe6ed524628e20bd0713db9ffefa4473cd1fe3268f849059";

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::single(
        MasterKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap(),
    ))
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgshroud-ts-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn store(dir: &std::path::Path, create: bool) -> Arc<TenantStore> {
    let config = TenantKeysConfig {
        dir: Some(dir.to_owned()),
        create_missing: create,
        forgotten_values: ForgottenValues::Null,
    };
    TenantStore::open(config, ring()).unwrap()
}

fn email() -> KeyContext {
    KeyContext::new("public.customers.email")
}

#[test]
fn format_3_known_answer() {
    let key = ColumnKey::derive_for_tenant(&core_key(), &email());
    assert_eq!(
        hex::encode(key.as_bytes()),
        "01ce300c985f31814c2f7731f91003f3af08b641e74bcc92868b12eb0959b1b8\
         d65661b716baaaf7cf73e1c83c06b003e5bba96ede10331354a64f21e24c647b"
    );
    let lookup: Arc<dyn TenantKeyLookup> = TenantStore::empty(ring());
    let sealing = (
        Arc::from("acme"),
        (KeyVersion::INITIAL, Arc::new(key)),
        Vec::new(),
    );
    let mut cipher = ColumnCipher::per_tenant(email(), Some(sealing), lookup);
    let sealed = cipher.seal(b"alice@example.com");
    assert_eq!(hex::encode(&sealed), FORMAT_3_VECTOR);
    assert_eq!(cipher.open(&sealed).unwrap(), b"alice@example.com");
}

fn core_key() -> [u8; 32] {
    (0u8..32).collect::<Vec<_>>().try_into().unwrap()
}

#[test]
fn wrapped_key_known_answer() {
    let master = MasterKey::from_bytes(&core_key()).unwrap();
    let key = wrap::TenantKey::from_bytes((32u8..64).collect::<Vec<_>>().try_into().unwrap());
    let v1 = KeyVersion::INITIAL;
    assert_eq!(
        hex::encode(wrap::wrap(&key, "acme", v1, &master, v1)),
        "a3e81ef138cc5e7d302f4f39b2a5ca3db449a20bc1fe8a17ac988ea06d177f12\
         4d9d1183f27d25bca85d5f9cc58086c5"
    );
}

#[test]
fn tenants_seal_apart_and_read_each_other_by_tag() {
    let dir = dir();
    assert_eq!(add_tenant(&dir, "acme", &ring()).unwrap(), Added::Created);
    assert_eq!(add_tenant(&dir, "acme", &ring()).unwrap(), Added::Existing);
    add_tenant(&dir, "globex", &ring()).unwrap();
    let store = store(&dir, false);
    let mut acme = store.sealing_cipher(&email(), "acme").unwrap();
    let mut globex = store.sealing_cipher(&email(), "globex").unwrap();
    let a = acme.seal(b"same@example.com");
    let g = globex.seal(b"same@example.com");
    assert_eq!(
        a,
        acme.seal(b"same@example.com"),
        "deterministic within a tenant"
    );
    assert_ne!(a[17..], g[17..], "no equality across tenants");
    assert_eq!(&a[9..17], &envelope_tag("acme"));
    // Any cipher of the context opens any tenant's value, found by its tag.
    assert_eq!(globex.open(&a).unwrap(), b"same@example.com");
    let mut reader = store.open_cipher(&email());
    assert!(!reader.seals());
    assert_eq!(reader.open(&g).unwrap(), b"same@example.com");
    // A value moved to another tenant's tag does not decrypt (the tenant id is sealed).
    let mut moved = a.clone();
    moved[9..17].copy_from_slice(&envelope_tag("globex"));
    assert!(matches!(
        reader.open(&moved),
        Err(OpenError::Decrypt { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

fn envelope_tag(t: &str) -> [u8; 8] {
    crate::crypto::envelope::tenant_tag(t)
}

#[test]
fn a_forgotten_tenant_reads_as_forgotten_and_cannot_seal() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    add_tenant(&dir, "globex", &ring()).unwrap();
    let before = store(&dir, false);
    let a = before.sealing_cipher(&email(), "acme").unwrap().seal(b"x");
    let g = before
        .sealing_cipher(&email(), "globex")
        .unwrap()
        .seal(b"y");
    assert!(forget_tenant(&dir, "acme").unwrap());
    assert!(!forget_tenant(&dir, "acme").unwrap(), "already forgotten");
    let after = before.reloaded(ring()).unwrap();
    assert_eq!(after.counts(), (1, 1));
    let mut reader = after.open_cipher(&email());
    assert!(matches!(
        reader.open(&a),
        Err(OpenError::ForgottenTenant { .. })
    ));
    assert_eq!(reader.open(&g).unwrap(), b"y");
    assert_eq!(
        after.sealing_cipher(&email(), "acme").unwrap_err(),
        TenantKeyError::Forgotten {
            tenant: "acme".into()
        }
    );
    assert_eq!(add_tenant(&dir, "acme", &ring()).unwrap(), Added::Forgotten);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_tenant_is_refused_or_created_on_first_write() {
    let dir = dir();
    let err = store(&dir, false)
        .sealing_cipher(&email(), "acme")
        .unwrap_err();
    assert!(
        err.to_string().contains("pgshroud tenants add acme"),
        "{err}"
    );
    let creating = store(&dir, true);
    let sealed = creating
        .sealing_cipher(&email(), "acme")
        .unwrap()
        .seal(b"v");
    assert!(file::path_of(&dir, "acme").exists());
    // Another instance sharing the directory reads the value.
    let other = store(&dir, false);
    assert_eq!(other.open_cipher(&email()).open(&sealed).unwrap(), b"v");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_tenant_added_by_another_instance_is_found_on_a_miss() {
    let dir = dir();
    let running = store(&dir, false);
    assert!(running.sealing_cipher(&email(), "acme").is_err());
    add_tenant(&dir, "acme", &ring()).unwrap();
    // The miss is remembered briefly: the next look-up does not read the directory.
    assert!(running.sealing_cipher(&email(), "acme").is_err());
    running.write_state().misses.clear();
    assert!(running.sealing_cipher(&email(), "acme").is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_rotated_tenant_seals_with_the_new_version_and_reads_both() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    let old = store(&dir, false)
        .sealing_cipher(&email(), "acme")
        .unwrap()
        .seal(b"v");
    assert_eq!(
        rotate_tenant(&dir, "acme", &ring()).unwrap(),
        KeyVersion::new(2)
    );
    let store = store(&dir, false);
    let mut cipher = store.sealing_cipher(&email(), "acme").unwrap();
    let new = cipher.seal(b"v");
    assert_eq!(&new[..5], &[3, 0, 0, 0, 2]);
    assert_eq!(cipher.open(&old).unwrap(), b"v");
    assert_eq!(cipher.seal_all_versions(b"v"), vec![new, old]);
    assert_eq!(
        store.versions("acme"),
        [KeyVersion::new(1), KeyVersion::new(2)]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn shared_and_per_tenant_envelopes_do_not_cross() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    let store = store(&dir, false);
    let shared = ring().cipher_for(&email()).seal(b"v");
    let tenant = store.sealing_cipher(&email(), "acme").unwrap().seal(b"v");
    assert!(matches!(
        store.open_cipher(&email()).open(&shared),
        Err(OpenError::Tenancy { .. })
    ));
    assert!(matches!(
        ring().cipher_for(&email()).open(&tenant),
        Err(OpenError::Tenancy { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_key_wrapped_by_another_master_fails_the_load() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    let other = Arc::new(KeyRing::single(MasterKey::from_bytes(&[9; 32]).unwrap()));
    let config = TenantKeysConfig {
        dir: Some(dir.clone()),
        ..Default::default()
    };
    let err = TenantStore::open(config, other).unwrap_err();
    assert!(err.contains("does not unwrap"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reload_lists_only_tenants_whose_key_it_drops() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    add_tenant(&dir, "globex", &ring()).unwrap();
    let before = store(&dir, false);
    forget_tenant(&dir, "acme").unwrap();
    // Forgotten while this instance was not running: no key of it was ever in memory.
    add_tenant(&dir, "initech", &ring()).unwrap();
    forget_tenant(&dir, "initech").unwrap();
    let after = before.reloaded(ring()).unwrap();
    let dropped = after.forgotten_since(&before);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0, "acme");
    let at = file::read(&dir, "acme").unwrap().unwrap().forgotten_at;
    assert_eq!(dropped[0].1, at);
    assert!(at.is_some());
    // The next reload compares with a store that already holds acme as forgotten.
    let again = after.reloaded(ring()).unwrap();
    assert!(again.forgotten_since(&after).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

fn two_versions(active: u32) -> Arc<KeyRing> {
    let v1 = MasterKey::from_bytes(&core_key()).unwrap();
    let v2 = MasterKey::from_bytes(&[9; 32]).unwrap();
    Arc::new(
        KeyRing::new(
            KeyVersion::new(active),
            [(KeyVersion::new(1), v1), (KeyVersion::new(2), v2)],
        )
        .unwrap(),
    )
}

#[test]
fn a_rewrap_moves_tenant_keys_to_the_active_master_version_and_keeps_them() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    rotate_tenant(&dir, "acme", &ring()).unwrap();
    add_tenant(&dir, "globex", &ring()).unwrap();
    forget_tenant(&dir, "globex").unwrap();
    let sealed = store(&dir, false)
        .sealing_cipher(&email(), "acme")
        .unwrap()
        .seal(b"v");
    let new_ring = two_versions(2);
    assert_eq!(rewrap_tenant(&dir, "acme", &new_ring).unwrap(), 2);
    assert_eq!(rewrap_tenant(&dir, "acme", &new_ring).unwrap(), 0, "done");
    assert_eq!(rewrap_tenant(&dir, "globex", &new_ring).unwrap(), 0);
    let stored = file::read(&dir, "acme").unwrap().unwrap();
    assert!(stored.versions.iter().all(|v| v.master_key_version == 2));
    // Master version 1 can go: a ring of version 2 alone opens the tenant's values.
    let only_v2 = Arc::new(
        KeyRing::new(
            KeyVersion::new(2),
            [(KeyVersion::new(2), MasterKey::from_bytes(&[9; 32]).unwrap())],
        )
        .unwrap(),
    );
    let config = TenantKeysConfig {
        dir: Some(dir.clone()),
        ..Default::default()
    };
    let reopened = TenantStore::open(config, only_v2).unwrap();
    assert_eq!(reopened.open_cipher(&email()).open(&sealed).unwrap(), b"v");
    // Without the old master version the rewrap says which one it needs.
    add_tenant(&dir, "initech", &ring()).unwrap();
    let err = rewrap_tenant(
        &dir,
        "initech",
        &KeyRing::new(
            KeyVersion::new(2),
            [(KeyVersion::new(2), MasterKey::from_bytes(&[9; 32]).unwrap())],
        )
        .unwrap(),
    )
    .unwrap_err();
    assert!(err.contains("master key version 1"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn retiring_a_tenant_key_version_destroys_it_and_its_values_no_longer_open() {
    let dir = dir();
    add_tenant(&dir, "acme", &ring()).unwrap();
    let old = store(&dir, false)
        .sealing_cipher(&email(), "acme")
        .unwrap()
        .seal(b"v");
    let active = retire_tenant_version(&dir, "acme", KeyVersion::new(1)).unwrap_err();
    assert!(active.contains("is the active one"), "{active}");
    rotate_tenant(&dir, "acme", &ring()).unwrap();
    let wrapped_v1 = file::read(&dir, "acme").unwrap().unwrap().versions[0]
        .wrapped
        .clone();
    retire_tenant_version(&dir, "acme", KeyVersion::new(1)).unwrap();
    let text = std::fs::read_to_string(file::path_of(&dir, "acme")).unwrap();
    assert!(!text.contains(&wrapped_v1), "{text}");
    let again = retire_tenant_version(&dir, "acme", KeyVersion::new(1)).unwrap_err();
    assert!(again.contains("no key version 1"), "{again}");
    let after = store(&dir, false);
    assert_eq!(after.versions("acme"), [KeyVersion::new(2)]);
    assert!(matches!(
        after.open_cipher(&email()).open(&old),
        Err(OpenError::UnknownKeyVersion { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}
