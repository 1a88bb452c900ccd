//! COPY options that shape the data stream (FORMAT, DELIMITER, NULL, QUOTE, ESCAPE, HEADER),
//! with PostgreSQL's defaults and the checks that keep row and field splitting unambiguous.

use super::CopyCodecError;

/// The COPY options the codec needs, as given in the COPY statement.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormat {
    /// CSV format when true, text format otherwise.
    pub csv: bool,
    /// Field separator: tab in text format, comma in CSV.
    pub delimiter: u8,
    /// The raw (unescaped) spelling of NULL: `\N` in text format, empty in CSV.
    pub null: String,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character inside quotes; defaults to the quote character.
    pub escape: u8,
    /// The first line is a header and is passed through unchanged.
    pub header: bool,
}

impl CopyFormat {
    /// PostgreSQL's defaults for `FORMAT text`.
    pub fn text() -> Self {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            null: "\\N".to_owned(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    /// PostgreSQL's defaults for `FORMAT csv`.
    pub fn csv() -> Self {
        CopyFormat {
            csv: true,
            delimiter: b',',
            null: String::new(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    /// Rejects option combinations that would make splitting ambiguous; PostgreSQL refuses
    /// the same ones, so a statement that passes the server also passes here.
    pub fn validate(&self) -> Result<(), CopyCodecError> {
        let bad = |msg| Err(CopyCodecError::InvalidFormat(msg));
        if !self.delimiter.is_ascii() || matches!(self.delimiter, b'\n' | b'\r') {
            return bad("delimiter must be a single ASCII character other than newline or CR");
        }
        if self.null.contains(['\n', '\r']) {
            return bad("NULL string cannot contain newline or carriage return");
        }
        if !self.csv {
            // As PostgreSQL: a backslash before any of these is an escape sequence (`\x41`,
            // `\.`), so an escaped delimiter would not read back as the delimiter.
            if matches!(self.delimiter, b'\\' | b'.' | b'a'..=b'z' | b'0'..=b'9') {
                return bad(
                    "text format delimiter cannot be backslash, period, lower-case letter or digit",
                );
            }
            return Ok(());
        }
        if !self.quote.is_ascii() || !self.escape.is_ascii() {
            return bad("CSV quote and escape must be single ASCII characters");
        }
        // PostgreSQL accepts these, but then a quoted empty string or an escaped quote spans
        // a line break, and rows would no longer split the same way on both sides.
        if [self.quote, self.escape]
            .iter()
            .any(|c| matches!(c, b'\n' | b'\r'))
        {
            return bad("CSV quote and escape cannot be newline or carriage return");
        }
        if self.delimiter == self.quote {
            return bad("CSV delimiter and quote must differ");
        }
        if self.null.as_bytes().contains(&self.delimiter)
            || self.null.as_bytes().contains(&self.quote)
        {
            return bad("CSV NULL string cannot contain the delimiter or quote");
        }
        Ok(())
    }
}
