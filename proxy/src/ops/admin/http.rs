//! Just enough HTTP/1.x: the request head read with a size bound, its request line, and a
//! `Connection: close` response.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why no request could be read.
#[derive(Debug, Error)]
pub(super) enum RequestError {
    #[error("request head exceeds the size limit")]
    TooLarge,
    #[error("connection closed before the request head ended")]
    Closed,
    #[error("reading the request failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads up to the blank line ending the request head (CRLF or bare LF), at most `max` bytes.
pub(super) async fn read_head<R: AsyncRead + Unpin>(
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
pub(super) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
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
pub(super) struct RequestLine<'a> {
    pub(super) method: &'a str,
    /// The target without its query string.
    pub(super) path: &'a str,
}

pub(super) fn parse_request_line(head: &[u8]) -> Option<RequestLine<'_>> {
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
pub(super) async fn drain<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<()> {
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
pub(super) enum Status {
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

pub(super) struct Response {
    pub(super) status: Status,
    pub(super) content_type: &'static str,
    pub(super) body: String,
}

impl Response {
    pub(super) fn text(status: Status, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
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
