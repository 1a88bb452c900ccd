//! One connection's audit: its identity (shared by all its events), the exchange that ties
//! each statement to its outcome, row counts, alerts and the totals reported on disconnect.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::alert::{self, Alerts, Raised};
use super::event::{ColumnAction, Event, EventType, Outcome, Totals};
use super::normalize::{self, NormalStatement, Normalized};
use super::Audit;
use crate::analyze::Usage;
use crate::protect::codec::Spec;
use crate::protect::session::AuditView;
use crate::protocol::exchange::{self, Exchange, Finished, Protocol};
use crate::protocol::replies::Replies;
use crate::protocol::text_settings::{TextMode, TextSettings};
use crate::protocol::types::{backend, frontend};
use pgshroud_rules::Action;

/// Who is connected, as every event of the connection says it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// Random id shared by all events of the connection.
    pub session: String,
    pub client_addr: Option<IpAddr>,
    pub tls: bool,
    pub user: String,
    pub database: String,
    pub application_name: Option<String>,
    /// The caller's role, once matched (see [`ConnectionAudit::role_matched`]).
    pub role: Option<String>,
}

impl ConnectionInfo {
    /// A new random session id.
    pub fn new_session_id() -> String {
        format!("{:016x}", rand::random::<u64>())
    }
}

/// Per-connection audit state, fed every client message before the statement path changes it
/// and every server message the client receives.
#[derive(Debug)]
pub struct ConnectionAudit {
    audit: Arc<Audit>,
    info: ConnectionInfo,
    exchange: Exchange,
    /// Rows the statement running now sent the client: DataRows, or a COPY TO's CopyData.
    rows: u64,
    /// The statement running now is a COPY TO: its tag (`COPY n`) counts its rows exactly
    /// (a header line or the binary trailer is a CopyData too).
    copy_out: bool,
    totals: Totals,
    opened: Instant,
    alerts: Alerts,
    /// How the server reads statement text now (from its ParameterStatus reports): a text
    /// is normalised as the server read it, or not shown.
    settings: TextSettings,
}

impl ConnectionAudit {
    /// Starts a connection's audit with its `connect` event.
    pub fn connect(audit: Arc<Audit>, info: ConnectionInfo) -> ConnectionAudit {
        let me = ConnectionAudit {
            audit,
            info,
            exchange: Exchange::default(),
            rows: 0,
            copy_out: false,
            totals: Totals::default(),
            opened: Instant::now(),
            alerts: Alerts::default(),
            settings: TextSettings::default(),
        };
        me.audit.emit(me.event(EventType::Connect));
        me
    }

    /// An event carrying the connection's identity.
    fn event(&self, kind: EventType) -> Event {
        let mut e = Event::new(kind);
        e.session = Some(self.info.session.clone());
        e.client_addr = self.info.client_addr.map(|a| a.to_string());
        e.user = Some(self.info.user.clone());
        e.role = self.info.role.clone();
        e.database = Some(self.info.database.clone());
        // Always present: PostgreSQL's own default is the empty string.
        e.application_name = Some(self.info.application_name.clone().unwrap_or_default());
        if kind == EventType::Connect {
            e.tls = Some(self.info.tls);
        }
        e
    }

    /// Authentication succeeded.
    pub fn auth_ok(&mut self) {
        self.audit.emit(self.event(EventType::AuthOk));
    }

    /// The caller matched `role`; a connection from outside its networks raises an alert.
    pub fn role_matched(&mut self, role: &pgshroud_rules::Role) {
        self.info.role = Some(role.name.clone());
        if let Some(ip) = self.info.client_addr {
            if let Some(raised) = alert::network(Some(role), ip) {
                self.raise(raised, None);
            }
        }
    }

    /// Authentication failed; `sqlstate` when the server said why.
    pub fn auth_failed(&mut self, sqlstate: Option<&str>) {
        let mut e = self.event(EventType::AuthFailed);
        e.outcome = Some(Outcome::Error);
        e.sqlstate = sqlstate.map(str::to_owned);
        self.audit.emit(e);
    }

    /// The connection ended: `disconnect` with the connection's totals.
    pub fn disconnect(&mut self) {
        let mut e = self.event(EventType::Disconnect);
        let mut totals = std::mem::take(&mut self.totals);
        totals.duration_us = micros(self.opened);
        e.duration_us = Some(totals.duration_us);
        e.totals = Some(totals);
        self.audit.emit(e);
    }

    /// Reads the session's one record of owed replies (kept by the statement path, which
    /// updates it with each message and tells its reading here) instead of keeping its own.
    pub fn follow_replies(&mut self) {
        self.exchange.follow();
    }

    /// How the session's record of owed replies read the message passed next.
    pub fn told(&mut self, replies: &Replies) {
        self.exchange.told(replies);
    }

    /// The session's text settings as the server reported them at startup.
    pub fn set_text_settings(&mut self, settings: TextSettings) {
        self.settings = settings;
    }

    /// A whole client message, as the client sent it.
    pub fn client_sent(&mut self, frame: &[u8]) {
        let Some(&kind) = frame.first() else {
            return;
        };
        if matches!(
            kind,
            frontend::QUERY
                | frontend::PARSE
                | frontend::BIND
                | frontend::DESCRIBE
                | frontend::EXECUTE
                | frontend::CLOSE
                | frontend::SYNC
                | frontend::FUNCTION_CALL
        ) {
            self.exchange.client_sent(frame, self.settings.mode());
        }
    }

    /// A whole server message on its way to the client. `view_of` describes a statement text
    /// under the session's rules and role (`None` without rules).
    pub fn server_sent(&mut self, frame: &[u8], view_of: impl Fn(&str) -> Option<AuditView>) {
        match frame.first() {
            Some(&backend::DATA_ROW | &backend::COPY_DATA) => {
                self.rows += 1;
                return;
            }
            Some(&backend::COPY_OUT_RESPONSE) => self.copy_out = true,
            Some(&backend::PARAMETER_STATUS) => self.settings.observe_message(frame),
            _ => {}
        }
        if let Some(done) = self.exchange.server_sent(frame) {
            let mut rows = std::mem::take(&mut self.rows);
            if std::mem::take(&mut self.copy_out) {
                if let exchange::Outcome::Complete(tag) = &done.outcome {
                    rows = tag_rows(tag).unwrap_or(rows);
                }
            }
            self.statement(done, rows, view_of);
        }
    }

    fn statement(
        &mut self,
        done: Finished,
        data_rows: u64,
        view_of: impl Fn(&str) -> Option<AuditView>,
    ) {
        let sql = &done.statement.sql;
        if sql.trim().is_empty() && done.outcome == exchange::Outcome::Complete(String::new()) {
            return; // An empty query: no statement ran.
        }
        let normalized = self.normalized(&done);
        let view = view_of(sql);
        if let Some(view) = &view {
            // The role in force for this statement (rules may have been reloaded).
            self.info.role = Some(view.policy.role().name.clone());
        }
        let refused = match done.protocol {
            // Refused by the role's statement kinds (see ProtectedSession::function_call).
            Protocol::FunctionCall => view.as_ref().is_some_and(|v| {
                !v.policy.allows_function_call()
                    && matches!(&done.outcome, exchange::Outcome::Error { sqlstate } if sqlstate == crate::protect::policy::INSUFFICIENT_PRIVILEGE)
            }),
            _ => view.as_ref().is_some_and(|v| v.refused),
        };
        let shown = if refused && done.protocol == Protocol::Simple {
            normalized.whole()
        } else {
            normalized.statement(done.index)
        };
        let mut e = self.event(EventType::Statement);
        e.protocol = Some(match done.protocol {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
            Protocol::FunctionCall => "function_call",
        });
        let (outcome, sqlstate, rows) = ending(&done.outcome, refused, data_rows);
        let (tables, columns) = touched(view.as_ref(), done.index, &shown, outcome);
        // Alerts are about what the client received: rows sent back, not rows changed.
        let values_read = read_values(&columns, data_rows);
        e.kind = Some(shown.kind);
        e.class = Some(shown.class);
        e.fingerprint = Some(shown.fingerprint.clone());
        e.statement = Some(shown.text);
        e.tables = Some(tables);
        e.columns = Some(columns);
        e.rows = Some(rows);
        e.duration_us = Some(micros(done.started));
        e.outcome = Some(outcome);
        e.sqlstate = sqlstate;
        self.count(outcome, rows);
        let fingerprint = e.fingerprint.clone();
        self.audit.emit(e);
        if outcome == Outcome::Ok {
            let role = view.as_ref().map(|v| v.policy.role());
            for raised in self
                .alerts
                .statement(role, data_rows, values_read, Instant::now())
            {
                self.raise(raised, fingerprint.clone());
            }
        }
    }

    /// The statement's text as audit may show it: normalised as the server read it (the
    /// stricter of the settings when it was sent and now, since a change may be in flight).
    fn normalized(&self, done: &Finished) -> Arc<Normalized> {
        let sql = &done.statement.sql;
        if done.protocol == Protocol::FunctionCall {
            // No text: the function's OID, which is no value.
            return Arc::new(Normalized {
                statements: vec![NormalStatement {
                    text: sql.to_string(),
                    fingerprint: normalize::fingerprint(sql),
                    kind: "function_call",
                    class: "FUNCTION",
                    tables: Vec::new(),
                }],
            });
        }
        match stricter(done.statement.mode, self.settings.mode()) {
            TextMode::Standard => self.audit.normalize(sql),
            mode => Arc::new(normalize::normalize_in(sql, mode)),
        }
    }

    fn count(&mut self, outcome: Outcome, rows: u64) {
        self.totals.statements += 1;
        self.totals.rows += rows;
        match outcome {
            Outcome::Ok => {}
            Outcome::Error => self.totals.errors += 1,
            Outcome::Refused => self.totals.refused += 1,
        }
    }

    /// A role limit ended the session mid-result (`max_rows` with `enforce = true`): the
    /// statement never completes, so its alert is raised here, marked enforced.
    pub fn session_ended_by_limit(&mut self, limit: Option<u64>) {
        let mut e = self.event(EventType::Alert);
        e.alert = Some(crate::ops::metrics::AlertKind::MaxRows.as_str());
        e.limit = limit;
        e.observed = limit.map(|l| l + 1);
        e.enforced = Some(true);
        self.audit
            .metrics
            .alert(crate::ops::metrics::AlertKind::MaxRows);
        self.audit.emit(e);
    }

    fn raise(&mut self, raised: Raised, fingerprint: Option<String>) {
        let mut e = self.event(EventType::Alert);
        e.alert = Some(raised.kind.as_str());
        e.limit = Some(raised.limit);
        if raised.kind != crate::ops::metrics::AlertKind::Network {
            e.observed = Some(raised.observed);
            e.fingerprint = fingerprint;
        }
        e.enforced = Some(false);
        self.audit.metrics.alert(raised.kind);
        self.audit.emit(e);
    }
}

/// A statement's outcome, SQLSTATE and row count (the command tag's count when it has one,
/// else the rows sent).
fn ending(
    outcome: &exchange::Outcome,
    refused: bool,
    data_rows: u64,
) -> (Outcome, Option<String>, u64) {
    match outcome {
        exchange::Outcome::Complete(tag) => (Outcome::Ok, None, tag_rows(tag).unwrap_or(data_rows)),
        exchange::Outcome::Suspended => (Outcome::Ok, None, data_rows),
        exchange::Outcome::Error { sqlstate } if refused => {
            (Outcome::Refused, Some(sqlstate.clone()), data_rows)
        }
        exchange::Outcome::Error { sqlstate } => {
            (Outcome::Error, Some(sqlstate.clone()), data_rows)
        }
    }
}

/// Of two ways to read a text, the one that shows less.
fn stricter(a: TextMode, b: TextMode) -> TextMode {
    let rank = |m: TextMode| match m {
        TextMode::Standard => 0,
        TextMode::BackslashEscapes => 1,
        TextMode::OtherEncoding => 2,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

/// Microseconds since `start`.
fn micros(start: Instant) -> u64 {
    start.elapsed().as_micros().min(u64::MAX as u128) as u64
}

/// The row count in a command tag (`SELECT 3`, `INSERT 0 3`, `COPY 3`), when it has one.
pub fn tag_rows(tag: &str) -> Option<u64> {
    let mut words = tag.split_ascii_whitespace();
    let command = words.next()?;
    let last = words.next_back()?;
    match command {
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE" => {
            last.parse().ok()
        }
        _ => None,
    }
}

/// Tables and protected columns a statement touched: from the analysis when the statement
/// mentions a protected table, else the tokenizer's guess at the tables.
fn touched(
    view: Option<&AuditView>,
    index: usize,
    shown: &NormalStatement,
    outcome: Outcome,
) -> (Vec<String>, Vec<ColumnAction>) {
    let Some((view, plan)) = view.and_then(|v| Some((v, v.plan.as_deref()?))) else {
        return (shown.tables.clone(), Vec::new());
    };
    let statement = plan.statements.get(index);
    let tables = match statement {
        Some(s) if !s.tables.is_empty() => s
            .tables
            .iter()
            .map(|(schema, table)| format!("{schema}.{table}"))
            .collect(),
        _ => shown.tables.clone(),
    };
    // This statement's own columns when the analysis names them; else the whole text's.
    let used: Vec<(&Spec, Usage)> = match statement {
        Some(s) => s
            .columns
            .iter()
            .filter_map(|c| Some((view.protection.spec_by_id(c.column)?, c.usage)))
            .collect(),
        None => plan
            .columns
            .iter()
            .map(|(spec, usage)| (spec, *usage))
            .collect(),
    };
    let mut columns: Vec<ColumnAction> = Vec::new();
    for (spec, usage) in used {
        let action = match (outcome, usage) {
            (Outcome::Refused, _) => "refused",
            (_, Usage::Project) => read_action(view.policy.action(spec)),
            _ => "encrypted",
        };
        let entry = ColumnAction {
            column: spec.qualified.clone(),
            action,
        };
        if !columns.contains(&entry) {
            columns.push(entry);
        }
    }
    (tables, columns)
}

/// What happens to a protected column a statement reads: the role's action, in the words of
/// `protected_values_total{action}`.
fn read_action(action: Action) -> &'static str {
    match action {
        Action::Decrypt => "decrypted",
        Action::Mask(_) => "masked",
        Action::Null => "nulled",
        Action::Ciphertext => "ciphertext",
        // Refused before it ran; kept for completeness.
        Action::Deny => "refused",
    }
}

/// Protected values a statement returned: rows times protected columns read.
fn read_values(columns: &[ColumnAction], rows: u64) -> u64 {
    let read = columns
        .iter()
        .filter(|c| matches!(c.action, "decrypted" | "masked" | "ciphertext"))
        .count() as u64;
    read.saturating_mul(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::ChainKey;
    use crate::audit::sink::{OnFull, Target};
    use crate::protocol::error::PgError;
    use crate::protocol::frame::message;
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(script: impl FnOnce(&mut ConnectionAudit)) -> Vec<serde_json::Value> {
        let out = Shared::default();
        let audit = Audit::with_target(
            Target::Writer(Box::new(out.clone())),
            OnFull::Block,
            ChainKey::new([3; 32]),
        )
        .unwrap();
        let info = ConnectionInfo {
            session: "s1".into(),
            client_addr: Some("127.0.0.1".parse().unwrap()),
            user: "alice".into(),
            database: "shop".into(),
            ..ConnectionInfo::default()
        };
        let mut c = ConnectionAudit::connect(audit.clone(), info);
        script(&mut c);
        c.disconnect();
        audit.close();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|e: &serde_json::Value| e["event"] == "statement")
            .collect()
    }

    fn no_plan(_: &str) -> Option<AuditView> {
        None
    }

    #[test]
    fn each_statement_of_a_simple_query_is_one_event() {
        let events = run(|c| {
            c.client_sent(&message(b'Q', b"SELECT 'secret'; UPDATE t SET a = 42\0"));
            c.server_sent(&message(b'T', b"\0\0"), no_plan);
            c.server_sent(&message(b'D', b"\0\0"), no_plan);
            c.server_sent(&message(b'C', b"SELECT 1\0"), no_plan);
            c.server_sent(&message(b'C', b"UPDATE 5\0"), no_plan);
            c.server_sent(&message(b'Z', b"I"), no_plan);
        });
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["statement"], "SELECT ?");
        assert_eq!(events[0]["kind"], "select");
        assert_eq!(events[0]["class"], "READ");
        assert_eq!(events[0]["rows"], 1);
        assert_eq!(events[1]["statement"], "UPDATE t SET a = ?");
        assert_eq!(events[1]["rows"], 5);
        assert_eq!(events[1]["tables"], serde_json::json!(["t"]));
        assert_eq!(events[1]["protocol"], "simple");
        assert_eq!(events[1]["session"], "s1");
    }

    #[test]
    fn an_execute_is_one_event_with_its_parse_text() {
        let events = run(|c| {
            for m in [
                message(b'P', b"s\0SELECT $1\0\0\0"),
                message(b'B', b"\0s\0\0\0\0\0\0\0"),
                message(b'E', b"\0\0\0\0\0"),
                message(b'S', b""),
            ] {
                c.client_sent(&m);
            }
            for m in [
                message(b'1', b""),
                message(b'2', b""),
                message(b'D', b"\0\0"),
                message(b'C', b"SELECT 1\0"),
                message(b'Z', b"I"),
            ] {
                c.server_sent(&m, no_plan);
            }
        });
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["statement"], "SELECT $1");
        assert_eq!(events[0]["protocol"], "extended");
        assert_eq!(events[0]["outcome"], "ok");
    }

    #[test]
    fn errors_carry_their_sqlstate_and_a_failed_parse_is_audited() {
        let events = run(|c| {
            c.client_sent(&message(b'P', b"\0SELEC 1\0\0\0"));
            c.client_sent(&message(b'S', b""));
            c.server_sent(&PgError::error("42601", "syntax error").to_bytes(), no_plan);
            c.server_sent(&message(b'Z', b"I"), no_plan);
        });
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["outcome"], "error");
        assert_eq!(events[0]["sqlstate"], "42601");
        assert_eq!(events[0]["statement"], "SELEC ?");
    }

    #[test]
    fn literals_stay_hidden_whatever_the_session_settings() {
        let events = run(|c| {
            c.server_sent(
                &message(b'S', b"standard_conforming_strings\0off\0"),
                no_plan,
            );
            c.client_sent(&message(b'Q', b"SELECT 'it\\'s secret'\0"));
            c.server_sent(&message(b'C', b"SELECT 1\0"), no_plan);
            c.server_sent(&message(b'Z', b"I"), no_plan);
            c.server_sent(&message(b'S', b"client_encoding\0LATIN1\0"), no_plan);
            c.client_sent(&message(b'Q', b"SELECT 'secret \xe9'\0"));
            c.server_sent(&message(b'C', b"SELECT 1\0"), no_plan);
            c.server_sent(&message(b'Z', b"I"), no_plan);
        });
        assert_eq!(events.len(), 2);
        // libpg_query reads only with standard_conforming_strings on: this text is not shown.
        assert_eq!(events[0]["statement"], normalize::BACKSLASH_STRINGS);
        assert_eq!(events[0]["kind"], "select");
        assert_eq!(events[1]["statement"], normalize::OTHER_ENCODING);
        for e in &events {
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn a_function_call_is_audited() {
        let events = run(|c| {
            c.client_sent(&message(b'F', b"\0\0\x04\xd2\0\0\0\0\0\0"));
            c.server_sent(&message(b'V', b"\xff\xff\xff\xff"), no_plan);
            c.server_sent(&message(b'Z', b"I"), no_plan);
        });
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["kind"], "function_call");
        assert_eq!(events[0]["protocol"], "function_call");
        assert_eq!(events[0]["outcome"], "ok");
    }

    #[test]
    fn row_counts_come_from_command_tags() {
        assert_eq!(tag_rows("SELECT 3"), Some(3));
        assert_eq!(tag_rows("INSERT 0 7"), Some(7));
        assert_eq!(tag_rows("COPY 2"), Some(2));
        assert_eq!(tag_rows("CREATE TABLE"), None);
        assert_eq!(tag_rows("BEGIN"), None);
    }
}
