//! The untyped packets a client sends before its session starts (SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage): reading them with a size cap, and parsing their bodies.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::types::request;

/// PostgreSQL's own cap on pre-authentication packets (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// A protocol version number as sent in the startup packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One pre-session packet, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    Startup(StartupMessage),
    /// A startup message of a protocol version pgshroud does not speak (e.g. 2.0).
    UnsupportedVersion(ProtocolVersion),
}

/// A `StartupMessage`: the version and the connection parameters (user, database, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub version: ProtocolVersion,
    pub params: BTreeMap<String, String>,
}

impl StartupMessage {
    pub fn user(&self) -> Option<&str> {
        self.params.get("user").map(String::as_str)
    }

    /// The database, defaulting to the user name as PostgreSQL does.
    pub fn database(&self) -> Option<&str> {
        self.params
            .get("database")
            .or_else(|| self.params.get("user"))
            .map(String::as_str)
    }

    /// What the `replication` parameter asks for, read as PostgreSQL reads it.
    pub fn replication(&self) -> Replication {
        match self.params.get("replication").map(String::as_str) {
            None => Replication::No,
            Some("database") => Replication::Logical,
            Some(value) => match parse_bool(value) {
                Some(false) => Replication::No,
                Some(true) => Replication::Physical,
                None => Replication::Invalid,
            },
        }
    }

    /// `_pq_.*` protocol extension options the client asked for; pgshroud supports none.
    pub fn protocol_options(&self) -> Vec<String> {
        self.params
            .keys()
            .filter(|k| k.starts_with("_pq_."))
            .cloned()
            .collect()
    }

    /// The packet to send upstream: always protocol 3.0 and without `_pq_.` options, since the
    /// proxy answered the version negotiation itself.
    pub fn encode_v3(&self) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_u32(3 << 16);
        for (k, v) in self.params.iter().filter(|(k, _)| !k.starts_with("_pq_.")) {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.put_u32(body.len() as u32 + 4);
        out.put_slice(&body);
        out
    }
}

/// The startup packet's `replication` parameter: a walsender instead of a normal backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// No parameter, or a boolean PostgreSQL reads as false: a normal session.
    No,
    /// `database`: a walsender connected to a database (logical replication).
    Logical,
    /// A boolean PostgreSQL reads as true: a physical walsender (base backups, WAL streaming).
    Physical,
    /// A value PostgreSQL refuses; counted as a replication request so that a reading of ours
    /// that differs from the server's can only refuse more.
    Invalid,
}

/// PostgreSQL's `parse_bool`: any case, any prefix of `true`/`false`/`yes`/`no` (at least one
/// letter), of `on`/`off` (at least two), and `1`/`0`; no surrounding spaces.
fn parse_bool(value: &str) -> Option<bool> {
    let lower = value.to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| lower.len() >= min && word.starts_with(&lower);
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || lower == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || lower == "0" {
        Some(false)
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    BadLength(u32),
    #[error("invalid startup packet layout: {0}")]
    BadLayout(&'static str),
    #[error("connection closed before the startup packet")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one length-prefixed pre-session packet, refusing lengths PostgreSQL would refuse.
pub async fn read_packet<R: AsyncRead + Unpin>(io: &mut R) -> Result<StartupPacket, StartupError> {
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(StartupError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if !(8..=MAX_STARTUP_PACKET as u32).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    // Read exactly the packet: nothing after it may be buffered before a TLS handshake.
    let mut body = vec![0u8; len as usize - 4];
    io.read_exact(&mut body).await?;
    parse_packet(&body)
}

/// Parses a packet body (everything after the length word).
pub fn parse_packet(body: &[u8]) -> Result<StartupPacket, StartupError> {
    if body.len() < 4 {
        return Err(StartupError::BadLayout(
            "packet shorter than its request code",
        ));
    }
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    match code {
        request::SSL => Ok(StartupPacket::SslRequest),
        request::GSSENC => Ok(StartupPacket::GssEncRequest),
        request::CANCEL => {
            if rest.len() < 8 {
                return Err(StartupError::BadLayout("cancel request too short"));
            }
            let pid = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            Ok(StartupPacket::Cancel {
                pid,
                secret: rest[4..].to_vec(),
            })
        }
        _ => {
            let version = ProtocolVersion {
                major: (code >> 16) as u16,
                minor: (code & 0xffff) as u16,
            };
            if version.major != 3 {
                return Ok(StartupPacket::UnsupportedVersion(version));
            }
            Ok(StartupPacket::Startup(StartupMessage {
                version,
                params: parse_params(rest)?,
            }))
        }
    }
}

fn parse_params(mut rest: &[u8]) -> Result<BTreeMap<String, String>, StartupError> {
    let mut params = BTreeMap::new();
    loop {
        let (key, after) = cstring(rest)?;
        if key.is_empty() {
            if !after.is_empty() {
                return Err(StartupError::BadLayout("bytes after the final terminator"));
            }
            return Ok(params);
        }
        let (value, after) = cstring(after)?;
        params.insert(key, value);
        rest = after;
    }
}

fn cstring(buf: &[u8]) -> Result<(String, &[u8]), StartupError> {
    let end = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(StartupError::BadLayout("missing terminator"))?;
    let s = std::str::from_utf8(&buf[..end])
        .map_err(|_| StartupError::BadLayout("parameter is not valid UTF-8"))?;
    Ok((s.to_owned(), &buf[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        body
    }

    #[test]
    fn startup_message_parameters_are_parsed() {
        let body = startup(3 << 16, &[("user", "app"), ("database", "shop")]);
        let StartupPacket::Startup(m) = parse_packet(&body).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.user(), Some("app"));
        assert_eq!(m.database(), Some("shop"));
    }

    #[test]
    fn database_defaults_to_user() {
        let body = startup(3 << 16, &[("user", "app")]);
        let StartupPacket::Startup(m) = parse_packet(&body).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.database(), Some("app"));
    }

    #[test]
    fn protocol_two_is_reported_as_unsupported() {
        let body = startup(2 << 16, &[]);
        assert_eq!(
            parse_packet(&body).unwrap(),
            StartupPacket::UnsupportedVersion(ProtocolVersion { major: 2, minor: 0 })
        );
    }

    #[test]
    fn upstream_packet_is_downgraded_to_3_0_without_pq_options() {
        let body = startup((3 << 16) | 2, &[("user", "app"), ("_pq_.something", "on")]);
        let StartupPacket::Startup(m) = parse_packet(&body).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.protocol_options(), vec!["_pq_.something".to_owned()]);
        let encoded = m.encode_v3();
        let StartupPacket::Startup(again) = parse_packet(&encoded[4..]).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(again.version, ProtocolVersion { major: 3, minor: 0 });
        assert!(again.protocol_options().is_empty());
        assert_eq!(again.user(), Some("app"));
    }

    #[test]
    fn replication_is_read_as_postgresql_reads_it() {
        let read = |value: Option<&str>| {
            let mut params = vec![("user", "app")];
            params.extend(value.map(|v| ("replication", v)));
            let StartupPacket::Startup(m) = parse_packet(&startup(3 << 16, &params)).unwrap()
            else {
                panic!("not a startup message")
            };
            m.replication()
        };
        assert_eq!(read(None), Replication::No);
        assert_eq!(read(Some("database")), Replication::Logical);
        for yes in ["true", "TRUE", "t", "Tr", "on", "ON", "yes", "y", "YE", "1"] {
            assert_eq!(read(Some(yes)), Replication::Physical, "{yes}");
        }
        for no in ["false", "F", "off", "OFF", "no", "n", "0"] {
            assert_eq!(read(Some(no)), Replication::No, "{no}");
        }
        for odd in ["", "o", "Database", " true", "true ", "truex", "2", "10"] {
            assert_eq!(read(Some(odd)), Replication::Invalid, "{odd:?}");
        }
    }

    #[test]
    fn cancel_request_carries_pid_and_secret() {
        let mut body = request::CANCEL.to_be_bytes().to_vec();
        body.extend_from_slice(&42i32.to_be_bytes());
        body.extend_from_slice(&7i32.to_be_bytes());
        assert_eq!(
            parse_packet(&body).unwrap(),
            StartupPacket::Cancel {
                pid: 42,
                secret: 7i32.to_be_bytes().to_vec()
            }
        );
    }

    #[test]
    fn unterminated_parameters_are_rejected() {
        let mut body = (3u32 << 16).to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0app");
        assert!(parse_packet(&body).is_err());
    }

    #[tokio::test]
    async fn oversized_startup_packet_is_refused() {
        let wire = 20_000u32.to_be_bytes();
        let mut io = &wire[..];
        assert!(matches!(
            read_packet(&mut io).await,
            Err(StartupError::BadLength(20_000))
        ));
    }
}
