//! Errors of the COPY codec. None of them carries field contents: COPY data holds the very
//! values pgshroud protects, so messages name only line numbers and column indexes.

/// Why a COPY data stream could not be rewritten.
///
/// `line` is the 1-based row number counted the way PostgreSQL counts it in `COPY ..., line N`
/// (header included; a CSV row spanning several physical lines counts once). `column` is the
/// 0-based index into the COPY column list.
#[derive(Debug, thiserror::Error)]
pub enum CopyCodecError {
    /// A row has a different number of fields than the COPY column list.
    #[error("COPY data line {line}: expected {expected} fields, found {found}")]
    WrongFieldCount {
        line: u64,
        expected: usize,
        found: usize,
    },
    /// A CSV quoted field is still open at the end of the data.
    #[error("COPY data line {line}: unterminated CSV quoted field")]
    UnterminatedQuote { line: u64 },
    /// A protected field does not decode to valid UTF-8.
    #[error("COPY data line {line}, column index {column}: value is not valid UTF-8")]
    InvalidUtf8 { line: u64, column: usize },
    /// A protected field decodes to text holding a NUL character, which PostgreSQL text
    /// cannot store either.
    #[error("COPY data line {line}, column index {column}: value contains a NUL character")]
    NulCharacter { line: u64, column: usize },
    /// The field transform refused a value; `message` must not contain the value.
    #[error("COPY data line {line}, column index {column}: {message}")]
    Field {
        line: u64,
        column: usize,
        message: String,
    },
    /// A single row grew past the memory guard before its end was seen.
    #[error("COPY data line {line}: row longer than {limit} bytes")]
    RowTooLarge { line: u64, limit: usize },
    /// The COPY options cannot be parsed unambiguously (PostgreSQL rejects them too).
    #[error("invalid COPY format: {0}")]
    InvalidFormat(&'static str),
    /// The rewriter was used again after it reported an error.
    #[error("COPY data rewriter used after an earlier error")]
    AlreadyFailed,
}

impl CopyCodecError {
    /// Error for a transform to return; the rewriter replaces the line number (0 here) with the
    /// line being processed.
    pub fn field(column: usize, message: impl Into<String>) -> Self {
        CopyCodecError::Field {
            line: 0,
            column,
            message: message.into(),
        }
    }

    /// Puts the current line number into errors raised by a transform without one.
    pub(crate) fn at_line(self, current: u64) -> Self {
        match self {
            CopyCodecError::Field {
                line: 0,
                column,
                message,
            } => CopyCodecError::Field {
                line: current,
                column,
                message,
            },
            other => other,
        }
    }
}
