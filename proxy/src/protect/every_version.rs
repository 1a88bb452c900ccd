//! A value the statement supplies for an equality test, sealed under every live key version:
//! while a rotation re-encrypts old rows, `WHERE email = $1` must find a row whether it is
//! still under the old key or already under the new one. Only used when more than one
//! version is live; with one, statements are planned exactly as before.

use super::codec::{self, ColumnSpec};
use super::wire::Format;
use crate::crypto::ColumnCipher;
use crate::protocol::error::PgError;
use crate::values;

/// Where a supplied value sits in its comparison, which decides how its envelopes are spliced
/// (see `engine::versions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Splice {
    /// `c = v`: `c = ANY(ARRAY[v under each version])`.
    AnyOf,
    /// `c <> v`: `c <> ALL(ARRAY[...])`.
    AllOf,
    /// An item of `c [NOT] IN (...)` or `ARRAY[...]` of `= ANY` / `<> ALL`: the item becomes
    /// one item per version.
    Items,
    /// The whole array of `c = ANY(v)` / `c <> ALL(v)`: each element once per version.
    Array,
}

/// The text replacing a literal: its envelopes under every live version, spliced as `how`.
pub fn literal(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    value: Option<&str>,
    array: bool,
    how: Splice,
) -> Result<String, PgError> {
    let Some(text) = value else {
        // NULL compares as NULL whatever the key: nothing to multiply.
        return Ok(if array {
            "NULL::bytea[]"
        } else {
            "NULL::bytea"
        }
        .to_owned());
    };
    let elements = if array {
        values::array::parse_text(text).map_err(|_| codec::invalid_input(spec))?
    } else {
        vec![Some(text.to_owned())]
    };
    let mut items = Vec::new();
    for element in elements {
        match element {
            None => items.push("NULL::bytea".to_owned()),
            Some(e) => {
                let canonical = codec::canonical(spec, Format::Text, e.as_bytes())?;
                for sealed in cipher.seal_all_versions(&canonical) {
                    let mut item = String::new();
                    codec::push_bytea_literal(&mut item, &sealed);
                    items.push(item);
                }
            }
        }
    }
    let list = items.join(", ");
    Ok(match how {
        Splice::Items if !array => list,
        Splice::AnyOf if !array => format!("ANY(ARRAY[{list}]::bytea[])"),
        Splice::AllOf if !array => format!("ALL(ARRAY[{list}]::bytea[])"),
        Splice::Array if items.is_empty() => "'{}'::bytea[]".to_owned(),
        Splice::Array => format!("ARRAY[{list}]::bytea[]"),
        _ => {
            return Err(PgError::error(
                crate::protocol::error::sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "pgshroud cannot compare this array with protected column {} while several key versions are live",
                    spec.qualified
                ),
            ))
        }
    })
}

/// A Bind value for a parameter compared with a protected column: a `bytea[]` (binary format)
/// of its envelopes under every live version; for an array parameter (`= ANY($n)`), of
/// every element's.
pub fn bind_value(
    spec: &ColumnSpec,
    cipher: &mut ColumnCipher,
    format: Format,
    declared: u32,
    value: &[u8],
    array: bool,
) -> Result<Vec<u8>, PgError> {
    let mut canonicals: Vec<Option<Vec<u8>>> = Vec::new();
    if !array {
        canonicals.push(Some(codec::canonical_declared(
            spec, format, declared, value,
        )?));
    } else {
        match format {
            Format::Text => {
                let text = std::str::from_utf8(value).map_err(|_| codec::invalid_input(spec))?;
                for e in values::array::parse_text(text).map_err(|_| codec::invalid_input(spec))? {
                    canonicals.push(match e {
                        None => None,
                        Some(e) => Some(codec::canonical(spec, Format::Text, e.as_bytes())?),
                    });
                }
            }
            Format::Binary => {
                let (element_oid, elements) =
                    values::array::parse_binary(value).map_err(|_| codec::invalid_input(spec))?;
                for e in elements {
                    canonicals.push(match e {
                        None => None,
                        Some(e) => Some(codec::canonical_declared(
                            spec,
                            Format::Binary,
                            element_oid,
                            &e,
                        )?),
                    });
                }
            }
        }
    }
    let mut sealed: Vec<Option<Vec<u8>>> = Vec::new();
    for canonical in canonicals {
        match canonical {
            None => sealed.push(None),
            Some(c) => sealed.extend(cipher.seal_all_versions(&c).into_iter().map(Some)),
        }
    }
    Ok(values::array::bytea_array_binary(&sealed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyContext, KeyRing, KeyVersion, MasterKey};
    use pgshroud_rules::LogicalType;

    fn email() -> (ColumnSpec, ColumnCipher) {
        let context = KeyContext::for_column("public", "t", "email");
        let ring = KeyRing::new(
            KeyVersion::new(2),
            [
                (KeyVersion::new(1), MasterKey::from_bytes(&[1; 32]).unwrap()),
                (KeyVersion::new(2), MasterKey::from_bytes(&[2; 32]).unwrap()),
            ],
        )
        .unwrap();
        let cipher = ring.cipher_for(&context);
        let spec = ColumnSpec {
            qualified: "public.t.email".into(),
            logical: LogicalType::Text,
            modifier: None,
            context,
        };
        (spec, cipher)
    }

    fn envelopes(text: &str) -> usize {
        text.matches("E'\\\\x").count()
    }

    #[test]
    fn a_compared_literal_becomes_one_envelope_per_live_version() {
        let (spec, mut cipher) = email();
        let any = literal(&spec, &mut cipher, Some("a"), false, Splice::AnyOf).unwrap();
        assert!(any.starts_with("ANY(ARRAY[E'\\\\x0200000002"), "{any}");
        assert!(any.contains("E'\\\\x0200000001"), "{any}");
        assert_eq!(envelopes(&any), 2);
        let all = literal(&spec, &mut cipher, Some("a"), false, Splice::AllOf).unwrap();
        assert!(all.starts_with("ALL(ARRAY["));
        let items = literal(&spec, &mut cipher, Some("a"), false, Splice::Items).unwrap();
        assert_eq!(
            items,
            any["ANY(ARRAY[".len()..any.len() - "]::bytea[])".len()]
        );
        let array = literal(&spec, &mut cipher, Some("{a,b,NULL}"), true, Splice::Array).unwrap();
        assert_eq!(envelopes(&array), 4);
        assert!(array.contains("NULL::bytea"));
        assert_eq!(
            literal(&spec, &mut cipher, None, false, Splice::AnyOf).unwrap(),
            "NULL::bytea"
        );
    }

    #[test]
    fn a_compared_parameter_is_bound_as_an_array_of_every_version() {
        let (spec, mut cipher) = email();
        let bound = bind_value(&spec, &mut cipher, Format::Text, 0, b"a", false).unwrap();
        let (oid, elements) = values::array::parse_binary(&bound).unwrap();
        assert_eq!(oid, 17);
        let elements: Vec<_> = elements.into_iter().map(|e| e.unwrap()).collect();
        assert_eq!(elements.len(), 2);
        assert_eq!(&elements[0][..5], &[2, 0, 0, 0, 2]);
        assert_eq!(&elements[1][..5], &[2, 0, 0, 0, 1]);
        assert_eq!(elements[0], cipher.seal(b"a"));
        let array = bind_value(&spec, &mut cipher, Format::Text, 0, b"{a,NULL,b}", true).unwrap();
        let (_, elements) = values::array::parse_binary(&array).unwrap();
        assert_eq!(elements.len(), 5);
    }
}
