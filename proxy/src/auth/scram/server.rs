//! The proxy as SCRAM server towards a client: the GS2 channel binding flag, the
//! server-first-message, and the check of the client's proof against the stored verifier.

use base64::Engine as _;

use super::verifier::{ClientKey, Verifier};
use super::{ScramError, B64, END_POINT, KEY_LEN, MECHANISM, MECHANISM_PLUS};

/// The channel binding flag of a client-first-message (its GS2 header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but thinks the server does not.
    NotOffered,
    /// `p=tls-server-end-point`.
    EndPoint,
}

/// The proxy as SCRAM server: from the client's first message to the final signature.
#[derive(Debug)]
pub struct ServerExchange {
    /// The client's GS2 header and the binding data it must echo in `c=`.
    expected_binding: Vec<u8>,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ServerExchange {
    /// Reads the client's first message for `mechanism`. `end_point` is the binding data of
    /// the proxy's own certificate when the client came over TLS (and PLUS was offered).
    /// Returns the exchange and the server-first-message to send.
    pub fn start(
        mechanism: &str,
        client_first: &[u8],
        end_point: Option<&[u8]>,
        verifier: &Verifier,
    ) -> Result<(ServerExchange, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("not valid UTF-8"))?;
        let (binding, rest) = split_binding(text)?;
        let rest = rest.strip_prefix(',').ok_or(ScramError::Malformed(
            "authorization identity is not supported",
        ))?;
        let gs2_header = &text[..text.len() - rest.len()];
        let binding_data = match (mechanism, &binding, end_point) {
            (MECHANISM_PLUS, Binding::EndPoint, Some(data)) => data,
            (MECHANISM_PLUS, _, _) => return Err(ScramError::BindingNegotiation),
            (MECHANISM, Binding::NotOffered, Some(_)) => {
                return Err(ScramError::BindingNegotiation)
            }
            (MECHANISM, Binding::EndPoint, _) => return Err(ScramError::BindingNegotiation),
            (MECHANISM, _, _) => &[][..],
            _ => return Err(ScramError::Malformed("unknown mechanism")),
        };
        let mut expected_binding = gs2_header.as_bytes().to_vec();
        expected_binding.extend_from_slice(binding_data);
        // client-first-message-bare: n=<user>,r=<nonce>[,extensions]. PostgreSQL ignores the
        // user name here (the startup packet's counts), so does the proxy.
        let bare = rest;
        let mut fields = bare.split(',');
        if fields.next().is_none_or(|f| !f.starts_with("n=")) {
            return Err(ScramError::Malformed("expected n= attribute"));
        }
        let client_nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..0x7f).contains(&b)))
            .ok_or(ScramError::Malformed("expected a printable r= nonce"))?;
        if fields.any(|f| f.starts_with("m=")) {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        let nonce = format!("{client_nonce}{}", super::nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let exchange = ServerExchange {
            expected_binding,
            nonce,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
        };
        Ok((exchange, server_first))
    }

    /// Checks the client's final message. `Ok(Some(..))`: the proof is right, here are the
    /// ClientKey and the server-final-message (`v=...`) to send once the login may go on.
    /// `Ok(None)`: a well-formed message with a wrong proof (a wrong password).
    pub fn finish(
        &self,
        client_final: &[u8],
        verifier: &Verifier,
    ) -> Result<Option<(ClientKey, String)>, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("not valid UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("expected p= proof at the end"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .and_then(|c| B64.decode(c).ok())
            .ok_or(ScramError::Malformed("expected c= binding data"))?;
        if binding != self.expected_binding {
            return Err(ScramError::BindingCheck);
        }
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r= nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Nonce);
        }
        let proof: [u8; KEY_LEN] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        Ok(verifier
            .check_proof(auth_message.as_bytes(), &proof)
            .map(|key| {
                let signature = verifier.server_signature(auth_message.as_bytes());
                (key, format!("v={}", B64.encode(signature)))
            }))
    }
}

/// Splits the GS2 channel binding flag off a client-first-message.
fn split_binding(text: &str) -> Result<(Binding, &str), ScramError> {
    if let Some(rest) = text.strip_prefix("n,") {
        Ok((Binding::NotSupported, rest))
    } else if let Some(rest) = text.strip_prefix("y,") {
        Ok((Binding::NotOffered, rest))
    } else if let Some(rest) = text.strip_prefix("p=") {
        let (kind, rest) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("unterminated channel binding type"))?;
        if kind != END_POINT {
            return Err(ScramError::Malformed("unsupported channel binding type"));
        }
        Ok((Binding::EndPoint, rest))
    } else {
        Err(ScramError::Malformed("unexpected channel binding flag"))
    }
}
