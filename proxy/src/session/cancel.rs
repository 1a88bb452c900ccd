//! Cancel keys: each client gets the server backend's own pid (what `pg_backend_pid()`,
//! `pg_stat_activity` and notifications name) with, in `BackendKeyData`, the backend's secret
//! under the instance's cancel key (`cancel_key`). This map leads a `CancelRequest` sent to
//! the proxy to the backend's real key; one for a session of another instance sharing the
//! cancel key is opened with the key instead, at a bounded rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cancel_key::CancelCipher;
use crate::net::upstream::Upstream;
use crate::protocol::types::request;

/// The upstream backend's key, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKey {
    pub pid: i32,
    pub secret: Vec<u8>,
}

/// Cancel requests for other instances' sessions forwarded per second, and the burst
/// allowed: each costs PostgreSQL a process, and a wrong key cannot be told from a right one
/// before the server has it.
const FOREIGN_PER_SECOND: f64 = 20.0;
const FOREIGN_BURST: f64 = 50.0;

/// Where a cancel request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRoute {
    /// A session of this instance: the server's own key.
    Local(BackendKey),
    /// Not a session of this instance, and the cancel key is shared: the key it opens to
    /// (the server checks it).
    Foreign(BackendKey),
    /// Nowhere: unknown here and no shared key, a secret that is not 4 bytes, or the rate
    /// of foreign requests spent.
    Ignored,
}

struct Entry {
    /// The secret the client was given.
    secret: Vec<u8>,
    upstream: BackendKey,
    /// Which registration made it (so an older session's guard leaves a newer entry alone).
    generation: u64,
}

/// Live sessions' keys: backend pid -> the secret the client was given and the upstream key.
pub struct CancelRegistry {
    keys: DashMap<i32, Entry>,
    cipher: CancelCipher,
    generation: AtomicU64,
    /// Token bucket of foreign requests: (tokens, when last filled).
    foreign: Mutex<(f64, Instant)>,
}

impl std::fmt::Debug for CancelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelRegistry")
            .field("sessions", &self.keys.len())
            .field("cipher", &self.cipher)
            .finish()
    }
}

impl Default for CancelRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelRegistry {
    /// A registry with a key of this process only.
    pub fn new() -> Self {
        Self::with_cipher(CancelCipher::random())
    }

    pub fn with_cipher(cipher: CancelCipher) -> Self {
        CancelRegistry {
            keys: DashMap::new(),
            cipher,
            generation: AtomicU64::new(0),
            foreign: Mutex::new((FOREIGN_BURST, Instant::now())),
        }
    }

    /// Registers a session's upstream key and returns the key to give its client: the
    /// backend's pid, and its secret under the cancel key (a random one when the server's is
    /// not 4 bytes long). The entry lives as long as the returned guard. A pid the server has
    /// reused while the session that had it is still closing belongs to the newer backend.
    pub fn register(self: &Arc<Self>, upstream: BackendKey) -> CancelGuard {
        let pid = upstream.pid;
        let secret = match <[u8; 4]>::try_from(upstream.secret.as_slice()) {
            Ok(server) => self.cipher.seal(pid, server).to_vec(),
            Err(_) => rand::random::<u32>().to_be_bytes().to_vec(),
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        self.keys.insert(
            pid,
            Entry {
                secret: secret.clone(),
                upstream,
                generation,
            },
        );
        CancelGuard {
            registry: self.clone(),
            key: BackendKey { pid, secret },
            generation,
        }
    }

    /// The upstream key for a proxy key of this instance, if the secret matches.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<BackendKey> {
        let entry = self.keys.get(&pid)?;
        // The secret is compared in full; a wrong one is treated like an unknown pid.
        (entry.secret.as_slice() == secret).then(|| entry.upstream.clone())
    }

    /// Where a cancel request for `(pid, secret)` goes.
    pub fn route(&self, pid: i32, secret: &[u8]) -> CancelRoute {
        if let Some(key) = self.lookup(pid, secret) {
            return CancelRoute::Local(key);
        }
        // A session of this instance with another secret: not another instance's either
        // (pids are the one server's).
        if self.keys.contains_key(&pid) || !self.cipher.shared() {
            return CancelRoute::Ignored;
        }
        let Ok(secret) = <[u8; 4]>::try_from(secret) else {
            return CancelRoute::Ignored;
        };
        if !self.take_foreign_token() {
            return CancelRoute::Ignored;
        }
        CancelRoute::Foreign(BackendKey {
            pid,
            secret: self.cipher.open(pid, secret).to_vec(),
        })
    }

    fn take_foreign_token(&self) -> bool {
        let Ok(mut bucket) = self.foreign.lock() else {
            return false;
        };
        let now = Instant::now();
        let (tokens, filled) = *bucket;
        let tokens = (tokens + now.duration_since(filled).as_secs_f64() * FOREIGN_PER_SECOND)
            .min(FOREIGN_BURST);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
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
    generation: u64,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.keys.remove_if(&self.key.pid, |_, entry| {
            entry.generation == self.generation
        });
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

    fn shared_key() -> CancelCipher {
        static FILES: AtomicU64 = AtomicU64::new(0);
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = crate::session::cancel_key::tests::test_dir("registry").join(format!("{n}.key"));
        std::fs::write(&path, "c2NhbGUtb3V0IGNhbmNlbCBrZXkgZm9yIHRlc3RzISE=").unwrap();
        CancelCipher::from_file(&path).unwrap()
    }

    #[test]
    fn another_instance_with_the_shared_key_routes_to_the_servers_key() {
        let ours = Arc::new(CancelRegistry::with_cipher(shared_key()));
        let theirs = CancelRegistry::with_cipher(shared_key());
        let guard = ours.register(key(77));
        assert_ne!(
            guard.key.secret,
            key(77).secret,
            "the client never sees the server's secret"
        );
        assert_eq!(
            ours.route(77, &guard.key.secret),
            CancelRoute::Local(key(77))
        );
        assert_eq!(
            theirs.route(77, &guard.key.secret),
            CancelRoute::Foreign(key(77))
        );
    }

    #[test]
    fn unknown_keys_go_nowhere_without_a_shared_key() {
        let ours = Arc::new(CancelRegistry::new());
        let theirs = CancelRegistry::new();
        let guard = ours.register(key(77));
        assert_eq!(theirs.route(77, &guard.key.secret), CancelRoute::Ignored);
        // A wrong secret for a pid of this instance is not sent on either.
        let shared = Arc::new(CancelRegistry::with_cipher(shared_key()));
        let _g = shared.register(key(78));
        assert_eq!(shared.route(78, &[0, 0, 0, 0]), CancelRoute::Ignored);
        assert_eq!(shared.route(79, &[0, 0, 0]), CancelRoute::Ignored);
    }

    #[test]
    fn foreign_requests_are_rate_limited() {
        let reg = CancelRegistry::with_cipher(shared_key());
        let routed = (0..200)
            .filter(|i| matches!(reg.route(1000 + i, &[1, 2, 3, 4]), CancelRoute::Foreign(_)))
            .count();
        assert!((50..60).contains(&routed), "{routed}");
    }

    #[test]
    fn a_newer_session_with_the_same_pid_outlives_the_older_guard() {
        let reg = Arc::new(CancelRegistry::with_cipher(shared_key()));
        let old = reg.register(key(5));
        let new = reg.register(key(5));
        assert_eq!(old.key.secret, new.key.secret);
        drop(old);
        assert_eq!(reg.lookup(5, &new.key.secret), Some(key(5)));
        drop(new);
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
        // The server gives the new backend with the reused pid a secret of its own.
        let new = reg.register(BackendKey {
            pid: 7,
            secret: vec![5, 6, 7, 8],
        });
        assert_eq!(reg.lookup(7, &old.key.secret), None);
        // The old session ending leaves the new one's key in place.
        drop(old);
        assert_eq!(
            reg.lookup(7, &new.key.secret),
            Some(BackendKey {
                pid: 7,
                secret: vec![5, 6, 7, 8]
            })
        );
        drop(new);
        assert!(reg.is_empty());
    }
}
