//! The master key: 32 secret bytes, their base64 text form, and generation for `pgshroud keygen`.
//! Every column key is derived from it, so it never appears in Debug output, errors or logs.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use zeroize::{Zeroize as _, Zeroizing};

/// Environment variable the master key is read from when no file or command is configured.
pub const MASTER_KEY_ENV: &str = "PGSHROUD_MASTER_KEY";

/// Length of a master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// Why some text is not a master key. Never carries any of the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The text is not standard (padded) base64.
    #[error("master key is not valid base64")]
    NotBase64,
    /// The text decodes, but not to 32 bytes.
    #[error("master key has the wrong length: expected {MASTER_KEY_LEN} bytes, got {got}")]
    WrongLength { got: usize },
}

/// The 32-byte master key. Zeroed on drop; Debug prints `MasterKey(<redacted>)`.
///
/// Deliberately not `Clone`: one owner (the [`KeyRing`](super::KeyRing)) means one copy to zero.
pub struct MasterKey {
    bytes: [u8; MASTER_KEY_LEN],
}

impl MasterKey {
    /// A fresh random key from the thread-local CSPRNG (seeded by the operating system).
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        MasterKey { bytes }
    }

    /// Parses the base64 text form; surrounding whitespace (a trailing newline) is ignored.
    pub fn from_base64(text: &str) -> Result<MasterKey, KeyFormatError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| KeyFormatError::NotBase64)?,
        );
        MasterKey::from_bytes(&decoded)
    }

    /// Takes raw key bytes, which must be exactly 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, KeyFormatError> {
        let bytes: [u8; MASTER_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyFormatError::WrongLength { got: bytes.len() })?;
        Ok(MasterKey { bytes })
    }

    /// The base64 text form (what `pgshroud keygen` prints), zeroed when dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes))
    }

    /// The raw bytes, for key derivation only.
    pub(super) fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_0_TO_31: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn base64_round_trips_and_ignores_surrounding_whitespace() {
        let key = MasterKey::from_base64(&format!("  {KEY_0_TO_31}\n")).unwrap();
        let expected: Vec<u8> = (0u8..32).collect();
        assert_eq!(key.as_bytes().as_slice(), expected.as_slice());
        assert_eq!(key.to_base64().as_str(), KEY_0_TO_31);
    }

    #[test]
    fn text_that_is_not_base64_is_refused_without_echoing_it() {
        let err = MasterKey::from_base64("not*base64!secretish").unwrap_err();
        assert_eq!(err, KeyFormatError::NotBase64);
        assert!(!err.to_string().contains("secretish"));
    }

    #[test]
    fn wrong_length_says_expected_and_actual_byte_counts() {
        let sixteen_bytes = STANDARD.encode([7u8; 16]);
        let err = MasterKey::from_base64(&sixteen_bytes).unwrap_err();
        assert_eq!(err, KeyFormatError::WrongLength { got: 16 });
        assert_eq!(
            err.to_string(),
            "master key has the wrong length: expected 32 bytes, got 16"
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let key = MasterKey::from_base64(KEY_0_TO_31).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
        assert_eq!(format!("{key:#?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn generated_keys_are_32_bytes_and_differ() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        let reparsed = MasterKey::from_base64(&a.to_base64()).unwrap();
        assert_eq!(reparsed.as_bytes(), a.as_bytes());
    }
}
