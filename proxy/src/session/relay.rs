//! The relay: two independent pumps, client -> server and server -> client, each forwarding
//! every whole buffered message in one write. Running them side by side (not one loop) means
//! a server blocked on a full socket can never deadlock a client that is still sending.
//! Whether the session is idle is the statement path's to say: it holds the one record of the
//! replies the server still owes.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::context::shutdown::{ShutdownWatch, Stage};
use crate::net::stream::{ReadHalf, WriteHalf};
use crate::ops::metrics::{Direction, Metrics};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::fields;
use crate::protocol::frame::{check_frame, FrameBuffer, FrameCheck};
use crate::protocol::types::{backend, frontend};
use crate::session::statement_path::{StatementPath, Verdict};

/// PostgreSQL never sends a message over 1 GiB.
pub const MAX_SERVER_MESSAGE: usize = 1 << 30;

/// Why a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client closed the connection or sent Terminate (already forwarded).
    ClientClosed {
        terminated: bool,
    },
    /// The client broke the protocol; it gets this error before the connection closes.
    ClientProtocol(PgError),
    ClientIo(std::io::Error),
    IdleTimeout,
    Shutdown,
    /// The statement path ended the session: a limit of the caller's role (`max_rows` with
    /// `enforce = true`), a stored value that did not decrypt, or state it could not trust.
    Enforced(PgError),
    /// The server went away; `told_client` when its own FATAL error was forwarded.
    UpstreamClosed {
        reason: String,
        told_client: bool,
    },
}

/// One direction's reader and buffer.
pub struct Inbound {
    pub rd: ReadHalf,
    pub buf: FrameBuffer,
}

/// Client -> server.
pub async fn client_to_server(
    mut client: Inbound,
    server: &mut WriteHalf,
    path: &mut StatementPath,
    idle_timeout: Option<Duration>,
    mut shutdown: ShutdownWatch,
    metrics: &Metrics,
) -> RelayEnd {
    let mut watching_shutdown = true;
    loop {
        let (out, stop) = take_client_messages(&mut client.buf, path);
        if !out.is_empty() {
            if let Err(e) = write_out(server, &out).await {
                return RelayEnd::UpstreamClosed {
                    reason: e.to_string(),
                    told_client: false,
                };
            }
            metrics.bytes(Direction::ClientToServer, out.len());
        }
        if let Some(stop) = stop {
            return stop;
        }
        drop(out);
        let idle = async {
            match idle_timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = client.buf.fill(&mut client.rd) => match read {
                Ok(true) => {}
                Ok(false) => return RelayEnd::ClientClosed { terminated: false },
                Err(e) => return RelayEnd::ClientIo(std::io::Error::other(e.to_string())),
            },
            changed = shutdown.changed(), if watching_shutdown => {
                watching_shutdown = changed.is_ok();
                let draining = *shutdown.borrow_and_update() >= Stage::Draining;
                if draining && path.idle_outside_transaction() {
                    return RelayEnd::Shutdown;
                }
            }
            _ = idle => if path.idle() {
                return RelayEnd::IdleTimeout;
            },
        }
    }
}

/// Splits off every whole buffered client message, passing each through the statement path.
/// Returns the bytes to send upstream and, when the relay must stop, why.
fn take_client_messages(
    buf: &mut FrameBuffer,
    path: &mut StatementPath,
) -> (BytesMut, Option<RelayEnd>) {
    let mut out = BytesMut::new();
    loop {
        match check_frame(&buf.buf, buf.max_len) {
            FrameCheck::Complete(n) => {
                let kind = buf.buf[0];
                if !frontend::is_known(kind) {
                    let error = PgError::protocol_violation(format!(
                        "invalid frontend message type {kind}"
                    ));
                    return (out, Some(RelayEnd::ClientProtocol(error)));
                }
                let frame = buf.buf.split_to(n);
                match path.client_message(&frame) {
                    Verdict::Forward => append(&mut out, frame),
                    Verdict::Replace(bytes) => append(&mut out, bytes),
                    Verdict::Drop => {}
                    // A message the statement path could not read.
                    Verdict::End(error) if error.code == sqlstate::PROTOCOL_VIOLATION => {
                        return (out, Some(RelayEnd::ClientProtocol(error)))
                    }
                    Verdict::End(error) => return (out, Some(RelayEnd::Enforced(error))),
                }
                if kind == frontend::TERMINATE {
                    return (out, Some(RelayEnd::ClientClosed { terminated: true }));
                }
            }
            FrameCheck::Incomplete(total) => {
                if let Some(total) = total {
                    buf.buf.reserve(total - buf.buf.len());
                }
                return (out, None);
            }
            FrameCheck::TooLarge(size) => {
                let error = PgError::message_too_large(size, buf.max_len);
                return (out, Some(RelayEnd::ClientProtocol(error)));
            }
            FrameCheck::BadLength(len) => {
                let error = PgError::protocol_violation(format!("invalid message length {len}"));
                return (out, Some(RelayEnd::ClientProtocol(error)));
            }
        }
    }
}

/// Server -> client.
pub async fn server_to_client(
    mut server: Inbound,
    client: &mut WriteHalf,
    path: &mut ServerPath,
    statements: &mut StatementPath,
    shutdown: ShutdownWatch,
    metrics: &Metrics,
) -> RelayEnd {
    loop {
        let (out, stop) = take_server_messages(&mut server.buf, path, statements);
        if !out.is_empty() {
            if let Err(e) = write_out(client, &out).await {
                return RelayEnd::ClientIo(e);
            }
            metrics.bytes(Direction::ServerToClient, out.len());
        }
        if let Some(stop) = stop {
            return stop;
        }
        drop(out);
        if *shutdown.borrow() >= Stage::Draining && statements.idle_outside_transaction() {
            return RelayEnd::Shutdown;
        }
        match server.buf.fill(&mut server.rd).await {
            Ok(true) => {}
            Ok(false) => {
                return RelayEnd::UpstreamClosed {
                    reason: "server closed the connection".into(),
                    told_client: path.told_client_fatal,
                }
            }
            Err(e) => {
                return RelayEnd::UpstreamClosed {
                    reason: e.to_string(),
                    told_client: path.told_client_fatal,
                }
            }
        }
    }
}

/// Per-session state of the server -> client direction.
#[derive(Debug, Default)]
pub struct ServerPath {
    /// The server's own FATAL error already reached the client.
    pub told_client_fatal: bool,
}

fn take_server_messages(
    buf: &mut FrameBuffer,
    path: &mut ServerPath,
    statements: &mut StatementPath,
) -> (BytesMut, Option<RelayEnd>) {
    let mut out = BytesMut::new();
    loop {
        match check_frame(&buf.buf, buf.max_len) {
            FrameCheck::Complete(n) => {
                let frame = buf.buf.split_to(n);
                if frame[0] == backend::ERROR_RESPONSE && fields::is_fatal(&frame) {
                    path.told_client_fatal = true
                }
                match statements.server_message(&frame) {
                    Verdict::Forward => append(&mut out, frame),
                    Verdict::Replace(bytes) => append(&mut out, bytes),
                    Verdict::Drop => {}
                    Verdict::End(error) => return (out, Some(RelayEnd::Enforced(error))),
                }
            }
            FrameCheck::Incomplete(total) => {
                if let Some(total) = total {
                    buf.buf.reserve(total - buf.buf.len());
                }
                return (out, None);
            }
            FrameCheck::TooLarge(_) | FrameCheck::BadLength(_) => {
                let stop = RelayEnd::UpstreamClosed {
                    reason: "server sent a malformed message".into(),
                    told_client: false,
                };
                return (out, Some(stop));
            }
        }
    }
}

/// Appends `frame`; consecutive frames split from one buffer rejoin without copying.
fn append(out: &mut BytesMut, frame: BytesMut) {
    if out.is_empty() {
        *out = frame;
    } else {
        out.unsplit(frame);
    }
}

async fn write_out(w: &mut WriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}
