//! Proxy-side authentication of a client (`auth_mode = "proxy"`): pgshroud plays PostgreSQL's
//! part of SCRAM-SHA-256 (and -PLUS over its own TLS) against the user's stored verifier, or
//! of md5 / cleartext password as `auth_method` says: the method alone picks the exchange, so a
//! known and an unknown user see the same messages. A right proof yields what `pass_through`
//! logs in upstream with (the ClientKey, or the md5 secret); the client's final
//! `AuthenticationSASLFinal` + `AuthenticationOk` are held back until the server agreed.

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use zeroize::{Zeroize as _, Zeroizing};

use super::auth_error::{refuse, wrong_password, AuthError};
use crate::auth::md5::Md5Secret;
use crate::auth::scram::{self, ClientKey, ScramError, ServerExchange, Verifier};
use crate::auth::secrets::Secret;
use crate::auth::ProxyAuth;
use crate::config::ClientAuthMethod;
use crate::net::stream::Stream;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::frame::{message, FrameBuffer};
use crate::protocol::types::{auth, backend, frontend};

/// What a proven client leaves the upstream login to answer the server with.
#[derive(Debug)]
pub enum Credential {
    /// The user's verifier and the ClientKey the client's proof (or password) revealed.
    Scram { verifier: Verifier, key: ClientKey },
    /// The user's md5 secret, which answers the server's md5 challenge.
    Md5(Md5Secret),
}

/// A client whose password was right.
#[derive(Debug)]
pub struct Proven {
    pub credential: Credential,
    /// The password itself, from cleartext clients only (it answers a server that asks for
    /// a cleartext password); zeroised when the login ends.
    pub password: Option<Zeroizing<Vec<u8>>>,
    /// `AuthenticationSASLFinal` (SCRAM) and `AuthenticationOk`, for the client once upstream
    /// agreed.
    pub reply: BytesMut,
}

/// The client's password exchange in `auth_method`, up to a verified password. Every refusal
/// has been sent to the client when this returns an error.
pub async fn authenticate(
    client: &mut Stream,
    client_buf: &mut FrameBuffer,
    user: &str,
    proxy_auth: &ProxyAuth,
) -> Result<Proven, AuthError> {
    let secret = match proxy_auth.source.lookup(user).await {
        Ok(secret) => secret,
        Err(e) => {
            warn!("cannot check the password of the client: {e}");
            let error = PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                "pgshroud cannot check passwords right now: its look-up of users' verifiers failed",
            )
            .with_hint("The proxy's log says why (auth_query connection or auth_file).");
            return refuse(client, error).await;
        }
    };
    // Which exchange a client gets depends on `auth_method` alone, never on what is stored for
    // the user, so a known and an unknown user see the same messages: `password` asks for the
    // password and checks it against either kind of secret; `md5` asks everyone for md5 (a
    // SCRAM verifier cannot check an md5 answer, so such users fail as with a wrong password,
    // where PostgreSQL would switch to SCRAM and so tell them apart from unknown users);
    // `scram-sha-256` checks SCRAM verifiers only.
    let proven = match (proxy_auth.method, secret) {
        (ClientAuthMethod::Password, secret) => cleartext(client, client_buf, user, secret).await?,
        (ClientAuthMethod::Md5, Secret::Md5(md5)) => {
            md5_exchange(client, client_buf, Some(md5)).await?
        }
        (ClientAuthMethod::Md5, secret) => {
            if matches!(secret, Secret::Scram(_)) {
                warn!("the user's secret is a SCRAM verifier, which cannot check an md5 answer: auth_method = \"scram-sha-256\" (or \"password\" over TLS) serves it");
            }
            md5_exchange(client, client_buf, None).await?
        }
        (ClientAuthMethod::ScramSha256, Secret::Scram(verifier)) => {
            scram_exchange(client, client_buf, proxy_auth, Some(verifier), user).await?
        }
        (ClientAuthMethod::ScramSha256, _) => {
            scram_exchange(client, client_buf, proxy_auth, None, user).await?
        }
    };
    match proven {
        Some(proven) => Ok(proven),
        None => {
            // PostgreSQL's words, for unknown users too, so the answer tells nothing apart.
            info!("password authentication failed (checked by pgshroud)");
            refuse(client, wrong_password(user)).await
        }
    }
}

/// SCRAM-SHA-256(-PLUS) against `verifier`; without one (unknown user), a mock exchange that
/// fails at the end as a wrong password would. `Ok(None)`: wrong password.
async fn scram_exchange(
    client: &mut Stream,
    client_buf: &mut FrameBuffer,
    proxy_auth: &ProxyAuth,
    verifier: Option<Verifier>,
    user: &str,
) -> Result<Option<Proven>, AuthError> {
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(|| Verifier::mock(user, &proxy_auth.mock_secret));
    // PLUS only over the proxy's own TLS, bound to the proxy's certificate.
    let end_point = proxy_auth.end_point.as_deref().filter(|_| client.is_tls());
    let mut mechanisms = Vec::new();
    if end_point.is_some() {
        mechanisms.push(scram::MECHANISM_PLUS);
    }
    mechanisms.push(scram::MECHANISM);
    client.write_all(&sasl_request(&mechanisms)).await?;
    let initial = read_password_message(client, client_buf).await?;
    let Some((mechanism, first)) = initial_response(&initial) else {
        let error = PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "malformed SASLInitialResponse",
        );
        return refuse(client, error).await;
    };
    let (exchange, server_first) =
        match ServerExchange::start(&mechanism, first, end_point, &verifier) {
            Ok(started) => started,
            Err(e) => return refuse(client, scram_error(e)).await,
        };
    client
        .write_all(&auth_message(auth::SASL_CONTINUE, server_first.as_bytes()))
        .await?;
    let response = read_password_message(client, client_buf).await?;
    let last = match exchange.finish(&response[5..], &verifier) {
        Ok(last) => last,
        Err(e) => return refuse(client, scram_error(e)).await,
    };
    Ok(last.filter(|_| known).map(|(key, server_final)| {
        let mut reply = auth_message(auth::SASL_FINAL, server_final.as_bytes());
        reply.extend_from_slice(&auth_message(auth::OK, b""));
        Proven {
            credential: Credential::Scram { verifier, key },
            password: None,
            reply,
        }
    }))
}

/// The md5 challenge with a fresh salt, checked against the md5 secret (or, for an unknown
/// user, asked and then refused).
async fn md5_exchange(
    client: &mut Stream,
    client_buf: &mut FrameBuffer,
    secret: Option<Md5Secret>,
) -> Result<Option<Proven>, AuthError> {
    let salt: [u8; 4] = rand::random();
    client
        .write_all(&auth_message(auth::MD5_PASSWORD, &salt))
        .await?;
    let answer = read_password_message(client, client_buf).await?;
    let answer = password_text(&answer);
    Ok(secret
        .filter(|s| s.check(&salt, answer))
        .map(|secret| Proven {
            credential: Credential::Md5(secret),
            password: None,
            reply: auth_message(auth::OK, b""),
        }))
}

/// A cleartext password (`auth_method = "password"`, for clients over TLS that can do
/// nothing else), checked against whichever secret the user has.
async fn cleartext(
    client: &mut Stream,
    client_buf: &mut FrameBuffer,
    user: &str,
    secret: Secret,
) -> Result<Option<Proven>, AuthError> {
    client
        .write_all(&auth_message(auth::CLEARTEXT_PASSWORD, b""))
        .await?;
    let mut message = read_password_message(client, client_buf).await?;
    let password = Zeroizing::new(password_text(&message).to_vec());
    message[..].zeroize();
    let credential = match secret {
        Secret::Scram(verifier) => verifier
            .check_password(&password)
            .map(|key| Credential::Scram { verifier, key }),
        Secret::Md5(md5) => md5
            .matches_password(&password, user)
            .then_some(Credential::Md5(md5)),
        Secret::Unusable => None,
    };
    Ok(credential.map(|credential| Proven {
        credential,
        password: Some(password),
        reply: auth_message(auth::OK, b""),
    }))
}

/// The NUL-terminated text of a PasswordMessage.
fn password_text(frame: &[u8]) -> &[u8] {
    let body = frame.get(5..).unwrap_or_default();
    body.strip_suffix(&[0]).unwrap_or(body)
}

/// `tls_client_cert = "verify-full"`: the client came over TLS with a certificate (verified
/// against `tls_client_ca_file` in the handshake) whose common name is the user, as pg_hba's
/// `clientcert=verify-full` demands. The password is checked as well, afterwards.
pub async fn check_client_cert(client: &mut Stream, user: &str) -> Result<(), AuthError> {
    match client.peer_cert_common_name() {
        Some(name) if name == user => Ok(()),
        Some(_) => {
            info!("client certificate's common name is not the user name");
            let error = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "certificate validation (clientcert=verify-full) failed for user \"{user}\": CN mismatch"
                ),
            );
            refuse(client, error).await
        }
        None => {
            let error = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "connection requires a valid client certificate",
            );
            refuse(client, error).await
        }
    }
}

fn scram_error(e: ScramError) -> PgError {
    let error = PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string());
    match e {
        ScramError::BindingNegotiation => error.with_detail(
            "The client supports SCRAM channel binding but thinks the server does not.  \
             However, this server does support channel binding.",
        ),
        _ => error,
    }
}

async fn read_password_message(
    client: &mut Stream,
    client_buf: &mut FrameBuffer,
) -> Result<BytesMut, AuthError> {
    client.flush().await?;
    let frame = client_buf
        .read_frame(client)
        .await
        .map_err(AuthError::Client)?
        .ok_or(AuthError::ClientGone)?;
    match frame[0] {
        frontend::PASSWORD => Ok(frame),
        frontend::TERMINATE => Err(AuthError::ClientGone),
        other => Err(AuthError::ClientProtocol(other as char)),
    }
}

/// An `R` message with `code` and `data`.
fn auth_message(code: i32, data: &[u8]) -> BytesMut {
    let mut body = BytesMut::with_capacity(4 + data.len());
    body.put_i32(code);
    body.put_slice(data);
    message(backend::AUTHENTICATION, &body)
}

fn sasl_request(mechanisms: &[&str]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(auth::SASL);
    for m in mechanisms {
        body.put_slice(m.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    message(backend::AUTHENTICATION, &body)
}

/// SASLInitialResponse: mechanism name, then the length-prefixed client-first-message.
fn initial_response(frame: &[u8]) -> Option<(String, &[u8])> {
    let body = frame.get(5..)?;
    let nul = body.iter().position(|&b| b == 0)?;
    let mechanism = std::str::from_utf8(&body[..nul]).ok()?.to_owned();
    let rest = &body[nul + 1..];
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = rest.get(4..)?;
    (usize::try_from(len).ok()? == data.len()).then_some((mechanism, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_response_is_split_into_mechanism_and_data() {
        let mut body = BytesMut::new();
        body.put_slice(b"SCRAM-SHA-256\0");
        body.put_i32(5);
        body.put_slice(b"n,,n=");
        let frame = message(frontend::PASSWORD, &body);
        let (mechanism, data) = initial_response(&frame).unwrap();
        assert_eq!((mechanism.as_str(), data), ("SCRAM-SHA-256", &b"n,,n="[..]));
        let mut short = BytesMut::new();
        short.put_slice(b"SCRAM-SHA-256\0");
        short.put_i32(9);
        short.put_slice(b"n,,");
        assert!(initial_response(&message(frontend::PASSWORD, &short)).is_none());
    }

    #[test]
    fn sasl_request_lists_mechanisms_with_a_terminator() {
        let frame = sasl_request(&[scram::MECHANISM_PLUS, scram::MECHANISM]);
        assert_eq!(&frame[9..], b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
    }
}
