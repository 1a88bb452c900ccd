//! The secret in a client's cancel key: the server backend's own 4-byte secret under a keyed
//! permutation of 32-bit values (an 8-round Feistel network over HMAC-SHA256, tweaked by the
//! backend pid).
//!
//! Why: several pgshroud processes behind one address (a Kubernetes Service) in front of one
//! PostgreSQL. A client's CancelRequest opens a new connection, which may land on another
//! instance than its session. An instance holding the same key (`cancel_key_file`) inverts
//! the permutation and sends the server the backend's real key; nothing needs to be shared at
//! run time. Without the key, the client's secret says nothing about the server's, and a
//! guess succeeds with the same 2^-32 chance as against the server itself.

use std::path::Path;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Rounds of the Feistel network: a small domain wants more than the classic four.
const ROUNDS: u8 = 8;

/// The key of the permutation.
pub struct CancelCipher {
    key: Zeroizing<[u8; 32]>,
    /// Read from `cancel_key_file` (shared with other instances), not made up at start-up.
    shared: bool,
}

impl std::fmt::Debug for CancelCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelCipher")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl CancelCipher {
    /// A key of this process only: cancel requests are routed for its own sessions.
    pub fn random() -> CancelCipher {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key[..]);
        CancelCipher { key, shared: false }
    }

    /// The key in `cancel_key_file`: 32 bytes in base64 (what `pgshroud keygen` prints).
    pub fn from_file(path: &Path) -> Result<CancelCipher, String> {
        let shown = path.display();
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                format!("invalid setting `cancel_key_file`: cannot read {shown}: {e}")
            })?);
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| {
                    format!("invalid setting `cancel_key_file`: {shown} does not hold base64 (make one with `pgshroud keygen`)")
                })?,
        );
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "invalid setting `cancel_key_file`: {shown} holds {} bytes, not 32 (make one with `pgshroud keygen`)",
                bytes.len()
            )
        })?;
        Ok(CancelCipher {
            key: Zeroizing::new(key),
            shared: true,
        })
    }

    /// Whether other instances may hold the key, so a key unknown here may be theirs.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// The secret to give the client for backend `pid` whose own secret is `secret`.
    pub fn seal(&self, pid: i32, secret: [u8; 4]) -> [u8; 4] {
        let (mut left, mut right) = halves(secret);
        for round in 0..ROUNDS {
            let next = left ^ self.round(round, pid, right);
            left = right;
            right = next;
        }
        join(left, right)
    }

    /// The backend's own secret behind a client's secret (the inverse of [`Self::seal`]).
    pub fn open(&self, pid: i32, secret: [u8; 4]) -> [u8; 4] {
        let (mut left, mut right) = halves(secret);
        for round in (0..ROUNDS).rev() {
            let previous = right ^ self.round(round, pid, left);
            right = left;
            left = previous;
        }
        join(left, right)
    }

    fn round(&self, round: u8, pid: i32, half: u16) -> u16 {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key[..]).expect("HMAC takes any key");
        mac.update(b"pgshroud cancel key");
        mac.update(&[round]);
        mac.update(&pid.to_be_bytes());
        mac.update(&half.to_be_bytes());
        let out = mac.finalize().into_bytes();
        u16::from_be_bytes([out[0], out[1]])
    }
}

fn halves(secret: [u8; 4]) -> (u16, u16) {
    (
        u16::from_be_bytes([secret[0], secret[1]]),
        u16::from_be_bytes([secret[2], secret[3]]),
    )
}

fn join(left: u16, right: u16) -> [u8; 4] {
    let [a, b] = left.to_be_bytes();
    let [c, d] = right.to_be_bytes();
    [a, b, c, d]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn open_inverts_seal_and_the_sealed_secret_differs() {
        let cipher = CancelCipher::random();
        let mut changed = 0;
        for i in 0..2000u32 {
            let secret = i.wrapping_mul(2_654_435_761).to_be_bytes();
            let pid = 1000 + (i % 7) as i32;
            let sealed = cipher.seal(pid, secret);
            assert_eq!(cipher.open(pid, sealed), secret);
            changed += usize::from(sealed != secret);
        }
        assert!(changed > 1990, "{changed}");
    }

    #[test]
    fn the_pid_and_the_key_change_the_sealed_secret() {
        let a = CancelCipher::random();
        let b = CancelCipher::random();
        let secret = [1, 2, 3, 4];
        assert_ne!(a.seal(10, secret), a.seal(11, secret));
        assert_ne!(a.seal(10, secret), b.seal(10, secret));
        assert_ne!(b.open(10, a.seal(10, secret)), secret);
    }

    /// A directory of this test process (the crate has no temp-dir dependency).
    pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pgshroud-cancel-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_file_is_read_and_a_bad_one_named() {
        let dir = test_dir("files");
        let good = dir.join("good");
        std::fs::write(
            &good,
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]) + "\n",
        )
        .unwrap();
        let one = CancelCipher::from_file(&good).unwrap();
        let two = CancelCipher::from_file(&good).unwrap();
        assert!(one.shared());
        assert_eq!(one.seal(5, [9, 9, 9, 9]), two.seal(5, [9, 9, 9, 9]));
        let short = dir.join("short");
        std::fs::write(&short, "AAAA").unwrap();
        let err = CancelCipher::from_file(&short).unwrap_err();
        assert!(err.contains("not 32"), "{err}");
        let err = CancelCipher::from_file(&dir.join("absent")).unwrap_err();
        assert!(err.contains("cancel_key_file"), "{err}");
    }
}
