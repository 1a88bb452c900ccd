//! The one place every client message and every statement passes on its way upstream, and
//! every server message on its way back. Statements that mention no protected table are
//! forwarded as raw bytes without a parse; later stages analyse and rewrite the rest.

use bytes::BytesMut;

use crate::protocol::types::frontend;

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the message on unchanged (the fast path).
    Forward,
    /// Send these bytes (zero or more whole messages) in its place.
    Replace(BytesMut),
}

/// Table names whose mention sends a statement to analysis; empty while no rules are loaded.
#[derive(Debug, Default, Clone)]
pub struct ProtectedTables {
    /// Lower-case table names.
    names: Vec<String>,
}

impl ProtectedTables {
    pub fn new<I: IntoIterator<Item = String>>(names: I) -> Self {
        ProtectedTables {
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Case-insensitive substring pre-filter: `false` means the statement cannot touch a
    /// protected table, so it needs no parse.
    pub fn mentioned_in(&self, sql: &[u8]) -> bool {
        self.names
            .iter()
            .any(|name| contains_ignore_ascii_case(sql, name.as_bytes()))
    }
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || needle.len() > haystack.len() {
        return needle.is_empty();
    }
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Per-session statement path state.
#[derive(Debug, Default)]
pub struct StatementPath {
    protected: ProtectedTables,
}

impl StatementPath {
    pub fn new(protected: ProtectedTables) -> Self {
        StatementPath { protected }
    }

    /// Called for every whole client message (type byte, length, body).
    pub fn client_message(&mut self, frame: &[u8]) -> Verdict {
        if self.protected.is_empty() {
            return Verdict::Forward;
        }
        match frame[0] {
            frontend::QUERY | frontend::PARSE => match statement_text(frame) {
                Some(sql) if self.protected.mentioned_in(sql) => self.analyse(frame, sql),
                _ => Verdict::Forward,
            },
            _ => Verdict::Forward,
        }
    }

    /// Statements that touch protected tables. The encrypted-columns stage plugs its analysis
    /// and rewriting in here; until then they pass as they are.
    fn analyse(&mut self, _frame: &[u8], _sql: &[u8]) -> Verdict {
        Verdict::Forward
    }
}

/// The SQL text of a `Query` or `Parse` message, without its terminator.
pub fn statement_text(frame: &[u8]) -> Option<&[u8]> {
    let body = frame.get(5..)?;
    let body = match frame[0] {
        frontend::QUERY => body,
        // Parse: statement name (cstring), then the query (cstring).
        frontend::PARSE => &body[body.iter().position(|&b| b == 0)? + 1..],
        _ => return None,
    };
    let end = body.iter().position(|&b| b == 0)?;
    Some(&body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::message;

    #[test]
    fn statement_text_of_query_and_parse() {
        let q = message(b'Q', b"select 1\0");
        assert_eq!(statement_text(&q), Some(&b"select 1"[..]));
        let p = message(b'P', b"s1\0select $1\0\0\0");
        assert_eq!(statement_text(&p), Some(&b"select $1"[..]));
        let s = message(b'S', b"");
        assert_eq!(statement_text(&s), None);
    }

    #[test]
    fn prefilter_matches_table_names_case_insensitively() {
        let p = ProtectedTables::new(["customers".to_owned()]);
        assert!(p.mentioned_in(b"SELECT * FROM public.Customers"));
        assert!(!p.mentioned_in(b"SELECT * FROM orders"));
        assert!(!ProtectedTables::default().mentioned_in(b"SELECT 1"));
    }

    #[test]
    fn messages_pass_unchanged_without_rules() {
        let mut path = StatementPath::default();
        assert_eq!(
            path.client_message(&message(b'Q', b"select 1\0")),
            Verdict::Forward
        );
    }
}
