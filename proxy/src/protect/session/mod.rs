//! One session's protected-column state, shared by both relay directions: which statement
//! and portal carries which protected parameters and result columns (kept in step with the
//! server by `tracker`), and the queue of requests the server has yet to answer (so every
//! `DataRow` is read with the right shape, and the proxy's own injected messages are answered
//! to the proxy, not the client). A message the proxy cannot read is never forwarded.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use pgshroud_rules::{Action, LogicalType};

use super::catalog::{self, Catalog};
use super::codec::{self, Ciphers};
use super::copy::CopyStream;
use super::detail::{self, Detail, KeyColumns};
use super::engine::{Layout, ParamSpec, Plan, PlanAction, Protection};
use super::live::LiveProtection;
use super::policy::{Caller, Policy, RoleRefusal};
use super::refusal;
use super::reveal::{Output, RevealCounts};
use super::wire::{self, Bind, Format, Parse, Target, Unreadable};
use crate::analyze::{self, CopyDirection, CopyInfo};
use crate::ops::metrics::{CryptoOp, Metrics, ProtectedValueAction, RefusalReason};
use crate::protocol::error::{sqlstate, PgError, Severity};
use crate::protocol::fields;
use crate::protocol::frame::message;
use crate::protocol::text_settings::{self as settings, TextMode, TextSettings};
use crate::protocol::tracker::{self, Effect, Held, SqlEffect, Ticket};
use crate::protocol::types::{backend, frontend};
use crate::protocol::verdict::Verdict;

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
    /// client_encoding), and the rules generation it was planned under: a reload re-checks the
    /// statement at its next Bind.
    query: Option<String>,
    generation: u64,
    /// The result columns as the server described them, and what the role sees of them.
    described: OnceLock<Described>,
    /// `PREPARE`/`DEALLOCATE`/`DISCARD ALL` in the text: applied when an Execute of it
    /// completes.
    effects: Vec<SqlEffect>,
    /// Running it may change client_encoding or standard_conforming_strings.
    unsettling: bool,
    /// Its text may be a FETCH: its rows carry protected values the proxy learns of only
    /// from the portal's description (the cursor's column origins), not from the text.
    fetches: bool,
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
    /// Our own catalog look-up (after DDL): every answer is ours up to its ReadyForQuery.
    CatalogLookup,
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
    shared: Arc<Protection>,
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
    /// Rows of the catalog look-up in flight.
    lookup_rows: Vec<Vec<Option<String>>>,
    lookup_failed: bool,
    /// Look-ups sent, numbering their statement and portal names.
    lookups: u64,
    /// COPY of a protected table in progress.
    copy: Option<CopyStream>,
    /// How the server reads statement text now (from its ParameterStatus reports).
    settings: TextSettings,
    /// Sync points in flight whose statements may change `settings`, and whether the
    /// pipeline being sent has one: text behind them cannot be analysed until they are answered.
    unsettled: u32,
    pipeline_unsettled: bool,
    /// A statement of the open transaction may have changed the search_path (which the
    /// server does not report): a rollback must be followed by another look-up.
    path_changed_in_txn: bool,
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
            names: Names::default(),
            pending: VecDeque::new(),
            shape: None,
            statement_rows: 0,
            refresh_at_sync: false,
            lookup_rows: Vec::new(),
            lookup_failed: false,
            lookups: 0,
            copy: None,
            settings: TextSettings::default(),
            unsettled: 0,
            pipeline_unsettled: false,
            path_changed_in_txn: false,
        }
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
            frontend::QUERY => self.query(frame),
            frontend::PARSE => self.parse(frame),
            frontend::BIND => self.bind(frame),
            frontend::DESCRIBE => self.describe(frame),
            frontend::EXECUTE => self.execute(frame),
            frontend::CLOSE => self.close(frame),
            frontend::SYNC => self.sync(frame),
            frontend::FUNCTION_CALL => self.function_call(),
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

    /// A message the proxy cannot read: a malformed one ends the session as PostgreSQL ends
    /// it (FATAL 08P01); one with a name that is not UTF-8 is refused (22021).
    fn unreadable(&mut self, error: Unreadable) -> Verdict {
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

    fn describe(&mut self, frame: &[u8]) -> Verdict {
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

    fn execute(&mut self, frame: &[u8]) -> Verdict {
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

    fn close(&mut self, frame: &[u8]) -> Verdict {
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

    fn sync(&mut self, frame: &[u8]) -> Verdict {
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

    /// A FunctionCall runs a function by OID, outside any text the proxy could read: a role
    /// with a `statements` list must list `function_call` for it.
    fn function_call(&mut self) -> Verdict {
        let role = self.policy.role();
        if !self.policy.allows_function_call() {
            let error = PgError::error(
                super::policy::INSUFFICIENT_PRIVILEGE,
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

    fn plan(&self, sql: &str) -> Arc<Plan> {
        self.shared.plan(sql, &self.layout, &self.catalog)
    }

    /// The role's verdict on a statement that touches no protected table: its kind (for roles
    /// with a `statements` list) and what it hands server functions that run SQL text.
    fn check_kinds(&self, sql: &str) -> Result<(), PgError> {
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
    fn check_plan(&mut self, sql: &str, plan: &Plan) -> Result<(), PgError> {
        if let PlanAction::Refused(error) = &plan.action {
            self.metrics.refusal(match error.code {
                analyze::SYNTAX_ERROR => RefusalReason::Unparseable,
                super::engine::UNGUARDED => {
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
        let plan = self.shared.mentions_protected(sql).then(|| self.plan(sql));
        let refused = match &plan {
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

    /// Our catalog look-up, queued behind the client's messages. It runs in the extended
    /// protocol under a statement and portal name of its own, closed after use: a simple
    /// Query would drop the client's unnamed prepared statement (asyncpg binds it again after
    /// a Sync), and the unnamed portal is the client's too. A look-up that fails part-way may
    /// leave its statement behind; the next one uses the next number.
    fn lookup_message(&mut self) -> BytesMut {
        self.pending.push_back(Expect::CatalogLookup);
        self.lookups += 1;
        let name = format!("pgshroud.catalog.{}\0", self.lookups);
        let sql = catalog::lookup_query(self.shared.tables());
        let mut parse = Vec::with_capacity(name.len() + sql.len() + 3);
        parse.extend_from_slice(name.as_bytes());
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]); // end of text, no parameter types
                                             // Portal and statement names, no parameter formats or values, text results.
        let mut bind = Vec::with_capacity(2 * name.len() + 6);
        bind.extend_from_slice(name.as_bytes());
        bind.extend_from_slice(name.as_bytes());
        bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut execute = name.as_bytes().to_vec();
        execute.extend_from_slice(&[0, 0, 0, 0]); // all rows
        let mut out = message(frontend::PARSE, &parse);
        out.extend_from_slice(&message(frontend::BIND, &bind));
        out.extend_from_slice(&message(frontend::EXECUTE, &execute));
        for target in [b'P', b'S'] {
            let mut close = vec![target];
            close.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&message(frontend::CLOSE, &close));
        }
        out.extend_from_slice(&message(frontend::SYNC, &[]));
        out
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

    /// Queues a simple query's answers.
    fn push_query(&mut self, plan: Option<Arc<Plan>>, unsettling: bool) {
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
        let effects = tracker::sql_effects(sql);
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

    /// The server does not report search_path changes: after a text that may change it (or
    /// roll such a change back) the catalog, which holds the path, is looked up again. Returns
    /// whether the text may change the path (text behind it waits for its answer).
    fn follow_search_path(&mut self, sql: &[u8]) -> bool {
        if settings::may_change_search_path(sql) {
            self.catalog_stale = true;
            self.path_changed_in_txn = true;
            return true;
        }
        if self.path_changed_in_txn && settings::may_roll_back(sql) {
            self.catalog_stale = true;
            return true;
        }
        false
    }

    /// Whether the proxy must read this text: it mentions a protected table, or the role
    /// checks statement kinds.
    fn must_read(&self, sql: &str) -> bool {
        self.shared.mentions_protected(sql)
            || self.policy.restricts_statements()
            || self.policy.reads_sql_text(sql)
    }

    /// Reads a statement text, refusing what cannot be read exactly as the server reads it:
    /// invalid UTF-8 in a UTF8 session (PostgreSQL refuses it too), text the proxy must
    /// analyse under other settings, or while settings may be changing.
    fn statement_text<'a>(&self, bytes: &'a [u8]) -> Result<Text<'a>, PgError> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) if self.settings.mode() == TextMode::OtherEncoding => {
                // The pre-filter's names are ASCII, which every client encoding keeps.
                if self.must_read(&String::from_utf8_lossy(bytes)) {
                    self.settings.check_analysable()?;
                }
                return Ok(Text::Opaque);
            }
            Err(_) => return settings::utf8_text(bytes).map(|_| Text::Opaque),
        };
        if self.must_read(text) {
            self.settings.check_analysable()?;
            if self.unsettled > 0 || self.pipeline_unsettled {
                return Err(PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "pgshroud cannot analyse this statement before the server has answered an earlier one that may change client_encoding or standard_conforming_strings: wait for its result, then send this one",
                ));
            }
        }
        Ok(Text::Readable(text))
    }

    fn query_verdict(&mut self, frame: &[u8]) -> Verdict {
        // A Query is one C string; PostgreSQL ends the session over anything else.
        let body = frame.get(5..).unwrap_or_default();
        let Some((&0, bytes)) = body.split_last().filter(|(_, t)| !t.contains(&0)) else {
            return Verdict::End(PgError::protocol_violation(
                "malformed Query message: pgshroud does not pass on messages it cannot read",
            ));
        };
        let unsettling =
            self.follow_search_path(bytes) || settings::may_change_text_settings(bytes);
        let sql = match self.statement_text(bytes) {
            Ok(Text::Readable(sql)) => sql,
            Ok(Text::Opaque) => {
                self.push_query(None, unsettling);
                return Verdict::Forward;
            }
            Err(error) => {
                self.push_query(None, false);
                return self.refuse_query(&error);
            }
        };
        if !self.shared.mentions_protected(sql) {
            self.push_query(None, unsettling);
            if let Err(error) = self.check_kinds(sql) {
                return self.refuse_query(&error);
            }
            self.query_effects(sql);
            return Verdict::Forward;
        }
        let plan = self.plan(sql);
        self.push_query(Some(plan.clone()), unsettling);
        if let Err(error) = self.check_plan(sql, &plan) {
            return self.refuse_query(&error);
        }
        self.query_effects(sql);
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
        let mut parse = match Parse::read(frame) {
            Ok(p) => p,
            Err(e) => return self.unreadable(e),
        };
        // PostgreSQL refuses a Parse of a name in use and keeps the old statement. The proxy
        // refuses it itself, so what the server holds never depends on whether earlier,
        // still unanswered messages succeed.
        if !parse.name.is_empty() && self.names.statement(&parse.name).is_some() {
            return self.refuse_extended(&PgError::error(
                "42P05",
                format!("prepared statement \"{}\" already exists", parse.name),
            ));
        }
        let unsettling = self.follow_search_path(&parse.query)
            || settings::may_change_text_settings(&parse.query);
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        let (plan, query) = match self.statement_text(&parse.query) {
            Ok(Text::Opaque) => (None, None),
            Ok(Text::Readable(sql)) if !self.shared.mentions_protected(sql) => {
                if let Err(error) = self.check_kinds(sql) {
                    return self.refuse_extended(&error);
                }
                (None, Some(sql.to_owned()))
            }
            Ok(Text::Readable(sql)) => {
                let plan = self.plan(sql);
                if let Err(error) = self.check_plan(sql, &plan) {
                    return self.refuse_extended(&error);
                }
                (Some(plan), Some(sql.to_owned()))
            }
            Err(error) => return self.refuse_extended(&error),
        };
        let declared = parse.param_types.clone();
        let mut out = BytesMut::new();
        if self.names.statement_in_doubt(&parse.name) {
            // A Close of this name is unanswered and may yet be skipped: close it again right
            // before the Parse, so both run or neither does.
            out.extend_from_slice(&close_statement(&parse.name));
            let ticket = self.names.sent(Effect::CloseStatement(parse.name.clone()));
            self.pending
                .push_back(Expect::CloseComplete { ours: true, ticket });
        }
        if let Some(plan) = &plan {
            if plan.refreshes_catalog {
                self.refresh_at_sync = true;
            }
            // Protected parameters take the server's own type (bytea); the client is told
            // the logical type in ParameterDescription.
            for (i, param) in plan.params.iter().enumerate() {
                if param.is_some() {
                    if let Some(t) = parse.param_types.get_mut(i) {
                        *t = 0;
                    }
                }
            }
            if let PlanAction::Rewrite(sql) = &plan.action {
                parse.query = sql.clone().into_bytes();
            }
        }
        let effects = query
            .as_deref()
            .map(tracker::sql_effects)
            .unwrap_or_default();
        let info = Arc::new(PreparedInfo {
            plan: plan.clone(),
            declared,
            query,
            generation: self.generation,
            described: OnceLock::new(),
            effects,
            unsettling,
            fetches: may_fetch(&parse.query),
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

    /// A prepared statement planned under rules that have since been reloaded is checked again
    /// before it runs: the caller's (maybe new) role must allow it, and the server's copy (its
    /// text and parameter types) must still be right, else the client must prepare it again.
    fn revalidate(
        &mut self,
        name: &str,
        info: Arc<PreparedInfo>,
    ) -> Result<Arc<PreparedInfo>, PgError> {
        if info.generation == self.generation {
            return Ok(info);
        }
        let new_plan = match &info.query {
            Some(query) => {
                let plan = self
                    .shared
                    .mentions_protected(query)
                    .then(|| self.plan(query));
                match &plan {
                    Some(plan) => self.check_plan(query, plan)?,
                    None => self.check_kinds(query)?,
                }
                plan
            }
            None => None,
        };
        if !same_server_statement(info.plan.as_deref(), new_plan.as_deref()) {
            return Err(PgError::error(
                "0A000",
                format!(
                    "prepared statement \"{name}\" was prepared before pgshroud's rules changed what it touches: prepare it again"
                ),
            ));
        }
        let described = OnceLock::new();
        if let Some(old) = info.described.get() {
            let rows = self.row_plan(&old.fields, new_plan.as_deref().map(|p| (p, 0)));
            let _ = described.set(Described {
                fields: old.fields.clone(),
                rows,
            });
        }
        let fresh = Arc::new(PreparedInfo {
            plan: new_plan,
            declared: info.declared.clone(),
            query: info.query.clone(),
            generation: self.generation,
            described,
            effects: info.effects.clone(),
            unsettling: info.unsettling,
            fetches: info.fetches,
        });
        self.names.refresh(&info, fresh.clone());
        Ok(fresh)
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
    fn refuse_extended(&mut self, error: &PgError) -> Verdict {
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

    /// The statement a Bind names, as the server will hold it when the Bind arrives.
    fn bound_statement(&mut self, bind: &Bind) -> Result<Arc<PreparedInfo>, PgError> {
        let info = match self.names.statement(&bind.statement) {
            Some(Held::Known(info)) => info.clone(),
            Some(Held::Foreign) => {
                return Err(PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "prepared statement \"{}\" was not prepared with the protocol's Parse (SQL PREPARE, or a statement pgshroud refused): pgshroud binds only statements it has read",
                        bind.statement
                    ),
                ))
            }
            None if bind.statement.is_empty() => {
                return Err(PgError::error(
                    "26000",
                    "unnamed prepared statement does not exist",
                ))
            }
            None => {
                return Err(PgError::error(
                    "26000",
                    format!("prepared statement \"{}\" does not exist", bind.statement),
                ))
            }
        };
        if !bind.portal.is_empty() && self.names.portal(&bind.portal).is_some() {
            return Err(PgError::error(
                "42P03",
                format!("cursor \"{}\" already exists", bind.portal),
            ));
        }
        self.revalidate(&bind.statement, info)
    }

    fn bind(&mut self, frame: &[u8]) -> Verdict {
        let mut bind = match Bind::read(frame) {
            Ok(b) => b,
            Err(e) => return self.unreadable(e),
        };
        self.follow_rules();
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        let info = match self.bound_statement(&bind) {
            Ok(info) => info,
            Err(error) => return self.refuse_extended(&error),
        };
        let params: Vec<(usize, ParamSpec, u32)> = info
            .params()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let declared = info.declared.get(i).copied().unwrap_or(0);
                s.clone().map(|s| (i, s, declared))
            })
            .collect();
        let portal = Arc::new(PortalInfo {
            statement: info,
            result_formats: bind.result_formats.clone(),
            described: OnceLock::new(),
        });
        if params.is_empty() {
            let ticket = self.names.sent(Effect::Bind(bind.portal, portal));
            self.pending.push_back(Expect::BindComplete {
                ours: false,
                ticket,
            });
            return Verdict::Forward;
        }
        if self.settings.mode() == TextMode::OtherEncoding {
            // Text values in another encoding would be encrypted as bytes the analyser's
            // UTF-8 reading never sees.
            if let Err(error) = self.settings.check_analysable() {
                return self.refuse_extended(&error);
            }
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
                    Err(error) => return self.refuse_extended(&error),
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
        let ticket = self.names.sent(Effect::Bind(bind.portal.clone(), portal));
        self.pending.push_back(Expect::BindComplete {
            ours: false,
            ticket,
        });
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
        let Some(&kind) = frame.first() else {
            return server_broke_protocol("empty message");
        };
        if matches!(self.pending.front(), Some(Expect::CatalogLookup)) {
            return self.lookup_answer(frame);
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
                self.copy_starts(kind);
                Verdict::Forward
            }
            backend::COPY_DATA => self.copy_to_client(frame),
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED => {
                self.statement_done(frame);
                Verdict::Forward
            }
            backend::ERROR_RESPONSE => self.error_response(frame),
            // A notice has no key DETAIL to place: its DETAIL is free text too.
            backend::NOTICE_RESPONSE => {
                scrub_fields(frame, &NOTICE_FIELDS).map_or(Verdict::Forward, Verdict::Replace)
            }
            backend::READY_FOR_QUERY => self.ready_for_query(frame),
            _ => Verdict::Forward,
        }
    }

    /// The server is in COPY FROM STDIN for the request in front: it ignores every Sync sent
    /// from there to the copy's end, so none of them will be answered.
    fn syncs_ignored_during_copy(&mut self) {
        let end = self
            .pending
            .iter()
            .position(|e| matches!(e, Expect::CopyEnd))
            .unwrap_or(self.pending.len());
        let mut at = 1;
        while at < end.min(self.pending.len()) {
            if matches!(self.pending[at], Expect::Sync { .. }) {
                if let Some(ignored) = self.pending.remove(at) {
                    self.forget(ignored);
                }
                return self.syncs_ignored_during_copy();
            }
            at += 1;
        }
    }

    /// A reply that answers nothing the proxy expects: it no longer knows what the server
    /// holds, so the session ends rather than guess.
    fn out_of_step(&mut self, expected: Option<Expect>, got: &str) -> Verdict {
        tracing::warn!(
            ?expected,
            "server sent {got} out of step with pgshroud's requests"
        );
        Verdict::End(PgError::fatal(
            "XX000",
            format!("pgshroud lost track of the session (the server sent {got} where it expected something else): the connection is closed"),
        ))
    }

    /// CommandComplete, EmptyQueryResponse or PortalSuspended: a statement (or an Execute's
    /// batch of rows) is done.
    fn statement_done(&mut self, frame: &[u8]) {
        let kind = frame[0];
        // A suspended portal goes on: its rows keep counting against max_rows.
        if kind != backend::PORTAL_SUSPENDED {
            self.statement_rows = 0;
        }
        self.shape = None;
        self.copy = None;
        if kind == backend::COMMAND_COMPLETE {
            let tag = frame.get(5..).unwrap_or_default();
            let tag = tag.split(|&b| b == 0).next().unwrap_or_default();
            self.sql_effect_done(&String::from_utf8_lossy(tag));
        }
        match self.pending.front_mut() {
            Some(Expect::Execute { .. }) => {
                if let Some(done) = self.pending.pop_front() {
                    self.forget(done);
                }
            }
            Some(Expect::Query { statement, .. }) => *statement += 1,
            _ => {}
        }
    }

    /// A completed `PREPARE`/`DEALLOCATE`/`DISCARD ALL` confirms the next recorded effect of
    /// the statement running now; one the proxy did not recognise makes it forget every
    /// statement (a Bind of one is then refused, never sent with the wrong plan).
    fn sql_effect_done(&mut self, tag: &str) {
        if !tracker::SqlEffect::is_tracked_tag(tag) {
            return;
        }
        let effects = match self.pending.front_mut() {
            Some(Expect::Execute { effects, .. } | Expect::Query { effects, .. }) => effects,
            _ => return self.unrecognised_effect(tag),
        };
        match effects.pop_front() {
            Some((effect, ticket)) if effect.tag() == tag => self.names.confirm(ticket),
            Some((_, ticket)) => {
                self.names.skipped(ticket);
                self.unrecognised_effect(tag);
            }
            None => self.unrecognised_effect(tag),
        }
    }

    fn unrecognised_effect(&mut self, tag: &str) {
        if let Some(effect) = tracker::SqlEffect::unrecognised(tag) {
            self.names.apply(effect);
        }
    }

    fn error_response(&mut self, frame: &[u8]) -> Verdict {
        self.statement_rows = 0;
        self.shape = None;
        self.copy = None;
        let verdict = if self.error_is_refusal() {
            Verdict::Replace(refusal::without_server_context(frame))
        } else {
            match self.error_detail(frame) {
                Verdict::Replace(detailed) => {
                    let scrubbed = scrub_fields(&detailed, &detail::FREE_TEXT_FIELDS);
                    Verdict::Replace(scrubbed.unwrap_or(detailed))
                }
                _ => scrub_fields(frame, &detail::FREE_TEXT_FIELDS)
                    .map_or(Verdict::Forward, Verdict::Replace),
            }
        };
        match self.pending.front() {
            // A simple query (or FunctionCall) ends at its ReadyForQuery; its later statements
            // do not run, and their effects are dropped there.
            Some(Expect::Query { .. } | Expect::Sync { .. }) | None => {}
            // Extended protocol: the server skips every message up to Sync, and with them
            // their effects.
            Some(_) => {
                while let Some(e) = self.pending.front() {
                    if matches!(e, Expect::Sync { .. } | Expect::CatalogLookup) {
                        break;
                    }
                    if let Some(skipped) = self.pending.pop_front() {
                        self.forget(skipped);
                    }
                }
            }
        }
        verdict
    }

    /// A server error's DETAIL as the caller's role may see the protected values in it.
    fn error_detail(&mut self, frame: &[u8]) -> Verdict {
        let Some(raw) = fields::field_bytes(frame, b'D') else {
            return Verdict::Forward;
        };
        let rewritten = match std::str::from_utf8(raw) {
            Ok(text) => {
                let mut columns = ErrorColumns {
                    shared: &self.shared,
                    policy: &self.policy,
                    ciphers: &mut self.ciphers,
                    revealed: &mut self.revealed,
                    schema: fields::field(frame, b's').unwrap_or_default(),
                    table: fields::field(frame, b't').unwrap_or_default(),
                };
                detail::rewrite(text, &mut columns)
            }
            // Another client_encoding: nothing in it can be placed, only dropped.
            Err(_) => detail::rewrite(&String::from_utf8_lossy(raw), &mut NoColumns),
        };
        match rewritten {
            Detail::Keep => Verdict::Forward,
            Detail::Replace(text) => Verdict::Replace(fields::with_field(frame, b'D', Some(&text))),
            Detail::Drop => Verdict::Replace(fields::with_field(frame, b'D', None)),
        }
    }

    /// Drops an answered or skipped request: effects it has not confirmed did not happen.
    fn forget(&mut self, expect: Expect) {
        match expect {
            Expect::ParseComplete {
                ticket: Some(ticket),
                ..
            }
            | Expect::BindComplete { ticket, .. }
            | Expect::CloseComplete { ticket, .. } => self.names.skipped(ticket),
            Expect::Execute { effects, .. } => {
                for (_, ticket) in effects {
                    self.names.skipped(ticket);
                }
            }
            Expect::Query {
                ticket,
                effects,
                unsettling,
                ..
            } => {
                // Skipped after an extended-protocol error: it never ran.
                self.names.skipped(ticket);
                for (_, ticket) in effects {
                    self.names.skipped(ticket);
                }
                self.unsettled = self.unsettled.saturating_sub(u32::from(unsettling));
            }
            Expect::Sync { unsettling } => {
                self.unsettled = self.unsettled.saturating_sub(u32::from(unsettling))
            }
            _ => {}
        }
    }

    fn ready_for_query(&mut self, frame: &[u8]) -> Verdict {
        let Some(&status) = frame.get(5) else {
            return server_broke_protocol("ReadyForQuery without a status");
        };
        self.revealed.flush(&self.metrics);
        self.statement_rows = 0;
        self.shape = None;
        self.copy = None;
        while let Some(e) = self.pending.pop_front() {
            match e {
                Expect::Query {
                    ticket,
                    effects,
                    unsettling,
                    ..
                } => {
                    // The query ran: the unnamed statement and portal are gone; effects of
                    // its statements that did not complete did not happen.
                    self.names.confirm(ticket);
                    for (_, ticket) in effects {
                        self.names.skipped(ticket);
                    }
                    self.unsettled = self.unsettled.saturating_sub(u32::from(unsettling));
                    break;
                }
                sync @ Expect::Sync { .. } => {
                    self.forget(sync);
                    break;
                }
                other => self.forget(other),
            }
        }
        if status == b'I' {
            // Portals live only as long as their transaction.
            self.names.transaction_ended();
            self.path_changed_in_txn = false;
        }
        if matches!(self.pending.front(), Some(Expect::CatalogLookup)) {
            // Our catalog look-up follows: the client may send its next statement
            // only once the new catalog is in place, so it gets the look-up's
            // ReadyForQuery (same transaction status) instead of this one.
            return Verdict::Drop;
        }
        Verdict::Forward
    }

    /// Answers to our own catalog look-up; asynchronous messages still reach the client.
    fn lookup_answer(&mut self, frame: &[u8]) -> Verdict {
        match frame[0] {
            // catalog::data_row_text expects at least a field count.
            backend::DATA_ROW if frame.len() >= 7 => {
                self.lookup_rows.push(catalog::data_row_text(frame))
            }
            backend::DATA_ROW | backend::ERROR_RESPONSE => self.lookup_failed = true,
            backend::READY_FOR_QUERY => {
                self.pending.pop_front();
                let rows = std::mem::take(&mut self.lookup_rows);
                if std::mem::take(&mut self.lookup_failed) {
                    // Not read (e.g. inside a failed transaction): read again before the
                    // next statement rather than trust the old catalog.
                    self.catalog_stale = true;
                } else {
                    self.catalog = Catalog::from_rows(rows);
                    self.layout = self.shared.layout(&self.catalog);
                    self.shared.report_problems(&self.catalog, &self.metrics);
                }
                if frame.get(5) == Some(&b'I') {
                    self.names.transaction_ended();
                }
                // Stands in for the ReadyForQuery held back from the statement before.
                return Verdict::Forward;
            }
            backend::PARAMETER_STATUS => {
                self.settings.observe_message(frame);
                return Verdict::Forward;
            }
            backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE => return Verdict::Forward,
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
            Expect::Execute { portal, .. } => {
                let portal = self.names.confirmed_portal(portal)?;
                Some((portal.statement.plan.clone()?, 0))
            }
            _ => None,
        }
    }

    /// The statement the server holds under `name` now, when the proxy knows it.
    fn confirmed_statement(&self, name: &str) -> Option<&Arc<PreparedInfo>> {
        match self.names.confirmed_statement(name)? {
            Held::Known(info) => Some(info),
            Held::Foreign => None,
        }
    }

    fn parameter_description(&mut self, frame: &[u8]) -> Verdict {
        let Some(Expect::DescribeStatement { name, ours }) = self.pending.front() else {
            return Verdict::Forward;
        };
        if *ours {
            return Verdict::Drop;
        }
        let Some(info) = self.confirmed_statement(name) else {
            return Verdict::Forward;
        };
        if info.params().iter().all(Option::is_none) {
            return Verdict::Forward;
        }
        let Ok(mut types) = wire::read_parameter_description(frame) else {
            return server_broke_protocol("malformed ParameterDescription");
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
        let links = plan
            .and_then(|(p, i)| p.statements.get(i))
            .map(|s| s.links.as_slice())
            .unwrap_or_default();
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
                // Columns merged with this one by a set operation can reach it too.
                let sources: Vec<_> = self
                    .shared
                    .id_of(&spec)
                    .map(|id| analyze::merged_with(id, links))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|id| self.shared.spec_by_id(id).cloned())
                    .collect();
                Some(self.policy.merged_output(spec, &sources, &self.shared.keys))
            })
            .collect();
        Arc::new(specs)
    }

    fn row_description(&mut self, frame: &[u8]) -> Verdict {
        let Ok(mut fields) = wire::read_row_description(frame) else {
            return server_broke_protocol("malformed RowDescription");
        };
        let (statement, ours) = match self.pending.front() {
            Some(Expect::DescribeStatement { name, ours }) => {
                (self.confirmed_statement(name).cloned(), *ours)
            }
            Some(Expect::DescribePortal { name, ours }) => (
                self.names
                    .confirmed_portal(name)
                    .map(|p| p.statement.clone()),
                *ours,
            ),
            _ => (None, false),
        };
        let plan = match (&statement, self.pending.front()) {
            (_, Some(Expect::DescribeStatement { .. } | Expect::DescribePortal { .. })) => {
                statement
                    .as_ref()
                    .and_then(|s| s.plan.clone())
                    .map(|p| (p, 0))
            }
            _ => self.current_plan(),
        };
        let rows = self.row_plan(&fields, plan.as_ref().map(|(p, i)| (&**p, *i)));
        let mut changed = false;
        for (field, output) in fields.iter_mut().zip(rows.iter()) {
            if let Some(output) = output.as_ref().filter(|o| !o.passes_stored()) {
                field.type_oid = output.type_oid();
                field.type_len = output.type_len();
                field.type_mod = output.type_mod();
                changed = true;
            }
        }
        match self.pending.front() {
            Some(Expect::DescribeStatement { .. }) => {
                if let Some(info) = &statement {
                    let _ = info.described.set(Described {
                        fields: fields.clone(),
                        rows,
                    });
                }
                self.pending.pop_front();
            }
            Some(Expect::DescribePortal { name, .. }) => {
                if let Some(portal) = self.names.confirmed_portal(name) {
                    let _ = portal.described.set(rows);
                }
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
        let Some(Expect::Execute { portal, .. }) = self.pending.front() else {
            return None;
        };
        let portal = self.names.confirmed_portal(portal)?;
        // A FETCH's columns are the cursor's at the time it runs, which its portal's
        // description (asked for right before the Execute) tells.
        let plan = if portal.statement.fetches {
            portal.described.get()?.clone()
        } else {
            portal.statement.described.get()?.rows.clone()
        };
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
            return server_broke_protocol("malformed DataRow");
        };
        for (i, (value, output)) in values.iter_mut().zip(shape.plan.iter()).enumerate() {
            let (Some(output), Some(stored)) = (output, value.as_ref()) else {
                continue;
            };
            let format = wire::format_of(&shape.formats, i);
            let cipher = self.ciphers.get(&output.spec.context);
            match output.reveal(cipher, stored, format) {
                Ok(shown) => {
                    if let Some(error) = self.untranslatable(shown.as_deref(), format, output) {
                        return self.fail_results(error);
                    }
                    *value = shown
                }
                Err(error) => return self.fail_results(error),
            }
            self.revealed.count(output.action);
        }
        Verdict::Replace(wire::write_data_row(&values))
    }

    /// Revealed values are UTF-8 (plaintext as it was written, masks); a client that reads
    /// another encoding (a statement analysed before `SET client_encoding`, a cursor FETCHed
    /// after it) would read non-ASCII characters as other ones. pgshroud does not convert
    /// them: such a value is an error (PostgreSQL's 22P05 for an untranslatable character).
    /// SQL_ASCII clients get the server's bytes unconverted from PostgreSQL too.
    fn untranslatable(
        &self,
        shown: Option<&[u8]>,
        format: Format,
        output: &Output,
    ) -> Option<PgError> {
        let encoding = self.settings.client_encoding.as_str();
        if matches!(encoding, "UTF8" | "SQL_ASCII") || shown.is_none_or(|v| v.is_ascii()) {
            return None;
        }
        // Other types' binary forms are not text.
        let textual = format == Format::Text
            || matches!(
                output.spec.logical,
                LogicalType::Text | LogicalType::Varchar | LogicalType::Jsonb
            )
            || matches!(output.action, Action::Mask(_));
        textual.then(|| {
            PgError::error(
                "22P05",
                format!(
                    "pgshroud cannot send a value of protected column {} in client_encoding {encoding}: it holds characters outside ASCII and pgshroud sends protected values in UTF8; set client_encoding to UTF8",
                    output.spec.qualified
                ),
            )
        })
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

    /// A stored value did not decrypt: the session ends (as `max_rows` enforcement does).
    /// Stopping only the result would leave the client believing the statement failed while
    /// the server ran it, and the rest of its pipeline, to the end.
    fn fail_results(&mut self, error: PgError) -> Verdict {
        self.copy = None;
        Verdict::End(PgError {
            severity: Severity::Fatal,
            ..error
        })
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
            .field("names", &self.names.counts())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// The columns of the table a server error names, as the caller's role sees them.
struct ErrorColumns<'a> {
    shared: &'a Protection,
    policy: &'a Policy,
    ciphers: &'a mut Ciphers,
    revealed: &'a mut RevealCounts,
    schema: &'a str,
    table: &'a str,
}

impl KeyColumns for ErrorColumns<'_> {
    type Column = Output;

    fn protected(&self, column: &str) -> Option<Output> {
        let spec = self.shared.spec_by_name(self.schema, self.table, column)?;
        Some(self.policy.output(spec.clone(), &self.shared.keys))
    }

    fn reveal(&mut self, output: &Output, stored: &str) -> Result<Option<String>, PgError> {
        let cipher = self.ciphers.get(&output.spec.context);
        let shown = output.reveal(cipher, stored.as_bytes(), Format::Text)?;
        self.revealed.count(output.action);
        Ok(shown.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// No column can be placed: every stored value found is dropped.
struct NoColumns;

impl KeyColumns for NoColumns {
    type Column = ();

    fn protected(&self, _: &str) -> Option<()> {
        None
    }

    fn reveal(&mut self, _: &(), _: &str) -> Result<Option<String>, PgError> {
        Ok(None)
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

/// The refusal of a Describe of a portal the proxy neither bound nor saw declared, or an
/// Execute of a portal it did not bind.
fn unknown_portal(name: &str) -> PgError {
    PgError::error(
        "34000",
        format!("portal \"{name}\" does not exist, or was not bound through pgshroud: pgshroud executes only portals it bound, and describes those and cursors it saw declared in SQL; use FETCH for SQL cursors"),
    )
}

/// Whether messages going upstream end a COPY (CopyDone or CopyFail).
fn ends_copy(mut out: &[u8]) -> bool {
    while out.len() >= 5 {
        if matches!(out[0], frontend::COPY_DONE | frontend::COPY_FAIL) {
            return true;
        }
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        out = out.get(1 + len.max(4)..).unwrap_or_default();
    }
    false
}

/// Whether a statement text may be a FETCH (any spelling of the word: a false positive costs
/// only a Describe).
fn may_fetch(query: &[u8]) -> bool {
    query.windows(5).any(|w| w.eq_ignore_ascii_case(b"fetch"))
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

/// A session under small rules (`public.customers.email` protected; user `reader` may run
/// only `select` statements), with no catalog: enough to drive the protocol state.
#[cfg(test)]
pub(crate) fn test_session(user: &str) -> ProtectedSession {
    const RULES: &str = r#"
default_role = "app"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"

[[roles]]
name = "app"
template = "app"
users = ["app"]

[[roles]]
name = "reader"
template = "app"
users = ["reader"]
statements = ["select"]
"#;
    let rules = pgshroud_rules::parse(RULES, "rules.toml").expect("rules");
    let key = crate::crypto::MasterKey::from_bytes(&[7; 32]).expect("key");
    let keys = Arc::new(crate::crypto::KeyRing::single(key));
    let protection = Arc::new(Protection::new(
        rules,
        keys,
        super::engine::GuardPolicy::NotRequired,
    ));
    let live = Arc::new(LiveProtection::new(
        std::path::Path::new("rules.toml"),
        protection,
    ));
    let caller = Caller {
        user: user.into(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: "127.0.0.1".parse().expect("address"),
    };
    ProtectedSession::new(live, caller, Catalog::default(), Arc::new(Metrics::new()))
}

/// The free-text fields of a notice, where stored values are taken out.
const NOTICE_FIELDS: [u8; 5] = [b'M', b'D', b'H', b'W', b'q'];

/// `frame` (an ErrorResponse or NoticeResponse) with stored values taken out of `codes`;
/// `None` when none of them held one. A field in another client_encoding is replaced whole.
fn scrub_fields(frame: &[u8], codes: &[u8]) -> Option<BytesMut> {
    let mut out: Option<BytesMut> = None;
    for &code in codes {
        let current = out.as_deref().unwrap_or(frame);
        let Some(raw) = fields::field_bytes(current, code) else {
            continue;
        };
        let scrubbed = match std::str::from_utf8(raw) {
            Ok(text) => detail::scrub(text),
            Err(_) => detail::scrub(&String::from_utf8_lossy(raw))
                .map(|_| format!("{} (the message held a stored value)", detail::REMOVED)),
        };
        if let Some(text) = scrubbed {
            out = Some(fields::with_field(current, code, Some(&text)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, sql: &str) -> BytesMut {
        message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }
    fn bind(portal: &str, statement: &str) -> BytesMut {
        message(
            b'B',
            format!("{portal}\0{statement}\0\0\0\0\0\0\0").as_bytes(),
        )
    }
    fn sync() -> BytesMut {
        message(b'S', b"")
    }
    fn error(code: &str) -> BytesMut {
        message(b'E', format!("SERROR\0C{code}\0Mfailed\0\0").as_bytes())
    }

    /// The SQLSTATE the proxy's refusal in a verdict raises, if it is one.
    fn refusal_code(verdict: &Verdict) -> Option<String> {
        let Verdict::Replace(bytes) = verdict else {
            return None;
        };
        let text = String::from_utf8_lossy(bytes);
        let at = text.find("ERRCODE = '")? + "ERRCODE = '".len();
        Some(text[at..at + 5].to_owned())
    }

    /// Answers the server gives to a forwarded pipeline that succeeded.
    fn answer(s: &mut ProtectedSession, replies: &[&str]) {
        for reply in replies {
            let reply = reply.as_bytes();
            let frame = message(reply[0], &reply[1..]);
            assert!(
                !matches!(s.server_message(&frame), Verdict::End(_)),
                "{reply:?}"
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
    fn a_bind_of_an_unknown_or_sql_prepared_statement_is_refused() {
        let mut s = test_session("app");
        let v = s.client_message(&bind("", "nope"));
        assert_eq!(refusal_code(&v).as_deref(), Some("26000"));
        answer(&mut s, &["1", "2"]);
        s.server_message(&error("26000"));
        s.client_message(&sync());
        answer(&mut s, &["ZI"]);
        s.client_message(&message(b'Q', b"PREPARE x AS SELECT $1::text\0"));
        answer(&mut s, &["CPREPARE\0", "ZI"]);
        let v = s.client_message(&bind("", "x"));
        assert_eq!(refusal_code(&v).as_deref(), Some("0A000"));
    }

    #[test]
    fn deallocate_and_discard_drop_statements() {
        let mut s = test_session("app");
        for name in ["a", "b"] {
            s.client_message(&parse(name, "select 1"));
        }
        s.client_message(&sync());
        answer(&mut s, &["1", "1", "ZI"]);
        s.client_message(&message(b'Q', b"DEALLOCATE a\0"));
        answer(&mut s, &["CDEALLOCATE\0", "ZI"]);
        assert!(s.names.statement("a").is_none());
        assert!(s.names.statement("b").is_some());
        // DISCARD ALL also resets the search_path: the catalog (which holds it) is looked up
        // again behind it, and that look-up's ReadyForQuery stands in for the statement's.
        let sent = s.client_message(&message(b'Q', b"DISCARD ALL\0"));
        assert!(
            matches!(&sent, Verdict::Replace(b) if b.windows(15).any(|w| w == b"current_schemas"))
        );
        answer(&mut s, &["CDISCARD ALL\0", "ZI", "ZI"]);
        assert!(s.names.statement("b").is_none());
        // A DEALLOCATE that failed (inside an aborted transaction) drops nothing.
        s.client_message(&parse("c", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        s.client_message(&message(b'Q', b"DEALLOCATE c\0"));
        s.server_message(&error("25P02"));
        answer(&mut s, &["ZE"]);
        assert!(s.names.statement("c").is_some());
    }

    #[test]
    fn portals_end_with_the_transaction() {
        let mut s = test_session("app");
        s.client_message(&parse("s", "select 1"));
        s.client_message(&bind("p", "s"));
        s.client_message(&sync());
        answer(&mut s, &["1", "2", "ZT"]);
        assert!(s.names.portal("p").is_some());
        s.client_message(&message(b'Q', b"COMMIT\0"));
        answer(&mut s, &["CCOMMIT\0", "ZI"]);
        assert!(s.names.portal("p").is_none());
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
    fn short_server_messages_end_the_session() {
        let mut s = test_session("app");
        s.client_message(&message(b'Q', b"select 1\0"));
        assert!(matches!(
            s.server_message(&message(b'Z', b"")),
            Verdict::End(_)
        ));
        assert!(matches!(s.server_message(b""), Verdict::End(_)));
    }

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
    fn a_sync_sent_during_copy_from_stdin_is_not_waited_for() {
        // tokio-postgres: Bind, Execute, Sync; the data; CopyDone, Sync. The first Sync
        // reaches the server during the COPY and is ignored: one ReadyForQuery in all.
        let mut s = test_session("app");
        s.client_message(&parse("", "COPY t FROM STDIN"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        s.client_message(&bind("", ""));
        s.client_message(&message(b'E', b"\0\0\0\0\0"));
        s.client_message(&sync());
        answer(&mut s, &["2", "G\0\0\0"]);
        s.client_message(&message(b'd', b"1\n"));
        s.client_message(&message(b'c', b""));
        s.client_message(&sync());
        answer(&mut s, &["CCOPY 1\0", "ZI"]);
        assert!(s.pending.is_empty(), "{:?}", s.pending);
        // The next statement's answers line up.
        s.client_message(&parse("", "select 1"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        assert!(s.pending.is_empty());
    }

    /// A RowDescription of one text column named `name`, from `table_oid`'s `attnum`.
    fn row_description(name: &[u8], table_oid: u32, attnum: i16) -> BytesMut {
        wire::write_row_description(&[wire::Field {
            name: name.to_vec(),
            table_oid,
            attnum,
            type_oid: 17,
            type_len: -1,
            type_mod: -1,
            format: 0,
        }])
    }

    #[test]
    fn server_text_in_another_client_encoding_passes_untouched() {
        let mut s = test_session("app");
        s.server_message(&message(b'S', b"client_encoding\0LATIN9\0"));
        // select 'x\xe9' as "\xa4" (LATIN9's euro sign); raise notice; notify; set a name.
        s.client_message(&message(b'Q', b"select 'x\xe9' as \"\xa4\"\0"));
        let replies = [
            row_description(b"\xa4", 0, 0),
            message(b'D', b"\0\x01\0\0\0\x02x\xe9"),
            message(b'C', b"SELECT 1\0"),
            message(
                b'N',
                b"SNOTICE\0C00000\0Mcaf\xe9 \xa4\0Dd\xe9tail \\x0a\0\0",
            ),
            message(b'A', b"\0\0\0\x07ch\xe9\0pay\xa4load\0"),
            message(b'S', b"application_name\0caf\xe9\0"),
            message(
                b'E',
                b"SERROR\0C23505\0Mcl\xe9 \\x0a\0DKey (n)=(\xe9\\x02ab) already exists.\0\0",
            ),
            message(b'Z', b"I"),
        ];
        for frame in &replies {
            assert_eq!(s.server_message(frame), Verdict::Forward, "{frame:?}");
        }
        assert_eq!(s.settings.client_encoding, "LATIN9");
        assert!(s.pending.is_empty(), "{:?}", s.pending);
    }

    #[test]
    fn a_protected_column_with_a_name_in_another_encoding_is_still_mapped() {
        let mut s = test_session("app");
        let row = |attnum: &str, name: &str, ty: &str| {
            ["42", "public", "customers", attnum, name, ty]
                .map(|v| Some(v.to_owned()))
                .into_iter()
                .chain([None])
                .collect()
        };
        s.catalog = Catalog::from_rows(vec![row("1", "id", "int4"), row("2", "email", "bytea")]);
        s.server_message(&message(b'S', b"client_encoding\0LATIN9\0"));
        s.client_message(&message(b'Q', b"FETCH ALL c\0"));
        let Verdict::Replace(mapped) = s.server_message(&row_description(b"\xa4", 42, 2)) else {
            panic!("a protected column's RowDescription must be mapped");
        };
        let fields = wire::read_row_description(&mapped).unwrap();
        assert_eq!(fields[0].name, b"\xa4");
        assert_eq!(fields[0].type_oid, 25);
        // The unprotected column of the same table passes as the server sent it.
        s.client_message(&message(b'Q', b"FETCH ALL c\0"));
        answer(&mut s, &["CFETCH 0\0", "ZI"]);
        assert_eq!(
            s.server_message(&row_description(b"\xa4", 42, 1)),
            Verdict::Forward
        );
    }

    #[test]
    fn a_value_that_does_not_decrypt_ends_the_session() {
        let mut s = test_session("app");
        match s.fail_results(PgError::error("39000", "could not decrypt")) {
            Verdict::End(e) => assert_eq!(e.severity, Severity::Fatal),
            other => panic!("{other:?}"),
        }
    }
}
