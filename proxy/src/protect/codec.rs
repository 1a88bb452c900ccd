//! One protected value across the proxy: a client's value (text or binary format of the
//! logical type) becomes stored envelope bytes, and stored bytes (as the server sends a
//! `bytea`, in text or binary format) become the client's value again. Errors name the
//! column, never the value.

use std::sync::Arc;

use pgshroud_rules::LogicalType;

use crate::crypto::{ColumnCipher, KeyContext};
use crate::protect::wire::Format;
use crate::protocol::error::PgError;
use crate::values;

pub use super::spec::{ColumnSpec, Spec};

/// SQLSTATE for a stored value that does not decrypt (wrong key, corruption, moved value).
pub use crate::protocol::error::sqlstate::DATA_CORRUPTED;
/// SQLSTATE for a client value that is not valid for the logical type.
pub use crate::protocol::error::sqlstate::INVALID_TEXT_REPRESENTATION;

/// Client value -> stored envelope.
pub fn seal(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    format: Format,
    value: &[u8],
) -> Result<Vec<u8>, PgError> {
    Ok(cipher.seal(&canonical(spec, format, value)?))
}

/// Client value -> the canonical plaintext bytes that are sealed (modifier applied).
pub fn canonical(spec: &ColumnSpec, format: Format, value: &[u8]) -> Result<Vec<u8>, PgError> {
    let canonical = match format {
        Format::Text => {
            let text = std::str::from_utf8(value).map_err(|_| invalid_input(spec))?;
            values::canonical_from_text_under(spec.logical, spec.modifier, text)
        }
        Format::Binary => values::canonical_from_binary_under(spec.logical, spec.modifier, value),
    }
    .map_err(|_| invalid_input(spec))?;
    match spec.modifier {
        Some(m) => values::apply_modifier(spec.logical, m, canonical)
            .map_err(|e| modifier_refusal(spec, e)),
        None => Ok(canonical),
    }
}

/// SQLSTATE `numeric_value_out_of_range`.
pub use crate::protocol::error::sqlstate::NUMERIC_VALUE_OUT_OF_RANGE;
/// SQLSTATE `string_data_right_truncation`.
pub use crate::protocol::error::sqlstate::STRING_DATA_RIGHT_TRUNCATION;

/// A value the column's type modifier refuses, in PostgreSQL's own words.
fn modifier_refusal(spec: &ColumnSpec, error: values::ValueError) -> PgError {
    match error {
        values::ValueError::TooLong { .. } => {
            PgError::error(STRING_DATA_RIGHT_TRUNCATION, error.to_string())
                .with_detail(format!("column {}", spec.qualified))
        }
        values::ValueError::NumericOverflow {
            precision,
            scale,
            infinite,
        } => {
            let detail = if infinite {
                format!("A field with precision {precision}, scale {scale} cannot hold an infinite value.")
            } else {
                let limit = precision - scale;
                format!("A field with precision {precision}, scale {scale} must round to an absolute value less than 10^{limit}.")
            };
            PgError::error(NUMERIC_VALUE_OUT_OF_RANGE, error.to_string()).with_detail(detail)
        }
        _ => invalid_input(spec),
    }
}

/// A client's value whose `Parse` declared a type other than the column's logical type
/// (psycopg sends a Python int as binary `int2`, a float as binary `float8`). A binary value
/// is read as the declared type and re-read from its text form as the column's type, the
/// way PostgreSQL's assignment cast would; text values and undeclared types need nothing.
pub fn seal_declared(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    format: Format,
    declared: u32,
    value: &[u8],
) -> Result<Vec<u8>, PgError> {
    Ok(cipher.seal(&canonical_declared(spec, format, declared, value)?))
}

/// [`canonical`] of a value whose `Parse` declared the type `declared` (see [`seal_declared`]).
pub fn canonical_declared(
    spec: &ColumnSpec,
    format: Format,
    declared: u32,
    value: &[u8],
) -> Result<Vec<u8>, PgError> {
    if format == Format::Text || declared == 0 || declared == spec.logical.oid() {
        return canonical(spec, format, value);
    }
    let text = declared_binary_as_text(declared, value).ok_or_else(|| invalid_input(spec))?;
    canonical(spec, Format::Text, text.as_bytes())
}

/// The text form of a binary value of a declared type, or `None` when it is not one we read.
fn declared_binary_as_text(declared: u32, value: &[u8]) -> Option<String> {
    const FLOAT4: u32 = 700;
    const FLOAT8: u32 = 701;
    match declared {
        FLOAT4 => Some(f32::from_be_bytes(value.try_into().ok()?).to_string()),
        FLOAT8 => Some(f64::from_be_bytes(value.try_into().ok()?).to_string()),
        oid => {
            let t = LogicalType::from_oid(oid)?;
            let canonical = values::canonical_from_binary(t, value).ok()?;
            values::text_from_canonical(t, &canonical).ok()
        }
    }
}

/// A client's array of values for `c = ANY($n)` -> `bytea[]` (binary format) of envelopes.
pub fn seal_array(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    format: Format,
    value: &[u8],
) -> Result<Vec<u8>, PgError> {
    let mut sealed = Vec::new();
    match format {
        Format::Text => {
            let text = std::str::from_utf8(value).map_err(|_| invalid_input(spec))?;
            let elements = values::array::parse_text(text).map_err(|_| invalid_input(spec))?;
            for element in elements {
                sealed.push(match element {
                    None => None,
                    Some(e) => Some(seal(spec, cipher, Format::Text, e.as_bytes())?),
                });
            }
        }
        Format::Binary => {
            // The array names its element type: an `int2[]` for an int4 column reads too.
            let (element_oid, elements) =
                values::array::parse_binary(value).map_err(|_| invalid_input(spec))?;
            for element in elements {
                sealed.push(match element {
                    None => None,
                    Some(e) => Some(seal_declared(
                        spec,
                        cipher,
                        Format::Binary,
                        element_oid,
                        &e,
                    )?),
                });
            }
        }
    }
    Ok(values::array::bytea_array_binary(&sealed))
}

/// A SQL literal (`'\x01...'::bytea`) holding the envelope of a text-format literal value.
pub fn sealed_literal(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    value: Option<&str>,
) -> Result<String, PgError> {
    match value {
        // Typed: a VALUES column of NULLs alone would otherwise be text.
        None => Ok("NULL::bytea".to_owned()),
        Some(text) => {
            let sealed = seal(spec, cipher, Format::Text, text.as_bytes())?;
            let mut literal = String::new();
            push_bytea_literal(&mut literal, &sealed);
            Ok(literal)
        }
    }
}

/// Appends `E'\\x<hex>'::bytea` for `bytes` to `out`. An E'' string reads the same whatever
/// standard_conforming_strings says. Written digit by digit into reserved room: the simple
/// protocol seals every literal of every statement, and `hex::encode` collects a `String`
/// one `char` at a time.
pub fn push_bytea_literal(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 14);
    out.push_str("E'\\\\x");
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out.push_str("'::bytea");
}

/// A SQL `bytea[]` expression holding the envelopes of an array literal's elements
/// (`'{a,NULL}'` for `UNNEST('{a,NULL}'::text[])`), each sealed as the column's value.
pub fn sealed_array_literal(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    value: Option<&str>,
) -> Result<String, PgError> {
    let Some(text) = value else {
        return Ok("NULL::bytea[]".to_owned());
    };
    let elements = values::array::parse_text(text).map_err(|_| invalid_input(spec))?;
    if elements.is_empty() {
        return Ok("'{}'::bytea[]".to_owned());
    }
    let sealed = elements
        .iter()
        .map(|e| sealed_literal(spec, cipher, e.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("ARRAY[{}]::bytea[]", sealed.join(", ")))
}

/// Stored value as the server sent it (bytea in `server_format`) -> the client's value in
/// `client_format`. A forgotten tenant's value is an error here; [`open_opt`] gives NULL.
pub fn open(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    server_format: Format,
    stored: &[u8],
    client_format: Format,
) -> Result<Vec<u8>, PgError> {
    open_opt(spec, cipher, server_format, stored, client_format)?
        .ok_or_else(|| super::tenancy::forgotten(spec))
}

/// [`open`], but a value of a forgotten tenant is `None` (SQL NULL) when the store's
/// `forgotten_tenant_values` is `null`, and refused when it is `refuse`.
pub fn open_opt(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    server_format: Format,
    stored: &[u8],
    client_format: Format,
) -> Result<Option<Vec<u8>>, PgError> {
    // A typical envelope (a short value's) is decoded on the stack, a long one on the heap.
    let mut scratch = [0u8; SCRATCH];
    let heap: Vec<u8>;
    let envelope: &[u8] = match server_format {
        Format::Binary => stored,
        Format::Text => match bytea_from_text(stored, &mut scratch) {
            Some(Decoded::Scratch(n)) => &scratch[..n],
            Some(Decoded::Heap(bytes)) => {
                heap = bytes;
                &heap
            }
            None => return Err(corrupted(spec)),
        },
    };
    let canonical = match cipher.open(envelope) {
        Ok(canonical) => canonical,
        Err(crate::crypto::OpenError::ForgottenTenant { .. }) if cipher.forgotten_as_null() => {
            return Ok(None)
        }
        Err(crate::crypto::OpenError::ForgottenTenant { .. }) => {
            return Err(super::tenancy::forgotten(spec))
        }
        Err(_) => return Err(corrupted(spec)),
    };
    let binary = client_format == Format::Binary;
    values::output_with_modifier(spec.logical, spec.modifier, canonical, binary)
        .map(Some)
        .map_err(|_| corrupted(spec))
}

/// Envelopes up to this many bytes are decoded from bytea's text form without an allocation.
const SCRATCH: usize = 256;

/// Where [`bytea_from_text`] put the bytes.
enum Decoded {
    /// The first `n` bytes of the scratch buffer.
    Scratch(usize),
    Heap(Vec<u8>),
}

/// Decodes bytea's hex text output (`\x0102...`), into `scratch` when it fits.
fn bytea_from_text(text: &[u8], scratch: &mut [u8; SCRATCH]) -> Option<Decoded> {
    let hex_digits = text.strip_prefix(b"\\x")?;
    let n = hex_digits.len() / 2;
    if n > SCRATCH {
        return hex::decode(hex_digits).ok().map(Decoded::Heap);
    }
    // Refuses an odd number of digits and non-digits, as `hex::decode` does.
    hex::decode_to_slice(hex_digits, &mut scratch[..n]).ok()?;
    Some(Decoded::Scratch(n))
}

pub(crate) fn invalid_input(spec: &ColumnSpec) -> PgError {
    PgError::error(
        INVALID_TEXT_REPRESENTATION,
        format!(
            "invalid input for column {} of type {}",
            spec.qualified,
            spec.logical.name()
        ),
    )
}

fn corrupted(spec: &ColumnSpec) -> PgError {
    PgError::error(
        DATA_CORRUPTED,
        format!("could not decrypt a value of column {}", spec.qualified),
    )
    .with_hint("The value was written with another master key, was moved from another column, or is corrupted.")
}

/// Per-session cipher instances, one per key context (derived keys are cached in the ring).
/// A per-tenant context's cipher seals for the session's tenant ([`Ciphers::sealing`]) and
/// opens any tenant's values.
#[derive(Debug)]
pub struct Ciphers {
    ring: Arc<crate::crypto::KeyRing>,
    tenancy: Option<super::tenancy::SessionTenancy>,
    by_context: std::collections::HashMap<KeyContext, ColumnCipher, ContextHash>,
}

/// Hashes the few key contexts a session holds (names from the rules, not from clients, so
/// no flooding to defend against) word by word, as rustc's FxHash does: every protected value
/// looks its cipher up, and SipHash over `schema.table.column` was most of that look-up.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContextHash;

impl std::hash::BuildHasher for ContextHash {
    type Hasher = ContextHasher;

    fn build_hasher(&self) -> ContextHasher {
        ContextHasher(0)
    }
}

/// The hasher of [`ContextHash`].
#[derive(Debug)]
pub struct ContextHasher(u64);

impl ContextHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for ContextHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Ciphers {
    pub fn new(ring: Arc<crate::crypto::KeyRing>) -> Self {
        Ciphers {
            ring,
            tenancy: None,
            by_context: Default::default(),
        }
    }

    /// Per-tenant contexts are sealed for the session's tenant (none: they are only read).
    pub fn with_tenancy(mut self, tenancy: super::tenancy::SessionTenancy) -> Self {
        self.tenancy = Some(tenancy);
        self
    }

    /// The session's tenant changed: per-tenant contexts seal for `tenant` from now on.
    pub fn set_tenant(&mut self, tenant: Option<&str>) {
        if let Some(tenancy) = &mut self.tenancy {
            if tenancy.tenant.as_deref() != tenant {
                tenancy.tenant = tenant.map(Arc::from);
            }
        }
    }

    /// The cipher of a context, to open values (and to seal values of shared contexts).
    pub fn get(&mut self, context: &KeyContext) -> &mut ColumnCipher {
        // Not `entry(context.clone())`: the context's `Arc` is shared by every session, and
        // counting it up and down per value moves its cache line between cores.
        if !self.by_context.contains_key(context) {
            let cipher = match &self.tenancy {
                Some(t) if t.is_per_tenant(context) => t.open_cipher(context),
                _ => self.ring.cipher_for(context),
            };
            self.by_context.insert(context.clone(), cipher);
        }
        self.by_context
            .get_mut(context)
            .expect("a cipher was inserted for the context")
    }

    /// The cipher that seals a value of `spec`'s column: for a per-tenant column, the
    /// session's tenant's; refused when the session has no tenant or the tenant no key.
    pub fn sealing(&mut self, spec: &ColumnSpec) -> Result<&mut ColumnCipher, PgError> {
        if let Some(tenancy) = &self.tenancy {
            let ready = self
                .by_context
                .get(&spec.context)
                .is_some_and(|c| c.seals() && c.sealing_tenant() == tenancy.tenant.as_deref());
            if tenancy.is_per_tenant(&spec.context) && !ready {
                let cipher = tenancy.sealing_cipher(spec)?;
                self.by_context.insert(spec.context.clone(), cipher);
            }
        }
        Ok(self.get(&spec.context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyRing, MasterKey};

    fn int4_column() -> (ColumnSpec, ColumnCipher) {
        let context = KeyContext::for_column("public", "t", "age");
        let ring = KeyRing::single(MasterKey::from_bytes(&[7; 32]).unwrap());
        let cipher = ring.cipher_for(&context);
        let spec = ColumnSpec {
            qualified: "public.t.age".into(),
            logical: LogicalType::Int4,
            modifier: None,
            context,
        };
        (spec, cipher)
    }

    #[test]
    fn a_sealed_literal_is_the_envelope_in_an_escaped_bytea_string() {
        let (spec, mut cipher) = int4_column();
        let literal = sealed_literal(&spec, &mut cipher, Some("44")).unwrap();
        let sealed = seal(&spec, &mut cipher, Format::Text, b"44").unwrap();
        // Deterministic: the same value gives the same envelope, written as before.
        assert_eq!(literal, format!("E'\\\\x{}'::bytea", hex::encode(&sealed)));
        let mut every_byte = String::from("x = ");
        push_bytea_literal(&mut every_byte, &(0..=255).collect::<Vec<u8>>());
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(
            every_byte,
            format!("x = E'\\\\x{}'::bytea", hex::encode(all))
        );
        assert_eq!(
            sealed_literal(&spec, &mut cipher, None).unwrap(),
            "NULL::bytea"
        );
    }

    #[test]
    fn binary_int2_declared_for_an_int4_column_seals_like_its_text() {
        let (spec, mut cipher) = int4_column();
        let from_text = seal(&spec, &mut cipher, Format::Text, b"44").unwrap();
        let from_int2 =
            seal_declared(&spec, &mut cipher, Format::Binary, 21, &44i16.to_be_bytes()).unwrap();
        let from_int8 =
            seal_declared(&spec, &mut cipher, Format::Binary, 20, &44i64.to_be_bytes()).unwrap();
        assert_eq!(from_int2, from_text);
        assert_eq!(from_int8, from_text);
    }

    #[test]
    fn bytea_text_decodes_like_hex_decode_on_the_stack_or_the_heap() {
        let decode = |text: &[u8]| {
            let mut scratch = [0u8; SCRATCH];
            bytea_from_text(text, &mut scratch).map(|d| match d {
                Decoded::Scratch(n) => (true, scratch[..n].to_vec()),
                Decoded::Heap(bytes) => (false, bytes),
            })
        };
        let short: Vec<u8> = (0..=255).collect();
        let long: Vec<u8> = (0..300).map(|i| i as u8).collect();
        for (bytes, on_stack) in [(&short, true), (&long, false), (&Vec::new(), true)] {
            let text = format!("\\x{}", hex::encode(bytes));
            assert_eq!(decode(text.as_bytes()), Some((on_stack, bytes.clone())));
        }
        // Odd digit counts, non-digits and the escape form are not envelopes.
        assert_eq!(decode(b"\\x012"), None);
        assert_eq!(decode(b"\\x0g"), None);
        assert_eq!(decode(b"\\001"), None);
        assert_eq!(
            decode(format!("\\x{}0", hex::encode(&long)).as_bytes()),
            None
        );
    }

    #[test]
    fn binary_values_of_types_we_cannot_read_are_refused() {
        let (spec, mut cipher) = int4_column();
        // point (600) is no logical type: never guessed at.
        let err = seal_declared(&spec, &mut cipher, Format::Binary, 600, &[0; 16]).unwrap_err();
        assert_eq!(err.code, INVALID_TEXT_REPRESENTATION);
        // An int8 too large for int4 is out of range, as PostgreSQL's cast says.
        assert!(seal_declared(
            &spec,
            &mut cipher,
            Format::Binary,
            20,
            &(1i64 << 40).to_be_bytes()
        )
        .is_err());
    }
}
