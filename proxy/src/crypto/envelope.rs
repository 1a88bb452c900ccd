//! The stored bytes of a protected value: `0x01` | key version (u32 BE) | 16-byte SIV | ciphertext.
//! Parsing checks the shape only; which key versions exist is the key ring's business.

use std::fmt;

/// First byte of every envelope of this format.
pub const FORMAT_V1: u8 = 0x01;
/// Offset of the 16-byte SIV tag (after format byte and key version).
pub const TAG_OFFSET: usize = 1 + 4;
/// Length of the SIV tag.
pub const TAG_LEN: usize = 16;
/// Offset of the ciphertext; also the length of an envelope of an empty plaintext.
pub const CIPHERTEXT_OFFSET: usize = TAG_OFFSET + TAG_LEN;

/// Which master key sealed a value. Reads follow the envelope; writes use the active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyVersion(u32);

impl KeyVersion {
    /// The version of a key ring that has never been rotated.
    pub const INITIAL: KeyVersion = KeyVersion(1);

    pub const fn new(version: u32) -> KeyVersion {
        KeyVersion(version)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why some stored bytes are not an envelope. Carries no content bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("stored value is empty, not a pgshroud envelope")]
    Empty,
    #[error(
        "stored value starts with format byte 0x{format:02x}, not 0x01: not a pgshroud envelope"
    )]
    UnknownFormat { format: u8 },
    #[error(
        "stored value is {len} bytes, shorter than the {CIPHERTEXT_OFFSET}-byte envelope minimum"
    )]
    TooShort { len: usize },
}

/// A parsed envelope, borrowing the stored bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub key_version: KeyVersion,
    pub tag: &'a [u8; TAG_LEN],
    pub ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    pub fn parse(stored: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        let (&format, _) = stored.split_first().ok_or(EnvelopeError::Empty)?;
        if format != FORMAT_V1 {
            return Err(EnvelopeError::UnknownFormat { format });
        }
        let too_short = EnvelopeError::TooShort { len: stored.len() };
        let (version, rest) = stored[1..]
            .split_first_chunk::<4>()
            .ok_or(too_short.clone())?;
        let (tag, ciphertext) = rest.split_first_chunk::<TAG_LEN>().ok_or(too_short)?;
        Ok(Envelope {
            key_version: KeyVersion(u32::from_be_bytes(*version)),
            tag,
            ciphertext,
        })
    }
}

/// Shows the shape only: ciphertext bytes stay out of logs.
impl fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_version", &self.key_version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Appends format byte, key version and a zeroed tag (filled in once computed).
pub(super) fn push_header(out: &mut Vec<u8>, version: KeyVersion) {
    out.push(FORMAT_V1);
    out.extend_from_slice(&version.0.to_be_bytes());
    out.extend_from_slice(&[0u8; TAG_LEN]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_value_is_not_an_envelope() {
        assert_eq!(Envelope::parse(&[]), Err(EnvelopeError::Empty));
    }

    #[test]
    fn unknown_format_byte_is_refused() {
        let mut stored = vec![0x02];
        stored.extend_from_slice(&[0u8; 30]);
        assert_eq!(
            Envelope::parse(&stored),
            Err(EnvelopeError::UnknownFormat { format: 0x02 })
        );
    }

    #[test]
    fn value_shorter_than_header_and_tag_is_too_short() {
        for len in [1, 4, 5, 20] {
            let mut stored = vec![0u8; len];
            stored[0] = FORMAT_V1;
            assert_eq!(
                Envelope::parse(&stored),
                Err(EnvelopeError::TooShort { len }),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn fields_are_read_from_their_offsets() {
        let mut stored = Vec::new();
        push_header(&mut stored, KeyVersion::new(0x0102_0304));
        stored[TAG_OFFSET..CIPHERTEXT_OFFSET].copy_from_slice(&[0xaa; TAG_LEN]);
        stored.extend_from_slice(b"ct");
        assert_eq!(&stored[..5], &[0x01, 0x01, 0x02, 0x03, 0x04]);
        let envelope = Envelope::parse(&stored).unwrap();
        assert_eq!(envelope.key_version, KeyVersion::new(0x0102_0304));
        assert_eq!(envelope.tag, &[0xaa; TAG_LEN]);
        assert_eq!(envelope.ciphertext, b"ct");
    }

    #[test]
    fn envelope_of_empty_plaintext_is_21_bytes() {
        let mut stored = Vec::new();
        push_header(&mut stored, KeyVersion::INITIAL);
        assert_eq!(stored.len(), CIPHERTEXT_OFFSET);
        assert_eq!(Envelope::parse(&stored).unwrap().ciphertext, b"");
    }

    #[test]
    fn debug_shows_no_ciphertext_bytes() {
        let mut stored = Vec::new();
        push_header(&mut stored, KeyVersion::INITIAL);
        stored.extend_from_slice(&[0xde, 0xad]);
        let debug = format!("{:?}", Envelope::parse(&stored).unwrap());
        assert!(debug.contains("ciphertext_len: 2"), "{debug}");
        assert!(!debug.contains("222"), "{debug}");
    }
}
