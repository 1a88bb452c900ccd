//! The extended-protocol and result messages that protected columns change (Parse, Bind,
//! ParameterDescription, RowDescription, DataRow): parsed into plain structs and rebuilt.
//! Only statements touching protected columns pay for this; everything else is forwarded raw.

use bytes::{BufMut, BytesMut};

use crate::protocol::frame::message;

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Lengths, counts or terminators do not add up: a protocol violation.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// A name in the message is not UTF-8.
    #[error("{0} message with a name that is not valid UTF-8")]
    NotUtf8(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(frame: &'a [u8], what: &'static str) -> Self {
        Reader {
            buf: frame.get(5..).unwrap_or_default(),
            what,
        }
    }
    fn malformed(&self) -> Unreadable {
        Unreadable::Malformed(self.what)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Unreadable> {
        if self.buf.len() < n {
            return Err(self.malformed());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Unreadable> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, Unreadable> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, Unreadable> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A count: PostgreSQL reads these 16 bits unsigned (up to 65535 parameters), and so
    /// does the proxy; each counted item must then be present.
    fn count(&mut self) -> Result<usize, Unreadable> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn bytes_cstr(&mut self) -> Result<&'a [u8], Unreadable> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(self.malformed())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
    fn cstr(&mut self) -> Result<String, Unreadable> {
        let bytes = self.bytes_cstr()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Unreadable::NotUtf8(self.what))
    }
    fn value(&mut self) -> Result<Option<Vec<u8>>, Unreadable> {
        Ok(self.value_slice()?.map(<[u8]>::to_vec))
    }
    fn value_slice(&mut self) -> Result<Option<&'a [u8]>, Unreadable> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?))
    }
    /// The whole body was read: trailing bytes are as malformed as missing ones.
    fn end(&self) -> Result<(), Unreadable> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn put_value(out: &mut BytesMut, v: &Option<Vec<u8>>) {
    match v {
        None => out.put_i32(-1),
        Some(bytes) => {
            out.put_i32(bytes.len() as i32);
            out.put_slice(bytes);
        }
    }
}

/// Wire format of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    pub fn from_code(code: i16) -> Format {
        if code == 1 {
            Format::Binary
        } else {
            Format::Text
        }
    }
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }
}

/// Expands a Bind format-code list (0 codes: all text; 1 code: for all; else one each).
pub fn format_of(codes: &[i16], index: usize) -> Format {
    match codes.len() {
        0 => Format::Text,
        1 => Format::from_code(codes[0]),
        _ => Format::from_code(codes.get(index).copied().unwrap_or(0)),
    }
}

/// A Parse message. The query stays bytes: whether it must be UTF-8 depends on the
/// session's client_encoding and on whether the proxy has to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub name: String,
    pub query: Vec<u8>,
    pub param_types: Vec<u32>,
}

impl Parse {
    pub fn read(frame: &[u8]) -> Result<Parse, Unreadable> {
        let mut r = Reader::new(frame, "Parse");
        let name = r.bytes_cstr()?;
        let query = r.bytes_cstr()?.to_vec();
        let n = r.count()?;
        let param_types = (0..n)
            .map(|_| r.i32().map(|t| t as u32))
            .collect::<Result<_, _>>()?;
        r.end()?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| Unreadable::NotUtf8("Parse"))?;
        Ok(Parse {
            name,
            query,
            param_types,
        })
    }

    pub fn write(&self) -> BytesMut {
        let mut body = BytesMut::new();
        put_cstr(&mut body, &self.name);
        body.put_slice(&self.query);
        body.put_u8(0);
        body.put_i16(self.param_types.len() as i16);
        for t in &self.param_types {
            body.put_u32(*t);
        }
        message(b'P', &body)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: String,
    pub statement: String,
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<Vec<u8>>>,
    pub result_formats: Vec<i16>,
}

/// A Bind read in place: its names and result formats borrowed from the frame, its
/// parameters only checked to be well formed. For a statement with no protected
/// parameter nothing is copied (see `ProtectedSession::bind_plain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindView<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// The result format codes, two bytes each, as sent.
    result_formats: &'a [u8],
}

impl<'a> BindView<'a> {
    /// Reads a Bind as [`Bind::read`] does, refusing the same messages.
    pub fn read(frame: &'a [u8]) -> Result<BindView<'a>, Unreadable> {
        let mut r = Reader::new(frame, "Bind");
        let portal = r.bytes_cstr()?;
        let statement = r.bytes_cstr()?;
        let nf = r.count()?;
        r.take(2 * nf)?;
        for _ in 0..r.count()? {
            r.value_slice()?;
        }
        let nr = r.count()?;
        let result_formats = r.take(2 * nr)?;
        r.end()?;
        let utf8 = |b: &'a [u8]| std::str::from_utf8(b).map_err(|_| Unreadable::NotUtf8("Bind"));
        Ok(BindView {
            portal: utf8(portal)?,
            statement: utf8(statement)?,
            result_formats,
        })
    }

    /// The result format codes.
    pub fn result_formats(&self) -> Vec<i16> {
        self.result_formats
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .collect()
    }
}

impl Bind {
    pub fn read(frame: &[u8]) -> Result<Bind, Unreadable> {
        let mut r = Reader::new(frame, "Bind");
        let portal = r.bytes_cstr()?;
        let statement = r.bytes_cstr()?;
        let nf = r.count()?;
        let param_formats = (0..nf).map(|_| r.i16()).collect::<Result<_, _>>()?;
        let np = r.count()?;
        let params = (0..np).map(|_| r.value()).collect::<Result<_, _>>()?;
        let nr = r.count()?;
        let result_formats = (0..nr).map(|_| r.i16()).collect::<Result<_, _>>()?;
        r.end()?;
        let utf8 =
            |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Unreadable::NotUtf8("Bind"));
        let (portal, statement) = (utf8(portal)?, utf8(statement)?);
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    pub fn param_format(&self, index: usize) -> Format {
        format_of(&self.param_formats, index)
    }

    /// Gives every parameter its own format code, so single ones can change.
    pub fn expand_param_formats(&mut self) {
        let all: Vec<i16> = (0..self.params.len())
            .map(|i| self.param_format(i).code())
            .collect();
        self.param_formats = all;
    }

    pub fn write(&self) -> BytesMut {
        // Written in place (the length filled in last): one buffer, sized up front.
        let capacity = 13
            + self.portal.len()
            + self.statement.len()
            + 2 * (self.param_formats.len() + self.result_formats.len())
            + self
                .params
                .iter()
                .map(|p| 4 + p.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        let mut body = BytesMut::with_capacity(capacity);
        body.put_u8(b'B');
        body.put_i32(0);
        put_cstr(&mut body, &self.portal);
        put_cstr(&mut body, &self.statement);
        body.put_i16(self.param_formats.len() as i16);
        for f in &self.param_formats {
            body.put_i16(*f);
        }
        body.put_i16(self.params.len() as i16);
        for p in &self.params {
            put_value(&mut body, p);
        }
        body.put_i16(self.result_formats.len() as i16);
        for f in &self.result_formats {
            body.put_i16(*f);
        }
        let len = (body.len() - 1) as i32;
        body[1..5].copy_from_slice(&len.to_be_bytes());
        body
    }
}

/// Which object a Close or Describe names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

/// A Close or Describe: `'S'` or `'P'` and a name.
pub fn read_target(frame: &[u8], what: &'static str) -> Result<(Target, String), Unreadable> {
    let mut r = Reader::new(frame, what);
    let target = match r.u8()? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        _ => return Err(r.malformed()),
    };
    let name = r.cstr()?;
    r.end()?;
    Ok((target, name))
}

/// An Execute: the portal's name (its row limit is the server's business).
pub fn read_execute(frame: &[u8]) -> Result<String, Unreadable> {
    let mut r = Reader::new(frame, "Execute");
    let portal = r.cstr()?;
    r.i32()?;
    r.end()?;
    Ok(portal)
}

/// One column of a RowDescription. The name stays bytes: the server sends it in the session's
/// client_encoding (LATIN9's `€` is the byte 0xA4), and the proxy never needs to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_mod: i32,
    pub format: i16,
}

pub fn read_row_description(frame: &[u8]) -> Result<Vec<Field>, Unreadable> {
    let mut r = Reader::new(frame, "RowDescription");
    let n = r.count()?;
    let fields = (0..n)
        .map(|_| {
            Ok(Field {
                name: r.bytes_cstr()?.to_vec(),
                table_oid: r.i32()? as u32,
                attnum: r.i16()?,
                type_oid: r.i32()? as u32,
                type_len: r.i16()?,
                type_mod: r.i32()?,
                format: r.i16()?,
            })
        })
        .collect::<Result<_, Unreadable>>()?;
    r.end()?;
    Ok(fields)
}

pub fn write_row_description(fields: &[Field]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(fields.len() as i16);
    for f in fields {
        body.put_slice(&f.name);
        body.put_u8(0);
        body.put_u32(f.table_oid);
        body.put_i16(f.attnum);
        body.put_u32(f.type_oid);
        body.put_i16(f.type_len);
        body.put_i32(f.type_mod);
        body.put_i16(f.format);
    }
    message(b'T', &body)
}

pub fn read_parameter_description(frame: &[u8]) -> Result<Vec<u32>, Unreadable> {
    let mut r = Reader::new(frame, "ParameterDescription");
    let n = r.count()?;
    let types = (0..n)
        .map(|_| r.i32().map(|t| t as u32))
        .collect::<Result<_, _>>()?;
    r.end()?;
    Ok(types)
}

pub fn write_parameter_description(types: &[u32]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(types.len() as i16);
    for t in types {
        body.put_u32(*t);
    }
    message(b't', &body)
}

pub fn read_data_row(frame: &[u8]) -> Result<Vec<Option<Vec<u8>>>, Unreadable> {
    let mut r = Reader::new(frame, "DataRow");
    let n = r.count()?;
    let values = (0..n).map(|_| r.value()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(values)
}

/// A DataRow's values as slices of the frame, without copying them (`None`: SQL NULL).
pub fn data_row_values(frame: &[u8]) -> Result<Vec<Option<&[u8]>>, Unreadable> {
    let mut r = Reader::new(frame, "DataRow");
    let n = r.count()?;
    let values = (0..n).map(|_| r.value_slice()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(values)
}

/// A DataRow written value by value into one buffer (the same bytes [`write_data_row`]
/// writes): the rows of a protected result are rebuilt without a copy of each value.
pub struct DataRowWriter {
    out: BytesMut,
}

impl DataRowWriter {
    /// A row of `count` values; `capacity` is a guess of its length in bytes.
    pub fn new(count: usize, capacity: usize) -> DataRowWriter {
        let mut out = BytesMut::with_capacity(capacity.max(7));
        out.put_u8(b'D');
        // The length, written by `finish`.
        out.put_i32(0);
        out.put_i16(count as i16);
        DataRowWriter { out }
    }

    pub fn value(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.out.put_i32(-1),
            Some(bytes) => {
                self.out.put_i32(bytes.len() as i32);
                self.out.put_slice(bytes);
            }
        }
    }

    /// The message, its length (all but the type byte) filled in.
    pub fn finish(mut self) -> BytesMut {
        let len = (self.out.len() - 1) as i32;
        self.out[1..5].copy_from_slice(&len.to_be_bytes());
        self.out
    }
}

pub fn write_data_row(values: &[Option<Vec<u8>>]) -> BytesMut {
    let mut body = BytesMut::with_capacity(
        2 + values
            .iter()
            .map(|v| 4 + v.as_ref().map_or(0, Vec::len))
            .sum::<usize>(),
    );
    body.put_i16(values.len() as i16);
    for v in values {
        put_value(&mut body, v);
    }
    message(b'D', &body)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
