//! The tamper-evident chain: each event's `chain` is HMAC-SHA-256(k_i, previous chain ||
//! the event's bytes without `chain`), and the key is hashed forward after every event
//! (k_{i+1} = SHA-256(k_i)) so a key taken from a running proxy cannot forge earlier events.

use std::path::Path;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The environment variable holding k_0 (base64 of 32 bytes).
pub const AUDIT_KEY_ENV: &str = "PGSHROUD_AUDIT_KEY";

/// Length of the key, of a chain value, and of the chain's starting (all-zero) value.
pub const CHAIN_LEN: usize = 32;

/// What follows the canonical bytes on a written line: `,"chain":"<64 hex>"}`.
const CHAIN_PREFIX: &[u8] = b",\"chain\":\"";
const SUFFIX_LEN: usize = CHAIN_PREFIX.len() + 2 * CHAIN_LEN + 2;

/// A forward-secure key: the current k_i; advancing overwrites it.
pub struct ChainKey {
    key: Zeroizing<[u8; CHAIN_LEN]>,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

impl Clone for ChainKey {
    fn clone(&self) -> Self {
        ChainKey {
            key: Zeroizing::new(*self.key),
        }
    }
}

impl ChainKey {
    pub fn new(key: [u8; CHAIN_LEN]) -> ChainKey {
        ChainKey {
            key: Zeroizing::new(key),
        }
    }

    /// k_0 from base64 text (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<ChainKey, String> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| "the audit key is not valid base64".to_string())?,
        );
        let key: [u8; CHAIN_LEN] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "the audit key must be {CHAIN_LEN} bytes (base64), not {}; make one with `openssl rand -base64 32`",
                bytes.len()
            )
        })?;
        Ok(ChainKey::new(key))
    }

    /// k_0 from `file` when given, else from `$PGSHROUD_AUDIT_KEY`. Never derived from the
    /// master key: whoever verifies the audit log need not be able to decrypt data.
    pub fn load(file: Option<&Path>) -> Result<ChainKey, String> {
        let text = match file {
            Some(path) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the audit key {}: {e}", path.display()))?,
            ),
            None => Zeroizing::new(std::env::var(AUDIT_KEY_ENV).map_err(|_| {
                format!(
                    "no audit key: set {AUDIT_KEY_ENV} (openssl rand -base64 32) or audit_key_file"
                )
            })?),
        };
        ChainKey::from_base64(&text)
    }

    /// Replaces k_i with k_{i+1} = SHA-256(k_i).
    pub fn advance(&mut self) {
        let next: [u8; CHAIN_LEN] = Sha256::digest(*self.key).into();
        *self.key = next;
    }

    /// The chain value of `canonical` after `previous`, under the current key.
    pub fn link(&self, previous: &[u8; CHAIN_LEN], canonical: &[u8]) -> [u8; CHAIN_LEN] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&*self.key).expect("HMAC takes any key");
        mac.update(previous);
        mac.update(canonical);
        mac.finalize().into_bytes().into()
    }
}

/// The writer's side of a chain segment: the key and the previous chain value.
#[derive(Debug)]
pub struct Chain {
    key: ChainKey,
    previous: [u8; CHAIN_LEN],
}

impl Chain {
    /// A new segment: chains from the zero value under k_0.
    pub fn start(k0: ChainKey) -> Chain {
        Chain {
            key: k0,
            previous: [0; CHAIN_LEN],
        }
    }

    /// The chain value of the last sealed event (zero before the first).
    pub fn previous(&self) -> [u8; CHAIN_LEN] {
        self.previous
    }

    /// Seals one event: `canonical` is its compact JSON object without `chain`. Returns the
    /// line to write (with `chain` as the last member and a newline) and moves the key on.
    pub fn seal(&mut self, canonical: &[u8]) -> Vec<u8> {
        let chain = self.key.link(&self.previous, canonical);
        self.key.advance();
        self.previous = chain;
        let mut line = Vec::with_capacity(canonical.len() + SUFFIX_LEN + 1);
        line.extend_from_slice(&canonical[..canonical.len().saturating_sub(1)]);
        line.extend_from_slice(CHAIN_PREFIX);
        line.extend_from_slice(hex::encode(chain).as_bytes());
        line.extend_from_slice(b"\"}\n");
        line
    }
}

/// Splits a written line (without its newline) into its canonical bytes and chain value.
pub fn split_line(line: &[u8]) -> Option<(Vec<u8>, [u8; CHAIN_LEN])> {
    if line.len() < SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return None;
    }
    let at = line.len() - SUFFIX_LEN;
    if &line[at..at + CHAIN_PREFIX.len()] != CHAIN_PREFIX {
        return None;
    }
    let hex_part = &line[at + CHAIN_PREFIX.len()..line.len() - 2];
    let mut chain = [0u8; CHAIN_LEN];
    hex::decode_to_slice(hex_part, &mut chain).ok()?;
    let mut canonical = line[..at].to_vec();
    canonical.push(b'}');
    Some((canonical, chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::new([7; CHAIN_LEN])
    }

    #[test]
    fn sealed_lines_split_back_into_their_parts() {
        let mut chain = Chain::start(key());
        let line = chain.seal(br#"{"seq":0,"event":"chain_start"}"#);
        assert!(line.ends_with(b"\"}\n"));
        let (canonical, value) = split_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(canonical, br#"{"seq":0,"event":"chain_start"}"#);
        assert_eq!(value, key().link(&[0; CHAIN_LEN], &canonical));
    }

    #[test]
    fn the_key_moves_forward_after_every_event() {
        let mut chain = Chain::start(key());
        let a = chain.seal(b"{\"a\":1}");
        let b = chain.seal(b"{\"a\":1}");
        assert_ne!(a, b);
        let mut k1 = key();
        k1.advance();
        let (_, first) = split_line(&a[..a.len() - 1]).unwrap();
        let (canonical, second) = split_line(&b[..b.len() - 1]).unwrap();
        assert_eq!(second, k1.link(&first, &canonical));
        assert_ne!(second, key().link(&first, &canonical));
    }

    #[test]
    fn keys_load_from_base64_of_32_bytes_only() {
        let good = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(ChainKey::from_base64(&format!("{good}\n")).is_ok());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(ChainKey::from_base64(&short)
            .unwrap_err()
            .contains("32 bytes"));
        assert!(ChainKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn lines_without_a_chain_do_not_split() {
        assert!(split_line(b"{\"a\":1}").is_none());
        assert!(split_line(b"").is_none());
    }
}
