//! The proxy as SCRAM client towards PostgreSQL: proves itself with the ClientKey a client's
//! proof revealed, and checks the server's final signature with the verifier's ServerKey.

use base64::Engine as _;

use super::verifier::{ClientKey, Verifier};
use super::{constant_time_eq, nonce, ScramError, B64, KEY_LEN, MECHANISM, MECHANISM_PLUS};

/// The proxy as SCRAM client towards PostgreSQL, proving itself with a ClientKey.
#[derive(Debug)]
pub struct ClientExchange {
    gs2_header: &'static str,
    binding_data: Vec<u8>,
    nonce: String,
    client_first_bare: String,
}

/// How the proxy binds its upstream login to the TLS connection it runs over.
#[derive(Debug)]
pub enum UpstreamBinding {
    /// No TLS: `n`.
    None,
    /// TLS, but the server did not offer PLUS: `y`.
    NotOffered,
    /// PLUS with the server certificate's end-point hash.
    EndPoint(Vec<u8>),
}

impl ClientExchange {
    /// The mechanism to name and the client-first-message to send.
    pub fn start(binding: UpstreamBinding) -> (ClientExchange, &'static str, String) {
        let (mechanism, gs2_header, binding_data) = match binding {
            UpstreamBinding::None => (MECHANISM, "n,,", Vec::new()),
            UpstreamBinding::NotOffered => (MECHANISM, "y,,", Vec::new()),
            UpstreamBinding::EndPoint(data) => (MECHANISM_PLUS, "p=tls-server-end-point,,", data),
        };
        let nonce = nonce();
        let client_first_bare = format!("n=,r={nonce}");
        let message = format!("{gs2_header}{client_first_bare}");
        let exchange = ClientExchange {
            gs2_header,
            binding_data,
            nonce,
            client_first_bare,
        };
        (exchange, mechanism, message)
    }

    /// Answers the server-first-message with the client-final-message, and returns the
    /// AuthMessage the server's signature covers. `Ok(None)`: the server uses another salt or
    /// iteration count than the verifier, so the password changed since it was read.
    pub fn answer(
        &self,
        server_first: &[u8],
        key: &ClientKey,
        verifier: &Verifier,
    ) -> Result<Option<(String, String)>, ScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("not valid UTF-8"))?;
        let mut fields = text.split(',');
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r= nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = fields
            .next()
            .and_then(|f| f.strip_prefix("s="))
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed("expected s= salt"))?;
        let iterations: u32 = fields
            .next()
            .and_then(|f| f.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("expected i= iteration count"))?;
        if salt != verifier.salt || iterations != verifier.iterations {
            return Ok(None);
        }
        let mut binding = self.gs2_header.as_bytes().to_vec();
        binding.extend_from_slice(&self.binding_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(binding));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let proof = key.proof(auth_message.as_bytes());
        let message = format!("{without_proof},p={}", B64.encode(proof));
        Ok(Some((message, auth_message)))
    }
}

/// Checks the server-final-message against the verifier's ServerKey: only a server that
/// knows the verifier can produce it.
pub fn check_server_final(
    server_final: &[u8],
    verifier: &Verifier,
    auth_message: &str,
) -> Result<(), ScramError> {
    let signature = std::str::from_utf8(server_final)
        .ok()
        .and_then(|t| t.strip_prefix("v="))
        .and_then(|v| B64.decode(v).ok())
        .and_then(|v| <[u8; KEY_LEN]>::try_from(v).ok())
        .ok_or(ScramError::Malformed("expected v= signature"))?;
    if constant_time_eq(
        &signature,
        &verifier.server_signature(auth_message.as_bytes()),
    ) {
        Ok(())
    } else {
        Err(ScramError::ServerSignature)
    }
}
