//! The admin HTTP listener: `/metrics` for Prometheus, `/healthz` and `/readyz` for probes.
//! A deliberately tiny HTTP/1.1 server: one GET per connection, bounded reads, `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::ops::metrics::{self, Metrics};

/// Whether the proxy can serve traffic: rules and keys loaded, upstream reachable.
///
/// `/readyz` answers 503 with the `Err` text as its body, so the text must name the cause
/// without secrets (no keys, passwords or connection strings with credentials).
pub trait Readiness: Send + Sync {
    /// Checks readiness now; should finish well within [`Limits::readiness_timeout`].
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

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

async fn route(
    request: &RequestLine<'_>,
    metrics: &Metrics,
    readiness: &dyn Readiness,
    limits: &Limits,
) -> Response {
    if request.method != "GET" {
        return Response::text(Status::MethodNotAllowed, "method not allowed\n");
    }
    match request.path {
        "/metrics" => Response {
            status: Status::Ok,
            content_type: metrics::CONTENT_TYPE,
            body: metrics.encode(),
        },
        "/healthz" => Response::text(Status::Ok, "ok"),
        "/readyz" => {
            match tokio::time::timeout(limits.readiness_timeout, readiness.check()).await {
                Ok(Ok(())) => Response::text(Status::Ok, "ready"),
                Ok(Err(reason)) => Response::text(Status::Unavailable, reason),
                Err(_elapsed) => Response::text(Status::Unavailable, "readiness check timed out"),
            }
        }
        _ => Response::text(Status::NotFound, "not found\n"),
    }
}

/// Why no request could be read.
#[derive(Debug, Error)]
enum RequestError {
    #[error("request head exceeds the size limit")]
    TooLarge,
    #[error("connection closed before the request head ended")]
    Closed,
    #[error("reading the request failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads up to the blank line ending the request head (CRLF or bare LF), at most `max` bytes.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, RequestError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(RequestError::Closed);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head, searched_from) {
            head.truncate(end);
            return if end > max {
                Err(RequestError::TooLarge)
            } else {
                Ok(head)
            };
        }
        if head.len() > max {
            return Err(RequestError::TooLarge);
        }
    }
}

/// Index just past the blank line ending the head, looking from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    let crlf = tail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = tail.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let first = match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    first.map(|i| from + i)
}

/// The parts of `METHOD SP target SP HTTP/1.x` that routing needs.
#[derive(Debug, PartialEq, Eq)]
struct RequestLine<'a> {
    method: &'a str,
    /// The target without its query string.
    path: &'a str,
}

fn parse_request_line(head: &[u8]) -> Option<RequestLine<'_>> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && target.bytes().all(|b| b.is_ascii_graphic())
        && matches!(version, "HTTP/1.0" | "HTTP/1.1");
    if !valid {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    Some(RequestLine { method, path })
}

/// Reads and discards what the client still sends, until it closes or `max` bytes.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<()> {
    let mut chunk = [0u8; 1024];
    let mut drained = 0;
    while drained < max {
        match reader.read(&mut chunk).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadTooLarge,
    Unavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
            Status::Unavailable => "503 Service Unavailable",
        }
    }
}

struct Response {
    status: Status,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: Status, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let allow = if self.status == Status::MethodNotAllowed {
            "Allow: GET\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
            self.status.line(),
            self.content_type,
            self.body.len(),
        );
        let mut bytes = Vec::with_capacity(head.len() + self.body.len());
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    /// Answers readiness from a fixed result.
    struct FixedReadiness(Result<(), String>);

    impl Readiness for FixedReadiness {
        fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
            Box::pin(async move { self.0.clone() })
        }
    }

    /// Never answers, as an upstream that hangs would.
    struct HangingReadiness;

    impl Readiness for HangingReadiness {
        fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<()>,
    }

    impl Server {
        async fn start(readiness: Arc<dyn Readiness>, limits: Limits) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let metrics = Arc::new(Metrics::new());
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve_with_limits(
                listener,
                Arc::clone(&metrics),
                readiness,
                async {
                    let _ = stopped.await;
                },
                limits,
            ));
            Self {
                addr,
                metrics,
                stop: Some(stop),
                task,
            }
        }

        async fn ready() -> Self {
            Self::start(Arc::new(FixedReadiness(Ok(()))), Limits::default()).await
        }

        /// Sends `request` as raw bytes and returns the whole response.
        async fn send(&self, request: &[u8]) -> String {
            let mut stream = TcpStream::connect(self.addr).await.expect("connect");
            stream.write_all(request).await.expect("write request");
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .await
                .expect("read response");
            String::from_utf8(response).expect("utf-8 response")
        }

        async fn get(&self, path: &str) -> String {
            self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
                .await
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            self.task.await.expect("server task");
        }
    }

    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_prometheus_text() {
        let server = Server::ready().await;
        server.metrics.upstream_error();
        let response = server.get("/metrics").await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        assert!(response.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(response.contains("Connection: close\r\n"));
        assert!(body(&response).contains("pgshroud_upstream_errors_total 1\n"));
        server.stop().await;
    }

    #[tokio::test]
    async fn content_length_matches_the_body() {
        let server = Server::ready().await;
        let response = server.get("/metrics").await;
        let length: usize = response
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length header");
        assert_eq!(length, body(&response).len());
        server.stop().await;
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let server = Server::ready().await;
        let response = server.get("/healthz").await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        assert_eq!(body(&response), "ok");
        server.stop().await;
    }

    #[tokio::test]
    async fn readyz_answers_ready_when_the_check_passes() {
        let server = Server::ready().await;
        let response = server.get("/readyz").await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        assert_eq!(body(&response), "ready");
        server.stop().await;
    }

    #[tokio::test]
    async fn readyz_answers_503_with_the_reason_when_the_check_fails() {
        let readiness = Arc::new(FixedReadiness(Err("upstream unreachable".into())));
        let server = Server::start(readiness, Limits::default()).await;
        let response = server.get("/readyz").await;
        assert_eq!(status(&response), "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body(&response), "upstream unreachable");
        server.stop().await;
    }

    #[tokio::test]
    async fn readyz_answers_503_when_the_check_hangs() {
        let limits = Limits {
            readiness_timeout: Duration::from_millis(10),
            ..Limits::default()
        };
        let server = Server::start(Arc::new(HangingReadiness), limits).await;
        let response = server.get("/readyz").await;
        assert_eq!(status(&response), "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body(&response), "readiness check timed out");
        server.stop().await;
    }

    #[tokio::test]
    async fn unknown_path_is_404() {
        let server = Server::ready().await;
        let response = server.get("/admin").await;
        assert_eq!(status(&response), "HTTP/1.1 404 Not Found");
        server.stop().await;
    }

    #[tokio::test]
    async fn query_string_does_not_change_the_route() {
        let server = Server::ready().await;
        let response = server.get("/healthz?verbose=1").await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        server.stop().await;
    }

    #[tokio::test]
    async fn post_is_405_with_allow_header() {
        let server = Server::ready().await;
        let response = server
            .send(b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            .await;
        assert_eq!(status(&response), "HTTP/1.1 405 Method Not Allowed");
        assert!(response.contains("Allow: GET\r\n"));
        server.stop().await;
    }

    #[tokio::test]
    async fn http_1_0_and_bare_lf_requests_are_answered() {
        let server = Server::ready().await;
        let response = server.send(b"GET /healthz HTTP/1.0\n\n").await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        server.stop().await;
    }

    #[tokio::test]
    async fn malformed_request_line_is_400() {
        let server = Server::ready().await;
        for request in [
            &b"hello\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            let response = server.send(request).await;
            assert_eq!(
                status(&response),
                "HTTP/1.1 400 Bad Request",
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn oversized_request_head_is_431() {
        let server = Server::ready().await;
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 10 * 1024));
        request.extend_from_slice(b"\r\n\r\n");
        let response = server.send(&request).await;
        assert_eq!(
            status(&response),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn oversized_head_without_end_is_431() {
        let server = Server::ready().await;
        let request = vec![b'G'; 9 * 1024];
        let response = server.send(&request).await;
        assert_eq!(
            status(&response),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn incomplete_request_gets_408_after_the_read_timeout() {
        let limits = Limits {
            read_timeout: Duration::from_millis(10),
            ..Limits::default()
        };
        let server = Server::start(Arc::new(FixedReadiness(Ok(()))), limits).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert_eq!(status(&response), "HTTP/1.1 408 Request Timeout");
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_stops_serving() {
        let server = Server::ready().await;
        let addr = server.addr;
        server.stop().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn request_line_path_drops_the_query() {
        assert_eq!(
            parse_request_line(b"GET /readyz?x=1 HTTP/1.1\r\n\r\n"),
            Some(RequestLine {
                method: "GET",
                path: "/readyz"
            })
        );
    }
}
