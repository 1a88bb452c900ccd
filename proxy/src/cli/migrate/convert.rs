//! One value across a migration, in either direction, with the very functions the proxy uses
//! (`codec::canonical` then the column cipher), so a migrated column holds byte for byte the
//! envelopes pgshroud would have written for the same values.

use crate::crypto::ColumnCipher;
use crate::protect::codec::{self, ColumnSpec};
use crate::protect::wire::Format;
use crate::values;

/// Which way a column goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Plaintext of the logical type -> envelopes in `bytea` under the guard.
    Encrypt,
    /// Envelopes -> plaintext of the logical type (`--decrypt`).
    Decrypt,
}

/// The value written into the shadow column: an envelope (encrypt), or the plaintext's text
/// form that the shadow's type reads back exactly (decrypt).
pub enum Shadow {
    Envelope(Vec<u8>),
    Text(String),
}

/// A value that cannot be migrated; never carries the value itself.
#[derive(Debug)]
pub struct Unconvertible(pub String);

/// Turns a stored value of the column (binary format of its current type) into the shadow's.
pub fn convert(
    direction: Direction,
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    stored: &[u8],
) -> Result<Shadow, Unconvertible> {
    match direction {
        Direction::Encrypt => Ok(Shadow::Envelope(cipher.seal(&plaintext(spec, stored)?))),
        Direction::Decrypt => {
            let canonical = open(spec, cipher, stored)?;
            values::text_with_modifier(spec.logical, spec.modifier, &canonical)
                .map(Shadow::Text)
                .map_err(|_| {
                    Unconvertible(format!(
                        "{}: a decrypted value has no text form as {}",
                        spec.qualified,
                        spec.logical.name()
                    ))
                })
        }
    }
}

/// `true` when the shadow's value (binary format of its type) holds exactly what the stored
/// value holds: compared as canonical plaintexts, the form pgshroud encrypts.
pub fn same(
    direction: Direction,
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    stored: &[u8],
    shadow: &[u8],
) -> bool {
    let (plain, sealed) = match direction {
        Direction::Encrypt => (stored, shadow),
        Direction::Decrypt => (shadow, stored),
    };
    match (plaintext(spec, plain), open(spec, cipher, sealed)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The canonical plaintext of a value of the logical type in binary format, the column's type
/// modifier applied (a no-op for values the typed column already holds).
fn plaintext(spec: &ColumnSpec, binary: &[u8]) -> Result<Vec<u8>, Unconvertible> {
    codec::canonical(spec, Format::Binary, binary).map_err(|e| {
        Unconvertible(format!(
            "{}: a stored value is not a valid {} ({})",
            spec.qualified,
            spec.logical.name(),
            e.message
        ))
    })
}

fn open(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    envelope: &[u8],
) -> Result<Vec<u8>, Unconvertible> {
    cipher.open(envelope).map_err(|_| {
        Unconvertible(format!(
            "{}: a stored value opens under no live key version of key context {:?} (wrong key file, or not an envelope of this column)",
            spec.qualified,
            spec.context.as_str()
        ))
    })
}
