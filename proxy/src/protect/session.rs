//! One session's protected-column state, shared by both relay directions: which statement
//! and portal carries which protected parameters and result columns, and the queue of
//! requests the server has yet to answer (so every `DataRow` is read with the right shape,
//! and the proxy's own injected messages are answered to the proxy, not the client).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;

use super::catalog::{self, Catalog};
use super::codec::{self, Ciphers};
use super::copy::CopyStream;
use super::engine::{Layout, ParamSpec, Plan, PlanAction, Protection};
use super::live::LiveProtection;
use super::policy::{Caller, Policy, RoleRefusal};
use super::refusal;
use super::reveal::{Output, RevealCounts};
use super::wire::{self, Bind, Format, Parse};
use crate::analyze::{self, CopyDirection, CopyInfo};
use crate::intercept::Verdict;
use crate::metrics::{CryptoOp, Metrics, ProtectedValueAction, RefusalReason};
use crate::pg_error::PgError;
use crate::protocol::frame::message;
use crate::protocol::types::{backend, frontend};

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
    rows: Option<RowPlan>,
    /// Parameter type OIDs as the client declared them in `Parse` (0: unspecified).
    declared: Vec<u32>,
    /// The text the client prepared, and the rules generation it was planned under: a reload
    /// re-checks the statement at its next Bind.
    query: String,
    generation: u64,
    /// The result columns as the server described them (to apply a new role's actions).
    fields: Option<Vec<wire::Field>>,
}

impl PreparedInfo {
    fn params(&self) -> &[Option<ParamSpec>] {
        self.plan
            .as_deref()
            .map(|p| p.params.as_slice())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct PortalInfo {
    statement: String,
    result_formats: Vec<i16>,
}

/// A request the server will answer, in wire order.
#[derive(Debug)]
enum Expect {
    ParseComplete {
        ours: bool,
    },
    BindComplete {
        ours: bool,
    },
    CloseComplete,
    DescribeStatement {
        name: String,
        ours: bool,
    },
    DescribePortal {
        name: String,
    },
    Execute {
        portal: String,
    },
    /// Our injected Execute of a raising statement: its error goes to the client.
    Refusal,
    /// A simple query; `statement` counts the statements of its text already answered;
    /// `refused` when the proxy sent its refusal in its place.
    Query {
        plan: Option<Arc<Plan>>,
        statement: usize,
        refused: bool,
    },
    Sync,
    /// Our own catalog look-up (after DDL): every answer is ours up to its ReadyForQuery.
    CatalogLookup,
}

/// The result rows arriving now: which columns to decrypt, in which formats.
#[derive(Debug, Clone)]
struct Shape {
    plan: RowPlan,
    formats: Vec<i16>,
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
    shared: Arc<Protection>,
    /// The caller's role.
    policy: Arc<Policy>,
    pub catalog: Catalog,
    layout: Layout,
    ciphers: Ciphers,
    statements: HashMap<String, PreparedInfo>,
    portals: HashMap<String, PortalInfo>,
    pending: VecDeque<Expect>,
    shape: Option<Shape>,
    /// Result rows of the statement answering now (for `max_rows`).
    statement_rows: u64,
    /// After a value failed to decrypt: drop the rest of the results up to ReadyForQuery.
    discarding: bool,
    /// An extended-protocol statement changed the schema: look the catalog up after Sync.
    refresh_at_sync: bool,
    /// Rows of the catalog look-up in flight.
    lookup_rows: Vec<Vec<Option<String>>>,
    lookup_failed: bool,
    /// COPY of a protected table in progress.
    copy: Option<CopyStream>,
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
        let shared = live.current();
        let ciphers = Ciphers::new(shared.keys.clone());
        let layout = shared.layout(&catalog);
        let policy = Arc::new(Policy::for_caller(&shared.rules, &caller));
        ProtectedSession {
            metrics,
            revealed: RevealCounts::default(),
            live,
            generation,
            caller,
            catalog_stale: false,
            shared,
            policy,
            catalog,
            layout,
            ciphers,
            statements: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
            shape: None,
            statement_rows: 0,
            discarding: false,
            refresh_at_sync: false,
            lookup_rows: Vec::new(),
            lookup_failed: false,
            copy: None,
        }
    }

    // ---- client -> server ----

    /// Handles one whole client message.
    /// The caller's role now.
    pub fn role(&self) -> &pgshroud_rules::Role {
        self.policy.role()
    }

    pub fn client_message(&mut self, frame: &[u8]) -> Verdict {
        match frame[0] {
            frontend::QUERY => self.query(frame),
            frontend::PARSE => self.parse(frame),
            frontend::BIND => self.bind(frame),
            frontend::DESCRIBE => {
                let kind = frame.get(5).copied().unwrap_or(b'S');
                let name = cstr(frame.get(6..).unwrap_or_default());
                self.pending.push_back(match kind {
                    b'S' => Expect::DescribeStatement { name, ours: false },
                    _ => Expect::DescribePortal { name },
                });
                Verdict::Forward
            }
            frontend::EXECUTE => {
                let portal = cstr(frame.get(5..).unwrap_or_default());
                self.pending.push_back(Expect::Execute { portal });
                Verdict::Forward
            }
            frontend::CLOSE => {
                let kind = frame.get(5).copied().unwrap_or(b'S');
                let name = cstr(frame.get(6..).unwrap_or_default());
                if kind == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                self.pending.push_back(Expect::CloseComplete);
                Verdict::Forward
            }
            frontend::SYNC => {
                self.pending.push_back(Expect::Sync);
                if std::mem::take(&mut self.refresh_at_sync) {
                    let mut out = BytesMut::from(frame);
                    out.extend_from_slice(&self.lookup_message());
                    return Verdict::Replace(out);
                }
                Verdict::Forward
            }
            frontend::FUNCTION_CALL => {
                self.pending.push_back(Expect::Sync);
                Verdict::Forward
            }
            frontend::COPY_DATA | frontend::COPY_DONE | frontend::COPY_FAIL => {
                self.copy_from_client(frame)
            }
            _ => Verdict::Forward,
        }
    }

    fn plan(&self, sql: &str) -> Arc<Plan> {
        self.shared.plan(sql, &self.layout, &self.catalog)
    }

    /// The role's verdict on a statement that touches no protected table: only its kind
    /// matters, and only roles with a `statements` list look at it.
    fn check_kinds(&self, sql: &str) -> Result<(), PgError> {
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
    fn check_plan(&self, plan: &Plan) -> Result<(), PgError> {
        if let PlanAction::Refused(error) = &plan.action {
            self.metrics.refusal(match error.code {
                analyze::SYNTAX_ERROR => RefusalReason::Unparseable,
                super::engine::UNGUARDED => RefusalReason::Unguarded,
                _ => RefusalReason::UnsupportedOperation,
            });
            return Err(error.clone());
        }
        self.policy
            .check(plan)
            .map_err(|(why, e)| self.refused_by_role(why, e))
    }

    /// `n` protected values were encrypted (or otherwise handled) for this session.
    fn count_values(&self, op: CryptoOp, action: ProtectedValueAction, n: u64) {
        if n > 0 {
            self.metrics.crypto_operations(op, n);
            self.metrics.protected_values(action, n);
        }
    }

    fn refused_by_role(&self, why: RoleRefusal, error: PgError) -> PgError {
        tracing::info!(role = %self.policy.role().name, reason = ?why, "statement refused: {}", error.message);
        self.metrics.refusal(match why {
            RoleRefusal::ColumnDenied => RefusalReason::ColumnDenied,
            RoleRefusal::WriteDenied => RefusalReason::WriteDenied,
            RoleRefusal::StatementKindDenied => RefusalReason::StatementKindDenied,
        });
        error
    }

    /// What audit needs to describe a statement text of this session: its plan when it mentions
    /// a protected table (a cache hit: it was planned on its way in), the rules it ran under
    /// and the caller's role.
    pub fn audit_view(&self, sql: &str) -> AuditView {
        let plan = self.shared.mentions_protected(sql).then(|| self.plan(sql));
        let refused = match &plan {
            Some(p) => matches!(p.action, PlanAction::Refused(_)) || self.policy.check(p).is_err(),
            None => {
                self.policy.restricts_statements()
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

    /// Our catalog look-up, queued behind the client's messages.
    fn lookup_message(&mut self) -> BytesMut {
        self.pending.push_back(Expect::CatalogLookup);
        let mut sql = catalog::lookup_query(self.shared.tables()).into_bytes();
        sql.push(0);
        message(b'Q', &sql)
    }

    fn query(&mut self, frame: &[u8]) -> Verdict {
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

    /// Picks up reloaded rules before a new statement: the role is matched again and, when
    /// the protected tables changed, the catalog is looked up again after this statement.
    fn follow_rules(&mut self) {
        let generation = self.live.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let next = self.live.current();
        if next.tables() != self.shared.tables() {
            self.catalog_stale = true;
        }
        self.shared = next;
        self.layout = self.shared.layout(&self.catalog);
        self.policy = Arc::new(Policy::for_caller(&self.shared.rules, &self.caller));
    }

    /// Sends the refusal in place of the simple query just queued.
    fn refuse_query(&mut self, error: &PgError) -> Verdict {
        if let Some(Expect::Query { refused, .. }) = self.pending.back_mut() {
            *refused = true;
        }
        Verdict::Replace(refusal::refused_query(error))
    }

    /// Whether the `ErrorResponse` arriving now is the proxy's refusal (for metrics).
    pub fn error_is_refusal(&self) -> bool {
        matches!(
            self.pending.front(),
            Some(Expect::Refusal | Expect::Query { refused: true, .. })
        )
    }

    fn query_verdict(&mut self, frame: &[u8]) -> Verdict {
        let sql = cstr(frame.get(5..).unwrap_or_default());
        if !self.shared.mentions_protected(&sql) {
            self.pending.push_back(Expect::Query {
                plan: None,
                statement: 0,
                refused: false,
            });
            if let Err(error) = self.check_kinds(&sql) {
                return self.refuse_query(&error);
            }
            return Verdict::Forward;
        }
        let plan = self.plan(&sql);
        self.pending.push_back(Expect::Query {
            plan: Some(plan.clone()),
            statement: 0,
            refused: false,
        });
        if let Err(error) = self.check_plan(&plan) {
            return self.refuse_query(&error);
        }
        if plan.refreshes_catalog {
            self.catalog_stale = true;
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

    fn parse(&mut self, frame: &[u8]) -> Verdict {
        self.follow_rules();
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        let Ok(mut parse) = Parse::read(frame) else {
            self.pending
                .push_back(Expect::ParseComplete { ours: false });
            return Verdict::Forward;
        };
        self.statements.remove(&parse.name);
        if !self.shared.mentions_protected(&parse.query) {
            if let Err(error) = self.check_kinds(&parse.query) {
                return self.refuse_extended(&error);
            }
            self.pending
                .push_back(Expect::ParseComplete { ours: false });
            let info = PreparedInfo {
                query: parse.query,
                generation: self.generation,
                ..PreparedInfo::default()
            };
            self.statements.insert(parse.name, info);
            return Verdict::Forward;
        }
        let plan = self.plan(&parse.query);
        if let Err(error) = self.check_plan(&plan) {
            return self.refuse_extended(&error);
        }
        if plan.refreshes_catalog {
            self.refresh_at_sync = true;
        }
        // Protected parameters take the server's own type (bytea); the client is told the
        // logical type in ParameterDescription.
        let declared = parse.param_types.clone();
        let query = parse.query.clone();
        for (i, param) in plan.params.iter().enumerate() {
            if param.is_some() {
                if let Some(t) = parse.param_types.get_mut(i) {
                    *t = 0;
                }
            }
        }
        if let PlanAction::Rewrite(sql) = &plan.action {
            parse.query = sql.clone();
        }
        self.statements.insert(
            parse.name.clone(),
            PreparedInfo {
                plan: Some(plan),
                declared,
                query,
                generation: self.generation,
                ..PreparedInfo::default()
            },
        );
        self.pending
            .push_back(Expect::ParseComplete { ours: false });
        self.describe_ours(parse.name.clone(), parse.write())
    }

    /// A prepared statement planned under rules that have since been reloaded is checked again
    /// before it runs: the caller's (maybe new) role must allow it, and the server's copy (its
    /// text and parameter types) must still be right, else the client must prepare it again.
    fn revalidate(&mut self, name: &str) -> Result<(), PgError> {
        let Some(info) = self.statements.get(name) else {
            return Ok(());
        };
        if info.generation == self.generation {
            return Ok(());
        }
        let query = info.query.clone();
        let new_plan = self
            .shared
            .mentions_protected(&query)
            .then(|| self.plan(&query));
        match &new_plan {
            Some(plan) => self.check_plan(plan)?,
            None => self.check_kinds(&query)?,
        }
        if !same_server_statement(info.plan.as_deref(), new_plan.as_deref()) {
            return Err(PgError::error(
                "0A000",
                format!(
                    "prepared statement \"{name}\" was prepared before pgshroud's rules changed what it touches: prepare it again"
                ),
            ));
        }
        let fields = info.fields.clone();
        let rows = fields.map(|f| self.row_plan(&f, new_plan.as_deref().map(|p| (p, 0))));
        if let Some(info) = self.statements.get_mut(name) {
            info.plan = new_plan;
            info.generation = self.generation;
            if rows.is_some() {
                info.rows = rows;
            }
        }
        Ok(())
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

    fn refuse_extended(&mut self, error: &PgError) -> Verdict {
        self.pending.push_back(Expect::ParseComplete { ours: true });
        self.pending.push_back(Expect::BindComplete { ours: true });
        self.pending.push_back(Expect::Refusal);
        Verdict::Replace(refusal::refused_extended(error))
    }

    fn bind(&mut self, frame: &[u8]) -> Verdict {
        let Ok(mut bind) = Bind::read(frame) else {
            self.pending.push_back(Expect::BindComplete { ours: false });
            return Verdict::Forward;
        };
        self.follow_rules();
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        if let Err(error) = self.revalidate(&bind.statement) {
            return self.refuse_extended(&error);
        }
        self.portals.insert(
            bind.portal.clone(),
            PortalInfo {
                statement: bind.statement.clone(),
                result_formats: bind.result_formats.clone(),
            },
        );
        let params: Vec<(usize, ParamSpec, u32)> = match self.statements.get(&bind.statement) {
            Some(info) => info
                .params()
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let declared = info.declared.get(i).copied().unwrap_or(0);
                    s.clone().map(|s| (i, s, declared))
                })
                .collect(),
            None => Vec::new(),
        };
        if params.is_empty() {
            self.pending.push_back(Expect::BindComplete { ours: false });
            return Verdict::Forward;
        }
        bind.expand_param_formats();
        let mut encrypted = 0;
        for (i, param, declared) in params {
            let format = bind.param_format(i);
            let Some(slot) = bind.params.get_mut(i) else {
                continue;
            };
            if let Some(value) = slot.as_ref() {
                let cipher = self.ciphers.get(&param.spec.context);
                let sealed = if param.array {
                    codec::seal_array(&param.spec, cipher, format, value)
                } else {
                    codec::seal_declared(&param.spec, cipher, format, declared, value)
                };
                match sealed {
                    Ok(sealed) => {
                        *slot = Some(sealed);
                        encrypted += 1;
                    }
                    Err(error) => {
                        self.portals.remove(&bind.portal);
                        return self.refuse_extended(&error);
                    }
                }
            }
            if let Some(f) = bind.param_formats.get_mut(i) {
                *f = Format::Binary.code();
            }
        }
        self.count_values(
            CryptoOp::Encrypt,
            ProtectedValueAction::Encrypted,
            encrypted,
        );
        self.pending.push_back(Expect::BindComplete { ours: false });
        Verdict::Replace(bind.write())
    }

    /// Client COPY data for a protected table: protected fields are encrypted.
    fn copy_from_client(&mut self, frame: &[u8]) -> Verdict {
        let Some(copy) = self
            .copy
            .as_mut()
            .filter(|c| c.direction == CopyDirection::From)
        else {
            return Verdict::Forward;
        };
        if copy.failed {
            // Already aborted with CopyFail: the rest of the client's data goes nowhere.
            if frame[0] != frontend::COPY_DATA {
                self.copy = None;
            }
            return Verdict::Drop;
        }
        let result = match frame[0] {
            frontend::COPY_DATA => copy.feed(frame.get(5..).unwrap_or_default(), &mut self.ciphers),
            frontend::COPY_DONE => copy.finish(&mut self.ciphers),
            _ => {
                self.copy = None;
                return Verdict::Forward;
            }
        };
        match result {
            Ok(out) => {
                let mut bytes = BytesMut::new();
                if !out.is_empty() {
                    bytes.extend_from_slice(&message(frontend::COPY_DATA, &out));
                }
                if frame[0] == frontend::COPY_DONE {
                    self.copy = None;
                    bytes.extend_from_slice(frame);
                }
                Verdict::Replace(bytes)
            }
            Err(error) => {
                // Abort the COPY: the server answers CopyFail with an error carrying our
                // message; the client's remaining COPY messages are dropped.
                copy.failed = true;
                let mut body = error.message.clone().into_bytes();
                body.push(0);
                Verdict::Replace(message(frontend::COPY_FAIL, &body))
            }
        }
    }

    // ---- server -> client ----

    /// Handles one whole server message.
    pub fn server_message(&mut self, frame: &[u8]) -> Verdict {
        let kind = frame[0];
        if matches!(self.pending.front(), Some(Expect::CatalogLookup)) {
            return self.lookup_answer(frame);
        }
        if self.discarding && kind != backend::READY_FOR_QUERY {
            return Verdict::Drop;
        }
        match kind {
            backend::PARSE_COMPLETE | backend::BIND_COMPLETE => match self.pending.pop_front() {
                Some(
                    Expect::ParseComplete { ours: true } | Expect::BindComplete { ours: true },
                ) => Verdict::Drop,
                _ => Verdict::Forward,
            },
            backend::CLOSE_COMPLETE => {
                self.pending.pop_front();
                Verdict::Forward
            }
            backend::PARAMETER_DESCRIPTION => self.parameter_description(frame),
            backend::ROW_DESCRIPTION => self.row_description(frame),
            backend::NO_DATA => match self.pending.pop_front() {
                Some(Expect::DescribeStatement { ours: true, .. }) => Verdict::Drop,
                _ => Verdict::Forward,
            },
            backend::DATA_ROW => match self.enforce_row_limit() {
                Some(end) => end,
                None => self.data_row(frame),
            },
            backend::COPY_IN_RESPONSE
            | backend::COPY_OUT_RESPONSE
            | backend::COPY_BOTH_RESPONSE => {
                self.copy_starts(kind);
                Verdict::Forward
            }
            backend::COPY_DATA => self.copy_to_client(frame),
            backend::COPY_DONE => Verdict::Forward,
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED => {
                // A suspended portal goes on: its rows keep counting against max_rows.
                if kind != backend::PORTAL_SUSPENDED {
                    self.statement_rows = 0;
                }
                self.shape = None;
                self.copy = None;
                match self.pending.front_mut() {
                    Some(Expect::Execute { .. }) => {
                        self.pending.pop_front();
                    }
                    Some(Expect::Query { statement, .. }) => *statement += 1,
                    _ => {}
                }
                Verdict::Forward
            }
            backend::ERROR_RESPONSE => {
                self.statement_rows = 0;
                self.shape = None;
                self.copy = None;
                let verdict = if self.error_is_refusal() {
                    Verdict::Replace(refusal::without_server_context(frame))
                } else {
                    Verdict::Forward
                };
                if !matches!(self.pending.front(), Some(Expect::Query { .. })) {
                    // Extended protocol: the server skips to Sync.
                    while let Some(e) = self.pending.front() {
                        if matches!(e, Expect::Sync) {
                            break;
                        }
                        self.pending.pop_front();
                    }
                }
                verdict
            }
            backend::READY_FOR_QUERY => {
                self.revealed.flush(&self.metrics);
                self.statement_rows = 0;
                self.discarding = false;
                self.shape = None;
                self.copy = None;
                while let Some(e) = self.pending.pop_front() {
                    if matches!(e, Expect::Sync | Expect::Query { .. }) {
                        break;
                    }
                }
                if matches!(self.pending.front(), Some(Expect::CatalogLookup)) {
                    // Our catalog look-up follows: the client may send its next statement
                    // only once the new catalog is in place, so it gets the look-up's
                    // ReadyForQuery (same transaction status) instead of this one.
                    return Verdict::Drop;
                }
                Verdict::Forward
            }
            _ => Verdict::Forward,
        }
    }

    /// Answers to our own catalog look-up; asynchronous messages still reach the client.
    fn lookup_answer(&mut self, frame: &[u8]) -> Verdict {
        match frame[0] {
            backend::DATA_ROW => self.lookup_rows.push(catalog::data_row_text(frame)),
            backend::ERROR_RESPONSE => self.lookup_failed = true,
            backend::READY_FOR_QUERY => {
                self.pending.pop_front();
                let rows = std::mem::take(&mut self.lookup_rows);
                if !std::mem::take(&mut self.lookup_failed) {
                    self.catalog = Catalog::from_rows(rows);
                    self.layout = self.shared.layout(&self.catalog);
                    self.shared.report_problems(&self.catalog, &self.metrics);
                }
                // Stands in for the ReadyForQuery held back from the statement before.
                return Verdict::Forward;
            }
            backend::NOTICE_RESPONSE
            | backend::NOTIFICATION_RESPONSE
            | backend::PARAMETER_STATUS => return Verdict::Forward,
            _ => {}
        }
        Verdict::Drop
    }

    /// The plan of the statement whose answers arrive now.
    fn current_plan(&self) -> Option<(Arc<Plan>, usize)> {
        match self.pending.front()? {
            Expect::Query {
                plan, statement, ..
            } => Some((plan.clone()?, *statement)),
            Expect::Execute { portal } => {
                let portal = self.portals.get(portal)?;
                Some((self.statements.get(&portal.statement)?.plan.clone()?, 0))
            }
            _ => None,
        }
    }

    fn parameter_description(&mut self, frame: &[u8]) -> Verdict {
        let Some(Expect::DescribeStatement { name, ours }) = self.pending.front() else {
            return Verdict::Forward;
        };
        if *ours {
            return Verdict::Drop;
        }
        let Some(info) = self.statements.get(name) else {
            return Verdict::Forward;
        };
        if info.params().iter().all(Option::is_none) {
            return Verdict::Forward;
        }
        let Ok(mut types) = wire::read_parameter_description(frame) else {
            return Verdict::Forward;
        };
        for (i, (t, param)) in types.iter_mut().zip(info.params()).enumerate() {
            let Some(param) = param else { continue };
            // PostgreSQL echoes a type the client declared (pgjdbc insists on it: varchar for
            // setString); only undeclared parameters get the column's logical type.
            *t = match info.declared.get(i).copied().unwrap_or(0) {
                0 if param.array => param.spec.logical.array_oid(),
                0 => param.spec.logical.oid(),
                declared => declared,
            };
        }
        Verdict::Replace(wire::write_parameter_description(&types))
    }

    /// The protected column behind each field: by table OID and attribute number, or for
    /// expressions and set operations (no origin) by the analysis of the statement.
    fn row_plan(&self, fields: &[wire::Field], plan: Option<(&Plan, usize)>) -> RowPlan {
        let outputs = plan.and_then(|(p, i)| p.outputs(i));
        let specs = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let spec = if f.table_oid != 0 {
                    self.shared.spec_for(&self.catalog, f.table_oid, f.attnum)?
                } else {
                    let id = outputs?.get(i).copied().flatten()?;
                    self.shared.spec_by_id(id).cloned()?
                };
                Some(self.policy.output(spec, &self.shared.keys))
            })
            .collect();
        Arc::new(specs)
    }

    fn row_description(&mut self, frame: &[u8]) -> Verdict {
        let Ok(mut fields) = wire::read_row_description(frame) else {
            return Verdict::Forward;
        };
        let (plan, ours) = match self.pending.front() {
            Some(Expect::DescribeStatement { name, ours }) => {
                let p = self.statements.get(name).and_then(|s| s.plan.clone());
                (p.map(|p| (p, 0)), *ours)
            }
            Some(Expect::DescribePortal { name }) => {
                let p = self
                    .portals
                    .get(name)
                    .and_then(|portal| self.statements.get(&portal.statement))
                    .and_then(|s| s.plan.clone());
                (p.map(|p| (p, 0)), false)
            }
            _ => (self.current_plan(), false),
        };
        let rows = self.row_plan(&fields, plan.as_ref().map(|(p, i)| (&**p, *i)));
        let mut changed = false;
        for (field, output) in fields.iter_mut().zip(rows.iter()) {
            if let Some(output) = output.as_ref().filter(|o| !o.passes_stored()) {
                field.type_oid = output.type_oid();
                field.type_len = output.type_len();
                field.type_mod = -1;
                changed = true;
            }
        }
        match self.pending.front() {
            Some(Expect::DescribeStatement { name, .. }) => {
                if let Some(s) = self.statements.get_mut(name) {
                    s.rows = Some(rows);
                    s.fields = Some(fields.clone());
                }
                self.pending.pop_front();
            }
            Some(Expect::DescribePortal { .. }) => {
                self.pending.pop_front();
            }
            _ => {
                // A simple query's result (always text format) follows right away.
                self.shape = Some(Shape {
                    plan: rows,
                    formats: Vec::new(),
                });
            }
        }
        if ours {
            Verdict::Drop
        } else if changed {
            Verdict::Replace(wire::write_row_description(&fields))
        } else {
            Verdict::Forward
        }
    }

    fn current_shape(&mut self) -> Option<Shape> {
        if let Some(shape) = &self.shape {
            return Some(shape.clone());
        }
        let Some(Expect::Execute { portal }) = self.pending.front() else {
            return None;
        };
        let portal = self.portals.get(portal)?;
        let plan = self.statements.get(&portal.statement)?.rows.clone()?;
        let shape = Shape {
            plan,
            formats: portal.result_formats.clone(),
        };
        self.shape = Some(shape.clone());
        Some(shape)
    }

    fn data_row(&mut self, frame: &[u8]) -> Verdict {
        let Some(shape) = self.current_shape() else {
            return Verdict::Forward;
        };
        if shape.plan.iter().flatten().all(Output::passes_stored) {
            return Verdict::Forward;
        }
        let Ok(mut values) = wire::read_data_row(frame) else {
            return Verdict::Forward;
        };
        for (i, (value, output)) in values.iter_mut().zip(shape.plan.iter()).enumerate() {
            let (Some(output), Some(stored)) = (output, value.as_ref()) else {
                continue;
            };
            let format = wire::format_of(&shape.formats, i);
            let cipher = self.ciphers.get(&output.spec.context);
            match output.reveal(cipher, stored, format) {
                Ok(shown) => *value = shown,
                Err(error) => return self.fail_results(error),
            }
            self.revealed.count(output.action);
        }
        Verdict::Replace(wire::write_data_row(&values))
    }

    /// Counts a result row against the role's `max_rows`. With `enforce = true`, the row past
    /// the limit ends the session: stopping only the statement would leave the client believing
    /// it failed while the server ran it (and the rest of a pipeline) to the end.
    fn enforce_row_limit(&mut self) -> Option<Verdict> {
        self.statement_rows += 1;
        let role = self.policy.role();
        let max = role.max_rows.filter(|_| role.enforce)?;
        if self.statement_rows <= max {
            return None;
        }
        self.metrics.refusal(RefusalReason::RowLimit);
        Some(Verdict::End(PgError::fatal(
            "54000",
            format!(
                "role {} may read at most {max} rows in one statement: pgshroud stopped the statement and closed the connection (max_rows with enforce = true)",
                role.name
            ),
        )))
    }

    /// A stored value did not decrypt: the client gets the error in place of the row, and
    /// the rest of the results (as after any error) is dropped up to ReadyForQuery.
    fn fail_results(&mut self, error: PgError) -> Verdict {
        self.discarding = true;
        self.copy = None;
        Verdict::Replace(error.to_bytes())
    }

    /// The server starts a COPY: if it is a protected table's, rewrite its data.
    fn copy_starts(&mut self, kind: u8) {
        self.copy = None;
        let Some((plan, index)) = self.current_plan() else {
            return;
        };
        let Some(info) = plan.statements.get(index).and_then(|s| s.copy.clone()) else {
            return;
        };
        let direction = if kind == backend::COPY_IN_RESPONSE {
            CopyDirection::From
        } else {
            CopyDirection::To
        };
        self.copy = self.copy_stream(&info, direction);
    }

    fn copy_stream(&self, info: &CopyInfo, direction: CopyDirection) -> Option<CopyStream> {
        let outputs: Vec<Option<Output>> = info
            .columns
            .iter()
            .map(|c| {
                let spec = c.and_then(|id| self.shared.spec_by_id(id).cloned())?;
                Some(self.policy.output(spec, &self.shared.keys))
            })
            .collect();
        if outputs.iter().all(Option::is_none) {
            return None;
        }
        Some(CopyStream::new(direction, &info.options, outputs))
    }

    /// Server COPY data of a protected table: protected fields are decrypted.
    fn copy_to_client(&mut self, frame: &[u8]) -> Verdict {
        let Some(copy) = self
            .copy
            .as_mut()
            .filter(|c| c.direction == CopyDirection::To)
        else {
            return Verdict::Forward;
        };
        match copy.feed(frame.get(5..).unwrap_or_default(), &mut self.ciphers) {
            Ok(out) if out.is_empty() => Verdict::Drop,
            Ok(out) => Verdict::Replace(message(backend::COPY_DATA, &out)),
            Err(error) => self.fail_results(error),
        }
    }
}

impl std::fmt::Debug for ProtectedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedSession")
            .field("statements", &self.statements.len())
            .field("portals", &self.portals.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// Whether a statement planned as `old` is, as the server holds it, also right under `new`:
/// the same text sent and the same protected parameters.
fn same_server_statement(old: Option<&Plan>, new: Option<&Plan>) -> bool {
    let text = |p: &Plan| match &p.action {
        PlanAction::Rewrite(sql) => Some(sql.clone()),
        _ => None,
    };
    let params = |p: &Plan| {
        p.params
            .iter()
            .map(|s| s.as_ref().map(|s| (s.spec.qualified.clone(), s.array)))
            .collect::<Vec<_>>()
    };
    match (old, new) {
        (None, None) => true,
        (Some(old), Some(new)) => text(old) == text(new) && params(old) == params(new),
        _ => false,
    }
}

fn cstr(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
