//! Reading fields out of `ErrorResponse`/`NoticeResponse` bodies without a full decode.

/// The value of one field (e.g. `b'C'` for the SQLSTATE) of an error or notice message.
pub fn field(frame: &[u8], code: u8) -> Option<&str> {
    std::str::from_utf8(field_bytes(frame, code)?).ok()
}

/// The bytes of one field, whatever their encoding.
pub fn field_bytes(frame: &[u8], code: u8) -> Option<&[u8]> {
    let mut rest = frame.get(5..)?;
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            return None;
        }
        let end = after.iter().position(|&b| b == 0)?;
        if kind == code {
            return Some(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    None
}

/// The message with one field's value replaced, or the field left out (`None`).
pub fn with_field(frame: &[u8], code: u8, value: Option<&str>) -> bytes::BytesMut {
    let mut body = Vec::with_capacity(frame.len());
    let mut rest = frame.get(5..).unwrap_or_default();
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = after.iter().position(|&b| b == 0).unwrap_or(after.len());
        let field = match (kind == code, value) {
            (false, _) => Some(&after[..end]),
            (true, Some(v)) => Some(v.as_bytes()),
            (true, None) => None,
        };
        if let Some(field) = field {
            body.push(kind);
            body.extend_from_slice(field);
            body.push(0);
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    body.push(0);
    crate::protocol::frame::message(frame[0], &body)
}

/// Whether an `ErrorResponse` ends the session (FATAL or PANIC).
pub fn is_fatal(frame: &[u8]) -> bool {
    matches!(
        field(frame, b'V').or_else(|| field(frame, b'S')),
        Some("FATAL" | "PANIC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::PgError;

    #[test]
    fn fields_of_an_error_are_found() {
        let e = PgError::too_many_clients().to_bytes();
        assert_eq!(field(&e, b'C'), Some("53300"));
        assert_eq!(field(&e, b'X'), None);
        assert!(is_fatal(&e));
        assert!(!is_fatal(&PgError::error("42000", "x").to_bytes()));
        let mut detailed = PgError::error("23505", "duplicate");
        detailed.detail = Some("Key (email)=(x) already exists.".into());
        let e = detailed.to_bytes();
        let replaced = with_field(&e, b'D', Some("Key (email)=(y) already exists."));
        assert_eq!(
            field(&replaced, b'D'),
            Some("Key (email)=(y) already exists.")
        );
        assert_eq!(field(&replaced, b'C'), Some("23505"));
        let dropped = with_field(&e, b'D', None);
        assert_eq!(field(&dropped, b'D'), None);
        assert_eq!(field(&dropped, b'M'), Some("duplicate"));
    }
}
