//! The one place every client message and every statement passes on its way upstream, and
//! every server message on its way back. Without protected columns every message is
//! forwarded as raw bytes; with them, `protect::session` decides. It keeps the session's one
//! record of the replies the server still owes (`protocol::replies`), which the relay's idle
//! timeout, the statement meter and the audit read.
//!
//! All of a session's state here sits behind one lock that the relay takes once per read, for
//! every message the read brought ([`StatementPath::lock`]), not once per message and part:
//! the lock is never contended (both relay directions run in the session's one task), but
//! each acquisition is an atomic read-modify-write pair on the pass-through path.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::audit::ConnectionAudit;
use crate::protect::session::ProtectedSession;

use crate::ops::metrics::Metrics;
use crate::ops::statement_metrics::{StatementMeter, NO_ROLE};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::replies::Replies;
use crate::protocol::text_settings::TextSettings;
use crate::protocol::types::{backend, frontend};
pub use crate::protocol::verdict::Verdict;

/// The per-session statement path, shared (borrowed) by both relay directions. Held inline
/// by the session's task, not behind an `Arc`: both directions run in that one task, and
/// every idle session would otherwise hold one more allocation.
#[derive(Debug, Default)]
pub struct StatementPath {
    state: Mutex<PathState>,
    /// Wakes the client pump when a catalog look-up a client message waits for answers.
    released: tokio::sync::Notify,
}

/// What the statement path keeps for one session.
#[derive(Debug, Default)]
struct PathState {
    /// Boxed: a protected session's state is ~1.9 KiB, which every pass-through session
    /// held (as `None`) for its whole life; issue 25's idle-memory target.
    protected: Option<Box<ProtectedSession>>,
    /// Sees each client message as the client sent it and each server message as the client
    /// receives it, so its statements and outcomes are the client's. Shared with the
    /// session's end (its disconnect event), hence a lock of its own.
    audit: Option<Arc<Mutex<ConnectionAudit>>>,
    /// Counts statements by kind, role and outcome.
    meter: Option<StatementMeter>,
    /// What the server still owes the client: updated here once per message each way.
    replies: Replies,
}

impl StatementPath {
    /// A session with no protected columns: every message passes untouched.
    pub fn passthrough() -> Self {
        StatementPath::default()
    }

    pub fn protected(session: ProtectedSession) -> Self {
        let state = PathState {
            protected: Some(Box::new(session)),
            ..PathState::default()
        };
        StatementPath {
            state: Mutex::new(state),
            released: tokio::sync::Notify::new(),
        }
    }

    /// Counts this session's statements in the metrics, labelled with the caller's role (or
    /// `none` without rules).
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        if let Ok(mut state) = self.state.lock() {
            let role = match &state.protected {
                Some(s) => s.role().name.clone(),
                None => NO_ROLE.to_owned(),
            };
            state.meter = Some(StatementMeter::new(metrics, &role));
        }
        self
    }

    /// Audits this session's statements; the audit reads this path's record of owed replies.
    pub fn with_audit(self, audit: Option<Arc<Mutex<ConnectionAudit>>>) -> Self {
        if let Some(Ok(mut a)) = audit.as_ref().map(|a| a.lock()) {
            a.follow_replies();
        }
        if let Ok(mut state) = self.state.lock() {
            state.audit = audit;
        }
        self
    }

    /// How the server reads statement text, as it reported at startup; from then on the
    /// statement path follows its ParameterStatus messages.
    pub fn with_text_settings(self, settings: TextSettings) -> Self {
        if let Ok(mut state) = self.state.lock() {
            if let Some(s) = &mut state.protected {
                s.set_text_settings(settings.clone());
            }
            if let Some(Ok(mut a)) = state.audit.as_ref().map(|a| a.lock()) {
                a.set_text_settings(settings);
            }
        }
        self
    }

    /// The path for the messages of one read. A panic once held the lock: the session ends.
    pub fn lock(&self) -> Result<PathGuard<'_>, PgError> {
        self.state
            .lock()
            .map(|guard| PathGuard(guard, &self.released))
            .map_err(|_| poisoned())
    }

    /// Resolves once a catalog look-up has answered since a client message was held
    /// ([`PathGuard::hold_before`]).
    pub async fn released(&self) {
        self.released.notified().await
    }

    /// One client message on its own (the relay takes a [`PathGuard`] per read instead).
    pub fn client_message(&mut self, frame: &[u8]) -> Verdict {
        match self.lock() {
            Ok(mut path) => path.client_message(frame),
            Err(error) => Verdict::End(error),
        }
    }

    /// One server message on its own (the relay takes a [`PathGuard`] per read instead).
    pub fn server_message(&mut self, frame: &[u8]) -> Verdict {
        match self.lock() {
            Ok(mut path) => path.server_message(frame),
            Err(error) => Verdict::End(error),
        }
    }

    /// The server owes the client nothing: no statement is running.
    pub fn idle(&self) -> bool {
        self.state.lock().map(|s| s.replies.idle()).unwrap_or(false)
    }

    /// Nothing is owed and no transaction is open: a safe point to close.
    pub fn idle_outside_transaction(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.replies.idle_outside_transaction())
            .unwrap_or(false)
    }
}

/// The statement path, held for the messages of one read.
#[derive(Debug)]
pub struct PathGuard<'a>(MutexGuard<'a, PathState>, &'a tokio::sync::Notify);

impl PathGuard<'_> {
    /// Before a client message: `None`, it is handed to [`Self::client_message`] now;
    /// `Some(bytes)`, it stays in the client's buffer while `bytes` (a catalog look-up, maybe
    /// none) go upstream, until [`StatementPath::released`].
    pub fn hold_before(&mut self, frame: &[u8]) -> Option<bytes::BytesMut> {
        self.0.protected.as_mut()?.hold_before(frame)
    }

    /// Called for every whole client message (type byte, length, body).
    pub fn client_message(&mut self, frame: &[u8]) -> Verdict {
        let Some(&kind) = frame.first() else {
            return Verdict::End(PgError::protocol_violation("empty message"));
        };
        let state = &mut *self.0;
        let was_idle = state.replies.idle();
        let request = state.replies.client_sent(kind);
        if let (Some(meter), true, Some(_)) = (&mut state.meter, was_idle, request) {
            meter.busy();
        }
        if let Some(Ok(mut audit)) = state.audit.as_ref().map(|a| a.lock()) {
            audit.told(&state.replies);
            audit.client_sent(frame);
        }
        match &mut state.protected {
            None => Verdict::Forward,
            Some(session) => session.client_message(frame),
        }
    }

    /// Called for every whole server message.
    pub fn server_message(&mut self, frame: &[u8]) -> Verdict {
        let Some(&kind) = frame.first() else {
            return Verdict::End(PgError::protocol_violation("empty server message"));
        };
        let state = &mut *self.0;
        let Some(session) = &mut state.protected else {
            // Pass-through: the message reaches the client as it came, alone.
            state.reached_client(frame, false, false);
            return Verdict::Forward;
        };
        let refused = kind == backend::ERROR_RESPONSE && session.error_is_refusal();
        if kind == backend::READY_FOR_QUERY {
            // Keeps the metrics' role label in step with a reload.
            if let Some(meter) = &mut state.meter {
                meter.set_role(&session.role().name);
            }
        }
        let verdict = session.server_message(frame);
        if session.take_lookup_answered() {
            self.1.notify_one();
        }
        // The proxy's own answers (catalog look-ups) are dropped: the client never sees them.
        let (reached_client, ended) = match &verdict {
            Verdict::Forward => (frame, false),
            Verdict::Replace(bytes) => (&bytes[..], false),
            Verdict::Drop => (&[][..], false),
            Verdict::End(_) => (frame, true),
        };
        for message in messages(reached_client) {
            state.reached_client(message, refused, ended);
        }
        if ended {
            state.audit_ended_by_limit();
        }
        verdict
    }
}

impl PathState {
    /// One server message the client receives (or the one that ended the session): the
    /// owed replies are updated, then the meter and the audit read them.
    fn reached_client(&mut self, message: &[u8], refused: bool, ended: bool) {
        let answer = self.replies.server_sent(message);
        if let Some(meter) = &mut self.meter {
            meter.server_message(message, &answer, refused, self.replies.idle());
        }
        if let (Some(audit), false) = (&self.audit, ended) {
            if let Ok(mut audit) = audit.lock() {
                let protected = self.protected.as_ref();
                let plan_of = |sql: &str| Some(protected?.audit_view(sql));
                audit.told(&self.replies);
                audit.server_sent(message, plan_of);
            }
        }
    }

    /// The statement path ended the session (a role's enforced limit, most often).
    fn audit_ended_by_limit(&self) {
        if let Some(Ok(mut audit)) = self.audit.as_ref().map(|a| a.lock()) {
            let limit = self.protected.as_ref().and_then(|s| s.role().max_rows);
            audit.session_ended_by_limit(limit);
        }
    }
}

/// The whole messages of `bytes` (a message cut short ends it).
fn messages(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = (1 + len).min(rest.len());
        let (message, tail) = rest.split_at(end);
        rest = tail;
        Some(message)
    })
}

/// A panic once held the session's state lock: what it holds may be half-changed, so the
/// session ends rather than forward anything on the strength of it.
fn poisoned() -> PgError {
    PgError::fatal(
        sqlstate::INTERNAL_ERROR,
        "pgshroud hit an internal error in this session and closed the connection",
    )
}

/// The SQL text of a `Query` or `Parse` message, without its terminator.
pub fn statement_text(frame: &[u8]) -> Option<&[u8]> {
    let body = frame.get(5..)?;
    let body = match *frame.first()? {
        frontend::QUERY => body,
        // Parse: statement name (cstring), then the query (cstring).
        frontend::PARSE => body.get(body.iter().position(|&b| b == 0)? + 1..)?,
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
    fn a_poisoned_session_lock_ends_the_session() {
        let mut path = StatementPath::protected(crate::protect::session::test_session("app"));
        std::thread::scope(|scope| {
            let _ = scope
                .spawn(|| {
                    let _held = path.state.lock().unwrap();
                    panic!("poison the lock");
                })
                .join();
        });
        for verdict in [
            path.client_message(&message(b'Q', b"select 1\0")),
            path.server_message(&message(b'Z', b"I")),
        ] {
            match verdict {
                Verdict::End(e) => assert_eq!(e.code, "XX000"),
                other => panic!("forwarded with a poisoned lock: {other:?}"),
            }
        }
        assert!(path.lock().is_err());
        assert!(
            !path.idle(),
            "a poisoned session is never idle enough to close quietly"
        );
    }

    #[test]
    fn an_empty_message_ends_the_session_without_a_panic() {
        let mut path = StatementPath::passthrough();
        assert!(matches!(path.client_message(b""), Verdict::End(_)));
        assert!(matches!(path.server_message(b""), Verdict::End(_)));
    }

    #[test]
    fn one_guard_per_read_keeps_the_record_of_owed_replies() {
        // As the relay does it: one lock for every message of a read, each direction.
        let path = StatementPath::passthrough();
        {
            let mut client = path.lock().unwrap();
            for m in [
                message(b'P', b"\0select 1\0\0\0"),
                message(b'B', b"\0\0\0\0\0\0\0\0"),
                message(b'E', b"\0\0\0\0\0"),
                message(b'S', b""),
            ] {
                assert_eq!(client.client_message(&m), Verdict::Forward);
            }
        }
        assert!(!path.idle(), "four requests are owed");
        let mut server = path.lock().unwrap();
        for m in [
            message(b'1', b""),
            message(b'2', b""),
            message(b'C', b"BEGIN\0"),
        ] {
            assert_eq!(server.server_message(&m), Verdict::Forward);
        }
        assert_eq!(
            server.server_message(&message(b'Z', b"T")),
            Verdict::Forward
        );
        drop(server);
        assert!(path.idle());
        assert!(
            !path.idle_outside_transaction(),
            "a transaction is open: not a safe point to close"
        );
    }

    #[test]
    fn a_pass_through_session_s_state_stays_small() {
        // Held by every session for its life (inline in its task): a protected session's
        // state (~1.9 KiB) is boxed, so pass-through sessions do not pay for it.
        let size = std::mem::size_of::<StatementPath>();
        assert!(size <= 256, "StatementPath is {size} bytes");
    }

    #[test]
    fn messages_pass_unchanged_without_rules() {
        let mut path = StatementPath::passthrough();
        assert_eq!(
            path.client_message(&message(b'Q', b"select 1\0")),
            Verdict::Forward
        );
    }
}
