//! What the statement path decides for one message in either direction: forward it, replace
//! it, drop it, or end the session. Defined here, low, so the parts that decide (`protect`) and
//! the part that acts (`session`) both use it without importing each other.

use bytes::BytesMut;

use crate::protocol::error::PgError;

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the message on unchanged (the fast path).
    Forward,
    /// Send these bytes (zero or more whole messages) in its place.
    Replace(BytesMut),
    /// Send nothing: the message answers a request of the proxy's own.
    Drop,
    /// End the session: the client gets this error and both connections close (the server
    /// rolls back what is open). The one way to stop a result midway that keeps client and
    /// server in agreement about what happened.
    End(PgError),
}
