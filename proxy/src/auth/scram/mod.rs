//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, for both of the proxy's roles:
//! server towards a client (checking its proof against the user's stored verifier, which
//! reveals the client's ClientKey) and client towards PostgreSQL (proving itself with that
//! ClientKey). Pure message handling and arithmetic, no I/O.
//!
//! The pass-through works because a proof is `ClientKey XOR HMAC(StoredKey, AuthMessage)`:
//! whoever holds StoredKey recovers ClientKey from one proof, checks `H(ClientKey) ==
//! StoredKey`, and can then compute a proof for any other AuthMessage of the same verifier.
//! Neither the password nor anything that logs in on its own is ever stored in the proxy.
//!
//! Parts: `verifier` (the stored secret and the keys a proof reveals), `server` (the proxy
//! checking a client), `client` (the proxy proving itself to PostgreSQL).

mod client;
mod server;
mod verifier;

#[cfg(test)]
mod tests;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256, Sha384, Sha512};

pub use client::{check_server_final, ClientExchange, UpstreamBinding};
pub use server::{Binding, ServerExchange};
pub use verifier::{ClientKey, Verifier};

pub const MECHANISM: &str = "SCRAM-SHA-256";
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel binding type PostgreSQL implements.
const END_POINT: &str = "tls-server-end-point";
const KEY_LEN: usize = 32;
/// Bytes of randomness in a nonce, as PostgreSQL uses.
const NONCE_BYTES: usize = 18;

/// Why a SCRAM exchange cannot go on. The text is what a person needs, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM channel binding negotiation error")]
    BindingNegotiation,
    #[error("SCRAM channel binding check failed")]
    BindingCheck,
    #[error("SCRAM nonce does not match")]
    Nonce,
    #[error("the server's SCRAM signature is wrong")]
    ServerSignature,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn key(b64: &str) -> Option<[u8; KEY_LEN]> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// A fresh random nonce, printable and without commas.
pub fn nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// The `tls-server-end-point` channel binding data of a certificate (RFC 5929): its hash with
/// the hash function of its signature algorithm, SHA-256 where that is MD5 or SHA-1, as
/// PostgreSQL computes it.
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    let algorithm = x509_parser::parse_x509_certificate(cert_der)
        .map(|(_, cert)| cert.signature_algorithm.algorithm.to_id_string())
        .unwrap_or_default();
    match algorithm.as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Sha384::digest(cert_der).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Sha512::digest(cert_der).to_vec(),
        _ => Sha256::digest(cert_der).to_vec(),
    }
}
