//! The queue of replies the server owes, server to client: each answer is matched to its
//! request, confirming or dropping that request's effects on statement and portal names.

use super::{server_broke_protocol, Expect, ProtectedSession};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::tracker;
use crate::protocol::types::backend;
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// A reply that answers nothing the proxy expects: it no longer knows what the server
    /// holds, so the session ends rather than guess.
    pub(super) fn out_of_step(&mut self, expected: Option<Expect>, got: &str) -> Verdict {
        tracing::warn!(
            ?expected,
            "server sent {got} out of step with pgshroud's requests"
        );
        Verdict::End(PgError::fatal(
            sqlstate::INTERNAL_ERROR,
            format!("pgshroud lost track of the session (the server sent {got} where it expected something else): the connection is closed"),
        ))
    }

    /// CommandComplete, EmptyQueryResponse or PortalSuspended: a statement (or an Execute's
    /// batch of rows) is done.
    pub(super) fn statement_done(&mut self, frame: &[u8]) {
        let kind = frame[0];
        // A suspended portal goes on: its rows keep counting against max_rows.
        if kind != backend::PORTAL_SUSPENDED {
            self.statement_rows = 0;
        }
        self.shape = None;
        self.copy = None;
        self.copy_out = None;
        if kind == backend::COMMAND_COMPLETE {
            let tag = frame.get(5..).unwrap_or_default();
            let tag = tag.split(|&b| b == 0).next().unwrap_or_default();
            self.sql_effect_done(&String::from_utf8_lossy(tag));
        }
        match self.pending.front_mut() {
            Some(Expect::Execute { .. }) => {
                if let Some(done) = self.pending.pop_front() {
                    self.forget(done);
                }
            }
            Some(Expect::Query { statement, .. }) => *statement += 1,
            _ => {}
        }
    }

    /// A completed `PREPARE`/`DEALLOCATE`/`DISCARD ALL` confirms the next recorded effect of
    /// the statement running now; one the proxy did not recognise makes it forget every
    /// statement (a Bind of one is then refused, never sent with the wrong plan).
    fn sql_effect_done(&mut self, tag: &str) {
        if !tracker::SqlEffect::is_tracked_tag(tag) {
            return;
        }
        let effects = match self.pending.front_mut() {
            Some(Expect::Execute { effects, .. } | Expect::Query { effects, .. }) => effects,
            _ => return self.unrecognised_effect(tag),
        };
        match effects.pop_front() {
            Some((effect, ticket)) if effect.tag() == tag => {
                self.names.confirm(ticket);
                if let tracker::SqlEffect::Prepare(name) = &effect {
                    self.sql_prepare_done(name);
                }
            }
            Some((_, ticket)) => {
                self.names.skipped(ticket);
                self.unrecognised_effect(tag);
            }
            None => self.unrecognised_effect(tag),
        }
    }

    fn unrecognised_effect(&mut self, tag: &str) {
        if let Some(effect) = tracker::SqlEffect::unrecognised(tag) {
            self.names.apply(effect);
        }
    }

    /// Drops an answered or skipped request: effects it has not confirmed did not happen.
    pub(super) fn forget(&mut self, expect: Expect) {
        match expect {
            Expect::ParseComplete {
                ticket: Some(ticket),
                ..
            }
            | Expect::BindComplete { ticket, .. }
            | Expect::CloseComplete { ticket, .. } => self.names.skipped(ticket),
            Expect::Execute { effects, .. } => {
                for (_, ticket) in effects {
                    self.names.skipped(ticket);
                }
            }
            Expect::Query {
                ticket,
                effects,
                unsettling,
                ..
            } => {
                // Skipped after an extended-protocol error: it never ran.
                self.names.skipped(ticket);
                for (_, ticket) in effects {
                    self.names.skipped(ticket);
                }
                self.unsettled = self.unsettled.saturating_sub(u32::from(unsettling));
            }
            Expect::Sync { unsettling } => {
                self.unsettled = self.unsettled.saturating_sub(u32::from(unsettling))
            }
            _ => {}
        }
    }

    pub(super) fn ready_for_query(&mut self, frame: &[u8]) -> Verdict {
        let Some(&status) = frame.get(5) else {
            return server_broke_protocol("ReadyForQuery without a status");
        };
        self.revealed.flush(&self.metrics);
        self.statement_rows = 0;
        self.shape = None;
        self.copy = None;
        self.copy_out = None;
        while let Some(e) = self.pending.pop_front() {
            match e {
                Expect::Query {
                    ticket,
                    effects,
                    unsettling,
                    ..
                } => {
                    // The query ran: the unnamed statement and portal are gone; effects of
                    // its statements that did not complete did not happen.
                    self.names.confirm(ticket);
                    for (_, ticket) in effects {
                        self.names.skipped(ticket);
                    }
                    self.unsettled = self.unsettled.saturating_sub(u32::from(unsettling));
                    break;
                }
                sync @ Expect::Sync { .. } => {
                    self.forget(sync);
                    break;
                }
                other => self.forget(other),
            }
        }
        // Ends of COPYs this ReadyForQuery closed: nothing more answers them, and left in
        // front they would make the next statement's first answer look like another's.
        while matches!(self.pending.front(), Some(Expect::CopyEnd)) {
            self.pending.pop_front();
        }
        if status == b'E' {
            self.txn_failed = true;
        }
        // The transaction's flags are set when a statement is READ: with simple Queries
        // pipelined, a ReadyForQuery `I` may answer an earlier Query than the one that set
        // them (`SELECT 1` then `BEGIN; DROP VIEW v` in one write), so they are cleared only
        // by one with no other Query or Sync still owed.
        let more_owed = status == b'I'
            && self
                .pending
                .iter()
                .any(|e| matches!(e, Expect::Query { .. } | Expect::Sync { .. }));
        if status == b'I'
            && std::mem::take(&mut self.txn_failed)
            && (self.ddl_in_txn || self.path_changed_in_txn)
        {
            // A failed block ended (COMMIT and END of one roll it back, as ROLLBACK does): a
            // dropped view over a protected table may be back, a path change undone. The
            // catalog read inside the block is no longer the server's: read it again before
            // the next statement.
            self.catalog_stale = true;
        }
        if status == b'I' && !more_owed && std::mem::take(&mut self.ddl_in_txn) {
            // Its own look-up is already queued; the other sessions follow.
            self.seen_catalog_changes = self.live.catalog_changed();
        }
        self.in_transaction = status != b'I';
        if status == b'I' {
            // Portals live only as long as their transaction.
            self.names.transaction_ended();
            if !more_owed {
                self.path_changed_in_txn = false;
            }
        }
        if matches!(
            self.pending.front(),
            Some(Expect::CatalogLookup { ahead: false })
        ) {
            // Our catalog look-up follows: the client may send its next statement
            // only once the new catalog is in place, so it gets the look-up's
            // ReadyForQuery (same transaction status) instead of this one.
            return Verdict::Drop;
        }
        Verdict::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn deallocate_and_discard_drop_statements() {
        let mut s = test_session("app");
        for name in ["a", "b"] {
            s.client_message(&parse(name, "select 1"));
        }
        s.client_message(&sync());
        answer(&mut s, &["1", "1", "ZI"]);
        s.client_message(&message(b'Q', b"DEALLOCATE a\0"));
        answer(&mut s, &["CDEALLOCATE\0", "ZI"]);
        assert!(s.names.statement("a").is_none());
        assert!(s.names.statement("b").is_some());
        // DISCARD ALL also resets the search_path: the catalog (which holds it) is looked up
        // again behind it, and that look-up's ReadyForQuery stands in for the statement's.
        let sent = s.client_message(&message(b'Q', b"DISCARD ALL\0"));
        assert!(
            matches!(&sent, Verdict::Replace(b) if b.windows(15).any(|w| w == b"current_schemas"))
        );
        answer(&mut s, &["CDISCARD ALL\0", "ZI", "ZI"]);
        assert!(s.names.statement("b").is_none());
        // A DEALLOCATE that failed (inside an aborted transaction) drops nothing.
        s.client_message(&parse("c", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        s.client_message(&message(b'Q', b"DEALLOCATE c\0"));
        s.server_message(&error("25P02"));
        answer(&mut s, &["ZE"]);
        assert!(s.names.statement("c").is_some());
    }

    #[test]
    fn portals_end_with_the_transaction() {
        let mut s = test_session("app");
        s.client_message(&parse("s", "select 1"));
        s.client_message(&bind("p", "s"));
        s.client_message(&sync());
        answer(&mut s, &["1", "2", "ZT"]);
        assert!(s.names.portal("p").is_some());
        s.client_message(&message(b'Q', b"COMMIT\0"));
        answer(&mut s, &["CCOMMIT\0", "ZI"]);
        assert!(s.names.portal("p").is_none());
    }

    #[test]
    fn short_server_messages_end_the_session() {
        let mut s = test_session("app");
        s.client_message(&message(b'Q', b"select 1\0"));
        assert!(matches!(
            s.server_message(&message(b'Z', b"")),
            Verdict::End(_)
        ));
        assert!(matches!(s.server_message(b""), Verdict::End(_)));
    }

    #[test]
    fn a_reply_to_nothing_asked_ends_the_session_with_xx000() {
        let mut s = test_session("app");
        assert_eq!(end_code(s.server_message(&message(b'1', b""))), "XX000");
    }

    #[test]
    fn an_error_mid_pipeline_drops_what_the_server_skipped() {
        let mut s = test_session("app");
        s.client_message(&parse("a", "select 1"));
        s.client_message(&parse("b", "selec 1"));
        s.client_message(&parse("c", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1"]);
        assert_eq!(s.server_message(&error("42601")), Verdict::Forward);
        answer(&mut s, &["ZI"]);
        assert!(s.names.statement("a").is_some());
        assert!(s.names.statement("b").is_none());
        assert!(s.names.statement("c").is_none());
        assert!(s.pending.is_empty(), "{:?}", s.pending);
    }
}
