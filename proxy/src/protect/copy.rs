//! COPY of a protected table: the row stream is rewritten field by field, encrypting
//! protected fields on `COPY ... FROM STDIN` and decrypting them on `COPY ... TO STDOUT`.
//! Framing of rows (text and CSV formats, rows split across messages) is `copy_codec`'s job.

use super::codec::{self, Ciphers};
use super::reveal::{self, Output};
use super::wire::Format;
use crate::analyze::{CopyDirection, CopyFormat as AnalyzedFormat, CopyOptions};
use crate::copy_codec::{CopyCodecError, CopyFormat, CopyRewriter};
use crate::protocol::error::PgError;

/// SQLSTATE for malformed COPY data.
use crate::protocol::error::sqlstate::{BAD_COPY_FILE_FORMAT, FEATURE_NOT_SUPPORTED};

pub struct CopyStream {
    pub direction: CopyDirection,
    /// The COPY was aborted (CopyFail sent upstream).
    pub failed: bool,
    rewriter: CopyRewriter,
    /// Protected columns by position, with the role's read action (used on COPY TO).
    outputs: Vec<Option<Output>>,
    /// COPY options the rewriter cannot handle: the first data fails with this.
    invalid: Option<PgError>,
}

impl CopyStream {
    pub fn new(
        direction: CopyDirection,
        options: &CopyOptions,
        outputs: Vec<Option<Output>>,
    ) -> Self {
        let mut format = if options.format == AnalyzedFormat::Csv {
            CopyFormat::csv()
        } else {
            CopyFormat::text()
        };
        if let Some(d) = options.delimiter.and_then(ascii) {
            format.delimiter = d;
        }
        if let Some(null) = &options.null {
            format.null = null.clone();
        }
        if let Some(q) = options.quote.and_then(ascii) {
            format.quote = q;
            format.escape = q;
        }
        if let Some(e) = options.escape.and_then(ascii) {
            format.escape = e;
        }
        format.header = options.header;
        let invalid = format.validate().err().map(|e| {
            PgError::error(
                FEATURE_NOT_SUPPORTED,
                format!("COPY options not supported on a table with protected columns: {e}"),
            )
        });
        let protected = outputs.iter().map(Option::is_some).collect();
        CopyStream {
            direction,
            failed: false,
            rewriter: CopyRewriter::new(format, protected),
            outputs,
            invalid,
        }
    }

    /// Rewrites the rows completed by `chunk`.
    pub fn feed(&mut self, chunk: &[u8], ciphers: &mut Ciphers) -> Result<Vec<u8>, PgError> {
        if let Some(error) = &self.invalid {
            return Err(error.clone());
        }
        let mut out = Vec::with_capacity(chunk.len() * 2);
        let mut transform = FieldCipher {
            direction: self.direction,
            outputs: &self.outputs,
            ciphers,
            error: None,
        };
        let result = self.rewriter.feed(chunk, &mut transform, &mut out);
        finish(result, transform.error)?;
        Ok(out)
    }

    /// End of the data: the last row, if it had no line end.
    pub fn finish(&mut self, ciphers: &mut Ciphers) -> Result<Vec<u8>, PgError> {
        if let Some(error) = &self.invalid {
            return Err(error.clone());
        }
        let mut out = Vec::new();
        let mut transform = FieldCipher {
            direction: self.direction,
            outputs: &self.outputs,
            ciphers,
            error: None,
        };
        let result = self.rewriter.finish(&mut transform, &mut out);
        finish(result, transform.error)?;
        Ok(out)
    }
}

fn ascii(c: char) -> Option<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii)
}

fn finish(result: Result<(), CopyCodecError>, error: Option<PgError>) -> Result<(), PgError> {
    if let Some(error) = error {
        return Err(error);
    }
    result.map_err(|e| PgError::error(BAD_COPY_FILE_FORMAT, format!("COPY data: {e}")))
}

/// Encrypts or decrypts one protected field; the first error is kept as a `PgError`.
struct FieldCipher<'a> {
    direction: CopyDirection,
    outputs: &'a [Option<Output>],
    ciphers: &'a mut Ciphers,
    error: Option<PgError>,
}

impl crate::copy_codec::FieldTransform for FieldCipher<'_> {
    fn transform(
        &mut self,
        column: usize,
        value: Option<&str>,
    ) -> Result<Option<String>, CopyCodecError> {
        let (Some(Some(output)), Some(value)) = (self.outputs.get(column), value) else {
            return Ok(value.map(str::to_owned));
        };
        let spec = &output.spec;
        let result = match self.direction {
            // A per-tenant column's values are sealed for the session's tenant (or refused).
            CopyDirection::From => self.ciphers.sealing(spec).and_then(|cipher| {
                codec::seal(spec, cipher, Format::Text, value.as_bytes())
                    .map(|sealed| Some(format!("\\x{}", hex::encode(sealed))))
            }),
            CopyDirection::To => {
                reveal::reveal_text(output, self.ciphers.get(&spec.context), value)
            }
        };
        result.map_err(|error| {
            let message = error.message.clone();
            self.error = Some(error);
            CopyCodecError::field(column, message)
        })
    }
}
