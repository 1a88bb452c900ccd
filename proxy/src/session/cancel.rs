//! Cancel keys: each client gets the server backend's own pid (what `pg_backend_pid()`,
//! `pg_stat_activity` and notifications name) with a secret of the proxy's own in
//! `BackendKeyData`; this map leads a `CancelRequest` sent to the proxy to the backend's real key.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::upstream::Upstream;
use crate::protocol::types::request;

/// The upstream backend's key, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKey {
    pub pid: i32,
    pub secret: Vec<u8>,
}

/// Live sessions' keys: backend pid -> (the secret the client was given, upstream key).
#[derive(Debug)]
pub struct CancelRegistry {
    keys: DashMap<i32, (Vec<u8>, BackendKey)>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelRegistry {
    pub fn new() -> Self {
        CancelRegistry {
            keys: DashMap::new(),
        }
    }

    /// Registers a session's upstream key and returns the key to give its client: the
    /// backend's pid, and a fresh secret (the server's stays with the proxy). The entry lives
    /// as long as the returned guard. A pid the server has reused while the session that had
    /// it is still closing belongs to the newer backend.
    pub fn register(self: &Arc<Self>, upstream: BackendKey) -> CancelGuard {
        let pid = upstream.pid;
        let secret = loop {
            let secret = rand::random::<u32>().to_be_bytes().to_vec();
            // Differs from the entry it may replace, so that one's guard leaves this one alone.
            if self.keys.get(&pid).is_none_or(|e| e.value().0 != secret) {
                break secret;
            }
        };
        self.keys.insert(pid, (secret.clone(), upstream));
        CancelGuard {
            registry: self.clone(),
            key: BackendKey { pid, secret },
        }
    }

    /// The upstream key for a proxy key, if the secret matches.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<BackendKey> {
        let entry = self.keys.get(&pid)?;
        let (expected, upstream) = entry.value();
        // The secret is compared in full; a wrong one is treated like an unknown pid.
        (expected.as_slice() == secret).then(|| upstream.clone())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Removes a session's key when the session ends.
#[derive(Debug)]
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pub key: BackendKey,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry
            .keys
            .remove_if(&self.key.pid, |_, (secret, _)| *secret == self.key.secret);
    }
}

/// How long to wait for the server to take a forwarded cancel request.
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Sends a `CancelRequest` for `key` to the upstream server on a new connection and waits
/// (at most `wait`) for the server to close it, which it does once it has signalled the
/// backend. The client's cancel connection is closed only after that, as libpq and PgBouncer
/// do: a client that sends its next statement once its cancel connection closes must not
/// have that statement cancelled by a cancel still on its way.
pub async fn forward_cancel(
    upstream: &Upstream,
    key: &BackendKey,
    wait: Duration,
) -> std::io::Result<()> {
    let mut stream = upstream
        .connect()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut packet = Vec::with_capacity(12 + key.secret.len());
    packet.extend_from_slice(&((12 + key.secret.len()) as u32).to_be_bytes());
    packet.extend_from_slice(&request::CANCEL.to_be_bytes());
    packet.extend_from_slice(&key.pid.to_be_bytes());
    packet.extend_from_slice(&key.secret);
    stream.write_all(&packet).await?;
    stream.flush().await?;
    // The server answers nothing: it closes the connection once the request is handled.
    let closed = async {
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let taken = tokio::time::timeout(wait, closed).await;
    let _ = stream.shutdown().await;
    taken.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the server did not close the cancel connection in time",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: i32) -> BackendKey {
        BackendKey {
            pid,
            secret: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn registered_key_maps_to_upstream_key() {
        let reg = Arc::new(CancelRegistry::new());
        let guard = reg.register(key(4242));
        // The client sees the backend's pid (as pg_backend_pid() does), not its secret.
        assert_eq!(guard.key.pid, 4242);
        assert_eq!(
            reg.lookup(guard.key.pid, &guard.key.secret),
            Some(key(4242))
        );
    }

    #[test]
    fn wrong_secret_finds_nothing() {
        let reg = Arc::new(CancelRegistry::new());
        let guard = reg.register(key(1));
        let mut wrong = guard.key.secret.clone();
        wrong[0] ^= 0xff;
        assert_eq!(reg.lookup(guard.key.pid, &wrong), None);
    }

    #[test]
    fn key_is_forgotten_when_session_ends() {
        let reg = Arc::new(CancelRegistry::new());
        let guard = reg.register(key(1));
        let (pid, secret) = (guard.key.pid, guard.key.secret.clone());
        drop(guard);
        assert_eq!(reg.lookup(pid, &secret), None);
        assert!(reg.is_empty());
    }

    /// A server that reads the cancel request and then holds the connection open.
    async fn silent_server() -> (Upstream, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "postgres://{}?sslmode=disable",
            listener.local_addr().unwrap()
        );
        let upstream = Upstream::new(crate::net::upstream_url::UpstreamUrl::parse(&url).unwrap());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut packet = vec![0u8; 16];
            conn.read_exact(&mut packet).await.unwrap();
            // Held until the proxy gives up and closes its side.
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest).await;
            packet
        });
        (upstream.unwrap(), server)
    }

    #[tokio::test]
    async fn the_wait_for_the_server_to_take_a_cancel_is_bounded() {
        let (upstream, server) = silent_server().await;
        let sent = forward_cancel(&upstream, &key(4242), Duration::from_millis(50)).await;
        assert_eq!(sent.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        let packet = server.await.unwrap();
        assert_eq!(&packet[8..12], &4242i32.to_be_bytes());
        assert_eq!(&packet[12..], &[1, 2, 3, 4]);
    }

    #[test]
    fn a_reused_pid_belongs_to_the_newer_session() {
        let reg = Arc::new(CancelRegistry::new());
        let old = reg.register(key(7));
        let new = reg.register(key(7));
        assert_eq!(reg.lookup(7, &old.key.secret), None);
        // The old session ending leaves the new one's key in place.
        drop(old);
        assert_eq!(reg.lookup(7, &new.key.secret), Some(key(7)));
        drop(new);
        assert!(reg.is_empty());
    }
}
