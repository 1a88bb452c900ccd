//! One session's protected-column state, shared by both relay directions: which statement
//! and portal carries which protected parameters and result columns (kept in step with the
//! server by `tracker`), and the queue of requests the server has yet to answer (so every
//! `DataRow` is read with the right shape, and the proxy's own injected messages are answered
//! to the proxy, not the client). A message the proxy cannot read is never forwarded.
//!
//! This file holds that state and the two entry points, which hand each message to the part
//! that handles it: client to server in `simple` (Query), `extended` (Parse, Describe, Execute,
//! Close, Sync) and `bind`, after the `checks` every text passes; server to client in `replies`
//! (the queue of answers owed), `results` (descriptions, rows) and `errors`; COPY both ways in
//! `copy`; the catalog look-up in `lookup`.

mod ahead;
mod bind;
mod checks;
mod copy;
mod described;
mod errors;
mod extended;
mod harmless;
#[cfg(test)]
mod harmless_tests;
mod identity;
mod lookup;
mod migrating;
mod plain_bind;
mod reading;
mod replies;
mod results;
mod schema_change;
mod simple;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use super::catalog::Catalog;
use super::codec::Ciphers;
use super::copy::CopyStream;
use super::engine::{Layout, ParamSpec, Plan, Protection};
use super::live::LiveProtection;
use super::policy::{Caller, Policy};
use super::reveal::{Output, RevealCounts};
use super::wire;
use crate::analyze::identity_settings::IdentityTouch;
use crate::ops::metrics::Metrics;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::text_settings::TextSettings;
use crate::protocol::tracker::{self, SqlEffect, Ticket};
use crate::protocol::types::{backend, frontend};
use crate::protocol::verdict::Verdict;
use copy::ends_copy;
use errors::{scrub_fields, NOTICE_FIELDS};

/// Protected result columns of a statement, by output position, with the role's action.
pub type RowPlan = Arc<Vec<Option<Output>>>;

/// A statement as audit sees it (see [`ProtectedSession::audit_view`]).
#[derive(Debug, Clone)]
pub struct AuditView {
    pub plan: Option<Arc<Plan>>,
    /// pgshroud refused the text (the analysis or the caller's role) before PostgreSQL ran it.
    pub refused: bool,
    /// The rules the plan's column ids belong to.
    pub protection: Arc<Protection>,
    pub policy: Arc<Policy>,
}

/// A prepared statement the client created.
#[derive(Debug, Default)]
struct PreparedInfo {
    plan: Option<Arc<Plan>>,
    /// Parameter type OIDs as the client declared them in `Parse` (0: unspecified).
    declared: Vec<u32>,
    /// The text the client prepared (`None` when it is not UTF-8: a session in another
    /// client_encoding), and the session's `plans_epoch` it was planned under: a reload (or a
    /// migrating column's new form) re-checks the statement at its next Bind.
    query: Option<String>,
    generation: u64,
    /// The tenant whose key sealed the plan's literals and chose its compared sites (`None`
    /// when no column is per-tenant, or the session had no tenant): a statement planned under
    /// another tenant than the session's is parsed again before its Bind, like a reload.
    tenant: Option<Arc<str>>,
    /// The result columns as the server described them, and what the role sees of them.
    described: OnceLock<Described>,
    /// `PREPARE`/`DEALLOCATE`/`DISCARD ALL` in the text: applied when an Execute of it
    /// completes.
    effects: Vec<SqlEffect>,
    /// Running it may change client_encoding or standard_conforming_strings.
    unsettling: bool,
    /// Its text may roll back (`ROLLBACK`, `ABORT`, `ROLLBACK TO SAVEPOINT`, or `COMMIT`,
    /// `END`, `PREPARE TRANSACTION` of a failed block; a word gate, confirmed by the grammar at
    /// Bind): bound in a transaction that changed the schema, it may undo what the catalog was
    /// read after.
    rolls_back: bool,
    /// Its text holds the word EXECUTE: a SQL `EXECUTE` runs whatever statement holds the
    /// name when it RUNS, which a Close and Parse between this Parse and its Bind may change,
    /// so the check of [`schema_change`] is made again at each Bind.
    executes: bool,
    /// Its text may be a FETCH: its rows carry protected values the proxy learns of only
    /// from the portal's description (the cursor's column origins), not from the text.
    fetches: bool,
    /// What its text does to the identity settings, as read at Parse (judged at each Bind).
    identity: IdentityTouch,
}

#[derive(Debug)]
struct Described {
    fields: Vec<wire::Field>,
    rows: RowPlan,
}

impl PreparedInfo {
    fn params(&self) -> &[Option<ParamSpec>] {
        self.plan
            .as_deref()
            .map(|p| p.params.as_slice())
            .unwrap_or_default()
    }
}

/// A portal: the statement it was bound from (closing the statement leaves the portal) and
/// the result formats asked for.
#[derive(Debug)]
struct PortalInfo {
    statement: Arc<PreparedInfo>,
    result_formats: Vec<i16>,
    /// What the role sees of its result columns, once the server described the portal.
    described: OnceLock<RowPlan>,
}

type Names = tracker::Tracker<PreparedInfo, PortalInfo>;

/// SQL effects of a statement being run, each with its pending ticket, confirmed by the
/// command tags as the statements complete.
type SqlTickets = VecDeque<(SqlEffect, Ticket)>;

/// A request the server will answer, in wire order.
#[derive(Debug)]
enum Expect {
    ParseComplete {
        ours: bool,
        ticket: Option<Ticket>,
    },
    BindComplete {
        ours: bool,
        ticket: Ticket,
    },
    CloseComplete {
        ours: bool,
        ticket: Ticket,
    },
    DescribeStatement {
        name: String,
        ours: bool,
    },
    DescribePortal {
        name: String,
        ours: bool,
    },
    Execute {
        portal: String,
        effects: SqlTickets,
    },
    /// Our injected Execute of a raising statement: its error goes to the client.
    Refusal,
    /// A simple query; `statement` counts the statements of its text already answered;
    /// `refused` when the proxy sent its refusal in its place.
    Query {
        plan: Option<Arc<Plan>>,
        statement: usize,
        refused: bool,
        /// The unnamed statement and portal end with it.
        ticket: Ticket,
        effects: SqlTickets,
        unsettling: bool,
    },
    /// Sync (or FunctionCall): answered by ReadyForQuery.
    Sync {
        unsettling: bool,
    },
    /// Our own catalog look-up: every answer is ours up to its ReadyForQuery. After a
    /// statement (`ahead: false`) its ReadyForQuery stands in for the statement's, held back;
    /// before a statement (`ahead: true`, the client's message waits for it) it is dropped.
    CatalogLookup {
        ahead: bool,
    },
    /// Our look-up ahead of a statement on a table with a migrating column, holding a lock on
    /// it and ended by Flush (see `ahead`): its answers end at its second CloseComplete.
    LockedLookup {
        closes: u8,
    },
    /// Our Sync after such a look-up failed: answered by a ReadyForQuery of ours.
    AheadSync,
    /// A CopyDone or CopyFail went upstream. No answer of its own: it marks where a COPY
    /// FROM STDIN ends, since the server ignores every Sync sent before it during the copy
    /// (drivers send Sync right after the Execute, before they know it starts a COPY).
    CopyEnd,
}

/// The result rows arriving now: which columns to decrypt, in which formats.
#[derive(Debug, Clone)]
struct Shape {
    plan: RowPlan,
    formats: Vec<i16>,
}

/// What to do with a statement text the proxy may have to read.
enum Text<'a> {
    /// Valid UTF-8.
    Readable(&'a str),
    /// Not UTF-8 (the session's client_encoding is another): forwarded only if the proxy
    /// need not read it.
    Opaque,
}

pub struct ProtectedSession {
    metrics: Arc<Metrics>,
    /// Values returned since the last flush to `metrics` (counted per row, flushed per result).
    revealed: RevealCounts,
    /// The rules in force, reloadable; `shared` is the generation this session follows.
    live: Arc<LiveProtection>,
    generation: u64,
    /// Who is calling (the role is matched again on reload).
    caller: Caller,
    /// The protected tables changed (reload): look the catalog up again.
    catalog_stale: bool,
    /// The rules generation this session follows, whole.
    rules_in_force: Arc<Protection>,
    /// What the session serves: `rules_in_force`, less the migrating columns the database
    /// holds in plaintext now (`migrating`).
    shared: Arc<Protection>,
    /// Those columns, `schema.table.column`, sorted.
    plain_migrating: Vec<String>,
    /// Lower-case names of the tables with a migrating column: a statement that may name one
    /// is preceded by a catalog look-up (another connection may have swapped the column).
    migrating_tables: Vec<String>,
    /// Bumped when what the session serves changes (a reload, a migrating column's new
    /// form): prepared statements planned before are checked again at their next Bind.
    plans_epoch: u64,
    /// A look-up sent ahead of a client's statement, not answered yet: the statement waits.
    ahead_in_flight: bool,
    /// That look-up has answered: the waiting statement goes on, without another.
    looked_up_ahead: bool,
    /// A look-up has answered since the relay last asked (it may release a waiting message).
    lookup_answered: bool,
    /// The client sent extended-protocol messages since its last Sync: a look-up of ours
    /// (with its own Sync) would end the client's implicit transaction, so it waits for Sync.
    in_pipeline: bool,
    /// The last ReadyForQuery said a transaction block is open (or failed).
    in_transaction: bool,
    /// A locked look-up failed: the server skips everything up to the Sync we owe it.
    ahead_needs_sync: bool,
    /// The look-up ahead of the waiting statement failed (a CancelRequest, lock_timeout,
    /// statement_timeout): the statement is answered with this error instead of being sent
    /// on, planned against a catalog the server may no longer have (a migrating column
    /// swapped meanwhile would take its literal in plaintext).
    ahead_failure: Option<PgError>,
    /// The caller's role.
    policy: Arc<Policy>,
    pub catalog: Catalog,
    layout: Layout,
    ciphers: Ciphers,
    /// Prepared statements and portals as the server holds them.
    names: Names,
    pending: VecDeque<Expect>,
    shape: Option<Shape>,
    /// Result rows of the statement answering now (for `max_rows`).
    statement_rows: u64,
    /// An extended-protocol statement changed the schema: look the catalog up after Sync.
    refresh_at_sync: bool,
    /// A statement of the pipeline being sent changes the schema of a protected table:
    /// what follows it before the Sync cannot be planned (see `schema_change`).
    schema_changed_in_pipeline: bool,
    /// SQL-level prepared statements (`PREPARE name`) the server confirmed, by name, and the
    /// `plans_epoch` they were prepared under: EXECUTE with arguments runs only those of the
    /// current epoch (see `schema_change`).
    sql_prepared: std::collections::HashMap<String, u64>,
    /// Rows of the catalog look-up in flight.
    lookup_rows: Vec<Vec<Option<String>>>,
    lookup_failed: bool,
    /// Look-ups sent, numbering their statement and portal names.
    lookups: u64,
    /// COPY of a protected table in progress.
    copy: Option<CopyStream>,
    /// A COPY TO STDOUT in progress (any table): its rows count against `max_rows` as
    /// DataRows do.
    copy_out: Option<copy::CopyOut>,
    /// How the server reads statement text now (from its ParameterStatus reports).
    settings: TextSettings,
    /// Sync points in flight whose statements may change `settings`, and whether the
    /// pipeline being sent has one: text behind them cannot be analysed until they are answered.
    unsettled: u32,
    pipeline_unsettled: bool,
    /// A statement of the open transaction may have changed the search_path (which the
    /// server does not report): a rollback must be followed by another look-up.
    path_changed_in_txn: bool,
    /// The open transaction block has failed (a ReadyForQuery said `E`): its COMMIT or END
    /// is a rollback, which may undo schema or path changes the catalog was read after.
    txn_failed: bool,
    /// `live.catalog_changes()` as this session last followed it.
    seen_catalog_changes: u64,
    /// The open transaction ran DDL: its end is announced to the other sessions.
    ddl_in_txn: bool,
    /// Another session changed the schema and this one's look-up has not answered yet: a
    /// result column of a relation the catalog does not know may be a new view's computed
    /// output, so it is withheld from roles that may not receive some protected column.
    catalog_behind: bool,
    /// Origins (table OIDs) of bytea result columns the catalog does not know: a relation
    /// made around pgshroud since the last look-up may be a view over a protected table, so
    /// the next statement looks up again; `plain_origins` were not one then, and are not
    /// asked about again.
    unknown_origins: std::collections::HashSet<u32>,
    plain_origins: std::collections::HashSet<u32>,
    /// `pgshroud.tenant` as the server holds it (see `identity`).
    tenant: identity::TenantState,
    /// Result descriptions answered before, answered again (see `described`).
    described: described::Descriptions,
    /// Texts the pre-filter found harmless, whose next Parse skips its readings.
    harmless: harmless::HarmlessTexts,
}

impl ProtectedSession {
    /// A session of `caller` under the rules in force, with the catalog of this database.
    pub fn new(
        live: Arc<LiveProtection>,
        caller: Caller,
        catalog: Catalog,
        metrics: Arc<Metrics>,
    ) -> Self {
        let generation = live.generation();
        let live_changes = live.catalog_changes();
        let shared = live.current();
        let layout = shared.layout(&catalog);
        let policy = Arc::new(Policy::for_caller(&shared.rules, &caller));
        let tenant = shared
            .rules
            .tenant_for(&caller.identity())
            .map(str::to_owned);
        let ciphers = shared.session_ciphers(tenant.as_deref());
        let migrating_tables = migrating::migrating_tables(&shared.rules);
        let mut session = ProtectedSession {
            metrics,
            revealed: RevealCounts::default(),
            live,
            generation,
            caller,
            catalog_stale: false,
            rules_in_force: shared.clone(),
            shared,
            plain_migrating: Vec::new(),
            migrating_tables,
            plans_epoch: 0,
            ahead_in_flight: false,
            looked_up_ahead: false,
            lookup_answered: false,
            in_pipeline: false,
            in_transaction: false,
            ahead_needs_sync: false,
            ahead_failure: None,
            policy,
            catalog,
            layout,
            ciphers,
            names: Names::default(),
            pending: VecDeque::new(),
            shape: None,
            statement_rows: 0,
            refresh_at_sync: false,
            schema_changed_in_pipeline: false,
            sql_prepared: std::collections::HashMap::new(),
            lookup_rows: Vec::new(),
            lookup_failed: false,
            lookups: 0,
            copy: None,
            copy_out: None,
            settings: TextSettings::default(),
            unsettled: 0,
            pipeline_unsettled: false,
            path_changed_in_txn: false,
            txn_failed: false,
            seen_catalog_changes: live_changes,
            ddl_in_txn: false,
            catalog_behind: false,
            unknown_origins: Default::default(),
            plain_origins: Default::default(),
            tenant: identity::TenantState::new(tenant),
            described: Default::default(),
            harmless: Default::default(),
        };
        session.serve_migrating(true);
        session
    }

    /// The session's text settings as the server reported them at startup.
    pub fn set_text_settings(&mut self, settings: TextSettings) {
        self.settings = settings;
    }

    /// The caller's role now.
    pub fn role(&self) -> &pgshroud_rules::Role {
        self.policy.role()
    }

    // ---- client -> server ----

    /// Handles one whole client message.
    pub fn client_message(&mut self, frame: &[u8]) -> Verdict {
        let Some(&kind) = frame.first() else {
            return Verdict::End(PgError::protocol_violation("empty message"));
        };
        match kind {
            frontend::PARSE
            | frontend::BIND
            | frontend::DESCRIBE
            | frontend::EXECUTE
            | frontend::CLOSE => self.in_pipeline = true,
            frontend::SYNC => self.in_pipeline = false,
            _ => {}
        }
        // The message held for a look-up that failed (see `ahead.rs`): refused, not sent.
        if let Some(error) = self.ahead_failure.take() {
            match kind {
                frontend::QUERY => {
                    self.push_query(None, false);
                    return self.refuse_query(&error);
                }
                frontend::PARSE | frontend::BIND => return self.refuse_extended(&error),
                _ => self.ahead_failure = Some(error),
            }
        }
        if self.schema_changed_in_pipeline {
            if let Some(refused) = self.after_schema_change(kind, frame) {
                return refused;
            }
        }
        if let Some(error) = extended::name_too_long(kind, frame) {
            return self.refuse_extended(&error);
        }
        match kind {
            frontend::QUERY => self.query(frame),
            frontend::PARSE => self.parse(frame),
            frontend::BIND => self.bind(frame),
            frontend::DESCRIBE => self.describe(frame),
            frontend::EXECUTE => self.execute(frame),
            frontend::CLOSE => self.close(frame),
            frontend::SYNC => self.sync(frame),
            frontend::FUNCTION_CALL => self.function_call(frame),
            frontend::COPY_DATA | frontend::COPY_DONE | frontend::COPY_FAIL => {
                let verdict = self.copy_from_client(frame);
                let ends_copy = match &verdict {
                    Verdict::Forward => kind != frontend::COPY_DATA,
                    Verdict::Replace(out) => ends_copy(out),
                    _ => false,
                };
                if ends_copy {
                    self.pending.push_back(Expect::CopyEnd);
                }
                verdict
            }
            _ => Verdict::Forward,
        }
    }

    // ---- server -> client ----

    /// Handles one whole server message.
    pub fn server_message(&mut self, frame: &[u8]) -> Verdict {
        let Some(&kind) = frame.first() else {
            return server_broke_protocol("empty message");
        };
        match self.pending.front() {
            Some(&Expect::CatalogLookup { ahead }) => return self.lookup_answer(frame, ahead),
            Some(Expect::LockedLookup { .. }) => return self.locked_lookup_answer(frame),
            Some(Expect::AheadSync) => return self.ahead_sync_answer(frame),
            _ => {}
        }
        // Ends of COPYs already answered.
        while matches!(self.pending.front(), Some(Expect::CopyEnd)) {
            self.pending.pop_front();
        }
        match kind {
            backend::PARAMETER_STATUS => {
                self.settings.observe_message(frame);
                Verdict::Forward
            }
            backend::PARSE_COMPLETE => match self.pending.pop_front() {
                Some(Expect::ParseComplete { ours, ticket }) => {
                    if let Some(ticket) = ticket {
                        self.names.confirm(ticket);
                    }
                    drop_if(ours)
                }
                other => self.out_of_step(other, "ParseComplete"),
            },
            backend::BIND_COMPLETE => match self.pending.pop_front() {
                Some(Expect::BindComplete { ours, ticket }) => {
                    self.names.confirm(ticket);
                    drop_if(ours)
                }
                other => self.out_of_step(other, "BindComplete"),
            },
            backend::CLOSE_COMPLETE => match self.pending.pop_front() {
                Some(Expect::CloseComplete { ours, ticket }) => {
                    self.names.confirm(ticket);
                    drop_if(ours)
                }
                other => self.out_of_step(other, "CloseComplete"),
            },
            backend::PARAMETER_DESCRIPTION => self.parameter_description(frame),
            backend::ROW_DESCRIPTION => self.row_description(frame),
            backend::NO_DATA => match self.pending.pop_front() {
                Some(Expect::DescribeStatement { ours, .. }) => drop_if(ours),
                Some(Expect::DescribePortal { ours, .. }) => drop_if(ours),
                other => self.out_of_step(other, "NoData"),
            },
            backend::DATA_ROW => match self.enforce_row_limit() {
                Some(end) => end,
                None => self.data_row(frame),
            },
            backend::COPY_IN_RESPONSE
            | backend::COPY_OUT_RESPONSE
            | backend::COPY_BOTH_RESPONSE => {
                if kind == backend::COPY_IN_RESPONSE {
                    self.syncs_ignored_during_copy();
                }
                self.copy_starts(frame);
                Verdict::Forward
            }
            backend::COPY_DATA => match self.copy_out_row(frame) {
                Some(end) => end,
                None => self.copy_to_client(frame),
            },
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED => {
                self.statement_done(frame);
                Verdict::Forward
            }
            backend::ERROR_RESPONSE => {
                self.identity_error();
                self.error_response(frame)
            }
            // A notice has no key DETAIL to place: its DETAIL is free text too.
            backend::NOTICE_RESPONSE => {
                scrub_fields(frame, &NOTICE_FIELDS).map_or(Verdict::Forward, Verdict::Replace)
            }
            backend::READY_FOR_QUERY => match frame.get(5).and_then(|&s| self.identity_ready(s)) {
                Some(end) => end,
                None => self.ready_for_query(frame),
            },
            _ => Verdict::Forward,
        }
    }
}

impl std::fmt::Debug for ProtectedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedSession")
            .field("names", &self.names.counts())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// Our own requests' answers go nowhere; the client's reach the client.
fn drop_if(ours: bool) -> Verdict {
    if ours {
        Verdict::Drop
    } else {
        Verdict::Forward
    }
}

/// The server sent what the proxy cannot read: the session ends rather than pass it on.
fn server_broke_protocol(what: &str) -> Verdict {
    Verdict::End(PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        format!("the server sent a {what}: pgshroud closed the connection"),
    ))
}

#[cfg(test)]
pub(crate) use testing::test_session;
