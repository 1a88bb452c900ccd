//! The read backstop: a result column the proxy has no origin for (a view's, a function's, a
//! partition made by another connection since the catalog was read) can still carry stored
//! envelopes. For a role that may not receive some column's stored values, every value of
//! such a `bytea` column that is shaped as a format-2 envelope of one of those columns' key
//! contexts (version byte and public context tag) is sent as NULL. Reads then fail closed the
//! way the guard makes writes fail closed: a withheld column's ciphertext never leaves through
//! a path the mapping does not know. Roles that may read every column as stored or in
//! plaintext get such values as they are (stored bytes, never plaintext).
//!
//! Not recognised: envelopes nested in text (`row_to_json`, `::text`, arrays; the analysis
//! refuses whole-row and JSON conversions of protected tables to these roles) and format-1
//! envelopes (no context tag; `pgshroud setup` rewrites them to format 2).

use std::sync::Arc;

use pgshroud_rules::LogicalType;

use crate::crypto::envelope::{CONTEXT_TAG_LEN, CONTEXT_TAG_OFFSET, FORMAT_V2};
use crate::crypto::KeyContext;
use crate::protect::codec::{ColumnSpec, Spec};
use crate::protect::wire::Format;

/// Bytes of an envelope the backstop reads: version, key version, context tag.
const HEAD: usize = CONTEXT_TAG_OFFSET + CONTEXT_TAG_LEN;

/// The shortest format-2 envelope (an empty plaintext): head, then the 16-byte SIV.
const SHORTEST: usize = HEAD + 16;

/// The context tags of the key contexts whose stored values a role may not receive.
#[derive(Debug, Clone)]
pub struct Backstop {
    tags: Vec<[u8; CONTEXT_TAG_LEN]>,
    /// Every non-NULL value is withheld, envelope or not: a view's output computed from
    /// protected columns the role may not receive (no envelope to recognise there).
    all: bool,
    /// The column spec an unmapped result column's `Output` carries (made once, not per
    /// RowDescription).
    stand_in: Spec,
}

impl Backstop {
    pub fn new(tags: Vec<[u8; CONTEXT_TAG_LEN]>) -> Backstop {
        Backstop {
            tags,
            all: false,
            stand_in: Arc::new(ColumnSpec {
                qualified: "a result column of no known origin".to_owned(),
                logical: LogicalType::Bytea,
                modifier: None,
                context: KeyContext::new(""),
            }),
        }
    }

    /// Withholds every value (see `all`).
    pub fn everything() -> Backstop {
        Backstop {
            all: true,
            ..Backstop::none()
        }
    }

    /// Nothing withheld: unmapped columns pass untouched.
    pub fn none() -> Backstop {
        Backstop::new(Vec::new())
    }

    /// The stand-in spec of an unmapped result column.
    pub fn stand_in(&self) -> &Spec {
        &self.stand_in
    }

    /// Whether there is anything to hold back (else unmapped columns pass untouched).
    pub fn is_active(&self) -> bool {
        self.all || !self.tags.is_empty()
    }

    /// Whether `stored` (a bytea value as the server sent it in `format`) is an envelope of a
    /// withheld key context.
    pub fn withholds(&self, stored: &[u8], format: Format) -> bool {
        if self.all {
            return true;
        }
        let head = match format {
            Format::Binary => (stored.len() >= SHORTEST).then(|| head_of(stored)),
            Format::Text => text_head(stored),
        };
        let Some(Some(head)) = head else {
            return false;
        };
        head[0] == FORMAT_V2
            && self
                .tags
                .iter()
                .any(|t| t[..] == head[CONTEXT_TAG_OFFSET..])
    }
}

fn head_of(bytes: &[u8]) -> Option<[u8; HEAD]> {
    bytes.get(..HEAD)?.try_into().ok()
}

/// The first bytes of a bytea's text output, in either `bytea_output` format, when the value
/// is long enough to be an envelope.
fn text_head(text: &[u8]) -> Option<Option<[u8; HEAD]>> {
    if let Some(hex_digits) = text.strip_prefix(b"\\x") {
        if hex_digits.len() < 2 * SHORTEST {
            return Some(None);
        }
        let mut head = [0u8; HEAD];
        hex::decode_to_slice(&hex_digits[..2 * HEAD], &mut head).ok()?;
        return Some(Some(head));
    }
    // The escape format: `\\` is a backslash, `\ooo` an octal byte, anything else itself.
    let mut bytes = Vec::with_capacity(SHORTEST);
    let mut rest = text;
    while bytes.len() < SHORTEST && !rest.is_empty() {
        match rest {
            [b'\\', b'\\', tail @ ..] => {
                bytes.push(b'\\');
                rest = tail;
            }
            [b'\\', a, b, c, tail @ ..] => {
                let digit = |d: u8| (b'0'..=b'7').contains(&d).then(|| d - b'0');
                let (a, b, c) = (digit(*a)?, digit(*b)?, digit(*c)?);
                bytes.push((a << 6) | (b << 3) | c);
                rest = tail;
            }
            [byte, tail @ ..] => {
                bytes.push(*byte);
                rest = tail;
            }
            [] => break,
        }
    }
    Some((bytes.len() >= SHORTEST).then(|| head_of(&bytes)).flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::envelope::context_tag;

    fn envelope(context: &str, body: usize) -> Vec<u8> {
        let mut e = vec![FORMAT_V2, 0, 0, 0, 1];
        e.extend_from_slice(&context_tag(context));
        e.extend(std::iter::repeat_n(0xab, 16 + body));
        e
    }

    fn escaped(bytes: &[u8]) -> Vec<u8> {
        bytes
            .iter()
            .flat_map(|b| match b {
                b'\\' => b"\\\\".to_vec(),
                0x20..=0x7e => vec![*b],
                _ => format!("\\{b:03o}").into_bytes(),
            })
            .collect()
    }

    #[test]
    fn envelopes_of_withheld_contexts_are_recognised_in_every_format() {
        let b = Backstop::new(vec![context_tag("public.customers.email")]);
        assert!(b.is_active());
        for body in [0, 1, 40] {
            let e = envelope("public.customers.email", body);
            assert!(b.withholds(&e, Format::Binary));
            let hex = format!("\\x{}", hex::encode(&e));
            assert!(b.withholds(hex.as_bytes(), Format::Text));
            assert!(b.withholds(&escaped(&e), Format::Text));
        }
        let other = envelope("public.customers.age", 4);
        assert!(!b.withholds(&other, Format::Binary));
        assert!(!b.withholds(
            format!("\\x{}", hex::encode(&other)).as_bytes(),
            Format::Text
        ));
    }

    #[test]
    fn other_bytes_pass() {
        let b = Backstop::new(vec![context_tag("public.customers.email")]);
        let mut short = envelope("public.customers.email", 0);
        short.pop();
        assert!(!b.withholds(&short, Format::Binary));
        assert!(!b.withholds(b"\\x02", Format::Text));
        assert!(!b.withholds(b"plain text", Format::Text));
        assert!(!b.withholds(b"\\xzz", Format::Text));
        let mut v1 = envelope("public.customers.email", 4);
        v1[0] = 0x01;
        assert!(!b.withholds(&v1, Format::Binary));
        assert!(!Backstop::none().is_active());
    }
}
