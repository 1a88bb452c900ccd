//! `statements_total{kind,role,outcome}` and `statement_duration_seconds` for one session,
//! read off the server's answers: a `CommandComplete` tag names the kind, an `ErrorResponse`
//! is an error (or a refusal, when the protected path says it placed it). Durations run from
//! the moment the server has a request to work on (the first one sent while it owed nothing,
//! or the ReadyForQuery ending the batch before) to each statement's completion, as the
//! session's one record of owed replies (`protocol::replies`) tells. No SQL is parsed.

use std::sync::Arc;
use std::time::Instant;

use crate::ops::metrics::{Metrics, RoleStatements, StatementKind, StatementOutcome};
use crate::protocol::replies::{Answer, Reply};
use crate::protocol::types::backend;

/// The `role` label of sessions without a rules file.
pub const NO_ROLE: &str = "none";

#[derive(Debug)]
pub struct StatementMeter {
    metrics: Arc<Metrics>,
    role: RoleStatements,
    started: Option<Instant>,
}

impl StatementMeter {
    pub fn new(metrics: Arc<Metrics>, role: &str) -> StatementMeter {
        let role = metrics.role(role);
        StatementMeter {
            metrics,
            role,
            started: None,
        }
    }

    /// Follows a role change (rules reload); cheap when the role is the same.
    pub fn set_role(&mut self, role: &str) {
        if self.role.role() != role {
            self.role = self.metrics.role(role);
        }
    }

    /// The client sent a request while the server owed nothing: the clock starts.
    pub fn busy(&mut self) {
        self.started = Some(Instant::now());
    }

    /// A server message as the client receives it, read against the owed replies (`answer`,
    /// and `idle` once it is read); `refused` when an error is the proxy's refusal.
    pub fn server_message(&mut self, frame: &[u8], answer: &Answer, refused: bool, idle: bool) {
        let Some(&kind) = frame.first() else {
            return;
        };
        match kind {
            backend::COMMAND_COMPLETE => {
                let tag = frame.get(5..).unwrap_or_default();
                self.count(StatementKind::of_command_tag(tag), StatementOutcome::Ok)
            }
            backend::ERROR_RESPONSE => {
                let outcome = if refused {
                    StatementOutcome::Refused
                } else {
                    StatementOutcome::Error
                };
                self.count(StatementKind::Other, outcome);
            }
            _ => {}
        }
        if idle {
            self.started = None;
        } else if kind == backend::READY_FOR_QUERY && answer.reply == Reply::Complete {
            // The next batch, already sent, starts now.
            self.started = Some(Instant::now());
        }
    }

    fn count(&mut self, kind: StatementKind, outcome: StatementOutcome) {
        let elapsed = self.started.map(|s| s.elapsed()).unwrap_or_default();
        self.metrics.statement(kind, &self.role, outcome, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::message;
    use crate::protocol::replies::Replies;

    #[test]
    fn completions_and_errors_are_counted_with_the_role() {
        let metrics = Arc::new(Metrics::new());
        let mut meter = StatementMeter::new(metrics.clone(), "support");
        let mut replies = Replies::default();
        replies.client_sent(b'Q');
        meter.busy();
        for (m, refused) in [
            (message(b'C', b"SELECT 1\0"), false),
            (message(b'E', b"SERROR\0\0"), true),
            (message(b'Z', b"I"), false),
        ] {
            let answer = replies.server_sent(&m);
            meter.server_message(&m, &answer, refused, replies.idle());
        }
        assert!(meter.started.is_none());
        let text = metrics.encode();
        let has = |series: &str| {
            text.lines()
                .any(|l| l.starts_with(series) && l.ends_with(" 1"))
        };
        assert!(
            has("pgshroud_statements_total{kind=\"select\",role=\"support\",outcome=\"ok\"}"),
            "{text}"
        );
        assert!(
            has("pgshroud_statements_total{kind=\"other\",role=\"support\",outcome=\"refused\"}"),
            "{text}"
        );
    }
}
