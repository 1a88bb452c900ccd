//! Framing of typed messages (1-byte type + 4-byte big-endian length that counts itself):
//! first *check* that a whole message is buffered, then split it off without copying, so
//! partial reads never allocate or half-parse and pass-through bytes are never decoded.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the type byte plus the length word.
pub const HEADER_LEN: usize = 5;

/// What the front of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole message of this many bytes (type byte included) is buffered.
    Complete(usize),
    /// More bytes are needed; `Some(total)` once the header is known.
    Incomplete(Option<usize>),
    /// The header announces a message larger than the limit.
    TooLarge(usize),
    /// The length word is impossible (below 4).
    BadLength(i32),
}

/// Looks at the front of `buf` without consuming anything.
pub fn check_frame(buf: &[u8], max_len: usize) -> FrameCheck {
    if buf.len() < HEADER_LEN {
        return FrameCheck::Incomplete(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return FrameCheck::BadLength(len);
    }
    let total = len as usize + 1;
    if total > max_len {
        return FrameCheck::TooLarge(total);
    }
    if buf.len() < total {
        FrameCheck::Incomplete(Some(total))
    } else {
        FrameCheck::Complete(total)
    }
}

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed in the middle of a message")]
    TruncatedMessage,
    #[error("message of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// First read size: room for the small messages of ordinary traffic, and little memory held
/// by each of thousands of idle sessions (two buffers per session).
const INITIAL_READ: usize = 1024;
/// Largest read size the buffer grows to while data streams in (big results, COPY).
const MAX_READ: usize = 64 * 1024;

/// A read buffer with a size limit, for reading whole messages one at a time (startup and
/// authentication) or for handing all buffered complete messages to a relay loop.
///
/// It starts small and doubles its read size each time a read fills all the room it was
/// given, so idle sessions stay cheap and streams still read in large chunks. The memory is
/// reused for the life of the connection: once the relay has forwarded the frames split off
/// it, `reserve` reclaims the same allocation.
#[derive(Debug)]
pub struct FrameBuffer {
    pub buf: BytesMut,
    pub max_len: usize,
    read_size: usize,
}

impl FrameBuffer {
    pub fn new(max_len: usize) -> Self {
        FrameBuffer {
            buf: BytesMut::new(),
            max_len,
            read_size: INITIAL_READ,
        }
    }

    /// Splits off the next whole message if one is buffered.
    pub fn try_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        match check_frame(&self.buf, self.max_len) {
            FrameCheck::Complete(n) => Ok(Some(self.buf.split_to(n))),
            FrameCheck::Incomplete(total) => {
                if let Some(total) = total {
                    self.buf.reserve(total - self.buf.len());
                }
                Ok(None)
            }
            FrameCheck::TooLarge(n) => Err(FrameError::TooLarge(n, self.max_len)),
            FrameCheck::BadLength(n) => Err(FrameError::BadLength(n)),
        }
    }

    /// Gives the memory back when nothing is buffered (an idle session waiting for data);
    /// the next `fill` allocates again at the current read size.
    pub fn release(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// Reads more bytes; `Ok(false)` on end of stream.
    pub async fn fill<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        io: &mut R,
    ) -> Result<bool, FrameError> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = io.read_buf(&mut self.buf).await?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Ok(n != 0)
    }

    /// Reads until one whole message is buffered and returns it; `Ok(None)` on a clean end of
    /// stream between messages.
    pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        io: &mut R,
    ) -> Result<Option<BytesMut>, FrameError> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok(Some(frame));
            }
            if !self.fill(io).await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::TruncatedMessage)
                };
            }
        }
    }
}

/// Builds a typed message from its type byte and body.
pub fn message(kind: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_message_is_complete() {
        let m = message(b'Q', b"select 1\0");
        assert_eq!(check_frame(&m, 1024), FrameCheck::Complete(m.len()));
    }

    #[test]
    fn partial_header_and_partial_body_are_incomplete() {
        let m = message(b'Q', b"select 1\0");
        assert_eq!(check_frame(&m[..3], 1024), FrameCheck::Incomplete(None));
        assert_eq!(
            check_frame(&m[..7], 1024),
            FrameCheck::Incomplete(Some(m.len()))
        );
    }

    #[test]
    fn length_below_four_is_rejected() {
        assert_eq!(
            check_frame(&[b'Q', 0, 0, 0, 3], 1024),
            FrameCheck::BadLength(3)
        );
        assert_eq!(
            check_frame(&[b'Q', 0xff, 0xff, 0xff, 0xff], 1024),
            FrameCheck::BadLength(-1)
        );
    }

    #[test]
    fn oversized_message_is_rejected_before_it_is_buffered() {
        assert_eq!(
            check_frame(&[b'd', 0, 1, 0, 0], 1024),
            FrameCheck::TooLarge(65537)
        );
    }

    #[tokio::test]
    async fn read_frame_splits_pipelined_messages() {
        let mut wire = message(b'P', b"\0select 1\0\0\0").to_vec();
        wire.extend_from_slice(&message(b'S', b""));
        let mut io = &wire[..];
        let mut fb = FrameBuffer::new(1024);
        assert_eq!(fb.read_frame(&mut io).await.unwrap().unwrap()[0], b'P');
        assert_eq!(fb.read_frame(&mut io).await.unwrap().unwrap()[0], b'S');
        assert!(fb.read_frame(&mut io).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_small_message_leaves_a_small_buffer() {
        let wire = message(b'Q', b"select 1\0");
        let mut io = &wire[..];
        let mut fb = FrameBuffer::new(1 << 30);
        assert_eq!(
            fb.buf.capacity(),
            0,
            "nothing is allocated before the first read"
        );
        fb.read_frame(&mut io).await.unwrap().unwrap();
        assert!(fb.buf.capacity() <= INITIAL_READ, "{}", fb.buf.capacity());
    }

    #[tokio::test]
    async fn streaming_reads_grow_to_large_chunks() {
        // 1 MiB of CopyData-sized messages: reads double from 1 KiB up to 64 KiB, so the
        // stream takes a few dozen reads, not a thousand.
        let mut wire = Vec::new();
        while wire.len() < 1 << 20 {
            wire.extend_from_slice(&message(b'd', &[b'x'; 8000]));
        }
        let mut io = &wire[..];
        let mut fb = FrameBuffer::new(1 << 30);
        let mut reads = 0;
        while fb.fill(&mut io).await.unwrap() {
            reads += 1;
            while fb.try_frame().unwrap().is_some() {}
        }
        assert!(fb.buf.is_empty());
        assert!(reads < 40, "{reads} reads");
        assert_eq!(fb.read_size, MAX_READ);
    }

    #[tokio::test]
    async fn truncated_message_is_an_error() {
        let wire = message(b'Q', b"select 1\0");
        let mut io = &wire[..6];
        let mut fb = FrameBuffer::new(1024);
        assert!(matches!(
            fb.read_frame(&mut io).await,
            Err(FrameError::TruncatedMessage)
        ));
    }
}
