//! Opening connections to the upstream PostgreSQL server: TCP, then TLS as `sslmode` says.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::Stream;
use crate::net::upstream_url::{SslMode, UpstreamUrl};
use crate::protocol::types::request;

/// Everything needed to reach the upstream server, built once at start-up.
#[derive(Debug)]
pub struct Upstream {
    pub url: UpstreamUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection to {0} timed out")]
    Timeout(String),
    #[error("connection to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("server at {0} does not support SSL, but sslmode={1}")]
    TlsRefused(String, &'static str),
    #[error("server at {0} sent {1:#04x} in answer to SSLRequest")]
    BadTlsAnswer(String, u8),
    #[error("TLS handshake with {0} failed: {1}")]
    Handshake(String, std::io::Error),
    #[error("invalid upstream host name for TLS: {0}")]
    ServerName(String),
}

impl Upstream {
    pub fn new(url: UpstreamUrl) -> Result<Upstream, String> {
        let tls = super::tls::upstream_config(url.sslmode, url.ca_file.as_deref())?;
        Ok(Upstream { url, tls })
    }

    /// The TLS configuration towards the server (`None` for sslmode=disable), for other
    /// connections to the same server (the auth_query's).
    pub fn tls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// Connects, negotiating TLS when the mode asks for it.
    pub async fn connect(&self) -> Result<Stream, UpstreamError> {
        let addr = self.url.address();
        let tcp = tokio::time::timeout(self.url.connect_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| UpstreamError::Timeout(addr.clone()))?
            .map_err(|e| UpstreamError::Connect(addr.clone(), e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(config) => self.start_tls(tcp, config.clone(), addr).await,
        }
    }

    async fn start_tls(
        &self,
        mut tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        addr: String,
    ) -> Result<Stream, UpstreamError> {
        let io_err = |e| UpstreamError::Connect(addr.clone(), e);
        let mut ssl_request = [0u8; 8];
        ssl_request[..4].copy_from_slice(&8u32.to_be_bytes());
        ssl_request[4..].copy_from_slice(&request::SSL.to_be_bytes());
        tcp.write_all(&ssl_request).await.map_err(io_err)?;
        let answer = tcp.read_u8().await.map_err(io_err)?;
        match answer {
            b'S' => {}
            b'N' if self.url.sslmode == SslMode::Prefer => return Ok(Stream::Plain(tcp)),
            b'N' => return Err(UpstreamError::TlsRefused(addr, self.url.sslmode.as_str())),
            other => return Err(UpstreamError::BadTlsAnswer(addr, other)),
        }
        let name = ServerName::try_from(self.url.host.clone())
            .map_err(|_| UpstreamError::ServerName(self.url.host.clone()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamError::Handshake(addr, e))?;
        Ok(Stream::ServerTls(Box::new(tls)))
    }
}
