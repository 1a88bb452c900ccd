//! The stored bytes of a protected value. Format 2 (written today):
//! `0x02` | key version (u32 BE) | 4-byte key-context tag | 16-byte SIV | ciphertext.
//! Format 1 (read only): `0x01` | key version | 16-byte SIV | ciphertext.
//! Format 3 (per-tenant columns): `0x03` | tenant-key version | context tag | 8-byte tenant
//! tag | 16-byte SIV | ciphertext; the version is the tenant key's, not the master key's.
//! The context tag lets PostgreSQL itself (the column's guard, `protect::guard`) check that a
//! value is an envelope of that column's context without holding a key. Parsing checks the
//! shape only; which key versions exist is the key ring's business.

use std::fmt;

use sha2::{Digest, Sha256};

/// First byte of envelopes written before the context tag existed (read, never written).
pub const FORMAT_V1: u8 = 0x01;
/// First byte of every envelope written now.
pub const FORMAT_V2: u8 = 0x02;
/// First byte of envelopes sealed with a tenant key (per-tenant columns).
pub const FORMAT_V3: u8 = 0x03;
/// Length of the tenant tag of format 3.
pub const TENANT_TAG_LEN: usize = 8;
/// Offset of the tenant tag in a format-3 envelope (after the context tag).
pub const TENANT_TAG_OFFSET: usize = CONTEXT_TAG_OFFSET + CONTEXT_TAG_LEN;
/// Offset of the ciphertext in a format-3 envelope; the length of an envelope of an empty
/// plaintext (the per-tenant guard's minimum length).
pub const V3_CIPHERTEXT_OFFSET: usize = TENANT_TAG_OFFSET + TENANT_TAG_LEN + TAG_LEN;
/// Domain separation of the tenant tag's hash.
const TENANT_TAG_PREFIX: &str = "pgshroud/v3/tenant-tag/";
/// Length of the key-context tag of format 2.
pub const CONTEXT_TAG_LEN: usize = 4;
/// Offset of the context tag in a format-2 envelope (after format byte and key version).
pub const CONTEXT_TAG_OFFSET: usize = 1 + 4;
/// Offset of the 16-byte SIV tag in a format-2 envelope.
pub const TAG_OFFSET: usize = CONTEXT_TAG_OFFSET + CONTEXT_TAG_LEN;
/// Length of the SIV tag.
pub const TAG_LEN: usize = 16;
/// Offset of the ciphertext in a format-2 envelope; also the length of an envelope of an
/// empty plaintext (the guard's minimum length).
pub const CIPHERTEXT_OFFSET: usize = TAG_OFFSET + TAG_LEN;
/// Offset of the ciphertext in a format-1 envelope.
const V1_CIPHERTEXT_OFFSET: usize = 1 + 4 + TAG_LEN;
/// Domain separation of the context tag's hash.
const CONTEXT_TAG_PREFIX: &str = "pgshroud/v2/context-tag/";

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

/// The first 4 bytes of SHA-256(`pgshroud/v2/context-tag/` || context): public, keyless, so
/// the database can check it. It names the column a value was sealed for; it proves nothing
/// (anyone can compute it), authentication is the SIV's job.
pub fn context_tag(context: &str) -> [u8; CONTEXT_TAG_LEN] {
    let digest = Sha256::new()
        .chain_update(CONTEXT_TAG_PREFIX.as_bytes())
        .chain_update(context.as_bytes())
        .finalize();
    let mut tag = [0u8; CONTEXT_TAG_LEN];
    tag.copy_from_slice(&digest[..CONTEXT_TAG_LEN]);
    tag
}

/// The first 8 bytes of SHA-256(`pgshroud/v3/tenant-tag/` || tenant id): public, keyless. It
/// tells pgshroud which tenant's key opens a value, and lets SQL find a tenant's values
/// (`substr(col, 10, 8)`) without a key; like the context tag it proves nothing.
pub fn tenant_tag(tenant: &str) -> [u8; TENANT_TAG_LEN] {
    let digest = Sha256::new()
        .chain_update(TENANT_TAG_PREFIX.as_bytes())
        .chain_update(tenant.as_bytes())
        .finalize();
    let mut tag = [0u8; TENANT_TAG_LEN];
    tag.copy_from_slice(&digest[..TENANT_TAG_LEN]);
    tag
}

/// Why some stored bytes are not an envelope. Carries no content bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("stored value is empty, not a pgshroud envelope")]
    Empty,
    #[error(
        "stored value starts with format byte 0x{format:02x}, not 0x01, 0x02 or 0x03: not a pgshroud envelope"
    )]
    UnknownFormat { format: u8 },
    #[error("stored value is {len} bytes, shorter than the envelope minimum")]
    TooShort { len: usize },
}

/// A parsed envelope, borrowing the stored bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub key_version: KeyVersion,
    /// The key-context tag (format 2); `None` for format 1, which has none.
    pub context_tag: Option<&'a [u8; CONTEXT_TAG_LEN]>,
    /// The tenant tag (format 3 only): the value was sealed with that tenant's key.
    pub tenant_tag: Option<&'a [u8; TENANT_TAG_LEN]>,
    pub tag: &'a [u8; TAG_LEN],
    pub ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    pub fn parse(stored: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        let (&format, rest) = stored.split_first().ok_or(EnvelopeError::Empty)?;
        let too_short = || EnvelopeError::TooShort { len: stored.len() };
        let (version, rest) = match format {
            FORMAT_V1 | FORMAT_V2 | FORMAT_V3 => {
                rest.split_first_chunk::<4>().ok_or_else(too_short)?
            }
            format => return Err(EnvelopeError::UnknownFormat { format }),
        };
        let (context_tag, rest) = if format != FORMAT_V1 {
            let (tag, rest) = rest
                .split_first_chunk::<CONTEXT_TAG_LEN>()
                .ok_or_else(too_short)?;
            (Some(tag), rest)
        } else {
            (None, rest)
        };
        let (tenant_tag, rest) = if format == FORMAT_V3 {
            let (tag, rest) = rest
                .split_first_chunk::<TENANT_TAG_LEN>()
                .ok_or_else(too_short)?;
            (Some(tag), rest)
        } else {
            (None, rest)
        };
        let (tag, ciphertext) = rest.split_first_chunk::<TAG_LEN>().ok_or_else(too_short)?;
        Ok(Envelope {
            key_version: KeyVersion(u32::from_be_bytes(*version)),
            context_tag,
            tenant_tag,
            tag,
            ciphertext,
        })
    }
}

impl Envelope<'_> {
    /// The format number (1, 2 or 3).
    pub fn format(&self) -> u8 {
        match (self.context_tag, self.tenant_tag) {
            (None, _) => FORMAT_V1,
            (Some(_), None) => FORMAT_V2,
            (Some(_), Some(_)) => FORMAT_V3,
        }
    }
}

/// Shows the shape only: ciphertext bytes stay out of logs.
impl fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_version", &self.key_version)
            .field("format", &self.format())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Appends format byte, key version, context tag and a zeroed SIV (filled in once computed).
pub(super) fn push_header(out: &mut Vec<u8>, version: KeyVersion, tag: &[u8; CONTEXT_TAG_LEN]) {
    out.push(FORMAT_V2);
    out.extend_from_slice(&version.0.to_be_bytes());
    out.extend_from_slice(tag);
    out.extend_from_slice(&[0u8; TAG_LEN]);
}

/// Appends the format-3 header: format byte, tenant-key version, context tag, tenant tag and
/// a zeroed SIV (filled in once computed).
pub(super) fn push_header_v3(
    out: &mut Vec<u8>,
    version: KeyVersion,
    tag: &[u8; CONTEXT_TAG_LEN],
    tenant: &[u8; TENANT_TAG_LEN],
) {
    out.push(FORMAT_V3);
    out.extend_from_slice(&version.0.to_be_bytes());
    out.extend_from_slice(tag);
    out.extend_from_slice(tenant);
    out.extend_from_slice(&[0u8; TAG_LEN]);
}

/// The format-2 form of a format-1 envelope sealed for `context`: the same SIV and
/// ciphertext (the associated data is the context in both formats), with the context tag
/// inserted. Needs no key; `pgshroud setup` does the same in SQL.
pub fn upgrade_v1(stored: &[u8], context: &str) -> Option<Vec<u8>> {
    if stored.first() != Some(&FORMAT_V1) || stored.len() < V1_CIPHERTEXT_OFFSET {
        return None;
    }
    let mut out = Vec::with_capacity(stored.len() + CONTEXT_TAG_LEN);
    out.push(FORMAT_V2);
    out.extend_from_slice(&stored[1..CONTEXT_TAG_OFFSET]);
    out.extend_from_slice(&context_tag(context));
    out.extend_from_slice(&stored[CONTEXT_TAG_OFFSET..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(version: u32, tag: [u8; 4], siv: [u8; TAG_LEN], ct: &[u8]) -> Vec<u8> {
        let mut stored = Vec::new();
        push_header(&mut stored, KeyVersion::new(version), &tag);
        stored[TAG_OFFSET..CIPHERTEXT_OFFSET].copy_from_slice(&siv);
        stored.extend_from_slice(ct);
        stored
    }

    #[test]
    fn empty_value_is_not_an_envelope() {
        assert_eq!(Envelope::parse(&[]), Err(EnvelopeError::Empty));
    }

    #[test]
    fn unknown_format_byte_is_refused() {
        for format in [0x00, 0x04, 0x61, 0xff] {
            let mut stored = vec![format];
            stored.extend_from_slice(&[0u8; 30]);
            assert_eq!(
                Envelope::parse(&stored),
                Err(EnvelopeError::UnknownFormat { format })
            );
        }
    }

    #[test]
    fn value_shorter_than_header_and_tag_is_too_short() {
        for (format, lens) in [(FORMAT_V1, &[1, 4, 5, 20][..]), (FORMAT_V2, &[1, 5, 9, 24])] {
            for &len in lens {
                let mut stored = vec![0u8; len];
                stored[0] = format;
                assert_eq!(
                    Envelope::parse(&stored),
                    Err(EnvelopeError::TooShort { len }),
                    "format {format}, {len} bytes"
                );
            }
        }
    }

    #[test]
    fn format_2_fields_are_read_from_their_offsets() {
        let stored = v2(0x0102_0304, [9, 8, 7, 6], [0xaa; TAG_LEN], b"ct");
        assert_eq!(&stored[..9], &[0x02, 0x01, 0x02, 0x03, 0x04, 9, 8, 7, 6]);
        let envelope = Envelope::parse(&stored).unwrap();
        assert_eq!(envelope.key_version, KeyVersion::new(0x0102_0304));
        assert_eq!(envelope.context_tag, Some(&[9, 8, 7, 6]));
        assert_eq!(envelope.tag, &[0xaa; TAG_LEN]);
        assert_eq!(envelope.ciphertext, b"ct");
    }

    #[test]
    fn format_3_fields_are_read_from_their_offsets() {
        let mut stored = Vec::new();
        push_header_v3(&mut stored, KeyVersion::new(2), &[9, 8, 7, 6], &[1; 8]);
        assert_eq!(stored.len(), V3_CIPHERTEXT_OFFSET);
        assert_eq!(V3_CIPHERTEXT_OFFSET, 33);
        stored[TENANT_TAG_OFFSET + TENANT_TAG_LEN..].copy_from_slice(&[0xaa; TAG_LEN]);
        stored.extend_from_slice(b"ct");
        let envelope = Envelope::parse(&stored).unwrap();
        assert_eq!(envelope.format(), FORMAT_V3);
        assert_eq!(envelope.key_version, KeyVersion::new(2));
        assert_eq!(envelope.context_tag, Some(&[9, 8, 7, 6]));
        assert_eq!(envelope.tenant_tag, Some(&[1; 8]));
        assert_eq!(envelope.tag, &[0xaa; TAG_LEN]);
        assert_eq!(envelope.ciphertext, b"ct");
        // SQL finds a tenant's values at substr(col, 10, 8): offset 9, 1-based 10.
        assert_eq!(TENANT_TAG_OFFSET, 9);
        for len in [1, 9, 17, 32] {
            let mut short = vec![0u8; len];
            short[0] = FORMAT_V3;
            assert_eq!(
                Envelope::parse(&short),
                Err(EnvelopeError::TooShort { len })
            );
        }
    }

    #[test]
    fn tenant_tag_is_fixed_per_tenant() {
        // Also in FORMAT.md and scripts/pgshroud_decrypt.py.
        assert_eq!(hex::encode(tenant_tag("acme")), "8388c9b136fe103f");
        assert_ne!(tenant_tag("acme"), tenant_tag("globex"));
    }

    #[test]
    fn format_1_is_still_read() {
        let mut stored = vec![FORMAT_V1, 0, 0, 0, 1];
        stored.extend_from_slice(&[0xbb; TAG_LEN]);
        stored.extend_from_slice(b"xyz");
        let envelope = Envelope::parse(&stored).unwrap();
        assert_eq!(envelope.key_version, KeyVersion::INITIAL);
        assert_eq!(envelope.context_tag, None);
        assert_eq!(envelope.tag, &[0xbb; TAG_LEN]);
        assert_eq!(envelope.ciphertext, b"xyz");
    }

    #[test]
    fn envelope_of_empty_plaintext_is_25_bytes() {
        let stored = v2(1, [0; 4], [0; TAG_LEN], b"");
        assert_eq!(stored.len(), CIPHERTEXT_OFFSET);
        assert_eq!(CIPHERTEXT_OFFSET, 25);
        assert_eq!(Envelope::parse(&stored).unwrap().ciphertext, b"");
    }

    #[test]
    fn context_tag_is_fixed_per_context() {
        // Also in FORMAT.md and scripts/pgshroud_decrypt.py.
        assert_eq!(
            hex::encode(context_tag("public.customers.email")),
            "17ab4a2f"
        );
        assert_ne!(
            context_tag("public.customers.email"),
            context_tag("public.customers.age")
        );
    }

    #[test]
    fn upgrade_inserts_the_context_tag_and_keeps_siv_and_ciphertext() {
        let mut v1 = vec![FORMAT_V1, 0, 0, 0, 3];
        v1.extend_from_slice(&[0xcc; TAG_LEN]);
        v1.extend_from_slice(b"ct");
        let up = upgrade_v1(&v1, "ctx").unwrap();
        let envelope = Envelope::parse(&up).unwrap();
        assert_eq!(envelope.key_version, KeyVersion::new(3));
        assert_eq!(envelope.context_tag, Some(&context_tag("ctx")));
        assert_eq!(envelope.tag, &[0xcc; TAG_LEN]);
        assert_eq!(envelope.ciphertext, b"ct");
        assert_eq!(
            upgrade_v1(&up, "ctx"),
            None,
            "format 2 is not upgraded again"
        );
        assert_eq!(upgrade_v1(&v1[..10], "ctx"), None);
    }

    #[test]
    fn debug_shows_no_ciphertext_bytes() {
        let stored = v2(1, [0; 4], [0; TAG_LEN], &[0xde, 0xad]);
        let debug = format!("{:?}", Envelope::parse(&stored).unwrap());
        assert!(debug.contains("ciphertext_len: 2"), "{debug}");
        assert!(!debug.contains("222"), "{debug}");
    }
}
