//! A hand-rolled client for the protocol corners real drivers never produce (malformed
//! messages, old protocol versions, oversized messages).

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw connection to the proxy.
pub struct RawClient {
    pub stream: TcpStream,
}

/// One backend message: type byte and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// A field (e.g. b'C' for the SQLSTATE) of an ErrorResponse/NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&kind, after)) = rest.split_first() {
            if kind == 0 {
                return None;
            }
            let end = after.iter().position(|&b| b == 0)?;
            if kind == code {
                return Some(String::from_utf8_lossy(&after[..end]).into_owned());
            }
            rest = &after[end + 1..];
        }
        None
    }
}

pub fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u32(version);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = (body.len() as u32 + 4).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        RawClient {
            stream: TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to proxy"),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads one message; `None` when the connection is closed.
    pub async fn recv(&mut self) -> Option<Msg> {
        let kind = self.stream.read_u8().await.ok()?;
        let len = self.stream.read_u32().await.ok()? as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Msg { kind, body })
    }

    /// Reads messages up to and including ReadyForQuery (or until closed).
    pub async fn recv_until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            let done = m.kind == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Startup as a trust-authenticated user, through to the first ReadyForQuery.
    pub async fn login_trust(port: u16, user: &str, db: &str) -> RawClient {
        let mut c = RawClient::connect(port).await;
        c.send(&startup_packet(
            3 << 16,
            &[("user", user), ("database", db)],
        ))
        .await;
        let msgs = c.recv_until_ready().await;
        assert_eq!(
            msgs.last().map(|m| m.kind),
            Some(b'Z'),
            "login failed: {msgs:?}"
        );
        c
    }

    /// Logs in as a trust user and returns the connection with its BackendKeyData (pid,
    /// secret).
    pub async fn login_trust_with_key(
        port: u16,
        user: &str,
        db: &str,
    ) -> (RawClient, i32, Vec<u8>) {
        let mut c = RawClient::connect(port).await;
        c.send(&startup_packet(
            3 << 16,
            &[("user", user), ("database", db)],
        ))
        .await;
        let msgs = c.recv_until_ready().await;
        let key = msgs
            .iter()
            .find(|m| m.kind == b'K')
            .unwrap_or_else(|| panic!("no BackendKeyData: {msgs:?}"));
        let pid = i32::from_be_bytes([key.body[0], key.body[1], key.body[2], key.body[3]]);
        (c, pid, key.body[4..].to_vec())
    }

    /// Opens a connection to `port` and sends a CancelRequest for `(pid, secret)` on it; the
    /// connection is returned open (the proxy closes it once the server took the request).
    pub async fn send_cancel(port: u16, pid: i32, secret: &[u8]) -> tokio::net::TcpStream {
        let mut cancel = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("cancel connection");
        let mut packet = ((12 + secret.len()) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&80_877_102u32.to_be_bytes());
        packet.extend_from_slice(&pid.to_be_bytes());
        packet.extend_from_slice(secret);
        cancel
            .write_all(&packet)
            .await
            .expect("cancel request sent");
        cancel
    }

    /// Whether the server closed the connection (reads hit end of stream).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte).await, Ok(0) | Err(_))
    }
}

/// Extended-protocol messages, built by hand so tests can order (and break) them at will.
pub mod build {
    use super::message;

    /// Parse with no declared parameter types.
    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    /// Bind with text parameters and text results.
    pub fn bind(portal: &str, statement: &str, params: &[&str]) -> Vec<u8> {
        let mut body = format!("{portal}\0{statement}\0").into_bytes();
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&(params.len() as u16).to_be_bytes());
        for p in params {
            body.extend_from_slice(&(p.len() as i32).to_be_bytes());
            body.extend_from_slice(p.as_bytes());
        }
        body.extend_from_slice(&0u16.to_be_bytes());
        message(b'B', &body)
    }

    /// Execute of `portal` without a row limit.
    pub fn execute(portal: &str) -> Vec<u8> {
        message(b'E', format!("{portal}\0\0\0\0\0").as_bytes())
    }

    pub fn close_statement(name: &str) -> Vec<u8> {
        message(b'C', format!("S{name}\0").as_bytes())
    }

    pub fn sync() -> Vec<u8> {
        message(b'S', b"")
    }

    pub fn query(sql: &str) -> Vec<u8> {
        message(b'Q', format!("{sql}\0").as_bytes())
    }

    /// Several messages sent as one write (one pipeline).
    pub fn pipeline(messages: &[Vec<u8>]) -> Vec<u8> {
        messages.concat()
    }
}

/// The SQLSTATEs of the ErrorResponses among `msgs`, in order.
pub fn error_codes(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.kind == b'E')
        .map(|m| m.field(b'C').unwrap_or_default())
        .collect()
}
