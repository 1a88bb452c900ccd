//! Client connections: opened, closed, ended in error; upstream failures; bytes forwarded.

use std::sync::Arc;

use super::{ConnectionErrorReason, Direction, Metrics};

impl Metrics {
    /// A client connection was accepted. Pair with [`Metrics::connection_closed`], or use
    /// [`Metrics::track_connection`] so early returns cannot skip the pairing.
    pub fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections_active.inc();
    }

    /// A client connection ended (whatever the reason).
    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }

    /// Counts a connection as opened now and as closed when the guard drops.
    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connection_opened();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    /// A client connection ended in error.
    pub fn connection_error(&self, reason: ConnectionErrorReason) {
        self.connection_errors.add(reason, 1);
    }

    /// Talking to the upstream server failed (connect, I/O, or an unexpected message).
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    /// `n` bytes were forwarded. Called per chunk: one atomic add, no lock, no allocation.
    pub fn bytes(&self, direction: Direction, n: usize) {
        self.bytes
            .add(direction, u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// Marks a connection closed in the metrics when dropped (see [`Metrics::track_connection`]).
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}
