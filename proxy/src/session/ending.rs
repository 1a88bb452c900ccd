//! How a session ends: the metric its end counts under, and the last words each side hears
//! before both are closed.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::relay::RelayEnd;
use crate::net::stream::WriteHalf;
use crate::ops::metrics::{ConnectionErrorReason as Why, Metrics};
use crate::protocol::error::{sqlstate, PgError};

/// Counts an end that is a connection error (or the server's loss) in the metrics.
pub(super) fn count_end(metrics: &Metrics, end: &RelayEnd) {
    let why = match end {
        RelayEnd::ClientClosed { .. } | RelayEnd::Shutdown | RelayEnd::Enforced(_) => return,
        RelayEnd::ClientProtocol(e) if e.code == sqlstate::PROGRAM_LIMIT_EXCEEDED => {
            Why::MessageTooLarge
        }
        RelayEnd::ClientProtocol(_) => Why::Protocol,
        RelayEnd::ClientIo(_) => Why::Io,
        RelayEnd::IdleTimeout => Why::IdleTimeout,
        RelayEnd::UpstreamClosed { .. } => {
            metrics.upstream_error();
            return;
        }
    };
    metrics.connection_error(why);
}

/// How long each of a session's last writes may wait for its peer to take it. A client that
/// stopped reading (a large result or COPY TO STDOUT it never drains) left a forced session
/// writing its "shutting down" error into a full socket forever, and the proxy's shutdown
/// waiting for that session with it.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Tells each side what it needs to hear, then closes both; a side that does not take its
/// last words within [`FINISH_WAIT`] is closed without them.
pub(super) async fn finish(end: &RelayEnd, client: &mut WriteHalf, server: &mut WriteHalf) {
    let to_client = match end {
        RelayEnd::ClientProtocol(e) | RelayEnd::Enforced(e) => Some(e.clone()),
        RelayEnd::IdleTimeout => Some(PgError::idle_timeout()),
        RelayEnd::Shutdown => Some(PgError::shutting_down()),
        RelayEnd::UpstreamClosed {
            reason,
            told_client: false,
        } => Some(PgError::upstream_lost(reason)),
        _ => None,
    };
    if let Some(error) = to_client {
        let bytes = error.to_bytes();
        if tokio::time::timeout(FINISH_WAIT, client.write_all(&bytes))
            .await
            .is_err()
        {
            debug!("the client did not take its last message in time; closed without it");
        }
    }
    let _ = tokio::time::timeout(FINISH_WAIT, client.shutdown()).await;
    let upstream_alive = !matches!(
        end,
        RelayEnd::UpstreamClosed { .. } | RelayEnd::ClientClosed { terminated: true }
    );
    if upstream_alive {
        let terminate = crate::protocol::frame::message(b'X', b"");
        let _ = tokio::time::timeout(FINISH_WAIT, server.write_all(&terminate)).await;
    }
    let _ = tokio::time::timeout(FINISH_WAIT, server.shutdown()).await;
}
