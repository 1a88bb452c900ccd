//! Cancel keys: each client gets the proxy's own (pid, secret) in `BackendKeyData`; this map
//! leads a `CancelRequest` sent to the proxy to the upstream backend's real key.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::io::AsyncWriteExt;

use crate::net::upstream::Upstream;
use crate::protocol::types::request;

/// The upstream backend's key, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKey {
    pub pid: i32,
    pub secret: Vec<u8>,
}

/// Live sessions' keys: proxy key -> upstream key.
#[derive(Debug)]
pub struct CancelRegistry {
    keys: DashMap<i32, (Vec<u8>, BackendKey)>,
    next_pid: AtomicI32,
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
            // Start somewhere random so proxy pids do not look like upstream pids.
            next_pid: AtomicI32::new(rand::random::<u16>() as i32 + 1),
        }
    }

    /// Registers a session's upstream key and returns the key to give its client; the entry
    /// lives as long as the returned guard.
    pub fn register(self: &Arc<Self>, upstream: BackendKey) -> CancelGuard {
        loop {
            let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & i32::MAX;
            if pid == 0 || self.keys.contains_key(&pid) {
                continue;
            }
            let secret = rand::random::<u32>().to_be_bytes().to_vec();
            self.keys.insert(pid, (secret.clone(), upstream));
            return CancelGuard {
                registry: self.clone(),
                key: BackendKey { pid, secret },
            };
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
        self.registry.keys.remove(&self.key.pid);
    }
}

/// Sends a `CancelRequest` for `key` to the upstream server on a new connection.
pub async fn forward_cancel(upstream: &Upstream, key: &BackendKey) -> std::io::Result<()> {
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
    // The server closes the connection without answering; closing our side is enough.
    let _ = stream.shutdown().await;
    Ok(())
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
        assert_ne!(guard.key.pid, 4242);
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

    #[test]
    fn proxy_pids_are_unique_and_positive() {
        let reg = Arc::new(CancelRegistry::new());
        let guards: Vec<_> = (0..100).map(|i| reg.register(key(i))).collect();
        let mut pids: Vec<_> = guards.iter().map(|g| g.key.pid).collect();
        assert!(pids.iter().all(|p| *p > 0));
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 100);
    }
}
