//! A role's stored SCRAM verifier and what a client's proof (or password) reveals with it:
//! the ClientKey, which the upstream login proves itself with. Secrets are zeroised on drop.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{constant_time_eq, hmac, key, B64, KEY_LEN};

/// A role's SCRAM secret as PostgreSQL stores it in `pg_authid.rolpassword`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. Zeroised when dropped.
#[derive(Clone)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub(super) stored_key: [u8; KEY_LEN],
    pub(super) server_key: [u8; KEY_LEN],
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.salt.zeroize();
        self.stored_key.zeroize();
        self.server_key.zeroize();
    }
}

/// Never prints the keys.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses a stored verifier; `None` for anything else (md5 hashes, plaintext, garbage).
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations = iterations.parse().ok().filter(|i| *i > 0)?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(Verifier {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Builds the verifier of `password` (used for cleartext clients' checks and in tests).
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> Verifier {
        let salted = salted_password(password, salt, iterations);
        let client_key = ClientKey(hmac(&salted.0, &[b"Client Key"]));
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key.0).into(),
            server_key: hmac(&salted.0, &[b"Server Key"]),
        }
    }

    /// The ClientKey hidden in `proof`, when the proof fits this verifier.
    pub fn check_proof(&self, auth_message: &[u8], proof: &[u8; KEY_LEN]) -> Option<ClientKey> {
        let mut client_key = ClientKey(hmac(&self.stored_key, &[auth_message]));
        for (k, p) in client_key.0.iter_mut().zip(proof) {
            *k ^= p;
        }
        let stored: [u8; KEY_LEN] = Sha256::digest(client_key.0).into();
        constant_time_eq(&stored, &self.stored_key).then_some(client_key)
    }

    /// The ClientKey of `password`, when it is this verifier's password (cleartext clients).
    pub fn check_password(&self, password: &[u8]) -> Option<ClientKey> {
        let salted = salted_password(password, &self.salt, self.iterations);
        let client_key = ClientKey(hmac(&salted.0, &[b"Client Key"]));
        let stored: [u8; KEY_LEN] = Sha256::digest(client_key.0).into();
        constant_time_eq(&stored, &self.stored_key).then_some(client_key)
    }

    pub(super) fn server_signature(&self, auth_message: &[u8]) -> [u8; KEY_LEN] {
        hmac(&self.server_key, &[auth_message])
    }

    /// What a user's stand-in verifier looks like when the user does not exist (or has no SCRAM
    /// secret): a salt derived from the name, so repeated tries see the same one, as with
    /// PostgreSQL's mock authentication, and a key nobody can match.
    pub fn mock(user: &str, nonce_secret: &[u8; KEY_LEN]) -> Verifier {
        let salt = hmac(nonce_secret, &[b"mock salt ", user.as_bytes()])[..16].to_vec();
        Verifier {
            iterations: 4096,
            salt,
            stored_key: hmac(nonce_secret, &[b"mock stored key ", user.as_bytes()]),
            server_key: [0; KEY_LEN],
        }
    }
}

/// What a proof revealed: enough to log in as the user while the verifier stays unchanged,
/// so it lives only for one login and is zeroised when dropped.
pub struct ClientKey([u8; KEY_LEN]);

impl Drop for ClientKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

impl ClientKey {
    pub(super) fn proof(&self, auth_message: &[u8]) -> [u8; KEY_LEN] {
        let stored: [u8; KEY_LEN] = Sha256::digest(self.0).into();
        let mut proof = hmac(&stored, &[auth_message]);
        for (p, k) in proof.iter_mut().zip(&self.0) {
            *p ^= k;
        }
        proof
    }
}

struct SaltedPassword([u8; KEY_LEN]);

impl Drop for SaltedPassword {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// `Hi()` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block. PostgreSQL applies SASLprep
/// first; for ASCII passwords that changes nothing, and for others PostgreSQL falls back to
/// the raw bytes when the password is not valid under SASLprep, which this does always.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> SaltedPassword {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut result = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        for (r, b) in result.iter_mut().zip(&u) {
            *r ^= b;
        }
    }
    u.zeroize();
    SaltedPassword(result)
}
