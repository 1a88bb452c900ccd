//! What one read sends on, in one write: a prefix of the read buffer itself while every
//! message in it is forwarded as it came (pass-through: nothing split off, copied or
//! allocated), or a copy once a message is replaced or dropped.

use bytes::{Buf, BytesMut};

/// The copy's memory kept for the next read. A protected session rewrites small batches
/// most of the time; a large result's copy is freed, so idle sessions stay small.
const KEEP: usize = 8 * 1024;

/// The bytes to send for the messages taken off the front of one read buffer so far.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Bytes at the front of the read buffer that are taken (sent as they are, or replaced).
    taken: usize,
    /// A message was replaced or dropped: everything to send is in `copied`.
    copying: bool,
    copied: BytesMut,
}

impl Outgoing {
    /// The message at `read[start..end]` goes on as it came. Messages are taken in order, so
    /// `start` is where the one before ended.
    pub fn forward(&mut self, read: &[u8], start: usize, end: usize) {
        debug_assert_eq!(start, self.taken);
        if self.copying {
            self.copied.extend_from_slice(&read[start..end]);
        }
        self.taken = end;
    }

    /// `bytes` go on in place of the message at `read[start..end]` (none: it is dropped).
    pub fn replace(&mut self, read: &[u8], start: usize, end: usize, bytes: &[u8]) {
        debug_assert_eq!(start, self.taken);
        if !self.copying {
            self.copied.extend_from_slice(&read[..start]);
            self.copying = true;
        }
        self.copied.extend_from_slice(bytes);
        self.taken = end;
    }

    /// How far into the read buffer the messages taken so far reach.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// What to write for the messages taken so far, `read` being the same read buffer.
    pub fn bytes<'a>(&'a self, read: &'a [u8]) -> &'a [u8] {
        if self.copying {
            &self.copied
        } else {
            &read[..self.taken]
        }
    }

    /// After the write: the taken messages leave the read buffer, and this starts afresh.
    pub fn sent(&mut self, read: &mut BytesMut) {
        read.advance(self.taken);
        self.taken = 0;
        self.copying = false;
        if self.copied.capacity() > KEEP {
            self.copied = BytesMut::new();
        } else {
            self.copied.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::message;

    fn wire(messages: &[BytesMut]) -> BytesMut {
        let mut read = BytesMut::new();
        for m in messages {
            read.extend_from_slice(m);
        }
        read
    }

    #[test]
    fn forwarded_messages_are_sent_from_the_read_buffer_without_copying() {
        let (b, e) = (
            message(b'B', b"\0\0\0\0\0\0\0"),
            message(b'E', b"\0\0\0\0\0"),
        );
        let mut read = wire(&[b.clone(), e.clone()]);
        read.extend_from_slice(&message(b'S', b"")[..3]);
        let mut out = Outgoing::default();
        out.forward(&read, 0, b.len());
        out.forward(&read, b.len(), b.len() + e.len());
        let sent = out.bytes(&read);
        assert_eq!(sent, &read[..b.len() + e.len()]);
        assert_eq!(
            sent.as_ptr(),
            read.as_ptr(),
            "sent from the read buffer itself"
        );
        assert_eq!(out.copied.capacity(), 0, "nothing allocated");
        out.sent(&mut read);
        // The partial message read after them stays for the next read.
        assert_eq!(&read[..], &message(b'S', b"")[..3]);
        assert_eq!(out.taken(), 0);
    }

    #[test]
    fn a_replaced_or_dropped_message_keeps_the_order_of_the_rest() {
        let (a, b, c, d) = (
            message(b'D', b"a"),
            message(b'D', b"b"),
            message(b'D', b"c"),
            message(b'D', b"d"),
        );
        let mut read = wire(&[a.clone(), b.clone(), c.clone(), d.clone()]);
        let mut out = Outgoing::default();
        let mut at = 0;
        out.forward(&read, at, at + a.len());
        at += a.len();
        out.replace(&read, at, at + b.len(), &message(b'D', b"B"));
        at += b.len();
        out.replace(&read, at, at + c.len(), &[]);
        at += c.len();
        out.forward(&read, at, at + d.len());
        let expected = wire(&[a, message(b'D', b"B"), d]);
        assert_eq!(out.bytes(&read), &expected[..]);
        out.sent(&mut read);
        assert!(read.is_empty());
        // The next read starts with nothing copied.
        read.extend_from_slice(&message(b'Z', b"I"));
        out.forward(&read, 0, read.len());
        assert_eq!(out.bytes(&read), &read[..]);
    }

    #[test]
    fn a_large_copy_is_not_kept_for_the_next_read() {
        let big = message(b'D', &[b'x'; 3 * KEEP]);
        let mut read = big.clone();
        let mut out = Outgoing::default();
        out.replace(&read, 0, big.len(), &big);
        out.sent(&mut read);
        assert_eq!(out.copied.capacity(), 0);
    }
}
