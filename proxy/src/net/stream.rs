//! A byte stream that is either plain TCP or TLS over TCP, and its split into halves that
//! the two relay directions own independently.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The read half of a connection. Plain TCP is its own variant (no box, no dynamic call) so
/// the relay can wait for data before it holds a buffer (see [`ReadHalf::readable`]).
pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(Box<dyn AsyncRead + Send + Unpin>),
}

/// The write half of a connection.
pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(Box<dyn AsyncWrite + Send + Unpin>),
}

impl ReadHalf {
    /// Waits until a read would find data (or the end of the stream), without reading and
    /// without a buffer: an idle session then holds no read memory. A TLS stream may hold
    /// decrypted bytes the socket no longer shows, so it is always "ready": its reader waits
    /// in the read itself.
    pub async fn readable(&mut self) -> std::io::Result<()> {
        match self {
            ReadHalf::Plain(tcp) => tcp.readable().await,
            ReadHalf::Tls(_) => Ok(()),
        }
    }

    /// Whether [`ReadHalf::readable`] really waits (plain TCP).
    pub fn waits_without_buffer(&self) -> bool {
        matches!(self, ReadHalf::Plain(_))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection to a client or to the upstream server.
pub enum Stream {
    Plain(TcpStream),
    ClientTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ServerTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_tls() {
            "Stream(tls)"
        } else {
            "Stream(plain)"
        })
    }
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The subject of the certificate a TLS client presented (verified against
    /// `tls_client_ca_file`), as `x509-parser` prints it: `CN=api.example.com, O=Example`.
    pub fn peer_cert_subject(&self) -> Option<String> {
        let Stream::ClientTls(tls) = self else {
            return None;
        };
        let der = tls.get_ref().1.peer_certificates()?.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(cert.subject().to_string())
    }

    /// The common name of the certificate a TLS client presented (verified against
    /// `tls_client_ca_file`), for `tls_client_cert = "verify-full"`.
    pub fn peer_cert_common_name(&self) -> Option<String> {
        let Stream::ClientTls(tls) = self else {
            return None;
        };
        let der = tls.get_ref().1.peer_certificates()?.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
        Some(name.to_owned())
    }

    /// The upstream server's certificate as SCRAM channel binding data
    /// (`tls-server-end-point`), when this is a TLS connection to the server.
    pub fn server_end_point(&self) -> Option<Vec<u8>> {
        let Stream::ServerTls(tls) = self else {
            return None;
        };
        let der = tls.get_ref().1.peer_certificates()?.first()?;
        Some(crate::auth::scram::tls_server_end_point(der.as_ref()))
    }

    /// Splits into halves; plain TCP splits without a lock.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::ClientTls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (ReadHalf::Tls(Box::new(r)), WriteHalf::Tls(Box::new(w)))
            }
            Stream::ServerTls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (ReadHalf::Tls(Box::new(r)), WriteHalf::Tls(Box::new(w)))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
