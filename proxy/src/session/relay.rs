//! The relay: two independent pumps, client -> server and server -> client, each forwarding
//! every whole buffered message in one write. Running them side by side (not one loop) means
//! a server blocked on a full socket can never deadlock a client that is still sending.
//! Whether the session is idle is the statement path's to say: it holds the one record of the
//! replies the server still owes. Shutdown is the session's to watch (`session::relay`, one
//! wait per stage); the server pump reads only the `draining` flag it sets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::net::stream::{ReadHalf, WriteHalf};
use crate::ops::metrics::{Direction, Metrics};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::fields;
use crate::protocol::frame::{check_frame, FrameBuffer, FrameCheck, HEADER_LEN};
use crate::protocol::types::{backend, frontend};
use crate::session::outgoing::Outgoing;
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

/// Most a client's message header can make the relay reserve before the bytes arrive: a
/// header claiming `max_message_size` (256 MiB) and then silence reserved all of it at once,
/// per connection. Past this the buffer grows as the body comes (doubling, so still linear).
const RESERVE_AHEAD: usize = 1 << 20;

/// Bytes one direction forwards between turns it gives the other sessions of its thread.
const TURN_BYTES: usize = 64 * 1024;

/// Fairness on a session thread (a single-threaded runtime): a direction that always has
/// data (a large COPY or result) would otherwise keep the thread, because tokio polls the
/// I/O driver only every `event_interval` task polls while a task stays ready: another
/// session's login or `SELECT 1` waited seconds behind one `COPY ... TO STDOUT`, and a
/// CancelRequest arrived after the COPY it was meant to stop (psycopg's
/// test_copy_out_error_with_copy_not_finished). `yield_now` defers the task until the driver
/// has been polled. Small transactions reach the threshold once per thousands of them.
#[derive(Default)]
struct Turns {
    since_yield: usize,
}

impl Turns {
    async fn forwarded(&mut self, n: usize) {
        self.since_yield += n;
        if self.since_yield >= TURN_BYTES {
            self.since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// One direction's reader and buffer.
pub struct Inbound {
    pub rd: ReadHalf,
    pub buf: FrameBuffer,
}

impl Inbound {
    /// Reads more bytes; `Ok(false)` on end of stream. When everything read so far has been
    /// sent on, the buffer's memory goes back to the allocator while the read waits for data
    /// (plain TCP), and is taken again once data is there: thousands of idle sessions then
    /// hold no read buffers (issue 25's idle-memory target). A busy session pays one small
    /// allocation per read, which the allocator's thread cache serves.
    async fn fill(&mut self) -> Result<bool, crate::protocol::frame::FrameError> {
        if self.buf.buf.is_empty() && self.rd.waits_without_buffer() {
            self.buf.release();
            self.rd.readable().await?;
        }
        self.buf.fill(&mut self.rd).await
    }
}

/// Client -> server.
pub async fn client_to_server(
    mut client: Inbound,
    server: &mut WriteHalf,
    path: &StatementPath,
    idle_timeout: Option<Duration>,
    metrics: &Metrics,
) -> RelayEnd {
    let mut out = Outgoing::default();
    let mut turns = Turns::default();
    loop {
        let (want, stop, held) = take_client_messages(&client.buf, path, &mut out);
        let bytes = out.bytes(&client.buf.buf);
        if !bytes.is_empty() {
            if let Err(e) = write_out(server, bytes).await {
                return RelayEnd::UpstreamClosed {
                    reason: e.to_string(),
                    told_client: false,
                };
            }
            metrics.bytes(Direction::ClientToServer, bytes.len());
            turns.forwarded(bytes.len()).await;
        }
        if let Some(stop) = stop {
            return stop;
        }
        out.sent(&mut client.buf.buf);
        if let Some(more) = want {
            client.buf.buf.reserve(more.min(RESERVE_AHEAD));
        }
        if held {
            // A statement waits for the catalog look-up sent ahead of it (or one in flight):
            // its answer, read by the other pump, releases it.
            // (Shutdown is the session's to watch: see `session::relay`.)
            path.released().await;
            continue;
        }
        // Boxed, and only with a timeout set: a timer held inline would size every idle
        // session's task whether or not `idle_timeout_secs` is on.
        let idle = async {
            match idle_timeout {
                Some(d) => Box::pin(tokio::time::sleep(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = client.fill() => match read {
                Ok(true) => {}
                Ok(false) => return RelayEnd::ClientClosed { terminated: false },
                Err(e) => return RelayEnd::ClientIo(std::io::Error::other(e.to_string())),
            },
            _ = idle => if path.idle() {
                return RelayEnd::IdleTimeout;
            },
        }
    }
}

/// Takes every whole buffered client message into `out`, passing each through the statement
/// path (locked once for them all). Returns the room still wanted for a message read in part,
/// when the relay must stop, why, and whether a message waits for a catalog look-up.
fn take_client_messages(
    buf: &FrameBuffer,
    path: &StatementPath,
    out: &mut Outgoing,
) -> (Option<usize>, Option<RelayEnd>, bool) {
    let (want, stop) = take_client_messages_until_held(buf, path, out);
    match stop {
        Some(Stop::Held) => (want, None, true),
        Some(Stop::End(end)) => (want, Some(end), false),
        None => (want, None, false),
    }
}

/// Why taking client messages stopped before the buffer's end.
enum Stop {
    End(RelayEnd),
    Held,
}

impl From<RelayEnd> for Stop {
    fn from(end: RelayEnd) -> Stop {
        Stop::End(end)
    }
}

fn take_client_messages_until_held(
    buf: &FrameBuffer,
    path: &StatementPath,
    out: &mut Outgoing,
) -> (Option<usize>, Option<Stop>) {
    let read = &buf.buf[..];
    if read.len() < HEADER_LEN {
        return (None, None);
    }
    let mut statements = match path.lock() {
        Ok(guard) => guard,
        Err(error) => return (None, Some(RelayEnd::Enforced(error).into())),
    };
    loop {
        let at = out.taken();
        match check_frame(&read[at..], buf.max_len) {
            FrameCheck::Complete(n) => {
                let kind = read[at];
                if !frontend::is_known(kind) {
                    let error = PgError::protocol_violation(format!(
                        "invalid frontend message type {kind}"
                    ));
                    return (None, Some(RelayEnd::ClientProtocol(error).into()));
                }
                if let Some(ahead) = statements.hold_before(&read[at..at + n]) {
                    if !ahead.is_empty() {
                        out.replace(read, at, at, &ahead);
                    }
                    return (None, Some(Stop::Held));
                }
                match statements.client_message(&read[at..at + n]) {
                    Verdict::Forward => out.forward(read, at, at + n),
                    Verdict::Replace(bytes) => out.replace(read, at, at + n, &bytes),
                    Verdict::Drop => out.replace(read, at, at + n, &[]),
                    // A message the statement path could not read.
                    Verdict::End(error) if error.code == sqlstate::PROTOCOL_VIOLATION => {
                        return (None, Some(RelayEnd::ClientProtocol(error).into()))
                    }
                    Verdict::End(error) => return (None, Some(RelayEnd::Enforced(error).into())),
                }
                if kind == frontend::TERMINATE {
                    return (
                        None,
                        Some(RelayEnd::ClientClosed { terminated: true }.into()),
                    );
                }
            }
            FrameCheck::Incomplete(total) => {
                return (total.map(|t| t - (read.len() - at)), None);
            }
            FrameCheck::TooLarge(size) => {
                let error = PgError::message_too_large(size, buf.max_len);
                return (None, Some(RelayEnd::ClientProtocol(error).into()));
            }
            FrameCheck::BadLength(len) => {
                let error = PgError::protocol_violation(format!("invalid message length {len}"));
                return (None, Some(RelayEnd::ClientProtocol(error).into()));
            }
        }
    }
}

/// Server -> client.
pub async fn server_to_client(
    mut server: Inbound,
    client: &mut WriteHalf,
    path: &mut ServerPath,
    statements: &StatementPath,
    draining: &AtomicBool,
    metrics: &Metrics,
) -> RelayEnd {
    let mut out = Outgoing::default();
    let mut turns = Turns::default();
    loop {
        let (want, stop) = take_server_messages(&server.buf, path, statements, &mut out);
        let bytes = out.bytes(&server.buf.buf);
        if !bytes.is_empty() {
            if let Err(e) = write_out(client, bytes).await {
                return RelayEnd::ClientIo(e);
            }
            metrics.bytes(Direction::ServerToClient, bytes.len());
            turns.forwarded(bytes.len()).await;
        }
        if let Some(stop) = stop {
            return stop;
        }
        out.sent(&mut server.buf.buf);
        if let Some(more) = want {
            server.buf.buf.reserve(more);
        }
        // Set by the session once shutdown drains: a plain load, not the watch's lock.
        if draining.load(Ordering::Relaxed) && statements.idle_outside_transaction() {
            return RelayEnd::Shutdown;
        }
        match server.fill().await {
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

/// The server's twin of [`take_client_messages`].
fn take_server_messages(
    buf: &FrameBuffer,
    path: &mut ServerPath,
    statements: &StatementPath,
    out: &mut Outgoing,
) -> (Option<usize>, Option<RelayEnd>) {
    let read = &buf.buf[..];
    if read.len() < HEADER_LEN {
        return (None, None);
    }
    let mut statements = match statements.lock() {
        Ok(guard) => guard,
        Err(error) => return (None, Some(RelayEnd::Enforced(error))),
    };
    loop {
        let at = out.taken();
        match check_frame(&read[at..], buf.max_len) {
            FrameCheck::Complete(n) => {
                let frame = &read[at..at + n];
                if frame[0] == backend::ERROR_RESPONSE && fields::is_fatal(frame) {
                    path.told_client_fatal = true
                }
                match statements.server_message(frame) {
                    Verdict::Forward => out.forward(read, at, at + n),
                    Verdict::Replace(bytes) => out.replace(read, at, at + n, &bytes),
                    Verdict::Drop => out.replace(read, at, at + n, &[]),
                    Verdict::End(error) => return (None, Some(RelayEnd::Enforced(error))),
                }
            }
            FrameCheck::Incomplete(total) => {
                return (total.map(|t| t - (read.len() - at)), None);
            }
            FrameCheck::TooLarge(_) | FrameCheck::BadLength(_) => {
                let stop = RelayEnd::UpstreamClosed {
                    reason: "server sent a malformed message".into(),
                    told_client: false,
                };
                return (None, Some(stop));
            }
        }
    }
}

async fn write_out(w: &mut WriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::net::stream::Stream;

    const QUERY: &[u8] = b"Q\0\0\0\x0dselect 1\0";

    /// A relay reader over a real loopback socket, and the peer that writes into it.
    async fn reader() -> (Inbound, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let (rd, _wr) = Stream::Plain(tcp).split();
        let inbound = Inbound {
            rd,
            buf: FrameBuffer::new(1 << 20),
        };
        (inbound, peer)
    }

    #[tokio::test]
    async fn a_reader_waiting_with_nothing_buffered_holds_no_memory() {
        let (mut inbound, mut peer) = reader().await;
        peer.write_all(QUERY).await.unwrap();
        assert!(inbound.fill().await.unwrap());
        assert_eq!(&inbound.buf.buf[..], QUERY);
        assert!(inbound.buf.buf.capacity() > 0);
        // Forwarded: the buffer is empty, and the next read has nothing to find yet.
        inbound.buf.buf.clear();
        let waited = tokio::time::timeout(Duration::from_millis(50), inbound.fill()).await;
        assert!(
            waited.is_err(),
            "nothing was sent, so the read must still wait"
        );
        assert_eq!(
            inbound.buf.buf.capacity(),
            0,
            "an idle reader keeps no buffer"
        );
        // Data arrives: the reader takes memory again and reads it whole.
        peer.write_all(QUERY).await.unwrap();
        assert!(inbound.fill().await.unwrap());
        assert_eq!(&inbound.buf.buf[..], QUERY);
    }

    #[tokio::test]
    async fn a_message_read_in_part_is_kept_while_the_rest_is_awaited() {
        let (mut inbound, mut peer) = reader().await;
        peer.write_all(&QUERY[..7]).await.unwrap();
        assert!(inbound.fill().await.unwrap());
        assert_eq!(&inbound.buf.buf[..], &QUERY[..7]);
        let waited = tokio::time::timeout(Duration::from_millis(50), inbound.fill()).await;
        assert!(waited.is_err());
        assert_eq!(&inbound.buf.buf[..], &QUERY[..7], "the first part is kept");
        peer.write_all(&QUERY[7..]).await.unwrap();
        assert!(inbound.fill().await.unwrap());
        assert_eq!(&inbound.buf.buf[..], QUERY);
        // End of stream with nothing buffered is reported as such.
        inbound.buf.buf.clear();
        drop(peer);
        assert!(!inbound.fill().await.unwrap());
    }
}
