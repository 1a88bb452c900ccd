//! Catalog look-ups ahead of a statement: the relay holds a client's statement (a Query, or
//! the Parse or Bind that opens a pipeline) until a look-up sent before it has answered, so
//! the statement is planned against the catalog as it is now (after a reload, DDL here or in
//! another session), not found stale after it ran.
//!
//! A statement that may touch a table with a migrating column is always preceded by one, and
//! outside a transaction block that look-up takes `ACCESS SHARE` on those tables and ends in
//! Flush, not Sync: the statement runs in the same implicit transaction, under the same lock,
//! so `pgshroud migrate`'s swap (`ACCESS EXCLUSIVE`) commits either before the look-up (which
//! then reads the new form) or after the statement, never between them.

use bytes::BytesMut;

use super::{migrating, Expect, ProtectedSession};
use crate::protect::catalog;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::fields;
use crate::protocol::frame::message;
use crate::protocol::types::{backend, frontend};
use crate::protocol::verdict::Verdict;

/// Statements PostgreSQL refuses inside a pipeline (an implicit transaction left open by a
/// Flush): their look-up ends in Sync, without the lock. Lower case, matched in the text.
const NOT_IN_A_PIPELINE: [&str; 6] = [
    "vacuum",
    "concurrently",
    "reindex",
    "cluster",
    "database",
    "system",
];

impl ProtectedSession {
    /// Before a client message, in the relay: `None`, it goes on now; `Some(bytes)`, it waits
    /// (after `bytes`, a look-up or a Sync of ours, go upstream) until a look-up answers.
    pub fn hold_before(&mut self, frame: &[u8]) -> Option<BytesMut> {
        let kind = *frame.first()?;
        let text = match kind {
            frontend::QUERY => frame.get(5..).unwrap_or_default(),
            frontend::PARSE if !self.in_pipeline => frame.get(5..).unwrap_or_default(),
            frontend::BIND if !self.in_pipeline => {
                // A statement prepared earlier, bound when the catalog may have changed: a
                // reload, or it may touch a migrating table (it may be parsed again).
                if self.migrating_tables.is_empty() && !self.stale_after_following() {
                    return None;
                }
                let query = self.bound_query(frame)?;
                let migrating = migrating::may_touch(query.as_bytes(), &self.migrating_tables);
                if !migrating && !self.catalog_stale {
                    return None;
                }
                return self.send_ahead(query.as_bytes(), migrating);
            }
            _ => return None,
        };
        self.send_ahead(text, false)
    }

    fn send_ahead(&mut self, text: &[u8], migrating: bool) -> Option<BytesMut> {
        if std::mem::take(&mut self.looked_up_ahead) {
            return None;
        }
        if std::mem::take(&mut self.ahead_needs_sync) {
            // The locked look-up failed: the server skips everything up to a Sync.
            self.pending.push_back(Expect::AheadSync);
            self.ahead_in_flight = true;
            return Some(message(frontend::SYNC, &[]));
        }
        if self.ahead_in_flight
            || self.pending.iter().any(|e| {
                matches!(
                    e,
                    Expect::CatalogLookup { .. } | Expect::LockedLookup { .. } | Expect::AheadSync
                )
            })
        {
            return Some(BytesMut::new());
        }
        self.follow_rules();
        let migrating = migrating
            || (!self.migrating_tables.is_empty()
                && migrating::may_touch(text, &self.migrating_tables));
        if !self.catalog_stale && !migrating {
            return None;
        }
        self.catalog_stale = false;
        self.ahead_in_flight = true;
        let locking = match migrating && !self.in_transaction && pipeline_allowed(text) {
            true => self.locking_tables(),
            false => Vec::new(),
        };
        Some(self.lookup_message_placed(true, &locking))
    }

    /// Whether the catalog is stale once reloaded rules and other sessions' DDL are followed.
    fn stale_after_following(&mut self) -> bool {
        self.follow_rules();
        self.catalog_stale
    }

    /// The tables with a migrating column the catalog knows (a missing one would fail the
    /// look-up).
    fn locking_tables(&self) -> Vec<(String, String)> {
        self.rules_in_force
            .tables()
            .iter()
            .filter(|(schema, table)| {
                self.migrating_tables.contains(table) && self.catalog.table(schema, table).is_some()
            })
            .cloned()
            .collect()
    }

    /// The text of the statement a Bind names, if the proxy read it.
    fn bound_query(&self, frame: &[u8]) -> Option<String> {
        let body = frame.get(5..)?;
        let portal_end = body.iter().position(|&b| b == 0)?;
        let rest = &body[portal_end + 1..];
        let name_end = rest.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(&rest[..name_end]).ok()?;
        match self.names.statement(name)? {
            crate::protocol::tracker::Held::Known(info) => info.query.clone(),
            crate::protocol::tracker::Held::Foreign => None,
        }
    }

    /// A look-up answered since the last call: a message held by [`Self::hold_before`] may
    /// go on.
    pub fn take_lookup_answered(&mut self) -> bool {
        std::mem::take(&mut self.lookup_answered)
    }

    /// Answers to a locked look-up (no ReadyForQuery: it ends at its second CloseComplete,
    /// or at an error, after which the server waits for a Sync).
    pub(super) fn locked_lookup_answer(&mut self, frame: &[u8]) -> Verdict {
        let done = match frame[0] {
            backend::DATA_ROW if frame.len() >= 7 => {
                self.lookup_rows.push(catalog::data_row_text(frame));
                false
            }
            backend::DATA_ROW => {
                self.lookup_failed = true;
                false
            }
            backend::ERROR_RESPONSE => {
                self.lookup_failed = true;
                self.ahead_needs_sync = true;
                self.ahead_failure = Some(look_up_failed(Some(frame)));
                true
            }
            backend::CLOSE_COMPLETE => match self.pending.front_mut() {
                Some(Expect::LockedLookup { closes }) => {
                    *closes += 1;
                    *closes == 2
                }
                _ => false,
            },
            backend::PARAMETER_STATUS => {
                self.settings.observe_message(frame);
                return Verdict::Forward;
            }
            backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE => return Verdict::Forward,
            _ => false,
        };
        if done {
            self.pending.pop_front();
            if self.lookup_failed && self.ahead_failure.is_none() {
                self.ahead_failure = Some(look_up_failed(None));
            }
            self.apply_lookup();
            self.lookup_answered = true;
            self.ahead_in_flight = false;
            // After a failure the statement still waits: for our Sync's answer.
            self.looked_up_ahead = !self.ahead_needs_sync;
        }
        Verdict::Drop
    }

    /// The ReadyForQuery answering our Sync after a failed locked look-up.
    pub(super) fn ahead_sync_answer(&mut self, frame: &[u8]) -> Verdict {
        match frame[0] {
            backend::READY_FOR_QUERY => {
                self.pending.pop_front();
                self.in_transaction = frame.get(5) != Some(&b'I');
                if !self.in_transaction {
                    self.names.transaction_ended();
                }
                self.lookup_answered = true;
                self.ahead_in_flight = false;
                self.looked_up_ahead = true;
                Verdict::Drop
            }
            backend::PARAMETER_STATUS => {
                self.settings.observe_message(frame);
                Verdict::Forward
            }
            backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE => Verdict::Forward,
            _ => Verdict::Drop,
        }
    }
}

/// The refusal of a statement whose look-up ahead failed: the server's error (`frame`), when
/// it is one of those that end a waiting statement, else a failure of pgshroud's own. The
/// look-up holds no value, so its error text holds none either.
pub(super) fn look_up_failed(frame: Option<&[u8]>) -> PgError {
    let server = |code: &str| {
        let frame = frame?;
        (fields::field(frame, b'C')? == code).then(|| fields::field(frame, b'M'))?
    };
    let known = [
        sqlstate::QUERY_CANCELED,
        sqlstate::LOCK_NOT_AVAILABLE,
        sqlstate::IN_FAILED_SQL_TRANSACTION,
        sqlstate::ADMIN_SHUTDOWN,
    ]
    .into_iter()
    .find_map(|code| Some((code, server(code)?.to_owned())));
    let (code, message) = known.unwrap_or((
        sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pgshroud could not read the catalog before this statement".to_owned(),
    ));
    PgError::error(code, message).with_detail(
        "pgshroud's catalog look-up ahead of this statement failed, so the statement was not \
         sent: it would have been planned against a catalog the server may no longer have.",
    )
}

/// Whether the text may run in an implicit transaction left open by our Flush.
fn pipeline_allowed(text: &[u8]) -> bool {
    let lower = text.to_ascii_lowercase();
    !NOT_IN_A_PIPELINE
        .iter()
        .any(|word| lower.windows(word.len()).any(|w| w == word.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const RULES: &str = r#"
[[tables]]
name = "public.people"
  [[tables.columns]]
  name = "email"
  type = "text"
  migrating = true
"#;

    fn migrating_session(email_type: &str) -> ProtectedSession {
        let rules = pgshroud_rules::parse(RULES, "rules.toml").expect("rules");
        let row = |attnum: &str, name: &str, ty: &str| {
            ["42", "public", "people", attnum, name, ty]
                .map(|v| Some(v.to_owned()))
                .to_vec()
        };
        let catalog =
            Catalog::from_rows(vec![row("1", "id", "int4"), row("2", "email", email_type)]);
        session(rules, "app", catalog)
    }

    fn reply(s: &mut ProtectedSession, kind: u8, body: &[u8]) -> Verdict {
        s.server_message(&message(kind, body))
    }

    #[test]
    fn a_statement_on_a_migrating_table_runs_under_the_lock_of_its_look_up() {
        let mut s = migrating_session("text");
        assert!(s.plain_migrating == ["public.people.email"]);
        let select = query("select id from people where email = 'a@b'");
        let ahead = s.hold_before(&select).expect("a look-up goes first");
        let kinds: Vec<u8> = messages(&ahead).iter().map(|m| m.0).collect();
        assert_eq!(
            kinds, b"PBECCH",
            "ended by Flush: the transaction stays open"
        );
        assert!(String::from_utf8_lossy(&ahead).contains(r#"FROM ONLY "public"."people""#));
        // The look-up's answers are the proxy's; none is a ReadyForQuery.
        assert_eq!(reply(&mut s, b'1', b""), Verdict::Drop);
        assert_eq!(reply(&mut s, b'2', b""), Verdict::Drop);
        for (attnum, name, ty) in [("1", "id", "int4"), ("2", "email", "text")] {
            let row = [
                Some("42"),
                Some("public"),
                Some("people"),
                Some(attnum),
                Some(name),
            ]
            .into_iter()
            .chain([Some(ty), None, Some("0"), Some("r"), None])
            .collect::<Vec<_>>();
            assert_eq!(s.server_message(&data_row(&row)), Verdict::Drop);
        }
        assert_eq!(reply(&mut s, b'C', b"SELECT 2\0"), Verdict::Drop);
        assert_eq!(reply(&mut s, b'3', b""), Verdict::Drop);
        assert_eq!(
            s.hold_before(&select),
            Some(BytesMut::new()),
            "one CloseComplete to go"
        );
        assert_eq!(reply(&mut s, b'3', b""), Verdict::Drop);
        assert!(s.take_lookup_answered());
        assert_eq!(s.hold_before(&select), None);
        // Still plaintext in the database (the rows said so): forwarded as written.
        assert_eq!(s.client_message(&select), Verdict::Forward);
        // Other tables pay nothing.
        assert_eq!(s.hold_before(&query("select 1")), None);
    }

    #[test]
    fn a_failed_locked_look_up_is_followed_by_a_sync_of_ours() {
        let mut s = migrating_session("bytea");
        assert!(s.plain_migrating.is_empty(), "bytea: protected");
        let select = query("select id from people where email = 'a@b'");
        assert!(s.hold_before(&select).is_some());
        let error = message(b'E', b"SERROR\0C55P03\0Mlock timeout\0\0");
        assert_eq!(s.server_message(&error), Verdict::Drop);
        let sync = s.hold_before(&select).expect("a Sync first");
        assert_eq!(sync, message(b'S', b""));
        assert_eq!(s.hold_before(&select), Some(BytesMut::new()));
        assert_eq!(reply(&mut s, b'Z', b"I"), Verdict::Drop);
        assert_eq!(s.hold_before(&select), None);
        assert!(s.pending.is_empty(), "{:?}", s.pending);
        // The statement is answered with the look-up's error, not sent on against a
        // catalog the server may no longer have (a swap may have committed meanwhile).
        let refused = replaced(s.client_message(&select));
        assert!(
            !String::from_utf8_lossy(&refused).contains("a@b"),
            "the statement's text went upstream"
        );
        assert!(String::from_utf8_lossy(&refused).contains("55P03"));
        // The next statement takes a fresh look-up.
        assert!(s.hold_before(&select).is_some());
    }

    #[test]
    fn a_failed_look_up_ahead_in_a_failed_transaction_lets_the_statement_go_to_the_server() {
        let mut s = migrating_session("bytea");
        s.in_transaction = true;
        let rollback = query("rollback");
        // Stale: every statement is looked up first; inside a block the look-up is unlocked.
        s.catalog_stale = true;
        let ahead = s.hold_before(&rollback).expect("a look-up goes first");
        assert!(!ahead.is_empty());
        for m in [
            message(b'E', b"SERROR\0C25P02\0Mcurrent transaction is aborted\0\0"),
            message(b'Z', b"E"),
        ] {
            assert_eq!(s.server_message(&m), Verdict::Drop);
        }
        assert_eq!(s.hold_before(&rollback), None);
        let sent = match s.client_message(&rollback) {
            Verdict::Forward => rollback.clone(),
            Verdict::Replace(bytes) => bytes,
            other => panic!("{other:?}"),
        };
        let sent = String::from_utf8_lossy(&sent);
        assert!(sent.contains("rollback"), "{sent}");
        assert!(!sent.contains("25P02"), "refused by pgshroud: {sent}");
    }
}
