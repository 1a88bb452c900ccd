//! The admin HTTP listener: `/metrics` for Prometheus, `/healthz` and `/readyz` for probes.
//! A deliberately tiny HTTP/1.1 server: one GET per connection, bounded reads, `Connection: close`.
//! This file is the listener and its limits; `http` reads requests and writes responses,
//! `routes` answers each path (with the [`Readiness`] check behind `/readyz`).

mod http;
mod routes;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use self::http::{drain, parse_request_line, read_head, RequestError, Response, Status};
use self::routes::route;
pub use self::routes::Readiness;
use crate::ops::metrics::Metrics;

/// Bounds that keep a slow or hostile client from holding the admin port.
#[derive(Debug, Clone)]
struct Limits {
    /// Longest request line plus headers; probes and scrapers send a few hundred bytes.
    max_head_bytes: usize,
    /// Time allowed to receive the request head (slowloris guard).
    read_timeout: Duration,
    /// Time allowed to send the response.
    write_timeout: Duration,
    /// Time allowed for a readiness check before `/readyz` answers 503.
    readiness_timeout: Duration,
    /// Requests handled at once; connections beyond this are closed unanswered.
    max_concurrent: usize,
    /// After responding, unread request bytes (e.g. a POST body) are drained up to this much
    /// before closing, so the kernel does not reset the connection under the response.
    max_drain_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            readiness_timeout: Duration::from_secs(2),
            max_concurrent: 32,
            max_drain_bytes: 64 * 1024,
        }
    }
}

/// Pause after a failed `accept` (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the admin endpoints on `listener` until `shutdown` completes; requests still in
/// flight then are abandoned.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<dyn Readiness>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_limits(listener, metrics, readiness, shutdown, Limits::default()).await;
}

async fn serve_with_limits(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<dyn Readiness>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    tokio::pin!(shutdown);
    let mut handlers = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while handlers.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) if handlers.len() < limits.max_concurrent => {
                let state = (Arc::clone(&metrics), Arc::clone(&readiness), limits.clone());
                handlers.spawn(async move {
                    let (metrics, readiness, limits) = state;
                    handle(stream, &metrics, readiness.as_ref(), &limits).await;
                    tracing::trace!(%peer, "admin request done");
                });
            }
            Ok((_stream, peer)) => {
                tracing::debug!(%peer, "admin listener busy; closing connection");
            }
            Err(error) => {
                tracing::warn!(%error, "admin listener accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    handlers.shutdown().await;
}

/// Reads one request, answers it, and closes the connection.
async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    readiness: &dyn Readiness,
    limits: &Limits,
) {
    let head = tokio::time::timeout(
        limits.read_timeout,
        read_head(&mut stream, limits.max_head_bytes),
    )
    .await;
    let response = match head {
        Err(_elapsed) => Response::text(Status::RequestTimeout, "request timeout\n"),
        Ok(Err(RequestError::TooLarge)) => {
            Response::text(Status::HeadTooLarge, "request head too large\n")
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "admin request not read");
            return;
        }
        Ok(Ok(head)) => match parse_request_line(&head) {
            Some(request) => route(&request, metrics, readiness, limits).await,
            None => Response::text(Status::BadRequest, "bad request\n"),
        },
    };
    send(&mut stream, &response, limits).await;
}

/// Writes the response, then half-closes and drains, so the client reads all of it.
async fn send(stream: &mut TcpStream, response: &Response, limits: &Limits) {
    let sent = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await?;
        drain(stream, limits.max_drain_bytes).await
    })
    .await;
    if let Ok(Err(error)) = sent {
        tracing::debug!(%error, "admin response not sent");
    }
}
