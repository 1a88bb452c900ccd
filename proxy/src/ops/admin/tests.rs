use super::http::RequestLine;
use super::*;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::io::AsyncReadExt;
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

/// Ready, with something to say (a failed reload whose previous keys still serve).
struct ReadyWithDetail;

impl Readiness for ReadyWithDetail {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }

    fn detail(&self) -> Option<String> {
        Some("the last reload failed".into())
    }
}

#[tokio::test]
async fn readyz_stays_200_and_adds_the_detail_below_ready() {
    let server = Server::start(Arc::new(ReadyWithDetail), Limits::default()).await;
    let response = server.get("/readyz").await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    assert_eq!(body(&response), "ready\nthe last reload failed");
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
