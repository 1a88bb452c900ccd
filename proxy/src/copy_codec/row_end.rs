//! Where a row ends: what the format's line scanners (`text`, `csv`) report to the rewriter.
//! Defined below both so neither scanner depends on the rewriter that drives it.

/// The newline that ends a row, found by a format's line scanner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowEnd {
    /// Index of the `\n` in the scanned bytes.
    pub(crate) newline_at: usize,
    /// The `\n` is preceded by an unescaped, unquoted `\r` belonging to the line ending.
    pub(crate) crlf: bool,
}
