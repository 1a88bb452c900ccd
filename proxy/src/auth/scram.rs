//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, for both of the proxy's roles:
//! server towards a client (checking its proof against the user's stored verifier, which
//! reveals the client's ClientKey) and client towards PostgreSQL (proving itself with that
//! ClientKey). Pure message handling and arithmetic, no I/O.
//!
//! The pass-through works because a proof is `ClientKey XOR HMAC(StoredKey, AuthMessage)`:
//! whoever holds StoredKey recovers ClientKey from one proof, checks `H(ClientKey) ==
//! StoredKey`, and can then compute a proof for any other AuthMessage of the same verifier.
//! Neither the password nor anything that logs in on its own is ever stored in the proxy.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::Zeroize;

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

/// A role's SCRAM secret as PostgreSQL stores it in `pg_authid.rolpassword`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. Zeroised when dropped.
#[derive(Clone)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
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

    fn server_signature(&self, auth_message: &[u8]) -> [u8; KEY_LEN] {
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
    fn proof(&self, auth_message: &[u8]) -> [u8; KEY_LEN] {
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
        let nonce = format!("{client_nonce}{}", self::nonce());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector: user "user", password "pencil".
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST_BARE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_FINAL_WITHOUT_PROOF: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> Verifier {
        Verifier::from_password(b"pencil", &B64.decode(RFC_SALT).unwrap(), 4096)
    }

    fn rfc_auth_message() -> String {
        format!("{RFC_CLIENT_FIRST_BARE},{RFC_SERVER_FIRST},{RFC_FINAL_WITHOUT_PROOF}")
    }

    #[test]
    fn rfc7677_proof_reveals_the_client_key_and_reproduces() {
        let verifier = rfc_verifier();
        let proof: [u8; 32] = B64.decode(RFC_PROOF).unwrap().try_into().unwrap();
        let auth = rfc_auth_message();
        let key = verifier
            .check_proof(auth.as_bytes(), &proof)
            .expect("right proof");
        assert_eq!(key.proof(auth.as_bytes()), proof);
        assert_eq!(
            B64.encode(verifier.server_signature(auth.as_bytes())),
            RFC_SERVER_SIGNATURE
        );
        let mut wrong = proof;
        wrong[0] ^= 1;
        assert!(verifier.check_proof(auth.as_bytes(), &wrong).is_none());
    }

    #[test]
    fn verifier_text_round_trips_the_postgresql_format() {
        let v = rfc_verifier();
        let text = format!(
            "SCRAM-SHA-256$4096:{RFC_SALT}${}:{}",
            B64.encode(v.stored_key),
            B64.encode(v.server_key)
        );
        let parsed = Verifier::parse(&text).unwrap();
        assert_eq!(parsed.stored_key, v.stored_key);
        assert_eq!(parsed.iterations, 4096);
        assert!(Verifier::parse("md5a3556571e93b0d20722ba62be61e8c2d").is_none());
        assert!(Verifier::parse("SCRAM-SHA-256$0:c2FsdA==$a:b").is_none());
        assert!(!format!("{parsed:?}").contains(&B64.encode(v.stored_key)));
    }

    #[test]
    fn cleartext_password_is_checked_against_the_verifier() {
        let v = rfc_verifier();
        assert!(v.check_password(b"pencil").is_some());
        assert!(v.check_password(b"pencil2").is_none());
    }

    /// The whole pass-through: a client proves itself to the proxy, the proxy proves itself to
    /// a server holding the same verifier, and each side's signature checks.
    #[test]
    fn pass_through_login_verifies_on_both_legs() {
        let verifier = Verifier::from_password(b"secret", b"0123456789abcdef", 4096);
        let cert_hash = vec![7u8; 32];
        // Client -> proxy, with channel binding to the proxy's certificate.
        let client_nonce = nonce();
        let client_first = format!("p=tls-server-end-point,,n=,r={client_nonce}");
        let (server, server_first) = ServerExchange::start(
            MECHANISM_PLUS,
            client_first.as_bytes(),
            Some(&cert_hash),
            &verifier,
        )
        .unwrap();
        let mut binding = b"p=tls-server-end-point,,".to_vec();
        binding.extend_from_slice(&cert_hash);
        let combined = server_first.split(',').next().unwrap();
        let without_proof = format!("c={},{combined}", B64.encode(&binding));
        let auth = format!("n=,r={client_nonce},{server_first},{without_proof}");
        let client_key_of_user = Verifier::from_password(b"secret", b"0123456789abcdef", 4096)
            .check_password(b"secret")
            .unwrap();
        let proof = client_key_of_user.proof(auth.as_bytes());
        let client_final = format!("{without_proof},p={}", B64.encode(proof));
        let (key, server_final) = server
            .finish(client_final.as_bytes(), &verifier)
            .unwrap()
            .expect("right proof");
        check_server_final(server_final.as_bytes(), &verifier, &auth).unwrap();

        // Proxy -> server, with channel binding to the server's certificate.
        let (upstream, mechanism, first) =
            ClientExchange::start(UpstreamBinding::EndPoint(vec![9u8; 32]));
        assert_eq!(mechanism, MECHANISM_PLUS);
        let (pg, pg_first) =
            ServerExchange::start(mechanism, first.as_bytes(), Some(&[9u8; 32]), &verifier)
                .unwrap();
        let (final_message, auth_message) = upstream
            .answer(pg_first.as_bytes(), &key, &verifier)
            .unwrap()
            .unwrap();
        let (_, pg_final) = pg
            .finish(final_message.as_bytes(), &verifier)
            .unwrap()
            .expect("the server accepts the recovered key");
        check_server_final(pg_final.as_bytes(), &verifier, &auth_message).unwrap();
        assert_eq!(
            check_server_final(
                b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                &verifier,
                &auth_message
            ),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn a_changed_salt_upstream_is_reported_as_stale() {
        let verifier = Verifier::from_password(b"secret", b"salt-one", 4096);
        let newer = Verifier::from_password(b"secret", b"salt-two", 4096);
        let key = verifier.check_password(b"secret").unwrap();
        let (upstream, mechanism, first) = ClientExchange::start(UpstreamBinding::None);
        let (_, pg_first) =
            ServerExchange::start(mechanism, first.as_bytes(), None, &newer).unwrap();
        assert!(upstream
            .answer(pg_first.as_bytes(), &key, &verifier)
            .unwrap()
            .is_none());
    }

    #[test]
    fn channel_binding_downgrades_and_mismatches_are_refused() {
        let v = rfc_verifier();
        let hash = [1u8; 32];
        // "y" over TLS where PLUS was offered: the client was told PLUS is not available.
        assert_eq!(
            ServerExchange::start(MECHANISM, b"y,,n=,r=abc", Some(&hash), &v).unwrap_err(),
            ScramError::BindingNegotiation
        );
        assert!(ServerExchange::start(MECHANISM, b"y,,n=,r=abc", None, &v).is_ok());
        assert_eq!(
            ServerExchange::start(MECHANISM_PLUS, b"n,,n=,r=abc", Some(&hash), &v).unwrap_err(),
            ScramError::BindingNegotiation
        );
        assert!(matches!(
            ServerExchange::start(MECHANISM, b"n,a=admin,n=,r=abc", None, &v).unwrap_err(),
            ScramError::Malformed(_)
        ));
        // Binding data of another certificate (a TLS hop in between) fails the check.
        let (server, first) = ServerExchange::start(
            MECHANISM_PLUS,
            b"p=tls-server-end-point,,n=,r=abc",
            Some(&hash),
            &v,
        )
        .unwrap();
        let nonce = first.split(',').next().unwrap();
        let mut other = b"p=tls-server-end-point,,".to_vec();
        other.extend_from_slice(&[2u8; 32]);
        let final_message = format!(
            "c={},{nonce},p={}",
            B64.encode(other),
            B64.encode([0u8; 32])
        );
        assert_eq!(
            server.finish(final_message.as_bytes(), &v).unwrap_err(),
            ScramError::BindingCheck
        );
    }

    #[test]
    fn mock_verifier_is_stable_per_user_and_matches_no_proof() {
        let secret = [3u8; 32];
        let a = Verifier::mock("ghost", &secret);
        assert_eq!(a.salt, Verifier::mock("ghost", &secret).salt);
        assert_ne!(a.salt, Verifier::mock("other", &secret).salt);
        assert!(a.check_password(b"").is_none());
    }
}
