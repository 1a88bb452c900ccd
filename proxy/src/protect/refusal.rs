//! Refusing a statement while keeping the session in step with the server: in place of the
//! refused message the server is sent a `DO` block that raises the refusal, so PostgreSQL
//! itself places the error, skips the rest of the pipeline up to `Sync` and aborts an open
//! transaction, exactly as if the statement had failed there.

use bytes::{BufMut, BytesMut};

use crate::protocol::error::PgError;
use crate::protocol::frame::message;

/// The `DO` statement that raises `error` inside the server.
pub fn raising_statement(error: &PgError) -> String {
    let mut using = format!(
        "ERRCODE = {}, MESSAGE = {}",
        literal(error.code),
        literal(&error.message)
    );
    if let Some(detail) = &error.detail {
        using.push_str(&format!(", DETAIL = {}", literal(detail)));
    }
    if let Some(hint) = &error.hint {
        using.push_str(&format!(", HINT = {}", literal(hint)));
    }
    format!("DO $pgshroud$ BEGIN RAISE EXCEPTION USING {using}; END $pgshroud$")
}

/// The server's error for a refusal without the fields that describe the raising `DO` block
/// (`W` "PL/pgSQL function inline_code_block line 1 at RAISE", and the `F`/`L`/`R` source
/// location), so the client sees the refusal as if pgshroud itself had answered.
pub fn without_server_context(frame: &[u8]) -> BytesMut {
    let mut body = Vec::with_capacity(frame.len());
    let mut fields = frame.get(5..).unwrap_or_default();
    while let Some((&code, rest)) = fields.split_first() {
        if code == 0 {
            break;
        }
        // An unterminated field is dropped, as `protocol::fields` ignores it: the client must
        // see the same severity and code the proxy read.
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            break;
        };
        if !matches!(code, b'W' | b'F' | b'L' | b'R') {
            body.push(code);
            body.extend_from_slice(&rest[..end]);
            body.push(0);
        }
        fields = rest.get(end + 1..).unwrap_or_default();
    }
    body.push(0);
    message(b'E', &body)
}

/// A standard-conforming string literal; the text is ours (never a client value) but is
/// quoted properly all the same.
fn literal(text: &str) -> String {
    format!(
        "'{}'",
        text.replace('\'', "''")
            .replace("$pgshroud$", "$ pgshroud $")
    )
}

/// A simple `Query` that raises `error`.
pub fn refused_query(error: &PgError) -> BytesMut {
    let mut body = raising_statement(error).into_bytes();
    body.push(0);
    message(b'Q', &body)
}

/// Parse + Bind + Execute of the raising statement on the unnamed statement and portal, to
/// stand in for a refused extended-protocol message. The server answers ParseComplete and
/// BindComplete (which the proxy swallows) and then the error, in the refused message's place.
pub fn refused_extended(error: &PgError) -> BytesMut {
    let mut out = BytesMut::new();
    let mut parse = BytesMut::new();
    parse.put_u8(0); // unnamed statement
    parse.put_slice(raising_statement(error).as_bytes());
    parse.put_u8(0);
    parse.put_i16(0); // no parameter types
    out.extend_from_slice(&message(b'P', &parse));
    // Bind: unnamed portal, unnamed statement, no formats, no parameters, no result formats.
    out.extend_from_slice(&message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    // Execute: unnamed portal, no row limit.
    out.extend_from_slice(&message(b'E', &[0, 0, 0, 0, 0]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::sqlstate;

    #[test]
    fn server_context_of_the_do_block_is_removed() {
        let frame = message(
            b'E',
            b"SERROR\0C42501\0Mpermission denied\0WPL/pgSQL function inline_code_block line 1 at RAISE\0Fpl_exec.c\0L3891\0Rexec_stmt_raise\0\0",
        );
        let cleaned = without_server_context(&frame);
        assert_eq!(
            &cleaned[..],
            &message(b'E', b"SERROR\0C42501\0Mpermission denied\0\0")[..]
        );
    }

    #[test]
    fn unterminated_field_is_dropped_like_the_field_reader_does() {
        // Found by the server_messages fuzz target: the unterminated V field was kept, so
        // the cleaned error read as non-fatal while the original read as FATAL.
        let frame = message(b'E', b"SFATAL\0VF!!");
        assert!(crate::protocol::fields::is_fatal(&frame));
        let cleaned = without_server_context(&frame);
        assert_eq!(&cleaned[..], &message(b'E', b"SFATAL\0\0")[..]);
        assert!(crate::protocol::fields::is_fatal(&cleaned));
    }

    #[test]
    fn raising_statement_quotes_the_message() {
        let e = PgError::error(sqlstate::FEATURE_NOT_SUPPORTED, "it's not supported")
            .with_hint("use =");
        let sql = raising_statement(&e);
        assert_eq!(
            sql,
            "DO $pgshroud$ BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = 'it''s not supported', HINT = 'use ='; END $pgshroud$"
        );
    }

    #[test]
    fn dollar_quote_tag_cannot_be_closed_from_the_message() {
        let e = PgError::error("0A000", "x $pgshroud$; DROP TABLE t; --");
        assert_eq!(raising_statement(&e).matches("$pgshroud$").count(), 2);
    }

    #[test]
    fn extended_refusal_is_parse_bind_execute() {
        let bytes = refused_extended(&PgError::error("0A000", "no"));
        let kinds: Vec<u8> = {
            let mut kinds = vec![];
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                kinds.push(rest[0]);
                let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                rest = &rest[len + 1..];
            }
            kinds
        };
        assert_eq!(kinds, b"PBE");
    }
}
