//! Reading fields out of `ErrorResponse`/`NoticeResponse` bodies without a full decode.

/// The value of one field (e.g. `b'C'` for the SQLSTATE) of an error or notice message.
pub fn field(frame: &[u8], code: u8) -> Option<&str> {
    let mut rest = frame.get(5..)?;
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            return None;
        }
        let end = after.iter().position(|&b| b == 0)?;
        if kind == code {
            return std::str::from_utf8(&after[..end]).ok();
        }
        rest = &after[end + 1..];
    }
    None
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
    use crate::pg_error::PgError;

    #[test]
    fn fields_of_an_error_are_found() {
        let e = PgError::too_many_clients().to_bytes();
        assert_eq!(field(&e, b'C'), Some("53300"));
        assert_eq!(field(&e, b'X'), None);
        assert!(is_fatal(&e));
        assert!(!is_fatal(&PgError::error("42000", "x").to_bytes()));
    }
}
