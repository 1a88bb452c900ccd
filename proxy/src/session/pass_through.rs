//! The upstream leg of proxy-side authentication: pgshroud logs in to PostgreSQL as the client's
//! user with SCRAM, proving itself with the ClientKey the client's proof revealed, bound to the
//! upstream TLS connection (SCRAM-SHA-256-PLUS) when the server offers it. The server's final
//! signature is checked against the verifier's ServerKey before the client hears "OK". Users
//! with md5 secrets answer md5 challenges with the secret; a cleartext client's password
//! answers whatever the server asks.

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tracing::warn;

use zeroize::{Zeroize as _, Zeroizing};

use super::auth_error::{refuse, wrong_password, AuthError};
use super::login::{Credential, Proven};
use crate::auth::md5::Md5Secret;
use crate::auth::scram::{self, ClientExchange, UpstreamBinding};
use crate::net::stream::Stream;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::frame::message;
use crate::protocol::types::{auth, frontend};

/// Where the upstream SCRAM exchange stands.
#[derive(Debug)]
enum Step {
    NotStarted,
    Sent(ClientExchange),
    /// The client-final-message went out; the server's signature must cover this AuthMessage.
    Answered(String),
    Verified,
}

/// One upstream login with a proven client's keys.
#[derive(Debug)]
pub struct PassThrough {
    proven: Proven,
    user: String,
    step: Step,
}

impl PassThrough {
    pub fn new(proven: Proven, user: &str) -> PassThrough {
        PassThrough {
            proven,
            user: user.to_owned(),
            step: Step::NotStarted,
        }
    }

    /// Handles one `Authentication` message from the server; `frame` is the whole message.
    pub async fn step(
        &mut self,
        code: i32,
        frame: &[u8],
        server: &mut Stream,
        client: &mut Stream,
    ) -> Result<(), AuthError> {
        let data = frame.get(9..).ok_or(AuthError::UpstreamProtocol)?;
        match (code, std::mem::replace(&mut self.step, Step::NotStarted)) {
            (auth::SASL, Step::NotStarted) => {
                if !matches!(self.proven.credential, Credential::Scram { .. }) {
                    return refuse(client, not_scram_secret()).await;
                }
                let offered = mechanisms(data);
                if !offered.contains(&scram::MECHANISM) {
                    return refuse(
                        client,
                        not_scram("a SASL mechanism other than SCRAM-SHA-256"),
                    )
                    .await;
                }
                let binding = match server.server_end_point() {
                    Some(end_point) if offered.contains(&scram::MECHANISM_PLUS) => {
                        UpstreamBinding::EndPoint(end_point)
                    }
                    _ if server.is_tls() => UpstreamBinding::NotOffered,
                    _ => UpstreamBinding::None,
                };
                let (exchange, mechanism, first) = ClientExchange::start(binding);
                let mut body = BytesMut::new();
                body.put_slice(mechanism.as_bytes());
                body.put_u8(0);
                body.put_i32(first.len() as i32);
                body.put_slice(first.as_bytes());
                send(server, &message(frontend::PASSWORD, &body)).await?;
                self.step = Step::Sent(exchange);
            }
            (auth::SASL_CONTINUE, Step::Sent(exchange)) => {
                let Credential::Scram { verifier, key } = &self.proven.credential else {
                    return Err(AuthError::UpstreamProtocol);
                };
                let answer = exchange.answer(data, key, verifier).map_err(|e| {
                    warn!("upstream SCRAM exchange failed: {e}");
                    AuthError::UpstreamProtocol
                })?;
                let Some((client_final, auth_message)) = answer else {
                    warn!(
                        "the server's SCRAM salt for this user differs from pgshroud's verifier: \
                         the password changed after it was read (update auth_file if it is used)"
                    );
                    return refuse(client, wrong_password(&self.user)).await;
                };
                send(
                    server,
                    &message(frontend::PASSWORD, client_final.as_bytes()),
                )
                .await?;
                self.step = Step::Answered(auth_message);
            }
            (auth::SASL_FINAL, Step::Answered(auth_message)) => {
                let Credential::Scram { verifier, .. } = &self.proven.credential else {
                    return Err(AuthError::UpstreamProtocol);
                };
                if let Err(e) = scram::check_server_final(data, verifier, &auth_message) {
                    warn!("upstream login refused by pgshroud: {e}");
                    let error = PgError::fatal(
                        sqlstate::CONNECTION_FAILURE,
                        "the PostgreSQL server did not prove that it knows the user's verifier",
                    )
                    .with_detail("Its SCRAM signature is wrong: something between pgshroud and PostgreSQL may pretend to be the server.");
                    return refuse(client, error).await;
                }
                self.step = Step::Verified;
            }
            // Trust (no exchange at all) or a completed, verified exchange: the client, proven
            // by pgshroud, hears its SASLFinal and OK now.
            (auth::OK, Step::NotStarted | Step::Verified) => {
                client.write_all(&self.proven.reply).await?;
            }
            (auth::CLEARTEXT_PASSWORD, Step::NotStarted) => {
                let Some(password) = &self.proven.password else {
                    return refuse(client, not_scram("a cleartext password")).await;
                };
                let mut text = Zeroizing::new(password.to_vec());
                text.push(0);
                send_secret(server, &text).await?;
            }
            (auth::MD5_PASSWORD, Step::NotStarted) => {
                let salt: [u8; 4] = data
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(AuthError::UpstreamProtocol)?;
                let answer = match (&self.proven.credential, &self.proven.password) {
                    (Credential::Md5(secret), _) => secret.answer(&salt),
                    (_, Some(password)) => {
                        Md5Secret::from_password(password, &self.user).answer(&salt)
                    }
                    _ => return refuse(client, not_scram("an md5 password")).await,
                };
                let mut text = Zeroizing::new(answer.as_bytes().to_vec());
                text.push(0);
                send_secret(server, &text).await?;
            }
            _ => return Err(AuthError::UpstreamProtocol),
        }
        Ok(())
    }
}

/// The server wants SCRAM, but the user's secret is an md5 hash.
fn not_scram_secret() -> PgError {
    PgError::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        "PostgreSQL asked pgshroud for SCRAM, but the user's secret is an md5 hash",
    )
    .with_hint("Set the user's password again with password_encryption = scram-sha-256, or use md5 in pg_hba.conf for connections from pgshroud.")
}

/// The server wants what pass-through cannot give: it never sees a password.
fn not_scram(what: &str) -> PgError {
    PgError::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        format!("PostgreSQL asked pgshroud for {what}, but with auth_mode = proxy pgshroud logs in with SCRAM-SHA-256 only"),
    )
    .with_hint("Use scram-sha-256 in pg_hba.conf for connections from pgshroud, and store passwords as SCRAM verifiers.")
}

/// Sends a PasswordMessage carrying a password (or its md5 answer) and wipes the copy.
async fn send_secret(server: &mut Stream, text: &[u8]) -> Result<(), AuthError> {
    let mut frame = message(frontend::PASSWORD, text);
    let sent = send(server, &frame).await;
    frame[..].zeroize();
    sent
}

async fn send(server: &mut Stream, frame: &[u8]) -> Result<(), AuthError> {
    server.write_all(frame).await?;
    server.flush().await?;
    Ok(())
}

/// The NUL-terminated mechanism names of an AuthenticationSASL message.
fn mechanisms(data: &[u8]) -> Vec<&str> {
    data.split(|&b| b == 0)
        .take_while(|m| !m.is_empty())
        .filter_map(|m| std::str::from_utf8(m).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_mechanisms_are_read_up_to_the_terminator() {
        assert_eq!(
            mechanisms(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
            vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        );
        assert!(mechanisms(b"\0").is_empty());
    }
}
