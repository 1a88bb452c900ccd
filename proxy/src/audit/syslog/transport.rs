//! The connection to the collector: TCP or TLS, opened with a time limit, and the check that
//! notices a collector that went away between messages.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::config::syslog::{SyslogSettings, Transport};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A collector that accepts no data for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens connections to the collector.
pub(super) struct Connector {
    pub(super) address: String,
    host: String,
    port: u16,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Connector {
    pub(super) fn new(settings: &SyslogSettings) -> Result<Connector, String> {
        let tls = match &settings.transport {
            Transport::Tcp => None,
            Transport::Tls {
                ca_file,
                client_cert,
                server_name,
            } => {
                let config = crate::net::tls::syslog_client_config(
                    ca_file,
                    client_cert
                        .as_ref()
                        .map(|(c, k)| (c.as_path(), k.as_path())),
                )?;
                let name = ServerName::try_from(server_name.clone())
                    .map_err(|_| format!("`{server_name}` is not a valid server name"))?;
                Some((config, name))
            }
        };
        Ok(Connector {
            address: settings.address(),
            host: settings.host.clone(),
            port: settings.port,
            tls,
        })
    }

    pub(super) fn connect(&self) -> std::io::Result<Connection> {
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the host resolves to nothing");
        let mut socket = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let socket = socket.ok_or(last)?;
        socket.set_nodelay(true)?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let Some((config, name)) = &self.tls else {
            return Ok(Connection::Tcp(socket));
        };
        socket.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        let conn = ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, socket);
        // Finish the handshake now, so a certificate the collector cannot prove is reported
        // as such instead of as a failed write.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        stream.sock.set_read_timeout(None)?;
        Ok(Connection::Tls(Box::new(stream)))
    }
}

pub(super) enum Connection {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Connection {
    pub(super) fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Tcp(s) => s.write_all(frame),
            Connection::Tls(s) => {
                s.write_all(frame)?;
                s.flush()
            }
        }
    }

    /// Whether the collector has closed or reset the connection. A syslog collector sends
    /// nothing, so end of stream, an error or a TLS close_notify waiting to be read means it
    /// went away (a restart); checked before each message so that message is not written
    /// into a dead connection and lost.
    pub(super) fn peer_gone(&mut self) -> bool {
        let socket = match self {
            Connection::Tcp(s) => s,
            Connection::Tls(s) => &mut s.sock,
        };
        if socket.set_nonblocking(true).is_err() {
            return true;
        }
        let gone = match self {
            Connection::Tcp(s) => tcp_gone(s),
            Connection::Tls(s) => tls_gone(s),
        };
        let socket = match self {
            Connection::Tcp(s) => s,
            Connection::Tls(s) => &mut s.sock,
        };
        gone || socket.set_nonblocking(false).is_err()
    }
}

pub(super) fn tcp_gone(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

pub(super) fn tls_gone(stream: &mut StreamOwned<ClientConnection, TcpStream>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.conn.read_tls(&mut stream.sock) {
            Ok(0) => return true,
            Ok(_) => match stream.conn.process_new_packets() {
                Ok(state) if state.peer_has_closed() => return true,
                // Session tickets and the like: read and ignore any data.
                Ok(_) => {
                    while let Ok(n @ 1..) = stream.conn.reader().read(&mut buf) {
                        let _ = n;
                    }
                }
                Err(_) => return true,
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}
