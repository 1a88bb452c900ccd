//! How a login fails: the error every step of authentication returns (relayed in `auth`,
//! proxy-side in `login` and `pass_through`), and the refusals those steps send the client.

use tokio::io::AsyncWriteExt;

use crate::net::stream::Stream;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::frame::FrameError;

/// Why a login ended before `ReadyForQuery`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server refused the login; its own error was passed to the client.
    #[error("login refused by the server: {sqlstate} {message}")]
    Refused { sqlstate: String, message: String },
    /// The proxy refused; the client was told.
    #[error("{0}")]
    Unsupported(PgError),
    /// Proxy-side authentication refused the login (wrong password, unknown user, no
    /// verifier to check with); the client was told.
    #[error("login refused by pgshroud: {} {}", .0.code, .0.message)]
    Denied(PgError),
    #[error("{0}")]
    Connect(#[from] crate::net::upstream::UpstreamError),
    #[error("client: {0}")]
    Client(FrameError),
    #[error("client closed the connection during authentication")]
    ClientGone,
    #[error("client sent message type {0:?} during authentication")]
    ClientProtocol(char),
    #[error("upstream: {0}")]
    Upstream(FrameError),
    #[error("upstream closed the connection during authentication")]
    UpstreamGone,
    #[error("upstream sent an invalid authentication message")]
    UpstreamProtocol,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// PostgreSQL's own error for a wrong password.
pub fn wrong_password(user: &str) -> PgError {
    PgError::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Sends `error` to the client and returns it as the login's failure.
pub async fn refuse<T>(client: &mut Stream, error: PgError) -> Result<T, AuthError> {
    client.write_all(&error.to_bytes()).await?;
    client.flush().await?;
    Err(AuthError::Denied(error))
}
