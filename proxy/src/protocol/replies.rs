//! The one record of what the server still owes the client: a queue of the requests sent and
//! not yet answered, in wire order. The statement path updates it once per message in each
//! direction; the idle timeout, the statement meter and the audit exchange read it, so a
//! protocol rule (skip to Sync after an error, Syncs ignored during COPY FROM STDIN) lands once.
//!
//! Client messages are recorded as the client sent them and server messages as the client
//! receives them (after the protect path's verdict), so the record is the client's: requests
//! the proxy injects and the replies it drops never appear in it.

use std::collections::VecDeque;

use crate::protocol::types::{backend, frontend};

/// Numbers requests in wire order, so a reader can tie its own data to them.
pub type RequestId = u64;

/// A request the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A simple `Query` (possibly several statements), owed up to its ReadyForQuery.
    Query,
    Parse,
    Bind,
    /// Owed a RowDescription or NoData (a ParameterDescription comes first for a statement).
    Describe,
    /// Owed CommandComplete, EmptyQueryResponse, PortalSuspended or an error.
    Execute,
    Close,
    /// Owed a ReadyForQuery.
    Sync,
    /// Owed FunctionCallResponse (or an error), then ReadyForQuery.
    FunctionCall,
}

impl Request {
    fn of(kind: u8) -> Option<Request> {
        Some(match kind {
            frontend::QUERY => Request::Query,
            frontend::PARSE => Request::Parse,
            frontend::BIND => Request::Bind,
            frontend::DESCRIBE => Request::Describe,
            frontend::EXECUTE => Request::Execute,
            frontend::CLOSE => Request::Close,
            frontend::SYNC => Request::Sync,
            frontend::FUNCTION_CALL => Request::FunctionCall,
            _ => return None,
        })
    }

    /// Requests answered by ReadyForQuery: the server's sync points.
    fn ends_at_ready(self) -> bool {
        matches!(self, Request::Query | Request::Sync | Request::FunctionCall)
    }
}

/// One slot of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Owed(RequestId, Request),
    /// The client's CopyDone or CopyFail, sent before the server said whether the request
    /// before it starts a COPY FROM STDIN. Owed nothing; it bounds the Syncs the server
    /// ignores if it does.
    CopyEnd,
}

/// What one server message does to the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Part of an answer still going on (DataRow, CopyData, the RowDescription of a query).
    Part,
    /// A statement finished: CommandComplete, EmptyQueryResponse, PortalSuspended or
    /// FunctionCallResponse. An Execute is settled by it; a Query or FunctionCall still owes
    /// its ReadyForQuery.
    Finished,
    /// ParseComplete, BindComplete, CloseComplete, the answer to a Describe, ReadyForQuery.
    Complete,
    /// An ErrorResponse answering the request.
    Failed,
    /// Answers no request: ParameterStatus, a notice, a notification, or a reply with nothing
    /// owed.
    Unsolicited,
}

/// How one server message was read against the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The request the message answers (in part or in whole).
    pub request: Option<(RequestId, Request)>,
    pub reply: Reply,
    /// Every request numbered below this is settled: answered, or skipped by the server.
    pub settled_below: RequestId,
}

/// Requests the server still owes answers to, for one session.
#[derive(Debug)]
pub struct Replies {
    queue: VecDeque<Slot>,
    next: RequestId,
    /// An error ended an extended-protocol request and no Sync is queued: the server discards
    /// every message up to the client's next Sync.
    discarding: bool,
    /// The server is in COPY FROM STDIN and the client has not yet ended it: the server
    /// ignores the client's Syncs and Flushes until its CopyDone or CopyFail.
    client_copying: bool,
    /// Transaction status of the last ReadyForQuery: `I`, `T` or `E`.
    tx_status: u8,
    last_request: Option<RequestId>,
    last_answer: Answer,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            queue: VecDeque::new(),
            next: 0,
            discarding: false,
            client_copying: false,
            tx_status: b'I',
            last_request: None,
            last_answer: Answer {
                request: None,
                reply: Reply::Unsolicited,
                settled_below: 0,
            },
        }
    }
}

impl Replies {
    /// Records one client message of type `kind`, as the client sent it. Returns the number
    /// of the request it makes, or `None` when the server owes it nothing (or will discard
    /// or ignore it).
    pub fn client_sent(&mut self, kind: u8) -> Option<RequestId> {
        let id = self.client_request(kind);
        self.last_request = id;
        id
    }

    fn client_request(&mut self, kind: u8) -> Option<RequestId> {
        if self.client_copying {
            if !matches!(kind, frontend::COPY_DATA | frontend::SYNC | frontend::FLUSH) {
                // CopyDone or CopyFail end the COPY; anything else ends it with an error
                // that answers the COPY's request. Neither is owed anything of its own.
                self.client_copying = false;
            }
            return None;
        }
        if self.discarding {
            if kind != frontend::SYNC {
                return None;
            }
            self.discarding = false;
        }
        if matches!(kind, frontend::COPY_DONE | frontend::COPY_FAIL) {
            if !self.queue.is_empty() {
                self.queue.push_back(Slot::CopyEnd);
            }
            return None;
        }
        let request = Request::of(kind)?;
        let id = self.next;
        self.next += 1;
        self.queue.push_back(Slot::Owed(id, request));
        Some(id)
    }

    /// Reads one whole server message, as the client receives it.
    pub fn server_sent(&mut self, frame: &[u8]) -> Answer {
        let answer = match frame.first() {
            Some(&kind) => self.server_reply(kind, frame),
            None => (None, Reply::Unsolicited),
        };
        self.settle();
        self.last_answer = Answer {
            request: answer.0,
            reply: answer.1,
            settled_below: self.settled_below(),
        };
        self.last_answer
    }

    fn server_reply(&mut self, kind: u8, frame: &[u8]) -> (Option<(RequestId, Request)>, Reply) {
        use Request as R;
        if matches!(
            kind,
            backend::PARAMETER_STATUS | backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE
        ) {
            return (None, Reply::Unsolicited);
        }
        if kind == backend::READY_FOR_QUERY {
            // A status-less one ends the session in the statement path.
            self.tx_status = frame.get(5).copied().unwrap_or(b'E');
            self.client_copying = false;
            return self.ready_for_query();
        }
        let Some(front) = self.front() else {
            return (None, Reply::Unsolicited);
        };
        let (_, request) = front;
        let pop = match (kind, request) {
            (backend::PARSE_COMPLETE, R::Parse)
            | (backend::BIND_COMPLETE, R::Bind)
            | (backend::CLOSE_COMPLETE, R::Close)
            | (backend::NO_DATA | backend::ROW_DESCRIPTION, R::Describe) => Reply::Complete,
            (
                backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED,
                R::Execute,
            ) => {
                self.client_copying = false;
                Reply::Finished
            }
            (backend::COMMAND_COMPLETE | backend::EMPTY_QUERY, R::Query)
            | (backend::FUNCTION_CALL_RESPONSE, R::FunctionCall) => {
                self.client_copying = false;
                return (Some(front), Reply::Finished);
            }
            (backend::ERROR_RESPONSE, _) => {
                self.client_copying = false;
                self.failed(front);
                return (Some(front), Reply::Failed);
            }
            (backend::COPY_IN_RESPONSE | backend::COPY_BOTH_RESPONSE, _) => {
                self.copy_in_started();
                return (Some(front), Reply::Part);
            }
            _ => return (Some(front), Reply::Part),
        };
        self.queue.pop_front();
        (Some(front), pop)
    }

    /// ReadyForQuery answers the first sync point; anything queued before it was skipped.
    fn ready_for_query(&mut self) -> (Option<(RequestId, Request)>, Reply) {
        while let Some(slot) = self.queue.pop_front() {
            if let Slot::Owed(id, request) = slot {
                if request.ends_at_ready() {
                    return (Some((id, request)), Reply::Complete);
                }
            }
        }
        (None, Reply::Unsolicited)
    }

    /// An error answers `front`. After an extended-protocol request fails the server skips
    /// everything up to the next Sync; a Query, FunctionCall or Sync still gets its
    /// ReadyForQuery.
    fn failed(&mut self, front: (RequestId, Request)) {
        if front.1.ends_at_ready() {
            return;
        }
        self.queue.pop_front();
        while let Some(slot) = self.queue.front() {
            if matches!(slot, Slot::Owed(_, Request::Sync)) {
                return;
            }
            self.queue.pop_front();
        }
        self.discarding = true;
    }

    /// The server entered COPY FROM STDIN for the front request: it reads the client's
    /// messages up to CopyDone or CopyFail itself, ignoring Syncs among them (tokio-postgres
    /// sends Bind, Execute, Sync, then the data, CopyDone, Sync: one ReadyForQuery only).
    fn copy_in_started(&mut self) {
        let mut at = 1;
        while at < self.queue.len() {
            match self.queue[at] {
                Slot::CopyEnd => {
                    self.queue.remove(at);
                    return;
                }
                Slot::Owed(_, Request::Sync) => {
                    self.queue.remove(at);
                }
                Slot::Owed(..) => at += 1,
            }
        }
        self.client_copying = true;
    }

    /// Drops CopyEnd marks at the front: no request before them started a COPY.
    fn settle(&mut self) {
        while self.queue.front() == Some(&Slot::CopyEnd) {
            self.queue.pop_front();
        }
    }

    fn front(&mut self) -> Option<(RequestId, Request)> {
        self.settle();
        match self.queue.front()? {
            Slot::Owed(id, request) => Some((*id, *request)),
            Slot::CopyEnd => None,
        }
    }

    fn settled_below(&self) -> RequestId {
        self.queue
            .iter()
            .find_map(|slot| match slot {
                Slot::Owed(id, _) => Some(*id),
                Slot::CopyEnd => None,
            })
            .unwrap_or(self.next)
    }

    /// The request the server is answering now.
    pub fn current(&self) -> Option<(RequestId, Request)> {
        self.queue.iter().find_map(|slot| match slot {
            Slot::Owed(id, request) => Some((*id, *request)),
            Slot::CopyEnd => None,
        })
    }

    /// Requests still owed an answer.
    pub fn owed(&self) -> usize {
        self.queue
            .iter()
            .filter(|s| matches!(s, Slot::Owed(..)))
            .count()
    }

    /// The server owes nothing: no statement is running.
    pub fn idle(&self) -> bool {
        self.current().is_none()
    }

    /// Nothing is owed and no transaction is open: a safe point to close.
    pub fn idle_outside_transaction(&self) -> bool {
        self.idle() && self.tx_status == b'I'
    }

    /// What the last client message made (see [`Replies::client_sent`]).
    pub fn last_request(&self) -> Option<RequestId> {
        self.last_request
    }

    /// How the last server message was read (see [`Replies::server_sent`]).
    pub fn last_answer(&self) -> Answer {
        self.last_answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::message;

    const READY: &[u8] = b"Z\0\0\0\x05I";

    fn send(r: &mut Replies, kinds: &[u8]) {
        for &k in kinds {
            r.client_sent(k);
        }
    }

    fn reply(r: &mut Replies, kind: u8) -> Answer {
        match kind {
            backend::READY_FOR_QUERY => r.server_sent(READY),
            _ => r.server_sent(&message(kind, b"")),
        }
    }

    fn requests(r: &Replies) -> Vec<Request> {
        r.queue
            .iter()
            .filter_map(|s| match s {
                Slot::Owed(_, request) => Some(*request),
                Slot::CopyEnd => None,
            })
            .collect()
    }

    #[test]
    fn an_extended_round_trip_settles_each_request_in_order() {
        let mut r = Replies::default();
        send(&mut r, b"PBDES");
        assert_eq!(r.owed(), 5);
        assert_eq!(reply(&mut r, b'1').reply, Reply::Complete);
        assert_eq!(reply(&mut r, b'2').request, Some((1, Request::Bind)));
        assert_eq!(reply(&mut r, b'T').reply, Reply::Complete);
        assert_eq!(reply(&mut r, b'D').reply, Reply::Part);
        let done = reply(&mut r, b'C');
        assert_eq!(done.request, Some((3, Request::Execute)));
        assert_eq!(done.reply, Reply::Finished);
        assert_eq!(done.settled_below, 4);
        assert!(!r.idle());
        assert_eq!(reply(&mut r, b'Z').reply, Reply::Complete);
        assert!(r.idle_outside_transaction());
        assert_eq!(r.last_answer().settled_below, 5);
    }

    #[test]
    fn an_error_mid_pipeline_skips_to_sync() {
        let mut r = Replies::default();
        send(&mut r, b"PBEPBES");
        reply(&mut r, b'1');
        reply(&mut r, b'2');
        let error = reply(&mut r, backend::ERROR_RESPONSE);
        assert_eq!(error.request, Some((2, Request::Execute)));
        assert_eq!(error.reply, Reply::Failed);
        assert_eq!(error.settled_below, 6);
        assert_eq!(requests(&r), vec![Request::Sync]);
        reply(&mut r, b'Z');
        assert!(r.idle());
    }

    #[test]
    fn messages_after_an_error_are_discarded_until_sync() {
        let mut r = Replies::default();
        send(&mut r, b"PBE");
        reply(&mut r, b'1');
        reply(&mut r, backend::ERROR_RESPONSE);
        // Sent after the error, before any Sync: the server discards them.
        assert_eq!(r.client_sent(b'B'), None);
        assert_eq!(r.client_sent(b'E'), None);
        assert_eq!(r.client_sent(b'Q'), None);
        assert!(r.idle());
        assert!(r.client_sent(b'S').is_some());
        assert!(!r.idle());
        reply(&mut r, b'Z');
        assert!(r.idle());
        // Back to normal.
        assert!(r.client_sent(b'Q').is_some());
    }

    #[test]
    fn flush_is_owed_nothing() {
        let mut r = Replies::default();
        send(&mut r, b"PDH");
        assert_eq!(requests(&r), vec![Request::Parse, Request::Describe]);
        reply(&mut r, b'1');
        assert_eq!(reply(&mut r, b't').reply, Reply::Part);
        assert_eq!(reply(&mut r, b'n').reply, Reply::Complete);
        // Answered without a Sync: nothing more is owed.
        assert!(r.idle());
    }

    #[test]
    fn a_simple_query_of_several_statements_is_owed_until_ready() {
        let mut r = Replies::default();
        send(&mut r, b"Q");
        assert_eq!(reply(&mut r, b'T').reply, Reply::Part);
        assert_eq!(reply(&mut r, b'C').reply, Reply::Finished);
        assert_eq!(reply(&mut r, b'C').reply, Reply::Finished);
        let error = reply(&mut r, backend::ERROR_RESPONSE);
        assert_eq!(error.request, Some((0, Request::Query)));
        assert!(!r.idle());
        assert_eq!(reply(&mut r, b'Z').request, Some((0, Request::Query)));
        assert!(r.idle());
    }

    #[test]
    fn a_function_call_is_owed_its_response_then_ready() {
        let mut r = Replies::default();
        send(&mut r, b"F");
        assert_eq!(reply(&mut r, b'V').reply, Reply::Finished);
        assert!(!r.idle());
        reply(&mut r, b'Z');
        assert!(r.idle());
        // An error in a FunctionCall skips nothing after it.
        send(&mut r, b"FQ");
        reply(&mut r, backend::ERROR_RESPONSE);
        reply(&mut r, b'Z');
        assert_eq!(requests(&r), vec![Request::Query]);
    }

    #[test]
    fn copy_in_ignores_the_syncs_sent_during_it() {
        // tokio-postgres `copy_in`: Bind, Execute, Sync, data, CopyDone, Sync.
        let mut r = Replies::default();
        send(&mut r, b"BES");
        reply(&mut r, b'2');
        assert_eq!(reply(&mut r, b'G').reply, Reply::Part);
        send(&mut r, b"ddcS");
        assert_eq!(requests(&r), vec![Request::Execute, Request::Sync]);
        assert_eq!(reply(&mut r, b'C').reply, Reply::Finished);
        reply(&mut r, b'Z');
        assert!(r.idle(), "{:?}", r.queue);
    }

    #[test]
    fn copy_in_sent_whole_before_the_server_answers() {
        let mut r = Replies::default();
        send(&mut r, b"BESddcS");
        reply(&mut r, b'2');
        reply(&mut r, b'G');
        assert_eq!(requests(&r), vec![Request::Execute, Request::Sync]);
        reply(&mut r, b'C');
        reply(&mut r, b'Z');
        assert!(r.idle());
    }

    #[test]
    fn a_failed_copy_in_skips_to_the_sync_after_it() {
        let mut r = Replies::default();
        send(&mut r, b"BES");
        reply(&mut r, b'2');
        reply(&mut r, b'G');
        send(&mut r, b"d");
        reply(&mut r, backend::ERROR_RESPONSE);
        // The error ended the COPY: the client's next Sync counts.
        send(&mut r, b"fS");
        assert_eq!(requests(&r), vec![Request::Sync]);
        reply(&mut r, b'Z');
        assert!(r.idle());
    }

    #[test]
    fn copy_in_by_simple_query() {
        let mut r = Replies::default();
        send(&mut r, b"Q");
        reply(&mut r, b'G');
        send(&mut r, b"dSHc");
        assert_eq!(requests(&r), vec![Request::Query]);
        reply(&mut r, b'C');
        reply(&mut r, b'Z');
        assert!(r.idle());
    }

    #[test]
    fn copy_out_is_part_of_its_request() {
        let mut r = Replies::default();
        send(&mut r, b"BES");
        reply(&mut r, b'2');
        for kind in [b'H', b'd', b'd', b'c'] {
            assert_eq!(reply(&mut r, kind).reply, Reply::Part);
        }
        reply(&mut r, b'C');
        assert_eq!(requests(&r), vec![Request::Sync]);
        reply(&mut r, b'Z');
        assert!(r.idle());
    }

    #[test]
    fn a_copy_done_with_no_copy_is_owed_nothing() {
        let mut r = Replies::default();
        send(&mut r, b"c");
        assert!(r.idle());
        send(&mut r, b"BEcS");
        reply(&mut r, b'2');
        reply(&mut r, b'C');
        reply(&mut r, b'Z');
        assert!(r.idle());
    }

    #[test]
    fn asynchronous_messages_answer_nothing() {
        let mut r = Replies::default();
        for kind in [b'S', b'N', b'A', b'C', b'1'] {
            assert_eq!(reply(&mut r, kind).reply, Reply::Unsolicited);
        }
        send(&mut r, b"Q");
        assert_eq!(reply(&mut r, b'N').reply, Reply::Unsolicited);
        assert!(!r.idle());
    }

    #[test]
    fn ready_for_query_records_the_transaction_status() {
        let mut r = Replies::default();
        send(&mut r, b"Q");
        r.server_sent(b"Z\0\0\0\x05T");
        assert!(r.idle());
        assert!(!r.idle_outside_transaction());
    }

    #[test]
    fn short_messages_do_not_panic() {
        let mut r = Replies::default();
        send(&mut r, b"QS");
        for m in [&b""[..], b"Z", b"E", b"C"] {
            r.server_sent(m);
        }
    }
}
