//! What audit needs to know about each request the server still owes: the statement a Parse,
//! Execute or Query carries, so a server response can be tied to its statement and its outcome
//! and row count known. Which request a response answers, and which ones the server skipped,
//! is read off the session's one record of owed replies (`replies`), never worked out here.
//! Which text a statement or portal name stands for follows the server (`tracker`): a Parse
//! the server refused or skipped does not rename anything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::replies::{Answer, Replies, Reply, RequestId};
use crate::protocol::text_settings::TextMode;
use crate::protocol::tracker::{Effect, Held, Ticket, Tracker};
use crate::protocol::types::{backend, frontend};

/// A statement as the client sent it (simple query text, a Parse, or a FunctionCall).
#[derive(Debug)]
pub struct Statement {
    pub sql: Arc<str>,
    /// How the server read the text when it was sent (text that is not UTF-8 counts as
    /// another encoding: it is never shown).
    pub mode: TextMode,
}

impl Statement {
    fn new(sql: &[u8], mode: TextMode) -> Arc<Statement> {
        let (sql, mode) = match std::str::from_utf8(sql) {
            Ok(sql) => (sql.into(), mode),
            Err(_) => (String::from_utf8_lossy(sql).into(), TextMode::OtherEncoding),
        };
        Arc::new(Statement { sql, mode })
    }
}

/// Which protocol a statement came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `Query`.
    Simple,
    /// Parse/Bind/Execute.
    Extended,
    /// FunctionCall: a function run by OID.
    FunctionCall,
}

/// A request waiting for its answer.
#[derive(Debug, Clone)]
pub enum Pending {
    /// An error in its place ends the statement before it ran.
    Parse(Arc<Statement>, Ticket),
    /// A Bind of statement `from` into `portal`: the portal runs the statement the server
    /// holds under `from` when the Bind completes.
    Bind {
        statement: Arc<Statement>,
        portal: String,
        from: String,
        ticket: Ticket,
    },
    Close(Ticket),
    Describe(Arc<Statement>),
    Execute {
        statement: Arc<Statement>,
        portal: String,
        started: Instant,
    },
    /// A whole simple `Query` (possibly several statements), answered up to ReadyForQuery;
    /// `index` counts the statements of its text already finished.
    Query {
        statement: Arc<Statement>,
        started: Instant,
        index: usize,
        /// The unnamed statement and portal end with it.
        ticket: Ticket,
    },
    /// A FunctionCall, answered by FunctionCallResponse (or an error), then ReadyForQuery.
    FunctionCall {
        statement: Arc<Statement>,
        started: Instant,
    },
    /// Sync: answered by ReadyForQuery.
    Sync,
}

/// A statement's end, as the server direction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command tag (`SELECT 3`, `INSERT 0 1`, ...).
    Complete(String),
    Error {
        sqlstate: String,
    },
    /// The Execute's row limit was reached (PortalSuspended); the portal lives on.
    Suspended,
}

/// Something finished: one per Execute, one per statement of a simple query.
#[derive(Debug, Clone)]
pub struct Finished {
    pub statement: Arc<Statement>,
    pub started: Instant,
    pub outcome: Outcome,
    pub protocol: Protocol,
    /// Which statement of a simple query's text (0 for the extended protocol).
    pub index: usize,
}

/// Where the owed replies are read.
#[derive(Debug)]
enum Owed {
    /// The session's one record, kept by the statement path, which tells this exchange how it
    /// read each message (`Exchange::told`) before passing the message on. Told, not shared:
    /// the statement path reads every message under one lock per batch, and a lock of its
    /// own here would cost each message of every audited session another one.
    Told {
        request: Option<RequestId>,
        answer: Answer,
    },
    /// A record of its own, updated here: for an audit fed messages without a session.
    Own(Replies),
}

/// Per-session bookkeeping shared by both relay directions.
#[derive(Debug)]
pub struct Exchange {
    owed: Owed,
    /// What each owed request carries, by request number, in wire order.
    pending: VecDeque<(RequestId, Pending)>,
    /// Statement and portal names, each standing for the statement text it runs.
    names: Tracker<Statement, Statement>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            owed: Owed::Own(Replies::default()),
            pending: VecDeque::new(),
            names: Tracker::default(),
        }
    }
}

impl Exchange {
    /// Reads the session's one record of owed replies from now on, instead of keeping one.
    /// The record's owner tells this exchange its reading of each message (`told`) before
    /// the exchange sees the message.
    pub fn follow(&mut self) {
        let replies = Replies::default();
        self.owed = Owed::Told {
            request: replies.last_request(),
            answer: replies.last_answer(),
        };
    }

    /// How the session's record read the message about to be passed here (a no-op for an
    /// exchange keeping its own record).
    pub fn told(&mut self, replies: &Replies) {
        if let Owed::Told { request, answer } = &mut self.owed {
            *request = replies.last_request();
            *answer = replies.last_answer();
        }
    }

    /// The request `kind` made, as the record of owed replies numbered it.
    fn request(&mut self, kind: u8) -> Option<RequestId> {
        match &mut self.owed {
            Owed::Own(replies) => replies.client_sent(kind),
            Owed::Told { request, .. } => *request,
        }
    }

    fn answer(&mut self, frame: &[u8]) -> Option<Answer> {
        match &mut self.owed {
            Owed::Own(replies) => Some(replies.server_sent(frame)),
            Owed::Told { answer, .. } => Some(*answer),
        }
    }

    /// Records a client message that the server will answer. `frame` is a whole message;
    /// `mode` is how the server reads statement text now.
    pub fn client_sent(&mut self, frame: &[u8], mode: TextMode) {
        let Some((&kind, rest)) = frame.split_first() else {
            return;
        };
        // Owed nothing (or discarded by the server after an error): it changes nothing.
        let Some(id) = self.request(kind) else {
            return;
        };
        let body = rest.get(4..).unwrap_or_default();
        let now = Instant::now;
        let pending = match kind {
            frontend::QUERY => {
                let ticket = self.names.sent(Effect::SimpleQuery);
                Pending::Query {
                    statement: Statement::new(cbytes(body), mode),
                    started: now(),
                    index: 0,
                    ticket,
                }
            }
            frontend::PARSE => {
                let mut parts = body.split(|&b| b == 0);
                let name = parts.next().unwrap_or_default();
                let sql = parts.next().unwrap_or_default();
                let statement = Statement::new(sql, mode);
                let name = String::from_utf8_lossy(name).into_owned();
                let ticket = self
                    .names
                    .sent(Effect::Prepare(name, Held::Known(statement.clone())));
                Pending::Parse(statement, ticket)
            }
            frontend::BIND => {
                let mut parts = cstrs(body);
                let portal = parts.next().unwrap_or_default().to_owned();
                let from = parts.next().unwrap_or_default().to_owned();
                let statement = self.statement(&from);
                let ticket = self
                    .names
                    .sent(Effect::Bind(portal.clone(), statement.clone()));
                Pending::Bind {
                    statement,
                    portal,
                    from,
                    ticket,
                }
            }
            frontend::DESCRIBE => Pending::Describe(self.target(body)),
            frontend::EXECUTE => {
                let portal = cstr(body).unwrap_or_default();
                let statement = self.names.portal(portal).cloned().unwrap_or_else(unknown);
                Pending::Execute {
                    statement,
                    portal: portal.to_owned(),
                    started: now(),
                }
            }
            frontend::CLOSE => {
                let name = body.get(1..).and_then(cstr).unwrap_or_default().to_owned();
                Pending::Close(self.names.sent(match body.first() {
                    Some(b'S') => Effect::CloseStatement(name),
                    _ => Effect::ClosePortal(name),
                }))
            }
            frontend::FUNCTION_CALL => {
                let oid = body
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                Pending::FunctionCall {
                    statement: Arc::new(Statement {
                        sql: format!("function {oid}").into(),
                        mode: TextMode::Standard,
                    }),
                    started: now(),
                }
            }
            _ => Pending::Sync,
        };
        self.pending.push_back((id, pending));
    }

    fn target(&self, body: &[u8]) -> Arc<Statement> {
        let name = cstr(body.get(1..).unwrap_or_default()).unwrap_or_default();
        match body.first() {
            Some(b'S') => self.statement(name),
            _ => self.names.portal(name).cloned().unwrap_or_else(unknown),
        }
    }

    /// The statement a message sent now finds under `name`.
    fn statement(&self, name: &str) -> Arc<Statement> {
        match self.names.statement(name) {
            Some(Held::Known(statement)) => statement.clone(),
            _ => unknown(),
        }
    }

    /// The request the server is answering now.
    pub fn current(&self) -> Option<&Pending> {
        self.pending.front().map(|(_, p)| p)
    }

    /// Accounts for one server message; returns what finished with it, if anything.
    pub fn server_sent(&mut self, frame: &[u8]) -> Option<Finished> {
        let &kind = frame.first()?;
        let answer = self.answer(frame)?;
        let finished = match answer.request {
            Some((id, _)) => self.answered(id, answer, kind, frame),
            None => None,
        };
        // Requests settled without an answer of their own were skipped by the server.
        while let Some((_, p)) = self.pending.pop_front_if_below(answer.settled_below) {
            self.skipped(p);
        }
        if kind == backend::READY_FOR_QUERY && frame.get(5) == Some(&b'I') {
            self.names.transaction_ended();
        }
        finished
    }

    /// `frame` answers request `id` (`answer.reply` says how).
    fn answered(
        &mut self,
        id: RequestId,
        answer: Answer,
        kind: u8,
        frame: &[u8],
    ) -> Option<Finished> {
        // Requests before it were skipped.
        while let Some((_, p)) = self.pending.pop_front_if_below(id) {
            self.skipped(p);
        }
        if self.pending.front().map(|(i, _)| *i) != Some(id) {
            return None;
        }
        let settled = id < answer.settled_below;
        let outcome = match answer.reply {
            Reply::Finished => outcome(kind, frame)?,
            Reply::Failed => Outcome::Error {
                sqlstate: crate::protocol::fields::field(frame, b'C')
                    .unwrap_or_default()
                    .to_owned(),
            },
            Reply::Complete if settled => {
                let (_, request) = self.pending.pop_front()?;
                self.completed(request);
                return None;
            }
            _ => return None,
        };
        let finished = self.finish(outcome);
        if settled {
            if let Some((_, request)) = self.pending.pop_front() {
                match answer.reply {
                    Reply::Failed => self.skipped(request),
                    _ => self.completed(request),
                }
            }
        }
        finished
    }

    /// The server answered `request` in full.
    fn completed(&mut self, request: Pending) {
        match request {
            Pending::Parse(_, ticket) | Pending::Close(ticket) | Pending::Query { ticket, .. } => {
                self.names.confirm(ticket)
            }
            Pending::Bind {
                portal,
                from,
                ticket,
                ..
            } => {
                // The statement as the server holds it now, which may differ from the one
                // expected when the Bind was sent.
                self.names.skipped(ticket);
                let statement = match self.names.confirmed_statement(&from) {
                    Some(Held::Known(statement)) => statement.clone(),
                    _ => unknown(),
                };
                self.names.apply(Effect::Bind(portal, statement));
            }
            _ => {}
        }
    }

    /// What finished with `outcome`: the statement of the request answered now.
    fn finish(&mut self, outcome: Outcome) -> Option<Finished> {
        let (_, front) = self.pending.front_mut()?;
        let (statement, started, protocol, index) = match front {
            Pending::FunctionCall { statement, started } => {
                (statement.clone(), *started, Protocol::FunctionCall, 0)
            }
            Pending::Execute {
                statement,
                portal,
                started,
            } => {
                let statement = self.names.confirmed_portal(portal).unwrap_or(statement);
                (statement.clone(), *started, Protocol::Extended, 0)
            }
            // A simple query runs on to ReadyForQuery; each statement in it finishes here.
            Pending::Query {
                statement,
                started,
                index,
                ..
            } => {
                let done = (statement.clone(), *started, Protocol::Simple, *index);
                if !matches!(outcome, Outcome::Error { .. }) {
                    *started = Instant::now();
                    *index += 1;
                }
                done
            }
            // The statement failed (or was refused) before it could run.
            Pending::Parse(statement, _)
            | Pending::Bind { statement, .. }
            | Pending::Describe(statement) => {
                (statement.clone(), Instant::now(), Protocol::Extended, 0)
            }
            Pending::Close(_) | Pending::Sync => return None,
        };
        Some(Finished {
            statement,
            started,
            outcome,
            protocol,
            index,
        })
    }

    /// A request the server skipped (after an error) or answered with an error: its effect
    /// on names did not happen.
    fn skipped(&mut self, request: Pending) {
        match request {
            Pending::Parse(_, ticket)
            | Pending::Bind { ticket, .. }
            | Pending::Close(ticket)
            | Pending::Query { ticket, .. } => self.names.skipped(ticket),
            _ => {}
        }
    }

    /// Requests still unanswered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// How a statement ended, from the message that ended it.
fn outcome(kind: u8, frame: &[u8]) -> Option<Outcome> {
    Some(match kind {
        backend::COMMAND_COMPLETE => {
            let tag = cstr(frame.get(5..).unwrap_or_default()).unwrap_or_default();
            Outcome::Complete(tag.to_owned())
        }
        backend::FUNCTION_CALL_RESPONSE => Outcome::Complete("FUNCTION CALL".into()),
        backend::EMPTY_QUERY => Outcome::Complete(String::new()),
        backend::PORTAL_SUSPENDED => Outcome::Suspended,
        _ => return None,
    })
}

/// Pops the front while its request number is below a bound.
trait PopBelow<T> {
    fn pop_front_if_below(&mut self, bound: RequestId) -> Option<(RequestId, T)>;
}

impl<T> PopBelow<T> for VecDeque<(RequestId, T)> {
    fn pop_front_if_below(&mut self, bound: RequestId) -> Option<(RequestId, T)> {
        if self.front()?.0 < bound {
            self.pop_front()
        } else {
            None
        }
    }
}

/// A statement the audit cannot name (never prepared, or prepared by SQL).
fn unknown() -> Arc<Statement> {
    Arc::new(Statement {
        sql: "".into(),
        mode: TextMode::Standard,
    })
}

/// The bytes of a C string (up to its terminator, or all of `buf` without one).
fn cbytes(buf: &[u8]) -> &[u8] {
    buf.split(|&b| b == 0).next().unwrap_or_default()
}

fn cstr(buf: &[u8]) -> Option<&str> {
    let end = buf.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&buf[..end]).ok()
}

fn cstrs(buf: &[u8]) -> impl Iterator<Item = &str> {
    buf.split(|&b| b == 0)
        .map(|s| std::str::from_utf8(s).unwrap_or_default())
}

#[cfg(test)]
mod tests;
