//! One-dimensional arrays, for `col = ANY($1)`: the client binds an array of logical values
//! (text or binary format), the server expects `bytea[]` of envelopes.

use pgshroud_rules::BYTEA_OID;

use super::{is_pg_space, ValueError};

/// Parses PostgreSQL text array input `{a,"b c",NULL,"x\"y"}` as `array_in` does: elements
/// trimmed of surrounding whitespace unless quoted, backslash escaping the next character,
/// unquoted `NULL` (any case) as SQL NULL. Multi-dimensional arrays and dimension
/// decorations (`[1:2]={...}`) are refused.
pub fn parse_text(text: &str) -> Result<Vec<Option<String>>, ValueError> {
    let bad = |reason| ValueError::Array { reason };
    let body = text.trim_matches(is_pg_space);
    if body.starts_with('[') {
        return Err(bad("dimension decorations are not supported"));
    }
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or(bad("expected an array literal in braces"))?;
    if inner.trim_matches(is_pg_space).is_empty() {
        return Ok(Vec::new());
    }
    let mut elements = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        elements.push(element(&mut chars)?);
        match chars.next() {
            None => return Ok(elements),
            Some(',') => {}
            Some(_) => return Err(bad("expected ',' between elements")),
        }
    }
}

/// One element, up to (not including) the next top-level `,` or the end.
fn element(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Option<String>, ValueError> {
    let bad = |reason| ValueError::Array { reason };
    let mut value = String::new();
    // Length of `value` up to its last quoted or escaped character: trailing whitespace
    // after that point is insignificant, before it is kept.
    let mut protected_len = 0;
    let (mut quoted_any, mut in_quotes, mut started) = (false, false, false);
    while let Some(&c) = chars.peek() {
        if !in_quotes && c == ',' {
            break;
        }
        chars.next();
        match c {
            '\\' => {
                value.push(chars.next().ok_or(bad("unterminated escape"))?);
                protected_len = value.len();
            }
            '"' if !started || in_quotes => {
                in_quotes = !in_quotes;
                quoted_any = true;
                protected_len = value.len();
            }
            '"' => return Err(bad("unexpected quote inside an unquoted element")),
            '{' | '}' if !in_quotes => {
                return Err(bad("only one-dimensional arrays are supported"))
            }
            c if !in_quotes && !started && is_pg_space(c) => continue,
            c if !in_quotes && quoted_any && !is_pg_space(c) => {
                return Err(bad("unexpected text after a quoted element"))
            }
            c => {
                value.push(c);
                if in_quotes {
                    protected_len = value.len();
                }
            }
        }
        started = true;
    }
    if in_quotes {
        return Err(bad("unterminated quoted element"));
    }
    let significant = value.trim_end_matches(is_pg_space).len().max(protected_len);
    value.truncate(significant);
    if !quoted_any && protected_len == 0 && value.eq_ignore_ascii_case("NULL") {
        return Ok(None);
    }
    if !started || (!quoted_any && value.is_empty()) {
        return Err(bad("empty unquoted element"));
    }
    Ok(Some(value))
}

/// Elements of a binary array in wire form; `None` is SQL NULL.
pub type BinaryElements = Vec<Option<Vec<u8>>>;

/// Parses the binary array format: ndim, has-null flag, element OID, (length, lower bound)
/// per dimension, then length-prefixed elements (-1 is NULL). Returns (element OID, elements).
pub fn parse_binary(bytes: &[u8]) -> Result<(u32, BinaryElements), ValueError> {
    let mut reader = Reader { rest: bytes };
    let ndim = reader.i32()?;
    let has_nulls = reader.i32()?;
    let element_oid = reader.u32()?;
    if !(0..=1).contains(&has_nulls) {
        return Err(ValueError::Array {
            reason: "invalid has-null flag",
        });
    }
    let count = match ndim {
        0 => 0,
        1 => {
            let length = reader.i32()?;
            let _lower_bound = reader.i32()?;
            // Every element takes at least 4 bytes, which bounds the allocation below.
            usize::try_from(length)
                .ok()
                .filter(|n| n.saturating_mul(4) <= reader.rest.len())
                .ok_or(ValueError::Array {
                    reason: "invalid dimension length",
                })?
        }
        n if n > 1 => {
            return Err(ValueError::Array {
                reason: "only one-dimensional arrays are supported",
            })
        }
        _ => {
            return Err(ValueError::Array {
                reason: "invalid number of dimensions",
            })
        }
    };
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        elements.push(match reader.i32()? {
            -1 => None,
            len => Some(
                reader
                    .take(usize::try_from(len).map_err(|_| ValueError::Array {
                        reason: "invalid element length",
                    })?)?
                    .to_vec(),
            ),
        });
    }
    if !reader.rest.is_empty() {
        return Err(ValueError::Array {
            reason: "trailing bytes after the last element",
        });
    }
    Ok((element_oid, elements))
}

/// Big-endian fields off the front of a binary array.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if self.rest.len() < n {
            return Err(ValueError::Array {
                reason: "truncated binary array",
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, ValueError> {
        let head = self.take(4)?;
        Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }

    fn i32(&mut self) -> Result<i32, ValueError> {
        self.u32().map(|v| v as i32)
    }
}

/// Builds `bytea[]` in binary format: one dimension with lower bound 1, or no dimensions when
/// empty, as `array_send` writes it.
pub fn bytea_array_binary(elements: &[Option<Vec<u8>>]) -> Vec<u8> {
    let payload: usize = elements
        .iter()
        .map(|e| 4 + e.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(20 + payload);
    let ndim: i32 = if elements.is_empty() { 0 } else { 1 };
    let has_nulls = elements.iter().any(Option::is_none);
    out.extend_from_slice(&ndim.to_be_bytes());
    out.extend_from_slice(&i32::from(has_nulls).to_be_bytes());
    out.extend_from_slice(&BYTEA_OID.to_be_bytes());
    if elements.is_empty() {
        return out;
    }
    // Protocol messages cannot hold more than i32::MAX elements, so these casts are exact.
    out.extend_from_slice(&(elements.len() as i32).to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for element in elements {
        match element {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

/// Builds `bytea[]` in text format, `{"\\x0102",NULL}`: each element is bytea's hex output,
/// quoted with its backslash doubled, as `array_out` prints.
pub fn bytea_array_text(elements: &[Option<Vec<u8>>]) -> String {
    let items: Vec<String> = elements
        .iter()
        .map(|e| match e {
            None => "NULL".to_owned(),
            Some(bytes) => format!("\"\\\\x{}\"", hex::encode(bytes)),
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
mod tests;
