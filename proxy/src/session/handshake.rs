//! The pre-session exchange with a client: SSL/GSS negotiation (TLS when configured, also
//! PostgreSQL 17's direct TLS), then the startup or cancel packet, and the refusals that
//! follow from how the client came and what its startup packet asks for.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::TlsFiles;
use crate::net::stream::Stream;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::startup::{
    read_packet, Replication, StartupError, StartupMessage, StartupPacket,
};

/// How a client's connection continues.
#[derive(Debug)]
pub enum Handshake {
    Session {
        client: Stream,
        startup: StartupMessage,
    },
    /// A CancelRequest; the client's connection stays open until it has been handled.
    Cancel {
        client: Stream,
        pid: i32,
        secret: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("client sent a second SSLRequest inside TLS")]
    RepeatedSslRequest,
    /// The client is told why (the error is sent before closing).
    #[error("{0}")]
    Refused(PgError),
}

/// TLS record type byte of a ClientHello: a client using direct TLS starts with it.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

pub async fn negotiate(
    tcp: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<Handshake, HandshakeError> {
    let mut first = [0u8; 1];
    let direct_tls = tcp.peek(&mut first).await.map_err(StartupError::Io)? == 1
        && first[0] == TLS_HANDSHAKE_RECORD;
    let mut stream = match (direct_tls, tls) {
        (true, Some(config)) => accept_tls(tcp, config).await?,
        _ => Stream::Plain(tcp),
    };
    loop {
        match read_packet(&mut stream).await? {
            StartupPacket::SslRequest => {
                if stream.is_tls() {
                    return Err(HandshakeError::RepeatedSslRequest);
                }
                stream = match (stream, tls) {
                    (Stream::Plain(mut tcp), Some(config)) => {
                        tcp.write_all(b"S").await.map_err(StartupError::Io)?;
                        accept_tls(tcp, config).await?
                    }
                    (mut other, _) => {
                        other.write_all(b"N").await.map_err(StartupError::Io)?;
                        other
                    }
                };
            }
            StartupPacket::GssEncRequest => {
                stream.write_all(b"N").await.map_err(StartupError::Io)?;
            }
            StartupPacket::Cancel { pid, secret } => {
                return Ok(Handshake::Cancel {
                    client: stream,
                    pid,
                    secret,
                })
            }
            StartupPacket::UnsupportedVersion(v) => {
                let error = PgError::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("unsupported frontend protocol {v}: server supports 3.0 to 3.0"),
                );
                send_and_close(&mut stream, &error).await;
                return Err(HandshakeError::Refused(error));
            }
            StartupPacket::Startup(startup) => {
                if startup.user().is_none_or(str::is_empty) {
                    let error = PgError::fatal(
                        sqlstate::INVALID_AUTHORIZATION,
                        "no PostgreSQL user name specified in startup packet",
                    );
                    send_and_close(&mut stream, &error).await;
                    return Err(HandshakeError::Refused(error));
                }
                return Ok(Handshake::Session {
                    client: stream,
                    startup,
                });
            }
        }
    }
}

/// `tls_client_sslmode = "require"` (the default with a certificate): a client without TLS
/// is refused before anything else, never turned into a TLS session upstream (PostgreSQL's
/// `hostssl` lines would otherwise admit a client that sent its password in the clear).
pub fn require_tls(
    client: &Stream,
    startup: &StartupMessage,
    tls: Option<&TlsFiles>,
) -> Result<(), PgError> {
    match tls {
        Some(files) if !client.is_tls() && !files.sslmode.accepts_plaintext() => {
            Err(PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "pgshroud accepts only TLS connections: user \"{}\", database \"{}\", no encryption",
                    startup.user().unwrap_or_default(),
                    startup.database().unwrap_or_default()
                ),
            )
            .with_hint("Connect with sslmode=require (or verify-full)."))
        }
        _ => Ok(()),
    }
}

/// Replication connections (`replication` in the startup packet, any spelling PostgreSQL
/// accepts, and any it refuses) only for the users in `replication_users`: a base backup or a
/// logical slot streams every stored envelope past the statement analysis.
pub fn check_replication(startup: &StartupMessage, allowed: &[String]) -> Result<(), PgError> {
    let user = startup.user().unwrap_or_default();
    match startup.replication() {
        Replication::No => Ok(()),
        _ if allowed.iter().any(|u| u == user) => Ok(()),
        _ => Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("pgshroud does not relay replication connections for user \"{user}\""),
        )
        .with_hint(
            "Replication streams every stored value past pgshroud's analysis; list the user in replication_users to allow it.",
        )),
    }
}

async fn accept_tls(
    tcp: TcpStream,
    config: &Arc<rustls::ServerConfig>,
) -> Result<Stream, HandshakeError> {
    let tls = tokio_rustls::TlsAcceptor::from(config.clone())
        .accept(tcp)
        .await
        .map_err(HandshakeError::Tls)?;
    Ok(Stream::ClientTls(Box::new(tls)))
}

/// Sends an error and closes, ignoring a client that is already gone.
pub async fn send_and_close(stream: &mut Stream, error: &PgError) {
    let _ = stream.write_all(&error.to_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}
