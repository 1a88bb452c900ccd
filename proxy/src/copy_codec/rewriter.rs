//! The streaming driver: buffers the incomplete row between CopyData chunks, counts lines,
//! passes the header and the `\.` end marker through, and rebuilds each row with only the
//! protected fields replaced.

use std::fmt;
use std::ops::Range;

use super::row_end::RowEnd;
use super::{csv, text, CopyCodecError, CopyFormat, FieldTransform};

/// Largest row the rewriter buffers: PostgreSQL itself refuses rows over 1 GiB, and without a
/// bound a client could make the proxy hold an endless "row" in memory.
pub const DEFAULT_MAX_ROW_LEN: usize = 1 << 30;

#[derive(Debug)]
enum Scanner {
    Text(text::LineScanner),
    Csv(csv::LineScanner),
}

impl Scanner {
    fn find_row_end(&mut self, bytes: &[u8]) -> Option<RowEnd> {
        match self {
            Scanner::Text(s) => s.find_row_end(bytes),
            Scanner::Csv(s) => s.find_row_end(bytes),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Expecting the header line.
    Header,
    Rows,
    /// The end marker or the end of data was seen; anything after is dropped.
    Done,
    Failed,
}

/// Rewrites a COPY text or CSV stream row by row, transforming the protected columns only.
pub struct CopyRewriter {
    format: CopyFormat,
    protected: Vec<bool>,
    scanner: Scanner,
    state: State,
    /// Rows seen so far, header included (PostgreSQL's line numbering).
    line: u64,
    /// The incomplete row carried over from earlier chunks.
    pending: Vec<u8>,
    max_row_len: usize,
    /// Scratch buffers reused for every row so rows do not allocate.
    spans: Vec<Range<usize>>,
    value: Vec<u8>,
}

impl fmt::Debug for CopyRewriter {
    /// Hand-written so buffered row data (plaintext on the way in) never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyRewriter")
            .field("format", &self.format)
            .field("protected", &self.protected)
            .field("state", &self.state)
            .field("line", &self.line)
            .field("pending_len", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl CopyRewriter {
    /// `protected[i]` says whether column `i` of the COPY column list is rewritten; the other
    /// fields are re-emitted byte for byte. Check the format with [`CopyFormat::validate`] first.
    pub fn new(format: CopyFormat, protected: Vec<bool>) -> Self {
        let scanner = if format.csv {
            Scanner::Csv(csv::LineScanner::new(&format))
        } else {
            Scanner::Text(text::LineScanner::default())
        };
        let state = if format.header {
            State::Header
        } else {
            State::Rows
        };
        CopyRewriter {
            format,
            protected,
            scanner,
            state,
            line: 0,
            pending: Vec::new(),
            max_row_len: DEFAULT_MAX_ROW_LEN,
            spans: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Lowers the row size guard (mainly for tests).
    pub fn with_max_row_len(mut self, max_row_len: usize) -> Self {
        self.max_row_len = max_row_len;
        self
    }

    /// True once the end marker `\.` or [`finish`](Self::finish) ended the data.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Number of rows (lines, in PostgreSQL's sense) completed so far, header included.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Appends the output for every row completed by `chunk` to `out`; an incomplete last row
    /// is kept for the next call. Data after the end marker `\.` is dropped (PostgreSQL
    /// ignores it too), so it never reaches the server unprotected. On error nothing is
    /// appended for this call, buffered data is discarded and the rewriter stays failed.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        let mark = out.len();
        let result = self.feed_rows(chunk, t, out);
        self.settle(result, out, mark)
    }

    /// End of data (CopyDone): a final row without newline is processed. After the end marker
    /// this does nothing.
    pub fn finish(
        &mut self,
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        let mark = out.len();
        let result = self.finish_rows(t, out);
        self.settle(result, out, mark)
    }

    fn settle(
        &mut self,
        result: Result<(), CopyCodecError>,
        out: &mut Vec<u8>,
        mark: usize,
    ) -> Result<(), CopyCodecError> {
        if result.is_err() {
            out.truncate(mark);
            self.pending = Vec::new();
            self.state = State::Failed;
        }
        result
    }

    fn check_usable(&self) -> Result<bool, CopyCodecError> {
        match self.state {
            State::Failed => Err(CopyCodecError::AlreadyFailed),
            State::Done => Ok(false),
            State::Header | State::Rows => Ok(true),
        }
    }

    fn feed_rows(
        &mut self,
        chunk: &[u8],
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        let mut rest = chunk;
        while self.check_usable()? && !rest.is_empty() {
            let Some(end) = self.scanner.find_row_end(rest) else {
                self.check_row_len(self.pending.len() + rest.len())?;
                self.pending.extend_from_slice(rest);
                return Ok(());
            };
            let (head, tail) = rest.split_at(end.newline_at + 1);
            rest = tail;
            if self.pending.is_empty() {
                self.check_row_len(head.len())?;
                self.process_line(head, end.crlf, t, out)?;
            } else {
                self.check_row_len(self.pending.len() + head.len())?;
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(head);
                self.process_line(&line, end.crlf, t, out)?;
                line.clear();
                self.pending = line;
            }
        }
        Ok(())
    }

    fn finish_rows(
        &mut self,
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        if !self.check_usable()? {
            return Ok(());
        }
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.process_line(&line, false, t, out)?;
        }
        self.state = State::Done;
        Ok(())
    }

    fn check_row_len(&self, len: usize) -> Result<(), CopyCodecError> {
        if len > self.max_row_len {
            return Err(CopyCodecError::RowTooLarge {
                line: self.line + 1,
                limit: self.max_row_len,
            });
        }
        Ok(())
    }

    /// Handles one whole line: `raw` includes its line ending, if any.
    fn process_line(
        &mut self,
        raw: &[u8],
        crlf: bool,
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        self.line += 1;
        let ending_len = match raw.last() {
            Some(b'\n') if crlf => 2,
            Some(b'\n') => 1,
            _ => 0,
        };
        let (content, ending) = raw.split_at(raw.len() - ending_len);
        if self.state == State::Header {
            self.state = State::Rows;
            out.extend_from_slice(raw);
            return Ok(());
        }
        if content == b"\\." {
            self.state = State::Done;
            out.extend_from_slice(raw);
            return Ok(());
        }
        let start = out.len();
        self.rewrite_row(content, t, out)?;
        if ending.is_empty() && out.len() == start {
            // A last row without line ending that rewrites to nothing (a single empty field)
            // would vanish from the stream: a line ending keeps it a row.
            out.push(b'\n');
        } else {
            out.extend_from_slice(ending);
        }
        Ok(())
    }

    fn rewrite_row(
        &mut self,
        row: &[u8],
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        let line = self.line;
        let mut spans = std::mem::take(&mut self.spans);
        let split = if self.format.csv {
            csv::split_fields(row, &self.format, &mut spans)
                .map_err(|_| CopyCodecError::UnterminatedQuote { line })
        } else {
            text::split_fields(row, self.format.delimiter, &mut spans);
            Ok(())
        };
        let result = split.and_then(|()| self.emit_fields(row, &spans, t, out));
        self.spans = spans;
        result
    }

    fn emit_fields(
        &mut self,
        row: &[u8],
        spans: &[Range<usize>],
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        if spans.len() != self.protected.len() {
            return Err(CopyCodecError::WrongFieldCount {
                line: self.line,
                expected: self.protected.len(),
                found: spans.len(),
            });
        }
        for (column, span) in spans.iter().enumerate() {
            if column > 0 {
                out.push(self.format.delimiter);
            }
            let raw = &row[span.clone()];
            if self.protected[column] {
                self.transform_field(column, raw, t, out)?;
            } else {
                out.extend_from_slice(raw);
            }
        }
        Ok(())
    }

    fn transform_field(
        &mut self,
        column: usize,
        raw: &[u8],
        t: &mut dyn FieldTransform,
        out: &mut Vec<u8>,
    ) -> Result<(), CopyCodecError> {
        let line = self.line;
        let not_null = if self.format.csv {
            csv::decode_field(raw, &self.format, &mut self.value)
                .map_err(|_| CopyCodecError::UnterminatedQuote { line })?
        } else {
            text::decode_field(raw, self.format.null.as_bytes(), &mut self.value)
        };
        let value = match not_null {
            true => Some(checked_text(&self.value, line, column)?),
            false => None,
        };
        let new_value = t.transform(column, value).map_err(|e| e.at_line(line))?;
        if self.format.csv {
            csv::encode_field(new_value.as_deref(), &self.format, out);
        } else {
            let null = self.format.null.as_bytes();
            text::encode_field(new_value.as_deref(), self.format.delimiter, null, out);
        }
        Ok(())
    }
}

/// The decoded field as text, refusing what PostgreSQL would refuse for a text value.
fn checked_text(bytes: &[u8], line: u64, column: usize) -> Result<&str, CopyCodecError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| CopyCodecError::InvalidUtf8 { line, column })?;
    if bytes.contains(&0) {
        return Err(CopyCodecError::NulCharacter { line, column });
    }
    Ok(text)
}
