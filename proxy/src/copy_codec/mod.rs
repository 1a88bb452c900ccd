//! Streaming rewriter for COPY text and CSV data: splits the CopyData byte stream into rows,
//! hands protected fields to a transform (encrypt or decrypt) and re-emits everything else as is.
//!
//! CopyData message boundaries are arbitrary, so [`CopyRewriter`] is fed chunks and keeps the
//! incomplete tail of a row between calls. Delimiters, quotes and backslashes are found
//! byte-wise, which is exact for UTF-8 (the only client encoding supported) and protected
//! values must decode to UTF-8.

mod csv;
mod error;
mod format;
mod rewriter;
mod row_end;
mod text;

#[cfg(test)]
mod tests;

pub use error::CopyCodecError;
pub use format::CopyFormat;
pub use rewriter::{CopyRewriter, DEFAULT_MAX_ROW_LEN};

/// What to do with one field of a protected column.
///
/// `value` is the field's decoded text (`None` for SQL NULL); the returned value is the new
/// field's text, `Ok(None)` meaning SQL NULL. The codec takes care of COPY escaping and quoting
/// on both sides. Errors should not carry the value: build them with
/// [`CopyCodecError::field`], the rewriter fills in the line number.
pub trait FieldTransform {
    /// Transforms the field of `column` (index into the COPY column list).
    fn transform(
        &mut self,
        column: usize,
        value: Option<&str>,
    ) -> Result<Option<String>, CopyCodecError>;
}

impl<F> FieldTransform for F
where
    F: FnMut(usize, Option<&str>) -> Result<Option<String>, CopyCodecError>,
{
    fn transform(
        &mut self,
        column: usize,
        value: Option<&str>,
    ) -> Result<Option<String>, CopyCodecError> {
        self(column, value)
    }
}
