//! Keeping the catalog true: our own catalog look-up and its answers, a retry after a failed one,
//! and the reasons to look again (rules reloaded, search_path possibly changed, DDL).

use bytes::BytesMut;

use super::{Expect, ProtectedSession};
use crate::analyze;
use crate::protect::catalog::{self, Catalog};
use crate::protocol::error::sqlstate;
use crate::protocol::frame::message;
use crate::protocol::text_settings::{self as settings};
use crate::protocol::types::{backend, frontend};
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// Our catalog look-up, queued behind the client's messages. It runs in the extended
    /// protocol under a statement and portal name of its own, closed after use: a simple
    /// Query would drop the client's unnamed prepared statement (asyncpg binds it again after
    /// a Sync), and the unnamed portal is the client's too. A look-up that fails part-way may
    /// leave its statement behind; the next one uses the next number.
    pub(super) fn lookup_message(&mut self) -> BytesMut {
        self.lookup_message_placed(false, &[])
    }

    /// [`Self::lookup_message`], `ahead` of a client's statement that waits for its answer.
    /// With `locking` tables it ends in Flush, not Sync: its implicit transaction, holding
    /// `ACCESS SHARE` on them, goes on into the client's statement (see `ahead`).
    pub(super) fn lookup_message_placed(
        &mut self,
        ahead: bool,
        locking: &[(String, String)],
    ) -> BytesMut {
        let synced = locking.is_empty();
        self.pending.push_back(match synced {
            true => Expect::CatalogLookup { ahead },
            false => Expect::LockedLookup { closes: 0 },
        });
        self.lookups += 1;
        let name = format!("pgshroud.catalog.{}\0", self.lookups);
        // Every table of the rules in force, served plain or not: a migrating column's
        // change of form is seen only here.
        let sql = catalog::lookup_query_locking(self.rules_in_force.tables(), locking);
        let mut parse = Vec::with_capacity(name.len() + sql.len() + 3);
        parse.extend_from_slice(name.as_bytes());
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]); // end of text, no parameter types
                                             // Portal and statement names, no parameter formats or values, text results.
        let mut bind = Vec::with_capacity(2 * name.len() + 6);
        bind.extend_from_slice(name.as_bytes());
        bind.extend_from_slice(name.as_bytes());
        bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut execute = name.as_bytes().to_vec();
        execute.extend_from_slice(&[0, 0, 0, 0]); // all rows
        let mut out = message(frontend::PARSE, &parse);
        out.extend_from_slice(&message(frontend::BIND, &bind));
        out.extend_from_slice(&message(frontend::EXECUTE, &execute));
        for target in [b'P', b'S'] {
            let mut close = vec![target];
            close.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&message(frontend::CLOSE, &close));
        }
        let end = match synced {
            true => frontend::SYNC,
            false => frontend::FLUSH,
        };
        out.extend_from_slice(&message(end, &[]));
        out
    }

    /// Picks up reloaded rules before a new statement: the role is matched again and, when
    /// the protected tables changed, the catalog is looked up again after this statement.
    pub(super) fn follow_rules(&mut self) {
        let changes = self.live.catalog_changes();
        if changes != self.seen_catalog_changes {
            self.seen_catalog_changes = changes;
            self.catalog_stale = true;
            self.catalog_behind = true;
        }
        let generation = self.live.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let next = self.live.current();
        if next.tables() != self.rules_in_force.tables() {
            self.catalog_stale = true;
        }
        // A reload may bring other key versions or tenant keys (a forgotten tenant): seal,
        // open and match with them from now on (plans come from the new rules generation,
        // which knows the same versions).
        self.ciphers = next.session_ciphers(self.tenant());
        self.migrating_tables = super::migrating::migrating_tables(&next.rules);
        self.rules_in_force = next;
        self.plans_epoch += 1;
        self.serve_migrating(true);
    }

    /// The server does not report search_path changes: after a text that may change it (or
    /// roll such a change, or a schema change, back) the catalog, which holds the path, is
    /// looked up again. Returns
    /// whether the text may change the path or how later text is read (text behind it waits
    /// for the server's answer). Both are read with PostgreSQL's grammar
    /// ([`analyze::settings_changed`]), so `SET U&"search\005fpath"` counts too.
    pub(super) fn follow_settings(&mut self, sql: &[u8]) -> bool {
        let changed = analyze::settings_changed_in(sql);
        self.follow_search_path(sql, changed.search_path) || changed.text_reading
    }

    fn follow_search_path(&mut self, sql: &[u8], changes_path: bool) -> bool {
        if changes_path {
            self.catalog_stale = true;
            self.path_changed_in_txn = true;
            return true;
        }
        // A rollback also undoes the open transaction's schema changes, which the catalog
        // was read after: a dropped view over a protected table may be back.
        if (self.path_changed_in_txn || self.ddl_in_txn) && settings::may_roll_back(sql) {
            self.catalog_stale = true;
            return true;
        }
        false
    }

    /// The look-up's rows, once all have come: the catalog as the server has it now.
    pub(super) fn apply_lookup(&mut self) {
        let rows = std::mem::take(&mut self.lookup_rows);
        if std::mem::take(&mut self.lookup_failed) {
            // Not read (e.g. inside a failed transaction): read again before the
            // next statement rather than trust the old catalog.
            self.catalog_stale = true;
            return;
        }
        self.catalog = Catalog::from_rows(rows);
        self.catalog_behind = false;
        // Still unknown after a fresh look-up: not a view over a protected table.
        self.plain_origins.extend(self.unknown_origins.drain());
        let before = self.layout.fingerprint;
        self.layout = self.shared.layout(&self.catalog);
        if self.layout.fingerprint != before {
            // A statement prepared before (a temporary view over a protected table may now
            // shadow the table it names) is parsed again at its next Bind.
            self.plans_epoch += 1;
        }
        self.harmless.forget();
        self.serve_migrating(false);
        self.shared.report_problems(&self.catalog, &self.metrics);
    }

    /// Answers to our own catalog look-up; asynchronous messages still reach the client.
    pub(super) fn lookup_answer(&mut self, frame: &[u8], ahead: bool) -> Verdict {
        match frame[0] {
            // catalog::data_row_text expects at least a field count.
            backend::DATA_ROW if frame.len() >= 7 => {
                self.lookup_rows.push(catalog::data_row_text(frame))
            }
            backend::DATA_ROW => self.lookup_failed = true,
            backend::ERROR_RESPONSE => {
                self.lookup_failed = true;
                if ahead {
                    self.ahead_failure = Some(super::ahead::look_up_failed(Some(frame)));
                }
            }
            backend::READY_FOR_QUERY => {
                self.pending.pop_front();
                if ahead && self.lookup_failed && self.ahead_failure.is_none() {
                    self.ahead_failure = Some(super::ahead::look_up_failed(None));
                }
                // In a transaction block that had already failed, the server refuses the
                // statement itself (and lets ROLLBACK end the block): refusing it here too
                // would keep the client from ever leaving the block.
                if self
                    .ahead_failure
                    .as_ref()
                    .is_some_and(|e| e.code == sqlstate::IN_FAILED_SQL_TRANSACTION)
                {
                    self.ahead_failure = None;
                }
                self.apply_lookup();
                if frame.get(5) == Some(&b'I') {
                    self.names.transaction_ended();
                }
                self.in_transaction = frame.get(5) != Some(&b'I');
                self.lookup_answered = true;
                if ahead {
                    // The statement it was sent for goes on now, without another.
                    self.ahead_in_flight = false;
                    self.looked_up_ahead = true;
                    return Verdict::Drop;
                }
                // Stands in for the ReadyForQuery held back from the statement before.
                return Verdict::Forward;
            }
            backend::PARAMETER_STATUS => {
                self.settings.observe_message(frame);
                return Verdict::Forward;
            }
            backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE => return Verdict::Forward,
            _ => {}
        }
        Verdict::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// The look-up's answers up to (not including) its ReadyForQuery: all the proxy's own.
    fn lookup_answers(s: &mut ProtectedSession, rows: &[Vec<Option<&str>>]) {
        let mut replies = vec![message(b'1', b""), message(b'2', b"")];
        replies.extend(rows.iter().map(|row| data_row(row)));
        replies.extend([
            message(b'C', b"SELECT 4\0"),
            message(b'3', b""),
            message(b'3', b""),
        ]);
        for reply in replies {
            assert_eq!(s.server_message(&reply), Verdict::Drop, "{reply:?}");
        }
    }

    #[test]
    fn ddl_on_a_protected_table_is_followed_by_a_catalog_lookup() {
        let mut s = test_session("app");
        let alter = query("alter table customers add column note text");
        let sent = messages(&replaced(s.client_message(&alter)));
        assert_eq!(sent.iter().map(|m| m.0).collect::<Vec<_>>(), b"QPBECCS");
        assert_eq!(
            s.server_message(&message(b'C', b"ALTER TABLE\0")),
            Verdict::Forward
        );
        // The statement's ReadyForQuery is held back; the look-up's stands in for it.
        assert_eq!(s.server_message(&message(b'Z', b"I")), Verdict::Drop);
        lookup_answers(&mut s, &lookup_rows());
        assert_eq!(s.server_message(&message(b'Z', b"I")), Verdict::Forward);
        assert!(s.catalog.table_by_oid(CUSTOMERS_OID).is_some());
        assert!(s.pending.is_empty(), "{:?}", s.pending);
    }

    #[test]
    fn a_failed_lookup_is_sent_again_before_the_next_statement() {
        let mut s = test_session("app");
        s.client_message(&query("alter table customers add column note text"));
        answer(&mut s, &["CALTER TABLE\0", "ZI"]);
        let failed = message(b'E', b"SERROR\0C25P02\0Maborted\0\0");
        assert_eq!(s.server_message(&failed), Verdict::Drop);
        assert_eq!(s.server_message(&message(b'Z', b"E")), Verdict::Forward);
        let sent = replaced(s.client_message(&query("select 1")));
        assert!(sent.windows(19).any(|w| w == b"pgshroud.catalog.2\0"));
    }

    #[test]
    fn a_search_path_change_is_followed_by_a_lookup() {
        let mut s = test_session("app");
        let sent = replaced(s.client_message(&query("set search_path = crm, public")));
        let kinds: Vec<u8> = messages(&sent).iter().map(|m| m.0).collect();
        assert_eq!(kinds, b"QPBECCS");
        assert_eq!(s.client_message(&query("select 1")), Verdict::Forward);
    }

    #[test]
    fn every_spelling_postgresql_reads_as_a_search_path_change_is_followed() {
        for sql in [
            r#"SET U&"search\005fpath" = crm"#,
            r#"/* c */ set "search_path" to crm"#,
            r#"select U&"set\005fconfig"('search_path', 'crm', false)"#,
            "SET ROLE other",
        ] {
            let mut s = test_session("app");
            let sent = replaced(s.client_message(&query(sql)));
            let kinds: Vec<u8> = messages(&sent).iter().map(|m| m.0).collect();
            assert_eq!(kinds, b"QPBECCS", "{sql}");
        }
        // An UPDATE's SET changes no setting: no look-up.
        let mut s = test_session("app");
        assert_eq!(
            s.client_message(&query("update other set a = 1")),
            Verdict::Forward
        );
    }

    #[test]
    fn a_statement_after_another_sessions_ddl_waits_for_a_lookup_sent_ahead_of_it() {
        let mut s = test_session("app");
        let select = query("select email from customers");
        assert_eq!(s.hold_before(&select), None, "nothing stale: no wait");
        s.live.catalog_changed();
        let ahead = s.hold_before(&select).expect("held");
        let kinds: Vec<u8> = messages(&ahead).iter().map(|m| m.0).collect();
        assert_eq!(kinds, b"PBECCS");
        // Still held while the look-up is in flight.
        assert_eq!(s.hold_before(&select), Some(BytesMut::new()));
        lookup_answers(&mut s, &lookup_rows());
        // Its ReadyForQuery is the proxy's own: the client sent nothing yet.
        assert_eq!(s.server_message(&message(b'Z', b"I")), Verdict::Drop);
        assert!(s.take_lookup_answered());
        assert!(s.catalog.table_by_oid(CUSTOMERS_OID).is_some());
        // Released: planned against the new catalog, with no look-up behind it.
        assert_eq!(s.hold_before(&select), None);
        let verdict = s.client_message(&select);
        assert!(
            !matches!(&verdict, Verdict::Replace(b) if b.windows(16).any(|w| w == b"pgshroud.catalog"))
        );
        assert!(matches!(s.pending.front(), Some(Expect::Query { .. })));
    }

    #[test]
    fn a_parse_inside_a_pipeline_is_not_held() {
        let mut s = test_session("app");
        assert_eq!(s.client_message(&parse("", "select 1")), Verdict::Forward);
        s.live.catalog_changed();
        assert_eq!(s.hold_before(&parse("a", "select 2")), None);
        s.client_message(&sync());
        assert!(s.hold_before(&parse("b", "select 3")).is_some());
    }
}
