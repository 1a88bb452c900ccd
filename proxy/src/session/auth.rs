//! The upstream login up to `ReadyForQuery`. Relayed (`auth_mode = "relay"`): PostgreSQL
//! decides (trust, cleartext, md5, SCRAM-SHA-256), the proxy passes the exchange through and
//! strips `SCRAM-SHA-256-PLUS` (channel binding cannot cross the TLS hop the proxy terminates).
//! Proxy-side (`"proxy"`): the client is already proven and `pass_through` answers the server.
//! Either way the secret in `BackendKeyData` is swapped for the proxy's own (the pid stays the
//! backend's).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{DecodeContext, Message, ProtocolVersion};
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::auth_error::AuthError;
use super::pass_through::PassThrough;
use crate::net::stream::Stream;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::fields;
use crate::protocol::frame::FrameBuffer;
use crate::protocol::types::{auth, backend, frontend};
use crate::session::cancel::{BackendKey, CancelGuard, CancelRegistry};

/// What the session knows once the server said `ReadyForQuery`.
#[derive(Debug)]
pub struct Authenticated {
    /// Present when the server sent `BackendKeyData`.
    pub cancel: Option<CancelGuard>,
    /// `ParameterStatus` values (server_version, client_encoding, ...).
    pub parameters: Vec<(String, String)>,
    /// The server's first `ReadyForQuery`, held back so the session can finish its own
    /// set-up (catalog look-up) before the client may send statements.
    pub ready: BytesMut,
}

/// Both ends of a session during authentication, with their read buffers (which carry any
/// bytes read ahead into the relay).
pub struct AuthExchange<'a> {
    pub client: &'a mut Stream,
    pub client_buf: &'a mut FrameBuffer,
    pub server: &'a mut Stream,
    pub server_buf: &'a mut FrameBuffer,
    /// Present under proxy-side authentication: the client is proven, the proxy logs in.
    pub pass_through: Option<PassThrough>,
}

impl AuthExchange<'_> {
    /// Runs until `ReadyForQuery` (returned, not yet forwarded) or a failure.
    pub async fn run(mut self, cancels: &Arc<CancelRegistry>) -> Result<Authenticated, AuthError> {
        let mut done = Authenticated {
            cancel: None,
            parameters: Vec::new(),
            ready: BytesMut::new(),
        };
        loop {
            let frame = self
                .server_buf
                .read_frame(self.server)
                .await
                .map_err(AuthError::Upstream)?
                .ok_or(AuthError::UpstreamGone)?;
            match frame[0] {
                backend::AUTHENTICATION => self.authentication(frame).await?,
                backend::BACKEND_KEY_DATA => {
                    let (guard, ours) = swap_key(&frame, cancels)?;
                    done.cancel = Some(guard);
                    self.client.write_all(&ours).await?;
                }
                backend::ERROR_RESPONSE => {
                    self.client.write_all(&frame).await?;
                    self.client.flush().await?;
                    return Err(AuthError::Refused {
                        sqlstate: fields::field(&frame, b'C').unwrap_or("").to_owned(),
                        message: fields::field(&frame, b'M').unwrap_or("").to_owned(),
                    });
                }
                backend::PARAMETER_STATUS => {
                    if let Some(pair) = parameter(&frame) {
                        done.parameters.push(pair);
                    }
                    self.client.write_all(&frame).await?;
                }
                backend::READY_FOR_QUERY => {
                    self.client.flush().await?;
                    done.ready = frame;
                    return Ok(done);
                }
                _ => self.client.write_all(&frame).await?,
            }
        }
    }

    async fn authentication(&mut self, frame: BytesMut) -> Result<(), AuthError> {
        let code = frame
            .get(5..9)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(AuthError::UpstreamProtocol)?;
        if let Some(login) = &mut self.pass_through {
            return login.step(code, &frame, self.server, self.client).await;
        }
        match code {
            auth::OK | auth::SASL_FINAL => self.client.write_all(&frame).await?,
            auth::CLEARTEXT_PASSWORD | auth::MD5_PASSWORD | auth::SASL_CONTINUE => {
                self.client.write_all(&frame).await?;
                self.relay_client_response().await?;
            }
            auth::SASL => {
                if self.client.is_tls() && self.server.is_tls() {
                    // libpq and node-postgres will say "y" (binding supported, not offered) and
                    // PostgreSQL, which did offer it, refuses that as a downgrade.
                    warn!("relayed SCRAM with TLS on both legs: clients that support channel binding will be refused by PostgreSQL; set auth_user or auth_file for proxy-side authentication");
                }
                self.client
                    .write_all(&without_channel_binding(frame)?)
                    .await?;
                self.relay_client_response().await?;
            }
            _ => {
                let error = PgError::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("authentication method {code} (GSSAPI/SSPI/Kerberos) is not supported through pgshroud"),
                )
                .with_hint("Use scram-sha-256, md5, password or trust for connections from pgshroud.");
                self.client.write_all(&error.to_bytes()).await?;
                return Err(AuthError::Unsupported(error));
            }
        }
        Ok(())
    }

    /// Reads the client's answer to an authentication request and passes it upstream.
    async fn relay_client_response(&mut self) -> Result<(), AuthError> {
        self.client.flush().await?;
        let frame = self
            .client_buf
            .read_frame(self.client)
            .await
            .map_err(AuthError::Client)?
            .ok_or(AuthError::ClientGone)?;
        match frame[0] {
            frontend::PASSWORD => {
                self.server.write_all(&frame).await?;
                self.server.flush().await?;
                Ok(())
            }
            frontend::TERMINATE => Err(AuthError::ClientGone),
            other => Err(AuthError::ClientProtocol(other as char)),
        }
    }
}

/// Re-encodes an AuthenticationSASL message without `SCRAM-SHA-256-PLUS`.
fn without_channel_binding(mut frame: BytesMut) -> Result<BytesMut, AuthError> {
    let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    match Authentication::decode(&mut frame, &ctx) {
        Ok(Some(Authentication::SASL(mechanisms))) => {
            let kept: Vec<String> = mechanisms
                .into_iter()
                .filter(|m| m != "SCRAM-SHA-256-PLUS")
                .collect();
            let mut out = BytesMut::new();
            Authentication::SASL(kept)
                .encode(&mut out)
                .map_err(|_| AuthError::UpstreamProtocol)?;
            Ok(out)
        }
        _ => Err(AuthError::UpstreamProtocol),
    }
}

/// Registers the upstream key and builds the `BackendKeyData` the client gets instead: the
/// backend's pid with the proxy's secret.
fn swap_key(
    frame: &[u8],
    cancels: &Arc<CancelRegistry>,
) -> Result<(CancelGuard, BytesMut), AuthError> {
    let body = frame
        .get(5..)
        .filter(|b| b.len() >= 8)
        .ok_or(AuthError::UpstreamProtocol)?;
    let upstream = BackendKey {
        pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
        secret: body[4..].to_vec(),
    };
    let guard = cancels.register(upstream);
    let mut ours = BytesMut::with_capacity(13);
    ours.put_u8(backend::BACKEND_KEY_DATA);
    ours.put_i32(8 + guard.key.secret.len() as i32);
    ours.put_i32(guard.key.pid);
    ours.put_slice(&guard.key.secret);
    Ok((guard, ours))
}

fn parameter(frame: &[u8]) -> Option<(String, String)> {
    let body = frame.get(5..)?;
    let mut parts = body.split(|&b| b == 0);
    let name = std::str::from_utf8(parts.next()?).ok()?;
    let value = std::str::from_utf8(parts.next()?).ok()?;
    Some((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_plus_is_removed_from_offered_mechanisms() {
        let mut offered = BytesMut::new();
        Authentication::SASL(vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()])
            .encode(&mut offered)
            .unwrap();
        let stripped = without_channel_binding(offered).unwrap();
        let text = String::from_utf8_lossy(&stripped);
        assert!(text.contains("SCRAM-SHA-256\0"));
        assert!(!text.contains("PLUS"));
    }

    #[test]
    fn backend_key_is_replaced_and_registered() {
        let cancels = Arc::new(CancelRegistry::new());
        let mut theirs = BytesMut::new();
        theirs.put_u8(b'K');
        theirs.put_i32(12);
        theirs.put_i32(777);
        theirs.put_i32(0x0102_0304);
        let (guard, ours) = swap_key(&theirs, &cancels).unwrap();
        assert_eq!(ours.len(), 13);
        let pid = i32::from_be_bytes([ours[5], ours[6], ours[7], ours[8]]);
        assert_eq!(pid, 777);
        assert_eq!(pid, guard.key.pid);
        let upstream = cancels.lookup(pid, &ours[9..]).unwrap();
        assert_eq!(upstream.pid, 777);
        assert_eq!(upstream.secret, vec![1, 2, 3, 4]);
    }
}
