//! COPY of a protected table, both ways: client rows sealed on their way in, server rows
//! revealed on their way out, and the Syncs a server ignores while a COPY FROM STDIN runs.

use bytes::BytesMut;

use super::{Expect, ProtectedSession};
use crate::analyze::{self, ColumnLink, CopyDirection, CopyInfo};
use crate::protect::copy::CopyStream;
use crate::protect::reveal::Output;
use crate::protocol::frame::message;
use crate::protocol::types::{backend, frontend};
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// Client COPY data for a protected table: protected fields are encrypted.
    pub(super) fn copy_from_client(&mut self, frame: &[u8]) -> Verdict {
        let Some(copy) = self
            .copy
            .as_mut()
            .filter(|c| c.direction == CopyDirection::From)
        else {
            return Verdict::Forward;
        };
        if copy.failed {
            // Already aborted with CopyFail: the rest of the client's data goes nowhere.
            if frame[0] != frontend::COPY_DATA {
                self.copy = None;
            }
            return Verdict::Drop;
        }
        let result = match frame[0] {
            frontend::COPY_DATA => copy.feed(frame.get(5..).unwrap_or_default(), &mut self.ciphers),
            frontend::COPY_DONE => copy.finish(&mut self.ciphers),
            _ => {
                self.copy = None;
                return Verdict::Forward;
            }
        };
        match result {
            Ok(out) => {
                let mut bytes = BytesMut::new();
                if !out.is_empty() {
                    bytes.extend_from_slice(&message(frontend::COPY_DATA, &out));
                }
                if frame[0] == frontend::COPY_DONE {
                    self.copy = None;
                    bytes.extend_from_slice(frame);
                }
                Verdict::Replace(bytes)
            }
            Err(error) => {
                // Abort the COPY: the server answers CopyFail with an error carrying our
                // message; the client's remaining COPY messages are dropped.
                copy.failed = true;
                let mut body = error.message.clone().into_bytes();
                body.push(0);
                Verdict::Replace(message(frontend::COPY_FAIL, &body))
            }
        }
    }

    /// The server is in COPY FROM STDIN for the request in front: it ignores every Sync sent
    /// from there to the copy's end, so none of them will be answered.
    pub(super) fn syncs_ignored_during_copy(&mut self) {
        let end = self
            .pending
            .iter()
            .position(|e| matches!(e, Expect::CopyEnd))
            .unwrap_or(self.pending.len());
        let mut at = 1;
        while at < end.min(self.pending.len()) {
            if matches!(self.pending[at], Expect::Sync { .. }) {
                if let Some(ignored) = self.pending.remove(at) {
                    self.forget(ignored);
                }
                return self.syncs_ignored_during_copy();
            }
            at += 1;
        }
    }

    /// The server starts a COPY: its rows out count against `max_rows`; if it is a protected
    /// table's, rewrite its data.
    pub(super) fn copy_starts(&mut self, frame: &[u8]) {
        let kind = frame[0];
        self.copy = None;
        let statement = self
            .current_plan()
            .and_then(|(plan, index)| plan.statements.get(index).cloned());
        let info = statement.as_ref().and_then(|s| s.copy.clone());
        let links = statement.map(|s| s.links.clone()).unwrap_or_default();
        self.copy_out = (kind == backend::COPY_OUT_RESPONSE).then(|| CopyOut {
            // CopyOutResponse: the overall format (1: binary) follows the length.
            binary: frame.get(5) == Some(&1),
            header: info.as_ref().is_some_and(|i| i.options.header),
        });
        let Some(info) = info else {
            return;
        };
        let direction = if kind == backend::COPY_IN_RESPONSE {
            CopyDirection::From
        } else {
            CopyDirection::To
        };
        self.copy = self.copy_stream(&info, &links, direction);
    }

    /// Each field as the role sees it; where a set operation merges protected columns into
    /// one (`COPY (query) TO`), the strictest of their actions, as for a result row.
    fn copy_stream(
        &self,
        info: &CopyInfo,
        links: &[ColumnLink],
        direction: CopyDirection,
    ) -> Option<CopyStream> {
        let outputs: Vec<Option<Output>> = info
            .columns
            .iter()
            .map(|c| {
                let id = (*c)?;
                let spec = self.shared.spec_by_id(id).cloned()?;
                let sources: Vec<_> = analyze::merged_with(id, links)
                    .into_iter()
                    .filter_map(|m| self.shared.spec_by_id(m).cloned())
                    .collect();
                Some(self.policy.merged_output(spec, &sources, &self.shared.keys))
            })
            .collect();
        if outputs.iter().all(Option::is_none) {
            return None;
        }
        Some(CopyStream::new(direction, &info.options, outputs))
    }

    /// A CopyData of a COPY TO STDOUT counts as one result row (PostgreSQL sends one message
    /// per row), except a header line the analysis knows of and the binary format's
    /// trailer; the row past an enforced `max_rows` ends the session, as a DataRow's does.
    /// A header line of a COPY the proxy did not analyse (no protected table) counts too:
    /// the count errs on the strict side.
    pub(super) fn copy_out_row(&mut self, frame: &[u8]) -> Option<Verdict> {
        let out = self.copy_out.as_mut()?;
        if std::mem::take(&mut out.header) {
            return None;
        }
        if out.binary && frame.get(5..) == Some(&BINARY_TRAILER[..]) {
            return None;
        }
        self.enforce_row_limit()
    }

    /// Server COPY data of a protected table: protected fields are decrypted.
    pub(super) fn copy_to_client(&mut self, frame: &[u8]) -> Verdict {
        let Some(copy) = self
            .copy
            .as_mut()
            .filter(|c| c.direction == CopyDirection::To)
        else {
            return Verdict::Forward;
        };
        match copy.feed(frame.get(5..).unwrap_or_default(), &mut self.ciphers) {
            Ok(out) if out.is_empty() => Verdict::Drop,
            Ok(out) => Verdict::Replace(message(backend::COPY_DATA, &out)),
            Err(error) => self.fail_results(error),
        }
    }
}

/// A COPY TO STDOUT under way, for counting its rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct CopyOut {
    binary: bool,
    /// The next CopyData is the header line (`HEADER`), not a row.
    header: bool,
}

/// The binary COPY format's end: a field count of -1, alone in its message.
const BINARY_TRAILER: [u8; 2] = [0xff, 0xff];

/// Whether messages going upstream end a COPY (CopyDone or CopyFail).
pub(super) fn ends_copy(mut out: &[u8]) -> bool {
    while out.len() >= 5 {
        if matches!(out[0], frontend::COPY_DONE | frontend::COPY_FAIL) {
            return true;
        }
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        out = out.get(1 + len.max(4)..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_sync_sent_during_copy_from_stdin_is_not_waited_for() {
        // tokio-postgres: Bind, Execute, Sync; the data; CopyDone, Sync. The first Sync
        // reaches the server during the COPY and is ignored: one ReadyForQuery in all.
        let mut s = test_session("app");
        s.client_message(&parse("", "COPY t FROM STDIN"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        s.client_message(&bind("", ""));
        s.client_message(&message(b'E', b"\0\0\0\0\0"));
        s.client_message(&sync());
        answer(&mut s, &["2", "G\0\0\0"]);
        s.client_message(&message(b'd', b"1\n"));
        s.client_message(&message(b'c', b""));
        s.client_message(&sync());
        answer(&mut s, &["CCOPY 1\0", "ZI"]);
        assert!(s.pending.is_empty(), "{:?}", s.pending);
        // The next statement's answers line up.
        s.client_message(&parse("", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        assert!(s.pending.is_empty());
    }

    /// `stored` as COPY's text format writes it (a backslash doubled).
    fn copy_text(stored: &str) -> String {
        stored.replace('\\', "\\\\")
    }

    #[test]
    fn copy_from_stdin_rows_have_their_protected_fields_encrypted() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        let copy = query("COPY customers (email, name) FROM STDIN");
        assert_eq!(s.client_message(&copy), Verdict::Forward);
        assert_eq!(
            s.server_message(&message(b'G', b"\0\0\x02\0\0\0\0")),
            Verdict::Forward
        );
        let row = message(b'd', b"alice@example.com\tAlice\n");
        let sent = messages(&replaced(s.client_message(&row)));
        let expected = format!("{}\tAlice\n", copy_text(&stored));
        assert_eq!(sent, [(b'd', expected.into_bytes())]);
        // CopyDone goes on; the COPY's end is noted for the Syncs sent during it.
        let done = messages(&replaced(s.client_message(&message(b'c', b""))));
        assert_eq!(done, [(b'c', Vec::new())]);
        answer(&mut s, &["CCOPY 1\0", "ZI"]);
        assert!(s.pending.is_empty(), "{:?}", s.pending);
    }

    #[test]
    fn a_refusal_right_after_copy_from_stdin_is_known_as_pgshroud_s() {
        let mut s = catalog_session("app");
        s.client_message(&query("COPY customers (email, name) FROM STDIN"));
        s.server_message(&message(b'G', b"\0\0\x02\0\0\0\0"));
        s.client_message(&message(b'd', b"alice@example.com\tAlice\n"));
        s.client_message(&message(b'c', b""));
        answer(&mut s, &["CCOPY 1\0", "ZI"]);
        // The next statement is refused: its error is the proxy's, not the server's.
        s.client_message(&query("select id from customers where email like 'a%'"));
        assert!(s.error_is_refusal(), "{:?}", s.pending);
    }

    /// `user` runs `sql`, a COPY TO STDOUT (in binary or text) whose server sends `messages`
    /// as CopyData: the verdict on each.
    fn copy_out(user: &str, sql: &str, binary: bool, messages: &[&[u8]]) -> Vec<Verdict> {
        let mut s = catalog_session(user);
        s.client_message(&query(sql));
        let format = if binary { b"\x01\0\0" } else { b"\0\0\0" };
        s.server_message(&message(b'H', format));
        messages
            .iter()
            .map(|m| s.server_message(&message(b'd', m)))
            .collect()
    }

    #[test]
    fn the_copy_row_past_an_enforced_max_rows_ends_the_session_with_54000() {
        // support may read 2 rows per statement; an unprotected table's COPY counts too.
        let mut verdicts = copy_out("support", "COPY notes TO STDOUT", false, &[&b"1\n"[..]; 3]);
        let third = verdicts.pop().expect("three verdicts");
        assert_eq!(verdicts, [Verdict::Forward, Verdict::Forward]);
        assert_eq!(end_code(third), "54000");
        let three = copy_out("app", "COPY notes TO STDOUT", false, &[&b"1\n"[..]; 3]);
        assert!(three.iter().all(|v| *v == Verdict::Forward), "{three:?}");
    }

    #[test]
    fn a_copy_header_line_and_binary_trailer_are_not_rows() {
        let header = copy_out(
            "support",
            "COPY customers (name) TO STDOUT WITH (FORMAT csv, HEADER)",
            false,
            &[b"name\n", b"Alice\n", b"Bob\n"],
        );
        assert!(header.iter().all(|v| *v == Verdict::Forward), "{header:?}");
        let binary = copy_out(
            "support",
            "COPY notes TO STDOUT WITH (FORMAT binary)",
            true,
            &[b"PGCOPY\n\xff\r\n\0rest", b"row", b"\xff\xff"],
        );
        assert!(binary.iter().all(|v| *v == Verdict::Forward), "{binary:?}");
    }

    #[test]
    fn a_new_statement_counts_its_copy_rows_from_zero() {
        let mut s = catalog_session("support");
        for _ in 0..2 {
            s.client_message(&query("COPY notes TO STDOUT"));
            s.server_message(&message(b'H', b"\0\0\0"));
            for _ in 0..2 {
                assert_eq!(s.server_message(&message(b'd', b"1\n")), Verdict::Forward);
            }
            s.server_message(&message(b'c', b""));
            answer(&mut s, &["CCOPY 2\0", "ZI"]);
        }
    }

    #[test]
    fn copy_to_stdout_rows_are_shown_as_the_role_sees_them() {
        for (user, shown) in [
            ("app", "alice@example.com"),
            ("support", "a****@example.com"),
        ] {
            let mut s = catalog_session(user);
            let stored = stored_email(&mut s, "alice@example.com");
            s.client_message(&query("COPY customers (email) TO STDOUT"));
            s.server_message(&message(b'H', b"\0\0\x01\0\0"));
            let data = format!("{}\n", copy_text(&stored));
            let out = messages(&replaced(s.server_message(&message(b'd', data.as_bytes()))));
            assert_eq!(out, [(b'd', format!("{shown}\n").into_bytes())], "{user}");
        }
    }
}
