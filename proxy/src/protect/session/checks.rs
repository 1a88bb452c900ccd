//! What a statement text must pass before it reaches PostgreSQL: readable exactly as the server
//! reads it, then the analysis's and the caller's role's refusals (and the same verdict for audit).

use std::sync::Arc;

use super::{AuditView, PreparedInfo, ProtectedSession, Text};
use crate::analyze;
use crate::ops::metrics::{CryptoOp, PlanCacheResult, ProtectedValueAction, RefusalReason};
use crate::protect::engine::{Plan, PlanAction, PlanSource};
use crate::protect::policy::RoleRefusal;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::text_settings::{self as settings, TextMode};

impl ProtectedSession {
    /// The tenant a plan made now is made for: the session's, when any column is per-tenant
    /// (a plan of other rules holds nothing of a tenant's).
    pub(super) fn plans_tenant(&self) -> Option<&str> {
        self.tenant().filter(|_| self.shared.has_per_tenant())
    }

    /// Whether a prepared statement's plan is the one the session would make now: the same
    /// rules, served form and catalog epoch, and the same tenant's keys.
    pub(super) fn planned_now(&self, info: &PreparedInfo) -> bool {
        info.generation == self.plans_epoch
            && (info.plan.is_none() || info.tenant.as_deref() == self.plans_tenant())
    }

    /// The plan of a statement on its way in (counted by where it came from).
    pub(super) fn plan(&self, sql: &str) -> Arc<Plan> {
        let (plan, source) = self
            .shared
            .plan_from(sql, &self.layout, &self.catalog, self.tenant());
        self.metrics.plan_lookup(match source {
            PlanSource::Exact => PlanCacheResult::ExactHit,
            PlanSource::Shape => PlanCacheResult::ShapeHit,
            PlanSource::Built => PlanCacheResult::Miss,
        });
        plan
    }

    /// The role's verdict on a statement that touches no protected table: its kind (for roles
    /// with a `statements` list) and what it hands server functions that run SQL text.
    pub(super) fn check_kinds(&self, sql: &str) -> Result<(), PgError> {
        self.policy
            .check_sql_text(sql, &self.layout.schema)
            .map_err(|(why, e)| self.refused_by_role(why, e))?;
        if !self.policy.restricts_statements() {
            return Ok(());
        }
        for kind in analyze::statement_kinds(sql) {
            self.policy
                .check_kind(kind)
                .map_err(|(why, e)| self.refused_by_role(why, e))?;
        }
        Ok(())
    }

    /// Refusals before an analysed statement reaches PostgreSQL: the analysis's, then the role's.
    pub(super) fn check_plan(&mut self, sql: &str, plan: &Plan) -> Result<(), PgError> {
        if let PlanAction::Refused(error) = &plan.action {
            self.metrics.refusal(match error.code {
                analyze::SYNTAX_ERROR => RefusalReason::Unparseable,
                crate::protect::engine::UNGUARDED => {
                    // The operator may run `pgshroud setup` now: look the guards up again
                    // after this refusal, so the session sees them without reconnecting.
                    self.catalog_stale = true;
                    RefusalReason::Unguarded
                }
                _ => RefusalReason::UnsupportedOperation,
            });
            return Err(error.clone());
        }
        self.policy
            .check(plan)
            .map_err(|(why, e)| self.refused_by_role(why, e))?;
        self.policy
            .check_sql_text(sql, &self.layout.schema)
            .map_err(|(why, e)| self.refused_by_role(why, e))
    }

    /// `n` protected values were encrypted (or otherwise handled) for this session.
    pub(super) fn count_values(&self, op: CryptoOp, action: ProtectedValueAction, n: u64) {
        if n > 0 {
            self.metrics.crypto_operations(op, n);
            self.metrics.protected_values(action, n);
        }
    }

    pub(super) fn refused_by_role(&self, why: RoleRefusal, error: PgError) -> PgError {
        tracing::info!(role = %self.policy.role().name, reason = ?why, "statement refused: {}", error.message);
        self.metrics.refusal(match why {
            RoleRefusal::ColumnDenied => RefusalReason::ColumnDenied,
            RoleRefusal::WriteDenied => RefusalReason::WriteDenied,
            RoleRefusal::CompareDenied => RefusalReason::CompareDenied,
            RoleRefusal::MixedActions => RefusalReason::MixedActions,
            RoleRefusal::StatementKindDenied => RefusalReason::StatementKindDenied,
        });
        error
    }

    /// What audit needs to describe a statement text of this session: its plan when it mentions
    /// a protected table (a cache hit: it was planned on its way in), the rules it ran under
    /// and the caller's role.
    pub fn audit_view(&self, sql: &str) -> AuditView {
        let plan = self.layout.mentions_protected(sql).then(|| {
            self.shared
                .plan_for(sql, &self.layout, &self.catalog, self.tenant())
        });
        let refused = self.identity_refuses(sql)
            || match &plan {
                Some(p) => {
                    matches!(p.action, PlanAction::Refused(_))
                        || self.policy.check(p).is_err()
                        || self
                            .policy
                            .check_sql_text(sql, &self.layout.schema)
                            .is_err()
                }
                None => {
                    self.policy
                        .check_sql_text(sql, &self.layout.schema)
                        .is_err()
                        || self.policy.restricts_statements()
                            && analyze::statement_kinds(sql)
                                .into_iter()
                                .any(|k| self.policy.check_kind(k).is_err())
                }
            };
        AuditView {
            plan,
            refused,
            protection: self.shared.clone(),
            policy: self.policy.clone(),
        }
    }

    /// Whether the proxy must read this text: it mentions a protected table (`mentions`, the
    /// pre-filter's answer), or the role checks statement kinds.
    fn must_read(&self, sql: &str, mentions: bool) -> bool {
        mentions || self.policy.restricts_statements() || self.policy.reads_sql_text(sql)
    }

    /// Reads a statement text, refusing what cannot be read exactly as the server reads it:
    /// invalid UTF-8 in a UTF8 session (PostgreSQL refuses it too), text the proxy must
    /// analyse under other settings, or while settings may be changing. With the
    /// pre-filter's answer for a readable text (whether it mentions a protected table), so
    /// the caller does not scan it again.
    pub(super) fn read_statement_text<'a>(
        &self,
        bytes: &'a [u8],
    ) -> Result<(Text<'a>, bool), PgError> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) if self.settings.mode() == TextMode::OtherEncoding => {
                // The pre-filter's names are ASCII, which every client encoding keeps.
                let lossy = String::from_utf8_lossy(bytes);
                let mentions = self.layout.mentions_protected(&lossy);
                if self.must_read(&lossy, mentions) {
                    self.settings.check_analysable()?;
                }
                return Ok((Text::Opaque, mentions));
            }
            Err(_) => return settings::utf8_text(bytes).map(|_| (Text::Opaque, true)),
        };
        let mentions = self.layout.mentions_protected(text);
        if self.must_read(text, mentions) {
            self.settings.check_analysable()?;
            if self.unsettled > 0 || self.pipeline_unsettled {
                return Err(PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "pgshroud cannot analyse this statement before the server has answered an earlier one that may change client_encoding or standard_conforming_strings: wait for its result, then send this one",
                ));
            }
        }
        Ok((Text::Readable(text), mentions))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn invalid_utf8_is_refused_in_a_utf8_session() {
        let mut s = test_session("app");
        let v = s.client_message(&message(b'Q', b"select '\xff'\0"));
        assert!(matches!(&v, Verdict::Replace(b) if b[0] == b'Q'));
        let Verdict::Replace(b) = v else {
            unreachable!()
        };
        assert!(String::from_utf8_lossy(&b).contains("22021"));
        let v = s.client_message(&parse("", "select '\u{e9}'"));
        assert_eq!(v, Verdict::Forward);
        let v = s.client_message(&message(b'P', b"\0select '\xe9'\0\0\0"));
        assert_eq!(refusal_code(&v).as_deref(), Some("22021"));
    }

    #[test]
    fn analysis_needs_utf8_and_standard_strings() {
        let mut s = test_session("app");
        assert_eq!(
            s.server_message(&message(b'S', b"standard_conforming_strings\0off\0")),
            Verdict::Forward
        );
        let v = s.client_message(&message(
            b'Q',
            b"insert into customers (email) values ('a\\'b')\0",
        ));
        let Verdict::Replace(b) = &v else {
            panic!("{v:?}")
        };
        assert!(String::from_utf8_lossy(b).contains("standard_conforming_strings = on"));
        // Statements the proxy need not read still pass.
        assert_eq!(
            s.client_message(&message(b'Q', b"select 'a\\'b'\0")),
            Verdict::Forward
        );
        s.server_message(&message(b'S', b"standard_conforming_strings\0on\0"));
        s.server_message(&message(b'S', b"client_encoding\0LATIN1\0"));
        let v = s.client_message(&parse("", "select email from customers"));
        assert_eq!(refusal_code(&v).as_deref(), Some("22021"));
        // Non-UTF-8 text that need not be read passes untouched in a LATIN1 session.
        assert_eq!(
            s.client_message(&message(b'Q', b"select '\xe9'\0")),
            Verdict::Forward
        );
    }

    #[test]
    fn text_behind_a_settings_change_waits_for_its_answer() {
        let mut s = test_session("app");
        s.client_message(&message(b'Q', b"SET standard_conforming_strings = off\0"));
        let v = s.client_message(&message(b'Q', b"select email from customers\0"));
        let Verdict::Replace(b) = &v else {
            panic!("{v:?}")
        };
        assert!(String::from_utf8_lossy(b).contains("may change client_encoding"));
        answer(
            &mut s,
            &["CSET\0", "Sstandard_conforming_strings\0off\0", "ZI"],
        );
        answer(&mut s, &["ZI"]);
        assert_eq!(s.unsettled, 0);
    }

    #[test]
    fn like_on_an_encrypted_column_is_refused_with_0a000() {
        let mut s = test_session("app");
        let like = query("select id from customers where email like 'a%'");
        let sent = replaced(s.client_message(&like));
        assert_eq!(sent[0], b'Q');
        assert!(String::from_utf8_lossy(&sent).contains("ERRCODE = '0A000'"));
        assert!(s.error_is_refusal());
    }

    #[test]
    fn a_role_limited_to_select_is_refused_other_statements_with_42501() {
        let mut s = test_session("reader");
        let sent = replaced(s.client_message(&query("delete from orders")));
        assert!(String::from_utf8_lossy(&sent).contains("ERRCODE = '42501'"));
        answer(&mut s, &["ZI"]);
        assert_eq!(s.client_message(&query("select 1")), Verdict::Forward);
    }

    #[test]
    fn audit_sees_the_plan_and_whether_pgshroud_refused_the_text() {
        let app = test_session("app");
        let view = app.audit_view("select email from customers");
        assert!(view.plan.is_some() && !view.refused);
        let view = app.audit_view("select id from customers where email like 'a%'");
        assert!(view.plan.is_some() && view.refused);
        let view = app.audit_view("select 1");
        assert!(view.plan.is_none() && !view.refused);
        let reader = test_session("reader");
        assert!(reader.audit_view("delete from orders").refused);
    }
}
