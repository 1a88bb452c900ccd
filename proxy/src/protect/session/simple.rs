//! The simple protocol, client to server: a Query (one or more statements) is checked, planned
//! and forwarded, rewritten or replaced by its refusal; a FunctionCall is allowed or refused.

use std::sync::Arc;

use bytes::BytesMut;

use super::reading::{gates_silent, literal_silent};
use super::{harmless, identity, Expect, ProtectedSession, SqlTickets, Text};
use crate::ops::metrics::{CryptoOp, ProtectedValueAction};
use crate::protect::engine::{Plan, PlanAction, TextShape};
use crate::protect::policy::RoleRefusal;
use crate::protect::refusal;
use crate::protocol::error::PgError;
use crate::protocol::frame::message;
use crate::protocol::tracker::{self, Effect};
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// A FunctionCall runs a function by OID, outside any text the proxy could read: a role
    /// with a `statements` list must list `function_call` for it.
    pub(super) fn function_call(&mut self, frame: &[u8]) -> Verdict {
        // set_config by OID would change an identity setting past every text check.
        let oid = frame
            .get(5..9)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let identity = match oid {
            Some(identity::SET_CONFIG_OID) => Err(self.set_config_call_refused()),
            _ => self.check_identity(b"").map(|_| ()),
        };
        if let Err(error) = identity {
            self.push_query(None, false);
            return self.refuse_query(&error);
        }
        let role = self.policy.role();
        if !self.policy.allows_function_call() {
            let error = PgError::error(
                crate::protect::policy::INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: role {} may not run function calls (the protocol's FunctionCall message)",
                    role.name
                ),
            )
            .with_hint("A role that may not see some protected column's stored values runs function calls only when its statements list names function_call.");
            let error = self.refused_by_role(RoleRefusal::StatementKindDenied, error);
            // Answered like a simple query: the error, then ReadyForQuery.
            self.push_query(None, false);
            return self.refuse_query(&error);
        }
        self.pending.push_back(Expect::Sync { unsettling: false });
        Verdict::Forward
    }

    pub(super) fn query(&mut self, frame: &[u8]) -> Verdict {
        self.follow_rules();
        let verdict = self.query_verdict(frame);
        if !std::mem::take(&mut self.catalog_stale) {
            return verdict;
        }
        let mut out = match verdict {
            Verdict::Forward => BytesMut::from(frame),
            Verdict::Replace(bytes) => bytes,
            Verdict::Drop => BytesMut::new(),
            end @ Verdict::End(_) => return end,
        };
        out.extend_from_slice(&self.lookup_message());
        Verdict::Replace(out)
    }

    /// Sends the refusal in place of the simple query just queued.
    pub(super) fn refuse_query(&mut self, error: &PgError) -> Verdict {
        if let Some(Expect::Query { refused, .. }) = self.pending.back_mut() {
            *refused = true;
        }
        Verdict::Replace(refusal::refused_query(error))
    }

    /// Queues a simple query's answers.
    pub(super) fn push_query(&mut self, plan: Option<Arc<Plan>>, unsettling: bool) {
        let ticket = self.names.sent(Effect::SimpleQuery);
        self.unsettled += u32::from(unsettling);
        self.pending.push_back(Expect::Query {
            plan,
            statement: 0,
            refused: false,
            ticket,
            effects: SqlTickets::new(),
            unsettling,
        });
    }

    /// Records the names the forwarded simple query just queued will create or drop.
    fn query_effects(&mut self, sql: &str) {
        let effects = tracker::sql_effects_in(sql, self.settings.mode());
        if effects.is_empty() {
            return;
        }
        let tickets: SqlTickets = effects
            .into_iter()
            .map(|e| {
                let ticket = self.names.sent(e.effect());
                (e, ticket)
            })
            .collect();
        if let Some(Expect::Query { effects, .. }) = self.pending.back_mut() {
            *effects = tickets;
        }
    }

    /// A Query a remembered harmless shape matches, with no gate firing on its literals (see
    /// `harmless.rs`): queued and forwarded as the full path would, after the checks of the
    /// session's own state the full path makes for such a text (a tenant switch in flight:
    /// the full path refuses it). `None`: the full path reads it.
    pub(super) fn query_by_shape(&mut self, bytes: &[u8]) -> Option<Verdict> {
        // In a transaction that changed the schema, an end of it may roll it back
        // (`schema_change`): the text is read whole.
        if self.path_changed_in_txn
            || self.ddl_in_txn
            || self.policy.restricts_statements()
            || !harmless::keepable(bytes)
        {
            return None;
        }
        let sql = std::str::from_utf8(bytes).ok()?;
        let under = self.harmless_under();
        let spans = self.harmless.matching_shape(under, sql)?;
        let layout = &self.layout;
        if !spans
            .iter()
            .all(|span| literal_silent(layout, &sql[span.clone()]))
        {
            return None;
        }
        self.no_switch_in_flight().ok()?;
        self.push_query(None, false);
        Some(Verdict::Forward)
    }

    /// Remembers the shape of a text the full path forwarded untouched (no plan, no
    /// settings change, the role's checks passed) when its every gate is silent, on the
    /// second sight of its look-up key (see `harmless.rs`).
    fn remember_query_shape(&mut self, sql: &str) {
        if self.path_changed_in_txn
            || self.policy.restricts_statements()
            || !harmless::keepable(sql.as_bytes())
        {
            return;
        }
        let under = self.harmless_under();
        if !self.harmless.second_sight(under, sql)
            || !self.layout.schema.needles_stand_apart()
            || !gates_silent(&self.layout, sql)
        {
            return;
        }
        if let Some(shape) = TextShape::of(sql).filter(TextShape::numbers_stand_apart) {
            self.harmless.remember_shape(under, shape);
        }
    }

    fn query_verdict(&mut self, frame: &[u8]) -> Verdict {
        // A Query is one C string; PostgreSQL ends the session over anything else.
        let body = frame.get(5..).unwrap_or_default();
        let Some((&0, bytes)) = body.split_last().filter(|(_, t)| !t.contains(&0)) else {
            return Verdict::End(PgError::protocol_violation(
                "malformed Query message: pgshroud does not pass on messages it cannot read",
            ));
        };
        if let Some(verdict) = self.query_by_shape(bytes) {
            return verdict;
        }
        let switch = self
            .check_identity(bytes)
            .and_then(|to| to.map_or(Ok(()), |to| self.start_switch(to)));
        if let Err(error) = switch {
            self.push_query(None, false);
            return self.refuse_query(&error);
        }
        let unsettling = self.follow_settings(bytes);
        let (sql, mentions) = match self.read_statement_text(bytes) {
            Ok((Text::Readable(sql), mentions)) => (sql, mentions),
            Ok((Text::Opaque, _)) => {
                if let Err(error) = self.check_catalog_dependent_unread(bytes) {
                    self.push_query(None, false);
                    return self.refuse_query(&error);
                }
                self.push_query(None, unsettling);
                return Verdict::Forward;
            }
            Err(error) => {
                self.push_query(None, false);
                return self.refuse_query(&error);
            }
        };
        if let Err(error) = self.check_catalog_dependent(sql) {
            self.push_query(None, false);
            return self.refuse_query(&error);
        }
        if !mentions {
            self.push_query(None, unsettling);
            if let Err(error) = self.check_kinds(sql) {
                return self.refuse_query(&error);
            }
            self.query_effects(sql);
            if !unsettling {
                self.remember_query_shape(sql);
            }
            return Verdict::Forward;
        }
        let plan = self.plan(sql);
        self.push_query(Some(plan.clone()), unsettling);
        let checked = self
            .check_plan(sql, &plan)
            .and_then(|()| self.check_after_schema_change(sql, &plan));
        if let Err(error) = checked {
            return self.refuse_query(&error);
        }
        self.query_effects(sql);
        if plan.refreshes_catalog {
            self.catalog_stale = true;
            self.ddl_in_txn = true;
        }
        let sealed = plan
            .statements
            .iter()
            .map(|s| s.literals.len() as u64)
            .sum();
        self.count_values(CryptoOp::Encrypt, ProtectedValueAction::Encrypted, sealed);
        match &plan.action {
            // check_plan has answered refusals.
            PlanAction::Refused(error) => Verdict::Replace(refusal::refused_query(error)),
            PlanAction::Forward => Verdict::Forward,
            PlanAction::Rewrite(sql) => {
                let mut body = sql.clone().into_bytes();
                body.push(0);
                Verdict::Replace(message(b'Q', &body))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn function_calls_follow_the_roles_statement_kinds() {
        let call = message(b'F', b"\0\0\x04\xd2\0\0\0\0\0\0");
        let mut reader = test_session("reader");
        let v = reader.client_message(&call);
        assert!(matches!(&v, Verdict::Replace(b) if b[0] == b'Q'));
        assert!(reader.error_is_refusal());
        let mut app = test_session("app");
        assert_eq!(app.client_message(&call), Verdict::Forward);
    }

    #[test]
    fn a_protected_literal_is_sent_sealed_and_the_rest_as_written() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        let insert =
            query("insert into customers (email, name) values ('alice@example.com', 'Alice')");
        let sent = replaced(s.client_message(&insert));
        let text = String::from_utf8_lossy(&sent[5..]);
        assert!(!text.contains("alice@example.com"), "{text}");
        assert!(text.contains(&stored[2..]), "{text}");
        assert!(text.starts_with("insert into customers (email, name) values ("));
        assert!(text.contains(", 'Alice')"), "{text}");
    }

    #[test]
    fn a_new_literal_of_a_known_statement_is_sealed_from_its_shape() {
        let mut s = catalog_session("app");
        let sent = |s: &mut ProtectedSession, email: &str| {
            let sql = format!("insert into customers (email, name) values ('{email}', 'A')");
            let sent = replaced(s.client_message(&query(&sql)));
            String::from_utf8_lossy(&sent[5..]).into_owned()
        };
        let first = sent(&mut s, "alice@example.com");
        let second = sent(&mut s, "bob.builder@example.org");
        let bob = stored_email(&mut s, "bob.builder@example.org");
        assert!(first.contains(&stored_email(&mut s, "alice@example.com")[2..]));
        assert!(second.contains(&bob[2..]), "{second}");
        assert!(!second.contains("bob.builder"), "{second}");
        // A session that never saw the first text sends the same bytes for the second.
        let mut fresh = catalog_session("app");
        assert_eq!(sent(&mut fresh, "bob.builder@example.org"), second);
        let metrics = s.metrics.encode();
        for result in ["miss", "shape_hit"] {
            let series = format!("pgshroud_plan_cache_lookups_total{{result=\"{result}\"}} 1");
            assert!(metrics.contains(&series), "{series} in {metrics}");
        }
    }

    #[test]
    fn a_refused_query_is_answered_in_its_place_as_pgshroud_s_own() {
        let mut s = test_session("app");
        s.client_message(&query("select id from customers where email like 'a%'"));
        let raised = message(
            b'E',
            b"SERROR\0C0A000\0Mrefused\0WPL/pgSQL function inline_code_block line 1 at RAISE\0Lpl_exec.c\0\0",
        );
        let shown = replaced(s.server_message(&raised));
        assert_eq!(shown, message(b'E', b"SERROR\0C0A000\0Mrefused\0\0"));
        assert_eq!(s.server_message(&message(b'Z', b"I")), Verdict::Forward);
        assert!(s.pending.is_empty(), "{:?}", s.pending);
        assert!(!s.error_is_refusal());
    }

    #[test]
    fn a_query_that_touches_no_protected_table_passes_unparsed() {
        let mut s = test_session("app");
        assert_eq!(s.client_message(&query("select 1")), Verdict::Forward);
        assert!(matches!(
            s.pending.front(),
            Some(Expect::Query {
                plan: None,
                refused: false,
                ..
            })
        ));
    }
}
