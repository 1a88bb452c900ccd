//! Every case of Project Wycheproof's AES-SIV-CMAC vectors (`testdata/`, Apache-2.0) through
//! `aes-siv`, and the 512-bit (AES-256-SIV) cases also through our own seal/open code.

use aes_siv::siv::{Aes128Siv, Aes256Siv};
use aes_siv::KeyInit as _;
use serde::{Deserialize, Deserializer};

use super::cipher::VersionedCipher;
use super::column_key::ColumnKey;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/wycheproof_aes_siv_cmac_test.json"
);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestFile {
    number_of_tests: usize,
    test_groups: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestGroup {
    key_size: usize,
    tests: Vec<TestCase>,
}

/// `ct` is SIV || ciphertext; `aad` is the single associated-data element.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestCase {
    tc_id: u32,
    comment: String,
    #[serde(deserialize_with = "from_hex")]
    key: Vec<u8>,
    #[serde(deserialize_with = "from_hex")]
    aad: Vec<u8>,
    #[serde(deserialize_with = "from_hex")]
    msg: Vec<u8>,
    #[serde(deserialize_with = "from_hex")]
    ct: Vec<u8>,
    result: Outcome,
}

fn from_hex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    hex::decode(text).map_err(serde::de::Error::custom)
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Valid,
    Invalid,
}

/// `(key, ad, msg) -> SIV || ciphertext`.
type SealFn = fn(&[u8], &[u8], &[u8]) -> Vec<u8>;
/// `(key, ad, SIV || ciphertext) -> msg`, `None` when it does not authenticate.
type OpenFn = fn(&[u8], &[u8], &[u8]) -> Option<Vec<u8>>;

/// One way of running a case.
struct Implementation {
    name: &'static str,
    seal: SealFn,
    open: OpenFn,
}

const AES_128_SIV: Implementation = Implementation {
    name: "aes-siv Aes128Siv",
    seal: |key, ad, msg| {
        Aes128Siv::new_from_slice(key)
            .unwrap()
            .encrypt([ad], msg)
            .unwrap()
    },
    open: |key, ad, ct| {
        Aes128Siv::new_from_slice(key)
            .unwrap()
            .decrypt([ad], ct)
            .ok()
    },
};

const AES_256_SIV: Implementation = Implementation {
    name: "aes-siv Aes256Siv",
    seal: |key, ad, msg| {
        Aes256Siv::new_from_slice(key)
            .unwrap()
            .encrypt([ad], msg)
            .unwrap()
    },
    open: |key, ad, ct| {
        Aes256Siv::new_from_slice(key)
            .unwrap()
            .decrypt([ad], ct)
            .ok()
    },
};

const PGSHROUD_CIPHER: Implementation = Implementation {
    name: "pgshroud ColumnCipher code path",
    seal: |key, ad, msg| VersionedCipher::seal_raw(column_key(key), ad, msg),
    open: |key, ad, ct| VersionedCipher::open_raw(column_key(key), ad, ct),
};

fn column_key(key: &[u8]) -> ColumnKey {
    ColumnKey::from_raw(key.try_into().unwrap())
}

fn implementations_for(key_size_bits: usize) -> &'static [Implementation] {
    match key_size_bits {
        256 => &[AES_128_SIV],
        512 => &[AES_256_SIV, PGSHROUD_CIPHER],
        _ => &[],
    }
}

fn check(implementation: &Implementation, case: &TestCase) {
    let label = format!(
        "{} tcId {} ({})",
        implementation.name, case.tc_id, case.comment
    );
    let opened = (implementation.open)(&case.key, &case.aad, &case.ct);
    match case.result {
        Outcome::Valid => {
            let sealed = (implementation.seal)(&case.key, &case.aad, &case.msg);
            assert_eq!(hex::encode(sealed), hex::encode(&case.ct), "{label}: seal");
            assert_eq!(
                opened.as_deref(),
                Some(case.msg.as_slice()),
                "{label}: open"
            );
        }
        Outcome::Invalid => assert_eq!(opened, None, "{label}: must not open"),
    }
}

#[test]
fn every_wycheproof_aes_siv_cmac_case_of_supported_key_sizes_passes() {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let file: TestFile = serde_json::from_str(&text).unwrap();
    let (mut run, mut skipped) = (0, 0);
    for group in &file.test_groups {
        let implementations = implementations_for(group.key_size);
        for case in &group.tests {
            assert_eq!(case.key.len() * 8, group.key_size, "tcId {}", case.tc_id);
            implementations.iter().for_each(|i| check(i, case));
            if implementations.is_empty() {
                skipped += 1;
            } else {
                run += 1;
            }
        }
    }
    assert_eq!(file.number_of_tests, 442);
    // 148 AES-128-SIV + 147 AES-256-SIV cases run; the 147 AES-192-SIV cases are skipped,
    // as `aes-siv` offers no Aes192Siv.
    assert_eq!((run, skipped), (295, 147));
}

#[test]
fn rfc_5297_a1_is_case_1() {
    let file: TestFile = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let case = &file.test_groups[0].tests[0];
    assert_eq!((case.tc_id, case.comment.as_str()), (1, "RFC 5297"));
    assert_eq!(
        hex::encode(&case.ct),
        "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"
    );
    check(&AES_128_SIV, case);
}
