//! Unit tests of `ColumnCipher` (format 2): fixed vectors, round trips, and refusals.
use super::*;
use crate::crypto::envelope::{CIPHERTEXT_OFFSET, TAG_OFFSET};
use crate::crypto::master_key::MasterKey;

const EMAIL_ENVELOPE_HEX: &str =
    "020000000117ab4a2f0426a3a8dc43861b13757213432d1083abf262bed95604425c2b58637f58ea75cc";

fn master(first_byte: u8) -> MasterKey {
    MasterKey::from_bytes(&(first_byte..first_byte + 32).collect::<Vec<_>>()).unwrap()
}

fn cipher(master: &MasterKey, context: &str) -> ColumnCipher {
    let context = KeyContext::new(context);
    let key = Arc::new(ColumnKey::derive(master, &context));
    ColumnCipher::new(context, (KeyVersion::INITIAL, key), Vec::new())
}

/// Envelope computed independently with Python `cryptography` (see `scripts/pgshroud_decrypt.py`).
#[test]
fn seal_matches_fixed_vector() {
    let mut email = cipher(&master(0), "public.customers.email");
    assert_eq!(
        hex::encode(email.seal(b"alice@example.com")),
        EMAIL_ENVELOPE_HEX
    );
}

#[test]
fn fixed_vector_opens_to_plaintext() {
    let mut email = cipher(&master(0), "public.customers.email");
    let stored = hex::decode(EMAIL_ENVELOPE_HEX).unwrap();
    assert_eq!(email.open(&stored).unwrap(), b"alice@example.com");
}

#[test]
fn same_plaintext_seals_to_same_envelope() {
    let mut email = cipher(&master(0), "public.customers.email");
    let mut clone = email.clone();
    let first = email.seal(b"bob@example.com");
    assert_eq!(email.seal(b"bob@example.com"), first);
    assert_eq!(clone.seal(b"bob@example.com"), first);
}

#[test]
fn seal_into_appends_after_existing_bytes() {
    let mut email = cipher(&master(0), "public.customers.email");
    let mut out = b"prefix".to_vec();
    email.seal_into(b"alice@example.com", &mut out);
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(hex::encode(&out[6..]), EMAIL_ENVELOPE_HEX);
}

#[test]
fn empty_plaintext_round_trips() {
    let mut email = cipher(&master(0), "public.customers.email");
    let stored = email.seal(b"");
    assert_eq!(stored.len(), CIPHERTEXT_OFFSET);
    assert_eq!(email.open(&stored).unwrap(), b"");
}

#[test]
fn different_contexts_give_different_ciphertexts() {
    let master = master(0);
    let a = cipher(&master, "public.customers.email").seal(b"same");
    let b = cipher(&master, "public.staff.email").seal(b"same");
    assert_ne!(a, b);
}

#[test]
fn ciphertext_moved_to_another_context_fails_to_decrypt() {
    let master = master(0);
    let stored = cipher(&master, "public.customers.email").seal(b"alice@example.com");
    let err = cipher(&master, "public.staff.email")
        .open(&stored)
        .unwrap_err();
    assert_eq!(
        err,
        OpenError::OtherContext {
            context: KeyContext::new("public.staff.email")
        }
    );
    let text = err.to_string();
    assert!(text.contains("public.staff.email"), "{text}");
    assert!(!text.contains("alice"), "{text}");
}

#[test]
fn wrong_master_key_fails_to_decrypt() {
    let stored = cipher(&master(0), "public.customers.email").seal(b"alice@example.com");
    let err = cipher(&master(1), "public.customers.email")
        .open(&stored)
        .unwrap_err();
    assert!(matches!(err, OpenError::Decrypt { .. }));
}

#[test]
fn tampered_ciphertext_fails_to_decrypt() {
    let mut email = cipher(&master(0), "public.customers.email");
    let stored = email.seal(b"alice@example.com");
    for i in TAG_OFFSET..stored.len() {
        let mut tampered = stored.clone();
        tampered[i] ^= 0x01;
        assert!(
            matches!(email.open(&tampered), Err(OpenError::Decrypt { .. })),
            "flipped byte {i}"
        );
    }
}

#[test]
fn malformed_envelopes_are_envelope_errors() {
    let mut email = cipher(&master(0), "public.customers.email");
    assert_eq!(
        email.open(&[]),
        Err(OpenError::Envelope(EnvelopeError::Empty))
    );
    assert_eq!(
        email.open(&[0x00; 30]),
        Err(OpenError::Envelope(EnvelopeError::UnknownFormat {
            format: 0
        }))
    );
    assert_eq!(
        email.open(&[0x01; 20]),
        Err(OpenError::Envelope(EnvelopeError::TooShort { len: 20 }))
    );
    assert_eq!(
        email.open(&[0x02; 24]),
        Err(OpenError::Envelope(EnvelopeError::TooShort { len: 24 }))
    );
}

#[test]
fn format_1_envelope_still_opens() {
    let mut email = cipher(&master(0), "public.customers.email");
    let v1 =
        hex::decode("01000000010426a3a8dc43861b13757213432d1083abf262bed95604425c2b58637f58ea75cc")
            .unwrap();
    assert_eq!(email.open(&v1).unwrap(), b"alice@example.com");
    let upgraded = envelope::upgrade_v1(&v1, "public.customers.email").unwrap();
    assert_eq!(hex::encode(&upgraded), EMAIL_ENVELOPE_HEX);
}

#[test]
fn context_tag_of_another_column_is_refused_before_decrypting() {
    let mut email = cipher(&master(0), "public.customers.email");
    let mut stored = email.seal(b"alice@example.com");
    stored[envelope::CONTEXT_TAG_OFFSET] ^= 1;
    assert!(matches!(
        email.open(&stored),
        Err(OpenError::OtherContext { .. })
    ));
}

#[test]
fn unknown_key_version_is_its_own_error() {
    let mut email = cipher(&master(0), "public.customers.email");
    let mut stored = email.seal(b"alice@example.com");
    stored[1..5].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(
        email.open(&stored),
        Err(OpenError::UnknownKeyVersion {
            context: KeyContext::new("public.customers.email"),
            version: KeyVersion::new(7)
        })
    );
}

#[test]
fn debug_names_context_and_versions_only() {
    let email = cipher(&master(0), "public.customers.email");
    assert_eq!(
        format!("{email:?}"),
        "ColumnCipher { context: KeyContext(\"public.customers.email\"), \
         active_version: KeyVersion(1), live_versions: [KeyVersion(1)] }"
    );
}
