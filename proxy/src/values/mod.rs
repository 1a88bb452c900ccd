//! Values of protected columns: the canonical byte form each logical type is encrypted in,
//! and the conversions between it and PostgreSQL's text and binary wire formats.
//!
//! Canonical form is what makes deterministic encryption useful: `'007'`, `7` and a binary 7
//! must encrypt to the same bytes, or `WHERE id = '007'` would not find the row written as
//! `7`. For most types the canonical form is PostgreSQL's own binary send format; `numeric`
//! and `jsonb` use normalised text instead, because their binary forms keep the display
//! scale (`1.50` vs `1.5`), which PostgreSQL itself ignores when comparing.
//!
//! Output follows PostgreSQL's output functions with `DateStyle = ISO`, `TimeZone = UTC`,
//! `bytea_output = hex`. Where it cannot match (numeric scale, jsonb number scale), the type's
//! module says why.
//!
//! Errors never carry the value: it may be secret. They name the type and what is wrong.

pub mod array;
mod boolean;
mod bytea;
mod calendar;
mod datetime;
mod error;
mod integer;
mod json;
mod modifier;
mod numeric;
mod text;
mod uuid;

use pgshroud_rules::LogicalType;

pub use error::ValueError;
pub use modifier::{
    apply_modifier, binary_with_modifier, canonical_from_binary_under, canonical_from_text_under,
    output_with_modifier, text_with_modifier,
};

/// Canonical bytes of a value the client sent in text format.
pub fn canonical_from_text(t: LogicalType, text: &str) -> Result<Vec<u8>, ValueError> {
    match t {
        LogicalType::Text | LogicalType::Varchar => text::from_text(t, text),
        LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => integer::from_text(t, text),
        LogicalType::Bool => boolean::from_text(text),
        LogicalType::Numeric => numeric::from_text(text),
        LogicalType::Date => datetime::date_from_text(text),
        LogicalType::Timestamp | LogicalType::Timestamptz => datetime::timestamp_from_text(t, text),
        LogicalType::Uuid => uuid::from_text(text),
        LogicalType::Bytea => bytea::from_text(text),
        LogicalType::Jsonb => json::from_text(text),
    }
}

/// Canonical bytes of a value the client sent in binary format.
pub fn canonical_from_binary(t: LogicalType, bytes: &[u8]) -> Result<Vec<u8>, ValueError> {
    match t {
        LogicalType::Text | LogicalType::Varchar => text::from_binary(t, bytes),
        LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => integer::from_binary(t, bytes),
        LogicalType::Bool => boolean::from_binary(bytes),
        LogicalType::Numeric => numeric::from_binary(bytes),
        LogicalType::Date => datetime::date_from_binary(bytes),
        LogicalType::Timestamp | LogicalType::Timestamptz => {
            datetime::timestamp_from_binary(t, bytes)
        }
        LogicalType::Uuid => uuid::from_binary(bytes),
        LogicalType::Bytea => Ok(bytes.to_vec()),
        LogicalType::Jsonb => json::from_binary(bytes),
    }
}

/// The value as PostgreSQL's output function would print it (text format).
pub fn text_from_canonical(t: LogicalType, canonical: &[u8]) -> Result<String, ValueError> {
    match t {
        LogicalType::Text | LogicalType::Varchar => text::to_text(t, canonical),
        LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => integer::to_text(t, canonical),
        LogicalType::Bool => boolean::to_text(canonical),
        LogicalType::Numeric => numeric::to_text(canonical),
        LogicalType::Date => datetime::date_to_text(canonical),
        LogicalType::Timestamp | LogicalType::Timestamptz => {
            datetime::timestamp_to_text(t, canonical)
        }
        LogicalType::Uuid => uuid::to_text(canonical),
        LogicalType::Bytea => Ok(bytea::to_text(canonical)),
        LogicalType::Jsonb => json::to_text(canonical),
    }
}

/// The value as PostgreSQL's send function would encode it (binary format).
pub fn binary_from_canonical(t: LogicalType, canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    match t {
        LogicalType::Text | LogicalType::Varchar => text::to_binary(t, canonical),
        LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => {
            integer::to_binary(t, canonical)
        }
        LogicalType::Bool => boolean::to_binary(canonical),
        LogicalType::Numeric => numeric::to_binary(canonical),
        LogicalType::Date => datetime::date_to_binary(canonical),
        LogicalType::Timestamp | LogicalType::Timestamptz => {
            datetime::timestamp_to_binary(t, canonical)
        }
        LogicalType::Uuid => uuid::to_binary(canonical),
        LogicalType::Bytea => Ok(canonical.to_vec()),
        LogicalType::Jsonb => json::to_binary(canonical),
    }
}

/// Whitespace as C's `isspace` sees it, which is what PostgreSQL's input functions skip.
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// `text` without the surrounding whitespace PostgreSQL's input functions ignore.
fn trim_pg_space(text: &str) -> &str {
    text.trim_matches(is_pg_space)
}

/// A fixed-size value (binary input or canonical form) as an array, or `err` if the size is wrong.
fn fixed<const N: usize>(bytes: &[u8], err: ValueError) -> Result<[u8; N], ValueError> {
    bytes.try_into().map_err(|_| err)
}

#[cfg(test)]
mod tests;
