//! Texts that differ from a text PostgreSQL's scanner already read only in the values of its
//! plain literals, recognised without scanning them again.
//!
//! Why: on the simple protocol every statement with a new literal is a new text; `pg_query::
//! scan` (the scanner, then a protobuf round trip) was ~15 % of the encrypted instance's CPU
//! under the `customers` scenario, more than the sealing itself.
//!
//! A [`Pattern`] is a scanned text cut at its literal tokens: the bytes between them (the
//! *fixed* text, whitespace and comments included) and each literal's kind. A new text
//! matches when it is the same fixed text byte for byte with, at each literal, a plain literal
//! of the same kind (`shape.rs`'s rules: `'...'` with no backslash or line break, decimal
//! digits without a leading zero, `digits.digits`). Why the scanner then reads the same tokens
//! at the same places: it reads left to right, and what it decides at a position depends on
//! the text from there on. Before the first literal the texts are equal. A plain string
//! literal ends at the first quote not followed by another, whatever is inside it; a digit run
//! ends where the digits end, and the scanner's number rules see digits only as a class. The
//! text after each literal is the same fixed text as in the scanned text, followed by a
//! literal whose first character is of the same class (`'` or a digit), so every boundary
//! the scanner drew there it draws again. Two decisions do depend on a value, and are checked
//! here as the scanner makes them: an integer above 2147483647 is an `FCONST`, not an
//! `ICONST`; and a string naming pgshroud (see `shape::plain_string`) or holding a NUL is
//! never a plain literal. Anything else takes `shape::scan`, which is the authority: a text
//! this module does not match costs nothing but the look-up.
//!
//! The look-up key is a hash of the text with every run that looks like a plain literal
//! replaced by a marker ([`masked_hash`]); it only finds a candidate. The match decides.

use std::hash::Hasher;
use std::ops::Range;

use super::shape::{self, Literal, Scanned};

/// A literal's kind, as the scanner named its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `SCONST` from `'...'`.
    String,
    /// `ICONST`: decimal digits, at most 2147483647.
    Integer,
    /// `FCONST` from `digits.digits`.
    Decimal,
}

/// A scanned text cut at its literals (see the module's note).
#[derive(Debug)]
pub(super) struct Pattern {
    /// `fixed[i]` comes before literal `i`; the last one ends the text.
    fixed: Vec<Box<str>>,
    kinds: Vec<Kind>,
    /// The scanned text's tokens and, per literal, its token index.
    tokens: Vec<Range<usize>>,
    literal_tokens: Vec<usize>,
}

impl Pattern {
    /// The pattern of `sql` as `shape::scan` read it, or `None` when a literal token is not
    /// one of the plain forms this module recognises.
    pub fn of(sql: &str, scanned: &Scanned) -> Option<Pattern> {
        let mut fixed = Vec::with_capacity(scanned.literals.len() + 1);
        let mut kinds = Vec::with_capacity(scanned.literals.len());
        let mut at = 0;
        for literal in &scanned.literals {
            let span = scanned.tokens.get(literal.token)?;
            let text = sql.get(span.clone())?;
            kinds.push(match text.as_bytes().first()? {
                b'\'' => Kind::String,
                b'0'..=b'9' if text.contains('.') => Kind::Decimal,
                b'0'..=b'9' => Kind::Integer,
                _ => return None,
            });
            fixed.push(sql.get(at..span.start)?.into());
            at = span.end;
        }
        fixed.push(sql.get(at..)?.into());
        Some(Pattern {
            fixed,
            kinds,
            tokens: scanned.tokens.clone(),
            literal_tokens: scanned.literals.iter().map(|l| l.token).collect(),
        })
    }

    /// Approximate heap bytes (the shape cache's bound).
    pub fn bytes(&self) -> usize {
        self.fixed.iter().map(|f| f.len() + 16).sum::<usize>()
            + self.tokens.len() * 16
            + self.kinds.len() * 9
    }

    /// `sql` read as `shape::scan` would read it (tokens and literals; the shape key is left
    /// empty: the caller has the template already), or `None` when it is not this pattern
    /// with other plain literals.
    pub fn read(&self, sql: &str) -> Option<Scanned> {
        let bytes = sql.as_bytes();
        let mut at = 0;
        let mut literals = Vec::with_capacity(self.kinds.len());
        let mut spans = Vec::with_capacity(self.kinds.len());
        for (i, kind) in self.kinds.iter().enumerate() {
            let fixed = self.fixed[i].as_bytes();
            if !bytes.get(at..)?.starts_with(fixed) {
                return None;
            }
            at += fixed.len();
            let end = literal_end(bytes, at, *kind)?;
            let text = sql.get(at..end)?;
            let value = match kind {
                Kind::String if !text.contains('\0') => shape::plain_string(text)?,
                Kind::String => return None,
                Kind::Integer if fits_int4(text) => shape::plain_integer(text)?,
                Kind::Integer => return None,
                Kind::Decimal => shape::plain_decimal(text)?,
            };
            literals.push(Literal {
                token: self.literal_tokens[i],
                value,
            });
            spans.push(at..end);
            at = end;
        }
        if bytes.get(at..)? != self.fixed.last()?.as_bytes() {
            return None;
        }
        // The other tokens move by what the literals before them grew or shrank.
        let mut tokens = Vec::with_capacity(self.tokens.len());
        let mut shift: isize = 0;
        let mut next = 0;
        for (i, token) in self.tokens.iter().enumerate() {
            if self.literal_tokens.get(next) == Some(&i) {
                let span = spans[next].clone();
                shift += span.len() as isize - token.len() as isize;
                tokens.push(span);
                next += 1;
            } else {
                let start = token.start.checked_add_signed(shift)?;
                let end = token.end.checked_add_signed(shift)?;
                tokens.push(start..end);
            }
        }
        Some(Scanned {
            tokens,
            literals,
            key: Vec::new(),
        })
    }
}

/// Where a literal of `kind` starting at `at` ends, as the scanner ends it.
fn literal_end(bytes: &[u8], at: usize, kind: Kind) -> Option<usize> {
    match kind {
        Kind::String => string_end(bytes, at),
        Kind::Integer => {
            let end = digits_end(bytes, at);
            (end > at).then_some(end)
        }
        Kind::Decimal => {
            let whole = digits_end(bytes, at);
            if whole == at || bytes.get(whole) != Some(&b'.') {
                return None;
            }
            let end = digits_end(bytes, whole + 1);
            (end > whole + 1).then_some(end)
        }
    }
}

/// The end of `'...'` starting at `at` (a doubled quote stays inside), or `None`.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'\'') {
        return None;
    }
    let mut i = at + 1;
    loop {
        let quote = i + bytes.get(i..)?.iter().position(|&b| b == b'\'')?;
        if bytes.get(quote + 1) == Some(&b'\'') {
            i = quote + 2;
        } else {
            return Some(quote + 1);
        }
    }
}

fn digits_end(bytes: &[u8], at: usize) -> usize {
    at + bytes
        .get(at..)
        .map_or(0, |b| b.iter().take_while(|b| b.is_ascii_digit()).count())
}

/// PostgreSQL's scanner makes a decimal integer an `ICONST` only when it fits an int4
/// (`process_integer_literal`); a larger one is an `FCONST`, another shape.
fn fits_int4(digits: &str) -> bool {
    digits.len() <= 10 && digits.parse::<u64>().is_ok_and(|v| v <= i32::MAX as u64)
}

/// The look-up key of `sql`: a hash of its text with each run that looks like a plain
/// literal (a quoted string; digits, with a fraction, not inside a name) replaced by a
/// marker of its kind (quoted names and comments are skipped whole, nested comments not
/// followed). Texts of one pattern hash alike; a text the markers misread (a quote
/// in a dollar-quoted string, say) only misses, and takes the scanner's path.
pub(super) fn masked_hash(scope: u64, sql: &str) -> u64 {
    let bytes = sql.as_bytes();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write_u64(scope);
    let mut at = 0;
    let mut copied = 0;
    while at < bytes.len() {
        let b = bytes[at];
        let word_before = at > 0 && is_word_byte(bytes[at - 1]);
        // Quoted names and comments are copied whole: a quote inside them is no string.
        let skip_to = match (b, bytes.get(at + 1)) {
            (b'"', _) => Some(find_from(bytes, at + 1, b"\"").map_or(bytes.len(), |e| e + 1)),
            (b'-', Some(b'-')) => Some(find_from(bytes, at, b"\n").unwrap_or(bytes.len())),
            (b'/', Some(b'*')) => {
                Some(find_from(bytes, at + 2, b"*/").map_or(bytes.len(), |e| e + 2))
            }
            _ => None,
        };
        if let Some(end) = skip_to {
            at = end;
            continue;
        }
        let (end, marker) = if b == b'\'' {
            (string_end(bytes, at).unwrap_or(bytes.len()), 1u8)
        } else if b.is_ascii_digit() && !word_before {
            let whole = digits_end(bytes, at);
            match literal_end(bytes, at, Kind::Decimal) {
                Some(end) => (end, 3u8),
                None => (whole, 2u8),
            }
        } else {
            at += 1;
            continue;
        };
        hasher.write(&bytes[copied..at]);
        hasher.write_u8(0xff);
        hasher.write_u8(marker);
        at = end;
        copied = end;
    }
    hasher.write(&bytes[copied..]);
    hasher.finish()
}

/// Where `needle` next occurs in `bytes` at or after `from`.
fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// A byte that may continue a name or a parameter (`t1`, `$1`, non-ASCII letters).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// A text's pattern for a session's memory of harmless texts (`protect/session/harmless.rs`):
/// which other texts PostgreSQL's scanner reads as the same tokens with other plain literals,
/// and where their literals are, found without a scan and without allocating (it runs on
/// every simple-protocol statement of a session with rules).
#[derive(Debug)]
pub struct TextShape(Pattern);

impl TextShape {
    /// `sql`'s pattern as `shape::scan` reads it (one scan), or `None` when the scanner gives
    /// it no shape or a literal is not one of the plain forms (`shape.rs`).
    pub fn of(sql: &str) -> Option<TextShape> {
        let scanned = shape::scan(sql)?;
        Pattern::of(sql, &scanned).map(TextShape)
    }

    /// Whether every number literal stands apart: the bytes just before and after it are
    /// neither a letter, a digit, `_`, `$`, `.`, a quote nor a non-ASCII byte (`1abc` is
    /// the number 1 and the name abc to PostgreSQL 15, and a substring search would read one
    /// word). Only then can a word without a quote or a digit at its edge never straddle a
    /// literal of a text of this pattern (see the session's memory).
    pub fn numbers_stand_apart(&self) -> bool {
        let Pattern { fixed, kinds, .. } = &self.0;
        let apart = |b: Option<&u8>| {
            b.is_none_or(|&b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.' | b'\'' | b'"'))
                    && b.is_ascii()
            })
        };
        kinds.iter().enumerate().all(|(i, kind)| {
            *kind == Kind::String
                || apart(fixed[i].as_bytes().last()) && apart(fixed[i + 1].as_bytes().first())
        })
    }

    /// The look-up key of `sql` ([`masked_hash`]): texts of one pattern share it; it only
    /// finds a candidate.
    pub fn key(sql: &str) -> u64 {
        masked_hash(0, sql)
    }

    /// The number of literals of the pattern.
    pub fn literal_count(&self) -> usize {
        self.0.kinds.len()
    }

    /// When `sql` is this pattern with other plain literals, as [`Pattern::read`] decides it
    /// (asserted by this module's tests), the byte ranges of its literal tokens (quotes
    /// included) go to `spans` (cleared first) and the answer is `true`.
    pub fn literal_spans(&self, sql: &str, spans: &mut Vec<Range<usize>>) -> bool {
        spans.clear();
        let bytes = sql.as_bytes();
        let Pattern { fixed, kinds, .. } = &self.0;
        let mut at = 0;
        for (i, kind) in kinds.iter().enumerate() {
            let fixed = fixed[i].as_bytes();
            if !bytes.get(at..).is_some_and(|b| b.starts_with(fixed)) {
                return false;
            }
            at += fixed.len();
            let Some(end) = literal_end(bytes, at, *kind) else {
                return false;
            };
            if !plain_value(*kind, &bytes[at..end]) {
                return false;
            }
            spans.push(at..end);
            at = end;
        }
        fixed
            .last()
            .is_some_and(|last| bytes.get(at..) == Some(last.as_bytes()))
    }
}

/// Whether a literal token of `kind` (its bytes, as `literal_end` cut them) is one
/// [`Pattern::read`] takes: `shape::plain_string`, `plain_integer` within an int4 and
/// `plain_decimal`, without building the value.
fn plain_value(kind: Kind, text: &[u8]) -> bool {
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    match kind {
        Kind::String => {
            let inner = &text[1..text.len() - 1];
            !inner
                .iter()
                .any(|b| matches!(b, b'\0' | b'\\' | b'\n' | b'\r'))
                && !inner
                    .windows(b"pgshroud".len())
                    .any(|w| w.eq_ignore_ascii_case(b"pgshroud"))
        }
        Kind::Integer => {
            digits(text)
                && (text == b"0" || text[0] != b'0')
                && std::str::from_utf8(text).is_ok_and(fits_int4)
        }
        Kind::Decimal => match text.iter().position(|&b| b == b'.') {
            Some(dot) => digits(&text[..dot]) && digits(&text[dot + 1..]),
            None => false,
        },
    }
}

#[cfg(test)]
#[path = "shape_match_spans_tests.rs"]
mod spans_tests;
