//! ErrorResponse and NoticeResponse, server to client: the proxy's own refusals shown as its
//! own, stored values in a DETAIL shown as the role may see them, and free text scrubbed.

use bytes::BytesMut;

use super::{Expect, ProtectedSession};
use crate::protect::codec::Ciphers;
use crate::protect::detail::{self, Detail, KeyColumns};
use crate::protect::engine::Protection;
use crate::protect::policy::Policy;
use crate::protect::refusal;
use crate::protect::reveal::{Output, RevealCounts};
use crate::protect::wire::Format;
use crate::protocol::error::PgError;
use crate::protocol::fields;
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// Whether the `ErrorResponse` arriving now is the proxy's refusal (for metrics).
    pub fn error_is_refusal(&self) -> bool {
        matches!(
            self.pending.front(),
            Some(Expect::Refusal | Expect::Query { refused: true, .. })
        )
    }

    pub(super) fn error_response(&mut self, frame: &[u8]) -> Verdict {
        self.statement_rows = 0;
        self.shape = None;
        self.copy = None;
        self.copy_out = None;
        let verdict = if self.error_is_refusal() {
            Verdict::Replace(refusal::without_server_context(frame))
        } else {
            match self.error_detail(frame) {
                Verdict::Replace(detailed) => {
                    let scrubbed = scrub_fields(&detailed, &detail::FREE_TEXT_FIELDS);
                    Verdict::Replace(scrubbed.unwrap_or(detailed))
                }
                _ => scrub_fields(frame, &detail::FREE_TEXT_FIELDS)
                    .map_or(Verdict::Forward, Verdict::Replace),
            }
        };
        match self.pending.front() {
            // A simple query (or FunctionCall) ends at its ReadyForQuery; its later statements
            // do not run, and their effects are dropped there.
            Some(Expect::Query { .. } | Expect::Sync { .. }) | None => {}
            // Extended protocol: the server skips every message up to Sync, and with them
            // their effects.
            Some(_) => {
                while let Some(e) = self.pending.front() {
                    if matches!(e, Expect::Sync { .. } | Expect::CatalogLookup { .. }) {
                        break;
                    }
                    if let Some(skipped) = self.pending.pop_front() {
                        self.forget(skipped);
                    }
                }
            }
        }
        verdict
    }

    /// A server error's DETAIL as the caller's role may see the protected values in it.
    fn error_detail(&mut self, frame: &[u8]) -> Verdict {
        let Some(raw) = fields::field_bytes(frame, b'D') else {
            return Verdict::Forward;
        };
        let rewritten = match std::str::from_utf8(raw) {
            Ok(text) => {
                let mut columns = ErrorColumns {
                    shared: &self.shared,
                    policy: &self.policy,
                    ciphers: &mut self.ciphers,
                    revealed: &mut self.revealed,
                    schema: fields::field(frame, b's').unwrap_or_default(),
                    table: fields::field(frame, b't').unwrap_or_default(),
                };
                detail::rewrite(text, &mut columns)
            }
            // Another client_encoding: nothing in it can be placed, only dropped.
            Err(_) => detail::rewrite(&String::from_utf8_lossy(raw), &mut NoColumns),
        };
        match rewritten {
            Detail::Keep => Verdict::Forward,
            Detail::Replace(text) => Verdict::Replace(fields::with_field(frame, b'D', Some(&text))),
            Detail::Drop => Verdict::Replace(fields::with_field(frame, b'D', None)),
        }
    }
}

/// The columns of the table a server error names, as the caller's role sees them.
struct ErrorColumns<'a> {
    shared: &'a Protection,
    policy: &'a Policy,
    ciphers: &'a mut Ciphers,
    revealed: &'a mut RevealCounts,
    schema: &'a str,
    table: &'a str,
}

impl KeyColumns for ErrorColumns<'_> {
    type Column = Output;

    fn protected(&self, column: &str) -> Option<Output> {
        let spec = self.shared.spec_by_name(self.schema, self.table, column)?;
        Some(self.policy.output(spec.clone(), &self.shared.keys))
    }

    fn reveal(&mut self, output: &Output, stored: &str) -> Result<Option<String>, PgError> {
        let cipher = self.ciphers.get(&output.spec.context);
        let shown = output.reveal(cipher, stored.as_bytes(), Format::Text)?;
        self.revealed.count(output.action);
        Ok(shown.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// No column can be placed: every stored value found is dropped.
struct NoColumns;

impl KeyColumns for NoColumns {
    type Column = ();

    fn protected(&self, _: &str) -> Option<()> {
        None
    }

    fn reveal(&mut self, _: &(), _: &str) -> Result<Option<String>, PgError> {
        Ok(None)
    }
}

/// The free-text fields of a notice, where stored values are taken out.
pub(super) const NOTICE_FIELDS: [u8; 5] = [b'M', b'D', b'H', b'W', b'q'];

/// `frame` (an ErrorResponse or NoticeResponse) with stored values taken out of `codes`;
/// `None` when none of them held one. A field in another client_encoding is replaced whole.
pub(super) fn scrub_fields(frame: &[u8], codes: &[u8]) -> Option<BytesMut> {
    let mut out: Option<BytesMut> = None;
    for &code in codes {
        let current = out.as_deref().unwrap_or(frame);
        let Some(raw) = fields::field_bytes(current, code) else {
            continue;
        };
        let scrubbed = match std::str::from_utf8(raw) {
            Ok(text) => detail::scrub(text),
            Err(_) => detail::scrub(&String::from_utf8_lossy(raw))
                .map(|_| format!("{} (the message held a stored value)", detail::REMOVED)),
        };
        if let Some(text) = scrubbed {
            out = Some(fields::with_field(current, code, Some(&text)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn server_text_in_another_client_encoding_passes_untouched() {
        let mut s = test_session("app");
        s.server_message(&message(b'S', b"client_encoding\0LATIN9\0"));
        // select 'x\xe9' as "\xa4" (LATIN9's euro sign); raise notice; notify; set a name.
        s.client_message(&message(b'Q', b"select 'x\xe9' as \"\xa4\"\0"));
        let replies = [
            row_description(b"\xa4", 0, 0),
            message(b'D', b"\0\x01\0\0\0\x02x\xe9"),
            message(b'C', b"SELECT 1\0"),
            message(
                b'N',
                b"SNOTICE\0C00000\0Mcaf\xe9 \xa4\0Dd\xe9tail \\x0a\0\0",
            ),
            message(b'A', b"\0\0\0\x07ch\xe9\0pay\xa4load\0"),
            message(b'S', b"application_name\0caf\xe9\0"),
            message(
                b'E',
                b"SERROR\0C23505\0Mcl\xe9 \\x0a\0DKey (n)=(\xe9\\x02ab) already exists.\0\0",
            ),
            message(b'Z', b"I"),
        ];
        for frame in &replies {
            assert_eq!(s.server_message(frame), Verdict::Forward, "{frame:?}");
        }
        assert_eq!(s.settings.client_encoding, "LATIN9");
        assert!(s.pending.is_empty(), "{:?}", s.pending);
    }

    /// A unique violation on `table` whose DETAIL names the stored key.
    fn unique_violation(table: &str, stored: &str) -> BytesMut {
        let body = format!(
            "SERROR\0C23505\0Mduplicate key value violates unique constraint\0DKey (email)=({stored}) already exists.\0spublic\0t{table}\0\0"
        );
        message(b'E', body.as_bytes())
    }

    #[test]
    fn a_detail_with_a_protected_value_shows_it_as_the_role_sees_it() {
        for (user, shown) in [
            ("app", "alice@example.com"),
            ("support", "a****@example.com"),
        ] {
            let mut s = catalog_session(user);
            let stored = stored_email(&mut s, "alice@example.com");
            // Any statement: the DETAIL is read from the table the error names.
            s.client_message(&query("select 1"));
            let out = replaced(s.server_message(&unique_violation("customers", &stored)));
            let detail = fields::field(&out, b'D').map(str::to_owned);
            let expected = format!("Key (email)=({shown}) already exists.");
            assert_eq!(detail, Some(expected), "{user}");
        }
    }

    #[test]
    fn a_detail_with_a_stored_value_of_no_known_column_is_dropped() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&query("select 1"));
        let out = replaced(s.server_message(&unique_violation("archive", &stored)));
        assert_eq!(fields::field(&out, b'D'), None);
        assert_eq!(fields::field(&out, b'C'), Some("23505"));
    }

    #[test]
    fn a_notice_holding_a_stored_value_is_scrubbed() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        let notice = format!("SNOTICE\0C00000\0Mvalue {stored} seen\0\0");
        let out = replaced(s.server_message(&message(b'N', notice.as_bytes())));
        let text = fields::field(&out, b'M').unwrap_or_default();
        assert!(!text.contains(&stored[2..]), "{text}");
    }
}
