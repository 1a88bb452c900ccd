//! Resource limits and timeouts: how many clients, how large a message, how long a client may
//! take to log in or stay idle, and how long shutdown waits.

use std::time::Duration;

use super::error::{positive, ConfigError};
use super::layer::ConfigLayer;

/// Resource limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_client_connections: usize,
    pub max_message_size: usize,
    pub startup_timeout: Duration,
    /// `None`: clients may stay idle forever.
    pub idle_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    /// Threads serving sessions, each with its own single-threaded runtime; 0: sessions run on
    /// the shared work-stealing runtime.
    pub session_threads: usize,
}

/// Half the CPUs, at least one: pgshroud shares its machine with its clients or with
/// PostgreSQL, and on 2 CPUs one session thread (PgBouncer's shape) spent 7-23 % less CPU per
/// transaction than the work-stealing runtime, whose workers wake each other
/// (bench/RESULTS.md, the relay notes). Not measured on larger machines.
fn default_session_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

pub(super) fn resolve(layer: &ConfigLayer) -> Result<Limits, ConfigError> {
    Ok(Limits {
        max_client_connections: positive("max_client_connections", layer.max_client_connections())?,
        max_message_size: positive("max_message_size", layer.max_message_size())?.max(1024),
        startup_timeout: Duration::from_secs(positive(
            "startup_timeout_secs",
            layer.startup_timeout_secs() as usize,
        )? as u64),
        idle_timeout: Some(layer.idle_timeout_secs())
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        shutdown_timeout: Duration::from_secs(layer.shutdown_timeout_secs()),
        session_threads: layer
            .session_threads
            .unwrap_or_else(default_session_threads),
    })
}
