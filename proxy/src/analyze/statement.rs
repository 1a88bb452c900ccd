//! One parsed statement: its kind, the walk that fits it, and the final checks on `$n`
//! parameters, producing a `StatementInfo` or a refusal.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, Expr, Query, SetExpr, Statement, Value};
use sqlparser::tokenizer::Location;

use super::copy::CopyStatement;
use super::expr::Outputs;
use super::walk::{placeholder_index, Res, Walker};
use super::{StatementInfo, StatementKind};

impl<'a> Walker<'a> {
    /// Walks one top-level statement.
    pub fn statement(mut self, stmt: &Statement) -> Res<StatementInfo> {
        self.check_guards(stmt)?;
        let kind = statement_kind(stmt);
        let (outputs, copy) = self.walk_statement(stmt, kind)?;
        self.check_params(stmt)?;
        let changed_tables = if kind == StatementKind::Ddl {
            // Not every DDL form shows its tables to the parser's visitor (DROP TABLE does
            // not): add every protected table the statement names at all.
            let mut changed = self.tables.clone();
            for pair in self.schema.tables_named_in(&stmt.to_string()) {
                if !changed.contains(&pair) {
                    changed.push(pair);
                }
            }
            changed
        } else {
            self.deleted_from
        };
        Ok(StatementInfo {
            kind,
            tables: self.tables,
            columns: self.uses,
            literals: self.literals,
            params: self.params,
            edits: self.edits,
            outputs,
            copy,
            links: self.links,
            changed_tables,
        })
    }

    fn walk_statement(
        &mut self,
        stmt: &Statement,
        kind: StatementKind,
    ) -> Res<(Vec<Option<usize>>, Option<super::CopyInfo>)> {
        let outputs = match stmt {
            Statement::Query(q) => self.query(q, None, Outputs::Needed)?,
            Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_) => self.dml(stmt, None)?,
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                let copy = self.copy(CopyStatement {
                    source,
                    to: *to,
                    target,
                    options,
                    legacy_options,
                })?;
                return Ok((Vec::new(), copy));
            }
            Statement::CreateView(cv) => {
                self.add_relations(&cv.name);
                self.query(&cv.query, None, Outputs::Ignored)?;
                return Ok((Vec::new(), None));
            }
            Statement::CreateTable(ct) => {
                self.add_relations(&ct.name);
                if let Some(q) = &ct.query {
                    let out = self.query(q, None, Outputs::Needed)?;
                    self.refuse_copy_into_new_table(&out)?;
                }
                return Ok((Vec::new(), None));
            }
            Statement::Explain { statement, .. } => {
                let inner = statement_kind(statement);
                self.walk_statement(statement, inner)?;
                return Ok((vec![None], None));
            }
            Statement::Prepare { statement, .. } => {
                // EXECUTE's rows carry only the origins PostgreSQL reports, as a cursor's
                // FETCH does: the same refusals apply (set operations).
                if let Statement::Query(q) = statement.as_ref() {
                    let out = self.query(q, None, Outputs::Needed)?;
                    self.cursor_outputs(q, &out)?;
                } else {
                    let inner = statement_kind(statement);
                    self.walk_statement(statement, inner)?;
                }
                if let Some(p) = self.params.first() {
                    return Err(self.refuse(
                        p.column,
                        "a $n parameter in SQL-level PREPARE (its values arrive in EXECUTE, \
                         which pgshroud cannot encrypt)",
                    ));
                }
                return Ok((Vec::new(), None));
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        let out = self.query(q, None, Outputs::Needed)?;
                        self.cursor_outputs(q, &out)?;
                    }
                }
                return Ok((Vec::new(), None));
            }
            Statement::CreateFunction(_) => {
                // Its body is code the server reads only when the function runs (a schema
                // change or a query there is one pgshroud never sees): naming a protected
                // table in it is refused, as a DO block is.
                let named = self.schema.tables_named_in(&stmt.to_string());
                let column = named
                    .iter()
                    .find_map(|(s, t)| self.schema.protected_columns_of(s, t).first().copied());
                if let Some(id) = column {
                    return Err(super::refusal::unsupported_statement(
                        "a function whose body (code pgshroud does not read) names them,",
                        Some(id),
                    ));
                }
                self.add_relations(stmt);
                return Ok((Vec::new(), None));
            }
            other if kind == StatementKind::Ddl || is_harmless(other) => {
                self.add_relations(other);
                return Ok((Vec::new(), None));
            }
            other => {
                self.refuse_if_protected(other, "this kind of statement")?;
                return Ok((Vec::new(), None));
            }
        };
        if let (Statement::Query(q), StatementKind::Ddl) = (stmt, kind) {
            // `SELECT ... INTO new_table`: a table made from the rows, as CREATE TABLE AS.
            if matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some()) {
                self.refuse_copy_into_new_table(&outputs)?;
            }
        }
        Ok((outputs.cols.iter().map(|c| c.column).collect(), None))
    }

    /// `CREATE TABLE ... AS` / `SELECT ... INTO`: a protected column's stored values copied
    /// into a new table the rules do not cover would be compared and written there unsealed
    /// (as `INSERT INTO plain SELECT protected` is refused for the same reason).
    fn refuse_copy_into_new_table(&self, out: &super::query::QueryOut) -> Res<()> {
        out.require_exact(self.schema)?;
        match out.cols.iter().find_map(|c| c.column) {
            Some(id) => Err(self.refuse(
                id,
                "copying its value into a new table the rules do not cover (CREATE TABLE AS, \
                 SELECT INTO)",
            )),
            None => Ok(()),
        }
    }

    /// FETCH results of a cursor (and EXECUTE results of an SQL-level prepared statement)
    /// carry no analysis, only the origins PostgreSQL reports, and a set operation's outputs
    /// have none: such a cursor would hand out stored bytes untransformed (raw ciphertext,
    /// whatever the role's action). Refused.
    fn cursor_outputs(&self, q: &Query, out: &super::query::QueryOut) -> Res<()> {
        match out.cols.iter().find_map(|c| c.column) {
            Some(id) if has_set_operation(q) => Err(self.refuse(
                id,
                "a cursor or SQL-level prepared statement over UNION, INTERSECT or EXCEPT (its \
                 FETCH or EXECUTE results carry no column origin, so pgshroud could not apply \
                 the role's action)",
            )),
            _ => Ok(()),
        }
    }

    /// Lists the tables a statement names, for statements not walked in detail.
    fn add_relations<V: sqlparser::ast::Visit>(&mut self, node: &V) {
        let mut found = Vec::new();
        let _ = sqlparser::ast::visit_relations(node, |name| {
            if let Some(t) = self.relation_or_candidate(name) {
                found.push(t);
            }
            ControlFlow::<()>::Continue(())
        });
        for (s, t) in found {
            self.add_table(&s, &t);
        }
    }

    /// The same `$n` is encrypted once per Bind, so every occurrence of a protected parameter
    /// must be a protected site, all with one key context and one shape (value or array).
    fn check_params(&self, stmt: &Statement) -> Res<()> {
        // By parameter number, in one pass (a statement may hold 65,535 of them: pairwise
        // checks took a minute there): the first anchor of each number, whether a later one
        // differs from it in shape or key context (contexts are compared for equality, so
        // agreeing with the first is agreeing with all), and every anchor's location.
        let mut by_index: HashMap<usize, IndexAnchors> = HashMap::new();
        for (i, a) in self.param_anchors.iter().enumerate() {
            match by_index.get_mut(&a.index) {
                None => {
                    let anchors = IndexAnchors {
                        first: i,
                        differs: false,
                        locations: HashSet::from([a.location]),
                    };
                    by_index.insert(a.index, anchors);
                }
                Some(group) => {
                    let first = &self.param_anchors[group.first];
                    group.differs |=
                        first.array != a.array || !self.same_context(first.column, a.column);
                    group.locations.insert(a.location);
                }
            }
        }
        // The earliest anchor that some later anchor of its number differs from.
        let differing = by_index
            .values()
            .filter(|g| g.differs)
            .map(|g| g.first)
            .min();
        if let Some(first) = differing {
            return Err(self.refuse(
                self.param_anchors[first].column,
                "using one $n parameter for columns with different key contexts or shapes",
            ));
        }
        let mixed = visit_expressions(stmt, |e| {
            let Expr::Value(v) = e else {
                return ControlFlow::Continue(());
            };
            let Value::Placeholder(p) = &v.value else {
                return ControlFlow::Continue(());
            };
            let Some(index) = placeholder_index(p) else {
                return ControlFlow::Continue(());
            };
            match by_index.get(&index) {
                Some(g) if !g.locations.contains(&v.span.start) => {
                    ControlFlow::Break(self.param_anchors[g.first].column)
                }
                _ => ControlFlow::Continue(()),
            }
        });
        match mixed {
            ControlFlow::Break(id) => Err(self.refuse(
                id,
                "using the same $n parameter for it and for a value that is not encrypted",
            )),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

/// The anchors of one `$n` (see `check_params`).
struct IndexAnchors {
    /// Position of the first in `param_anchors`.
    first: usize,
    /// A later one differs from the first in shape or key context.
    differs: bool,
    locations: HashSet<Location>,
}

/// Statements that name tables without reading or writing column values.
fn is_harmless(stmt: &Statement) -> bool {
    is_transaction(stmt)
        || is_utility(stmt)
        || matches!(
            stmt,
            Statement::Lock(_)
                | Statement::LockTables { .. }
                | Statement::Analyze(_)
                | Statement::Vacuum(_)
                | Statement::LISTEN { .. }
                | Statement::UNLISTEN { .. }
                | Statement::NOTIFY { .. }
                | Statement::Close { .. }
                | Statement::Fetch { .. }
        )
}

/// The kind reported for a statement: a WITH query's is its main statement's, or that of its
/// first data-modifying CTE when the main statement only reads (`WITH d AS (DELETE ...)
/// SELECT ...` deletes); `SELECT INTO` creates a table; statements that run another one
/// (`EXPLAIN ANALYZE`, `PREPARE`) have its kind.
pub fn statement_kind(stmt: &Statement) -> StatementKind {
    match stmt {
        Statement::Query(q) => query_kind(q),
        Statement::Explain {
            statement,
            analyze: true,
            ..
        }
        | Statement::Prepare { statement, .. } => statement_kind(statement),
        Statement::Insert(_) => StatementKind::Insert,
        Statement::Update(_) => StatementKind::Update,
        Statement::Delete(_) => StatementKind::Delete,
        Statement::Merge(_) => StatementKind::Merge,
        Statement::Copy { .. } => StatementKind::Copy,
        s if is_ddl(s) => StatementKind::Ddl,
        s if is_transaction(s) => StatementKind::Transaction,
        s if is_utility(s) => StatementKind::Utility,
        _ => StatementKind::Other,
    }
}

fn query_kind(q: &Query) -> StatementKind {
    let modifying =
        q.with
            .iter()
            .flat_map(|w| &w.cte_tables)
            .find_map(|cte| match query_kind(&cte.query) {
                StatementKind::Select => None,
                kind => Some(kind),
            });
    match &*q.body {
        SetExpr::Insert(_) => StatementKind::Insert,
        SetExpr::Update(_) => StatementKind::Update,
        SetExpr::Delete(_) => StatementKind::Delete,
        SetExpr::Merge(_) => StatementKind::Merge,
        SetExpr::Select(s) if s.into.is_some() => StatementKind::Ddl,
        _ => modifying.unwrap_or(StatementKind::Select),
    }
}

/// Transaction control: drivers send these on their own.
fn is_transaction(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

/// Session commands: drivers send these on their own.
fn is_utility(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Reset(_)
    )
}

fn is_ddl(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::CreateView(_)
            | Statement::CreateTable(_)
            | Statement::CreateVirtualTable { .. }
            | Statement::CreateIndex(_)
            | Statement::CreateRole(_)
            | Statement::CreatePolicy(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction(_)
            | Statement::CreateTrigger(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateSequence { .. }
            | Statement::CreateDomain(_)
            | Statement::CreateType { .. }
            | Statement::CreateExtension(_)
            | Statement::CreateCollation(_)
            | Statement::CreateServer(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_)
            | Statement::CreateUser(_)
            | Statement::AlterTable(_)
            | Statement::AlterSchema(_)
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterFunction(_)
            | Statement::AlterType(_)
            | Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_)
            | Statement::AlterRole { .. }
            | Statement::AlterPolicy(_)
            | Statement::AlterUser(_)
            | Statement::Drop { .. }
            | Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropPolicy(_)
            | Statement::DropTrigger(_)
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_)
            | Statement::Truncate(_)
            | Statement::Comment { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::RenameTable(_)
    )
}

/// Whether a set operation appears anywhere in a query (its body, CTEs or derived tables).
fn has_set_operation(q: &Query) -> bool {
    let in_ctes = q
        .with
        .iter()
        .flat_map(|w| &w.cte_tables)
        .any(|cte| has_set_operation(&cte.query));
    in_ctes || set_expr_has_set_operation(&q.body)
}

fn set_expr_has_set_operation(body: &SetExpr) -> bool {
    use sqlparser::ast::TableFactor;
    match body {
        SetExpr::SetOperation { .. } => true,
        SetExpr::Query(q) => has_set_operation(q),
        SetExpr::Select(sel) => sel.from.iter().any(|twj| {
            std::iter::once(&twj.relation)
                .chain(twj.joins.iter().map(|j| &j.relation))
                .any(|tf| matches!(tf, TableFactor::Derived { subquery, .. } if has_set_operation(subquery)))
        }),
        _ => false,
    }
}
