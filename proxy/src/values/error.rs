//! Why a value could not be read or written. Reasons are `&'static str` on purpose: a message
//! built at run time could end up quoting the (secret) value.

use pgshroud_rules::LogicalType;

/// A value that is not valid for its logical type, in the form it came in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Text input the type's PostgreSQL input function would refuse.
    #[error("invalid input syntax for type {ty}: {reason}")]
    Syntax {
        ty: LogicalType,
        reason: &'static str,
    },
    /// Well-formed input outside the type's range.
    #[error("value out of range for type {ty}")]
    OutOfRange { ty: LogicalType },
    /// Text input PostgreSQL accepts but pgshroud cannot canonicalise on its own.
    #[error("unsupported input for type {ty}: {reason}")]
    Unsupported {
        ty: LogicalType,
        reason: &'static str,
    },
    /// Binary input with the wrong size for a fixed-size type.
    #[error("binary value for type {ty} must be {expected} bytes long")]
    BinaryLength { ty: LogicalType, expected: usize },
    /// Binary input the type's PostgreSQL receive function would refuse.
    #[error("invalid binary value for type {ty}: {reason}")]
    Binary {
        ty: LogicalType,
        reason: &'static str,
    },
    /// Decrypted bytes that are not a canonical value of the type (wrong type in the rules,
    /// or data not written by pgshroud).
    #[error("stored value is not a canonical {ty}: {reason}")]
    Canonical {
        ty: LogicalType,
        reason: &'static str,
    },
    /// Text longer than a `varchar(n)` column holds (SQLSTATE 22001).
    #[error("value too long for type character varying({limit})")]
    TooLong { limit: u32 },
    /// A number too large for a `numeric(p, s)` column once rounded (SQLSTATE 22003).
    #[error("numeric field overflow")]
    NumericOverflow {
        precision: u16,
        scale: u16,
        infinite: bool,
    },
    /// An array parameter that is malformed or not one-dimensional.
    #[error("invalid array: {reason}")]
    Array { reason: &'static str },
}

impl ValueError {
    pub(crate) fn syntax(ty: LogicalType, reason: &'static str) -> Self {
        ValueError::Syntax { ty, reason }
    }

    pub(crate) fn binary(ty: LogicalType, reason: &'static str) -> Self {
        ValueError::Binary { ty, reason }
    }

    pub(crate) fn canonical(ty: LogicalType, reason: &'static str) -> Self {
        ValueError::Canonical { ty, reason }
    }

    pub(crate) fn length(ty: LogicalType, expected: usize) -> Self {
        ValueError::BinaryLength { ty, expected }
    }
}
