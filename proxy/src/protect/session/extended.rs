//! The extended protocol, client to server: Parse (planned, refused, followed by our own
//! Describe), Describe, Execute, Close and Sync, and the refusal that keeps a pipeline in step.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;

use super::reading::Reading;
use super::{Expect, PreparedInfo, ProtectedSession, SqlTickets};
use crate::analyze::identity_settings::IdentityTouch;
use crate::protect::refusal;
use crate::protect::wire::{self, Parse, Target, Unreadable};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::frame::message;
use crate::protocol::text_settings::{self as settings};
use crate::protocol::tracker::{Effect, Held};
use crate::protocol::types::frontend;
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// A message the proxy cannot read: a malformed one ends the session as PostgreSQL ends
    /// it (FATAL 08P01); one with a name that is not UTF-8 is refused (22021).
    pub(super) fn unreadable(&mut self, error: Unreadable) -> Verdict {
        match error {
            Unreadable::Malformed(_) => Verdict::End(PgError::protocol_violation(format!(
                "{error}: pgshroud does not pass on messages it cannot read"
            ))),
            Unreadable::NotUtf8(_) => self.refuse_extended(&PgError::error(
                settings::CHARACTER_NOT_IN_REPERTOIRE,
                format!("{error}: pgshroud does not pass on names it cannot read"),
            )),
        }
    }

    pub(super) fn describe(&mut self, frame: &[u8]) -> Verdict {
        let (target, name) = match wire::read_target(frame, "Describe") {
            Ok(t) => t,
            Err(e) => return self.unreadable(e),
        };
        // A cursor declared in SQL is described as its FETCH results are: by the column
        // origins PostgreSQL reports (its DECLARE was analysed like any query, and refused
        // where origins would not suffice). Any other portal the proxy did not bind is refused.
        if target == Target::Portal
            && self.names.portal(&name).is_none()
            && !self.names.cursor(&name)
        {
            return self.refuse_extended(&unknown_portal(&name));
        }
        self.pending.push_back(match target {
            Target::Statement => Expect::DescribeStatement { name, ours: false },
            Target::Portal => Expect::DescribePortal { name, ours: false },
        });
        Verdict::Forward
    }

    pub(super) fn execute(&mut self, frame: &[u8]) -> Verdict {
        let portal = match wire::read_execute(frame) {
            Ok(p) => p,
            Err(e) => return self.unreadable(e),
        };
        // Rows of a portal the proxy did not bind (a cursor declared in SQL) would reach the
        // client undecrypted under a description that claims the logical type.
        let Some(info) = self.names.portal(&portal).cloned() else {
            return self.refuse_extended(&unknown_portal(&portal));
        };
        let statement = info.statement.clone();
        let mut effects = SqlTickets::new();
        for effect in &statement.effects {
            let ticket = self.names.sent(effect.effect());
            effects.push_back((effect.clone(), ticket));
        }
        self.pipeline_unsettled |= statement.unsettling;
        if statement.fetches && info.described.get().is_none() {
            // The rows' shape comes only from the portal's description: ask for it first.
            let mut out = describe_portal(&portal);
            out.extend_from_slice(frame);
            self.pending.push_back(Expect::DescribePortal {
                name: portal.clone(),
                ours: true,
            });
            self.pending.push_back(Expect::Execute { portal, effects });
            return Verdict::Replace(out);
        }
        self.pending.push_back(Expect::Execute { portal, effects });
        Verdict::Forward
    }

    pub(super) fn close(&mut self, frame: &[u8]) -> Verdict {
        let (target, name) = match wire::read_target(frame, "Close") {
            Ok(t) => t,
            Err(e) => return self.unreadable(e),
        };
        // Closing an unknown name is no error in PostgreSQL; the effect is applied only
        // once the server confirms it (after an earlier error it skips the Close).
        let ticket = self.names.sent(match target {
            Target::Statement => Effect::CloseStatement(name),
            Target::Portal => Effect::ClosePortal(name),
        });
        self.pending.push_back(Expect::CloseComplete {
            ours: false,
            ticket,
        });
        Verdict::Forward
    }

    pub(super) fn sync(&mut self, frame: &[u8]) -> Verdict {
        let unsettling = std::mem::take(&mut self.pipeline_unsettled);
        self.unsettled += u32::from(unsettling);
        self.pending.push_back(Expect::Sync { unsettling });
        if std::mem::take(&mut self.refresh_at_sync) {
            let mut out = BytesMut::from(frame);
            out.extend_from_slice(&self.lookup_message());
            return Verdict::Replace(out);
        }
        Verdict::Forward
    }

    pub(super) fn parse(&mut self, frame: &[u8]) -> Verdict {
        self.follow_rules();
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        let mut parse = match Parse::read(frame) {
            Ok(p) => p,
            Err(e) => return self.unreadable(e),
        };
        // PostgreSQL refuses a Parse of a name in use and keeps the old statement. The proxy
        // refuses it itself, so what the server holds never depends on whether earlier,
        // still unanswered messages succeed.
        if !parse.name.is_empty() && self.names.statement(&parse.name).is_some() {
            return self.refuse_extended(&PgError::error(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{}\" already exists", parse.name),
            ));
        }
        // The client's own types (a protected parameter's becomes bytea on the way up).
        let declared = parse.param_types.clone();
        let known = if self.path_changed_in_txn || self.ddl_in_txn {
            // A rollback in this text would need a look-up, and an end of a transaction that
            // changed the schema may roll it back (`schema_change`): read it whole.
            None
        } else {
            let under = self.harmless_under();
            self.harmless.known(under, &parse.query)
        };
        let reading = match known {
            // These very bytes were found harmless under what the session serves now: of
            // what the readings depend on, only the session's state is checked again.
            Some(sql) => match self.no_switch_in_flight() {
                Ok(()) => Reading {
                    identity: IdentityTouch::None,
                    unsettling: false,
                    plan: None,
                    query: Some(sql),
                    effects: Vec::new(),
                    fetches: false,
                },
                Err(error) => return self.refuse_extended(&error),
            },
            None => match self.read_parse(&mut parse) {
                Ok(reading) => reading,
                Err(verdict) => return verdict,
            },
        };
        let Reading {
            identity,
            unsettling,
            plan,
            query,
            effects,
            fetches,
        } = reading;
        let mut out = BytesMut::new();
        if self.names.statement_in_doubt(&parse.name) {
            // A Close of this name is unanswered and may yet be skipped: close it again right
            // before the Parse, so both run or neither does.
            out.extend_from_slice(&close_statement(&parse.name));
            let ticket = self.names.sent(Effect::CloseStatement(parse.name.clone()));
            self.pending
                .push_back(Expect::CloseComplete { ours: true, ticket });
        }
        let info = Arc::new(PreparedInfo {
            plan: plan.clone(),
            declared,
            query,
            generation: self.plans_epoch,
            tenant: plan
                .as_ref()
                .and_then(|_| self.plans_tenant().map(Arc::from)),
            described: OnceLock::new(),
            effects,
            unsettling,
            rolls_back: super::schema_change::may_end_rolling_back(&parse.query),
            executes: super::schema_change::may_execute(&parse.query),
            fetches,
            identity,
        });
        let ticket = self
            .names
            .sent(Effect::Prepare(parse.name.clone(), Held::Known(info)));
        self.pending.push_back(Expect::ParseComplete {
            ours: false,
            ticket: Some(ticket),
        });
        if plan.is_none() {
            if out.is_empty() {
                return Verdict::Forward;
            }
            out.extend_from_slice(frame);
            return Verdict::Replace(out);
        }
        out.extend_from_slice(&parse.write());
        self.describe_ours(parse.name.clone(), out)
    }

    /// Follows a Parse with our own Describe, so the result shape is known even for clients
    /// that never describe (their Execute's rows must still be decrypted).
    fn describe_ours(&mut self, name: String, parse: BytesMut) -> Verdict {
        let mut out = parse;
        let mut body = vec![b'S'];
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        out.extend_from_slice(&message(b'D', &body));
        self.pending
            .push_back(Expect::DescribeStatement { name, ours: true });
        Verdict::Replace(out)
    }

    /// Sends the raising statement in place of a refused extended-protocol message. It runs in
    /// the unnamed statement and portal, so the server holds neither for the client after it.
    pub(super) fn refuse_extended(&mut self, error: &PgError) -> Verdict {
        let statement = self
            .names
            .sent(Effect::Prepare(String::new(), Held::Foreign));
        let portal = self.names.sent(Effect::ClosePortal(String::new()));
        self.pending.push_back(Expect::ParseComplete {
            ours: true,
            ticket: Some(statement),
        });
        self.pending.push_back(Expect::BindComplete {
            ours: true,
            ticket: portal,
        });
        self.pending.push_back(Expect::Refusal);
        Verdict::Replace(refusal::refused_extended(error))
    }
}

/// The longest statement or portal name PostgreSQL tells apart: its tables of prepared
/// statements and portals key names by their first `NAMEDATALEN - 1` bytes, so a Close of a
/// 70-byte name closes the statement its first 63 bytes name (one SQL `PREPARE` made), and a
/// Parse of it makes that name, while pgshroud's record of names holds them whole.
const MAX_NAME: usize = 63;

/// A statement or portal name of an extended-protocol message longer than PostgreSQL keys
/// it by: refused rather than tracked under another name than the server's.
pub(super) fn name_too_long(kind: u8, frame: &[u8]) -> Option<PgError> {
    let body = frame.get(5..).unwrap_or_default();
    let names = |count: usize, skip: usize| {
        body.get(skip..)
            .unwrap_or_default()
            .split(|&b| b == 0)
            .take(count)
            .any(|name| name.len() > MAX_NAME)
    };
    let long = match kind {
        frontend::PARSE | frontend::EXECUTE => names(1, 0),
        frontend::BIND => names(2, 0),
        frontend::DESCRIBE | frontend::CLOSE => names(1, 1),
        _ => false,
    };
    long.then(|| {
        PgError::error(
            sqlstate::NAME_TOO_LONG,
            format!("pgshroud accepts prepared statement and portal names of at most {MAX_NAME} bytes: PostgreSQL tells longer names apart only by their first {MAX_NAME}"),
        )
    })
}

/// The refusal of a Describe of a portal the proxy neither bound nor saw declared, or an
/// Execute of a portal it did not bind.
fn unknown_portal(name: &str) -> PgError {
    PgError::error(
        sqlstate::INVALID_CURSOR_NAME,
        format!("portal \"{name}\" does not exist, or was not bound through pgshroud: pgshroud executes only portals it bound, and describes those and cursors it saw declared in SQL; use FETCH for SQL cursors"),
    )
}

/// A Describe of a portal.
fn describe_portal(name: &str) -> BytesMut {
    let mut body = vec![b'P'];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    message(frontend::DESCRIBE, &body)
}

/// A Close of a prepared statement.
fn close_statement(name: &str) -> BytesMut {
    let mut body = vec![b'S'];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    message(frontend::CLOSE, &body)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protect::session::reading::may_fetch;
    use crate::protocol::text_settings::TextMode;

    /// PostgreSQL keys statements and portals by their first 63 bytes; pgshroud by whole
    /// names: a longer name would be one name to the server and another to the record.
    #[test]
    fn names_longer_than_postgresql_keys_are_refused() {
        let mut s = test_session("app");
        let fits = "n".repeat(63);
        let long = "n".repeat(64);
        assert_eq!(
            s.client_message(&parse(&fits, "select 1")),
            Verdict::Forward
        );
        for frame in [
            parse(&long, "select 1"),
            bind("", &long),
            bind(&long, &fits),
            message(b'C', format!("S{long}\0").as_bytes()),
            message(b'D', format!("P{long}\0").as_bytes()),
            message(b'E', format!("{long}\0\0\0\0\0").as_bytes()),
        ] {
            let verdict = s.client_message(&frame);
            assert_eq!(
                refusal_code(&verdict).as_deref(),
                Some("42622"),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn a_second_parse_of_a_name_is_refused_and_the_old_statement_kept() {
        let mut s = test_session("app");
        assert_eq!(s.client_message(&parse("s1", "select 1")), Verdict::Forward);
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        // Mid-pipeline, before the first Parse is even answered, or after: both refused.
        let again = s.client_message(&parse("s1", "select 2"));
        assert_eq!(refusal_code(&again).as_deref(), Some("42P05"));
        assert!(matches!(
            s.names.statement("s1"),
            Some(Held::Known(info)) if info.query.as_deref() == Some("select 1")
        ));
    }

    #[test]
    fn a_close_skipped_after_an_error_leaves_the_statement_known() {
        let mut s = test_session("app");
        s.client_message(&parse("s1", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        // Pipeline: a failing Parse, then Close s1 (skipped by the server), Sync.
        s.client_message(&parse("", "selec 1"));
        s.client_message(&message(b'C', b"Ss1\0"));
        s.client_message(&sync());
        assert!(s.names.statement("s1").is_none());
        s.server_message(&error("42601"));
        answer(&mut s, &["ZI"]);
        // The server still holds s1, and so does the proxy: a new Parse of it is refused, a
        // Bind of it finds the statement the server has.
        assert!(s.names.statement("s1").is_some());
        let again = s.client_message(&parse("s1", "select 2"));
        assert_eq!(refusal_code(&again).as_deref(), Some("42P05"));
    }

    #[test]
    fn a_parse_after_an_unanswered_close_closes_again_first() {
        let mut s = test_session("app");
        s.client_message(&parse("s1", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        s.client_message(&message(b'C', b"Ss1\0"));
        s.client_message(&sync());
        let Verdict::Replace(out) = s.client_message(&parse("s1", "select 2")) else {
            panic!("the Parse must be preceded by our Close");
        };
        assert_eq!(out[0], b'C');
        // Close answered (client's), then ours dropped, then ParseComplete forwarded.
        assert_eq!(s.server_message(&message(b'3', b"")), Verdict::Forward);
        assert_eq!(s.server_message(&message(b'Z', b"I")), Verdict::Forward);
        assert_eq!(s.server_message(&message(b'3', b"")), Verdict::Drop);
        assert_eq!(s.server_message(&message(b'1', b"")), Verdict::Forward);
    }

    #[test]
    fn malformed_messages_end_the_session_with_08p01() {
        let mut declared = b"s\0select 1\0".to_vec();
        declared.extend_from_slice(&0x8000u16.to_be_bytes());
        for frame in [
            message(b'P', &declared),
            message(b'P', b"s\0select 1"),
            message(b'B', b"\0s\0\0\x01"),
            message(b'C', b""),
            message(b'C', b"S"),
            message(b'D', b"X\0"),
            message(b'E', b"\0"),
            message(b'Q', b"select 1"),
        ] {
            let mut s = test_session("app");
            match s.client_message(&frame) {
                Verdict::End(e) => assert_eq!(e.code, "08P01", "{frame:?}"),
                other => panic!("{frame:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn an_execute_of_a_portal_the_proxy_did_not_bind_is_refused() {
        let mut s = test_session("app");
        s.client_message(&message(b'Q', b"DECLARE c CURSOR WITH HOLD FOR SELECT 1\0"));
        answer(&mut s, &["CDECLARE CURSOR\0", "ZI"]);
        let v = s.client_message(&message(b'E', b"c\0\0\0\0\0"));
        assert_eq!(refusal_code(&v).as_deref(), Some("34000"));
        // A portal it bound runs.
        s.client_message(&parse("", "select 1"));
        s.client_message(&bind("", ""));
        assert_eq!(
            s.client_message(&message(b'E', b"\0\0\0\0\0")),
            Verdict::Forward
        );
    }

    #[test]
    fn a_describe_of_a_cursor_declared_in_sql_passes_while_it_is_open() {
        let mut s = test_session("app");
        s.client_message(&message(b'Q', b"BEGIN; DECLARE c CURSOR FOR SELECT 1\0"));
        answer(&mut s, &["CBEGIN\0", "CDECLARE CURSOR\0", "ZT"]);
        assert_eq!(s.client_message(&message(b'D', b"Pc\0")), Verdict::Forward);
        s.client_message(&sync());
        answer(&mut s, &["n", "ZT"]);
        s.client_message(&message(b'Q', b"CLOSE c\0"));
        answer(&mut s, &["CCLOSE CURSOR\0", "ZT"]);
        // Closed, or never declared: refused.
        for describe in [b"Pc\0", b"Pd\0"] {
            let v = s.client_message(&message(b'D', describe));
            assert_eq!(refusal_code(&v).as_deref(), Some("34000"));
        }
    }

    #[test]
    fn an_extended_fetch_is_described_before_it_runs() {
        let mut s = test_session("app");
        s.client_message(&parse("", "FETCH 1 FROM c"));
        s.client_message(&bind("", ""));
        let v = s.client_message(&message(b'E', b"\0\0\0\0\0"));
        let Verdict::Replace(out) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(
            &out[..],
            &[&b"D\0\0\0\x06P\0"[..], b"E\0\0\0\x09\0\0\0\0\0"].concat()
        );
        // Our Describe's answer is ours.
        s.client_message(&sync());
        answer(&mut s, &["1", "2"]);
        assert_eq!(s.server_message(&message(b'n', b"")), Verdict::Drop);
    }

    #[test]
    fn a_column_named_like_fetch_costs_no_describe_per_execute() {
        let mut s = test_session("app");
        s.client_message(&parse("", "SELECT fetched_at FROM jobs -- fetch"));
        s.client_message(&bind("", ""));
        let v = s.client_message(&message(b'E', b"\0\0\0\0\0"));
        assert_eq!(v, Verdict::Forward);
    }

    #[test]
    fn the_word_is_read_by_postgresql_s_grammar_only_where_it_reads_as_the_server() {
        let fetch = |sql: &str, mode| may_fetch(sql.as_bytes(), Some(sql), mode);
        assert!(fetch("fetch 1 from c", TextMode::Standard));
        assert!(fetch(
            "SELECT 1; MOVE 1 IN c; FETCH ALL c",
            TextMode::Standard
        ));
        assert!(!fetch("select 'fetch 1 from c'", TextMode::Standard));
        assert!(!fetch("select 1 as fetched", TextMode::Standard));
        // Not read as the server would: assumed a FETCH.
        assert!(fetch("select 'a\\' as fetched", TextMode::BackslashEscapes));
        assert!(may_fetch(b"fetch \xff", None, TextMode::Standard));
        // Not PostgreSQL's grammar: assumed a FETCH (the server may read it otherwise).
        assert!(fetch("fetch fetch fetch", TextMode::Standard));
        assert!(!may_fetch(b"select 1", None, TextMode::Standard));
    }

    #[test]
    fn a_protected_parse_goes_with_bytea_parameters_and_our_own_describe() {
        let mut s = catalog_session("app");
        let parse = parse("ins", "insert into customers (email) values ($1)");
        let sent = messages(&replaced(s.client_message(&parse)));
        assert_eq!(sent.iter().map(|m| m.0).collect::<Vec<_>>(), b"PD");
        assert!(String::from_utf8_lossy(&sent[0].1).contains("$1::bytea"));
        assert_eq!(sent[1].1, b"Sins\0");
        // The client's ParseComplete reaches it; the answers to our Describe do not.
        assert_eq!(s.server_message(&message(b'1', b"")), Verdict::Forward);
        let types = wire::write_parameter_description(&[17]);
        assert_eq!(s.server_message(&types), Verdict::Drop);
        assert_eq!(s.server_message(&message(b'n', b"")), Verdict::Drop);
        assert!(s.pending.is_empty(), "{:?}", s.pending);
    }

    #[test]
    fn a_refused_parse_inside_a_pipeline_skips_to_sync() {
        let mut s = catalog_session("app");
        assert_eq!(s.client_message(&parse("ok", "select 1")), Verdict::Forward);
        let like = parse("", "select id from customers where email like 'a%'");
        assert_eq!(
            refusal_code(&s.client_message(&like)).as_deref(),
            Some("0A000")
        );
        assert_eq!(s.client_message(&message(b'D', b"Sok\0")), Verdict::Forward);
        s.client_message(&sync());
        // The first Parse is the client's; the refusal's Parse and Bind are ours.
        assert_eq!(s.server_message(&message(b'1', b"")), Verdict::Forward);
        assert_eq!(s.server_message(&message(b'1', b"")), Verdict::Drop);
        assert_eq!(s.server_message(&message(b'2', b"")), Verdict::Drop);
        assert!(s.error_is_refusal());
        let raised = message(
            b'E',
            b"SERROR\0C0A000\0Mrefused\0WPL/pgSQL function inline_code_block line 1 at RAISE\0\0",
        );
        let shown = replaced(s.server_message(&raised));
        assert!(!shown.windows(8).any(|w| w == b"PL/pgSQL"));
        // The server skips the Describe: only the Sync is still owed.
        assert_eq!(s.pending.len(), 1, "{:?}", s.pending);
        assert_eq!(s.server_message(&message(b'Z', b"I")), Verdict::Forward);
        assert!(s.pending.is_empty());
        assert!(s.names.statement("ok").is_some());
    }
}
