//! Queries: scopes, CTEs, select lists (which result columns carry protected
//! values), set operations, GROUP BY / DISTINCT and ORDER BY.

use sqlparser::ast::{
    Cte, Distinct, GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderBy, OrderByKind, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator, Table, Value,
};

use super::expr::Outputs;
use super::from::alias_columns;
use super::refusal;
use super::scope::{fold, name_parts, OutCol, Relation, Scope};
use super::walk::{strip_nested, Operand, Res, Walker};
use super::{LinkKind, Usage};

/// The result columns of a query.
#[derive(Debug, Clone, Default)]
pub struct QueryOut {
    pub cols: Vec<OutCol>,
    /// `false` when a `*` over a relation with unknown columns made positions uncertain.
    pub complete: bool,
}

impl QueryOut {
    fn new() -> Self {
        QueryOut {
            cols: Vec::new(),
            complete: true,
        }
    }

    /// Positions are uncertain and a protected value is among them: the caller could map a
    /// protected value to the wrong result column, so refuse.
    pub fn require_exact(&self, schema: &super::ProtectedSchema) -> Res<()> {
        match self.cols.iter().find_map(|c| c.column) {
            Some(id) if !self.complete => Err(refusal::unsupported(
                schema,
                id,
                "a result whose column positions pgshroud cannot determine (a * over a table \
                 whose columns it does not know)",
            )),
            _ => Ok(()),
        }
    }
}

impl<'a> Walker<'a> {
    /// Walks a query; CTEs it defines are visible only inside it.
    pub fn query(
        &mut self,
        q: &Query,
        parent: Option<&Scope<'_>>,
        outputs: Outputs,
    ) -> Res<QueryOut> {
        let saved = self.ctes.len();
        let result = self.query_inner(q, parent, outputs);
        self.ctes.truncate(saved);
        result
    }

    fn query_inner(
        &mut self,
        q: &Query,
        parent: Option<&Scope<'_>>,
        outputs: Outputs,
    ) -> Res<QueryOut> {
        if let Some(with) = &q.with {
            if with.recursive {
                self.recursive_ctes(&with.cte_tables, parent)?;
            } else {
                // Without RECURSIVE each CTE sees only the ones before it.
                for cte in &with.cte_tables {
                    let rel = self.cte(cte, parent)?;
                    self.ctes.push(rel);
                }
            }
        }
        let out = match &*q.body {
            SetExpr::Select(sel) => self.select(sel, parent, q.order_by.as_ref(), outputs)?,
            body => {
                let out = self.set_expr(body, parent, outputs)?;
                self.order_by_outputs(q.order_by.as_ref(), None, &out)?;
                out
            }
        };
        let empty = Scope::new(parent);
        if let Some(limit) = &q.limit_clause {
            self.fallback(limit, &empty)?;
        }
        if let Some(fetch) = &q.fetch {
            self.fallback(fetch, &empty)?;
        }
        if outputs == Outputs::Needed {
            out.require_exact(self.schema)?;
        }
        Ok(out)
    }

    /// One CTE's relation: its query's result, renamed by its column list.
    fn cte(&mut self, cte: &Cte, parent: Option<&Scope<'_>>) -> Res<Relation> {
        let out = self.query(&cte.query, parent, Outputs::Needed)?;
        out.require_exact(self.schema)?;
        let mut rel = Relation::derived(fold(&cte.alias.name), out.cols, out.complete);
        rel.rename_columns(&alias_columns(&cte.alias));
        Ok(rel)
    }

    /// `WITH RECURSIVE`: every CTE of the list is visible in every body, its own included, and
    /// shadows a table of the same name there (as in PostgreSQL). A body refers to itself with
    /// the columns of its non-recursive term; a later CTE is seen with unknown columns.
    fn recursive_ctes(&mut self, ctes: &[Cte], parent: Option<&Scope<'_>>) -> Res<()> {
        let first = self.ctes.len();
        for cte in ctes {
            let mut rel = Relation::derived(fold(&cte.alias.name), Vec::new(), false);
            rel.rename_columns(&alias_columns(&cte.alias));
            self.ctes.push(rel);
        }
        for (i, cte) in ctes.iter().enumerate() {
            if let SetExpr::SetOperation { left, .. } = &*cte.query.body {
                let start = self.unrecorded(|w| w.set_expr(left, parent, Outputs::Needed));
                if let Ok(out) = start {
                    let mut rel = Relation::derived(fold(&cte.alias.name), out.cols, out.complete);
                    rel.rename_columns(&alias_columns(&cte.alias));
                    self.ctes[first + i] = rel;
                }
            }
            self.ctes[first + i] = self.cte(cte, parent)?;
        }
        Ok(())
    }

    fn set_expr(
        &mut self,
        body: &SetExpr,
        parent: Option<&Scope<'_>>,
        outputs: Outputs,
    ) -> Res<QueryOut> {
        match body {
            SetExpr::Select(sel) => self.select(sel, parent, None, outputs),
            SetExpr::Query(q) => self.query(q, parent, outputs),
            SetExpr::SetOperation {
                left, op, right, ..
            } => {
                let l = self.set_expr(left, parent, Outputs::Needed)?;
                let r = self.set_expr(right, parent, Outputs::Needed)?;
                self.merge_branches(*op, l, r)
            }
            SetExpr::Values(values) => {
                let scope = Scope::new(parent);
                let mut width = 0;
                for row in &values.rows {
                    width = width.max(row.len());
                    for x in row.iter() {
                        if let Operand::Protected(id) = self.classify(x, &scope)? {
                            return Err(self.refuse(id, "VALUES"));
                        }
                    }
                }
                let cols = (1..=width)
                    .map(|i| OutCol {
                        name: format!("column{i}"),
                        column: None,
                    })
                    .collect();
                Ok(QueryOut {
                    cols,
                    complete: true,
                })
            }
            SetExpr::Insert(stmt) | SetExpr::Update(stmt) | SetExpr::Delete(stmt) => {
                self.dml(stmt, parent)
            }
            SetExpr::Merge(stmt) => self.dml(stmt, parent),
            SetExpr::Table(t) => self.table_statement(t, parent, outputs),
        }
    }

    /// `TABLE t` is `SELECT * FROM t`.
    fn table_statement(
        &mut self,
        t: &Table,
        parent: Option<&Scope<'_>>,
        outputs: Outputs,
    ) -> Res<QueryOut> {
        let Some(table) = &t.table_name else {
            return Ok(QueryOut::new());
        };
        let name = ObjectName(
            t.schema_name
                .iter()
                .chain(std::iter::once(table))
                .map(|part| ObjectNamePart::Identifier(Ident::new(part.as_str())))
                .collect(),
        );
        let rel = self.named_relation(&name, None)?;
        let mut out = QueryOut::new();
        let _ = parent;
        self.expand(&rel, &mut out, outputs)?;
        Ok(out)
    }

    /// UNION / INTERSECT / EXCEPT: a position may carry a protected value only if every
    /// branch carries one of the same key context there.
    fn merge_branches(&mut self, op: SetOperator, l: QueryOut, r: QueryOut) -> Res<QueryOut> {
        l.require_exact(self.schema)?;
        r.require_exact(self.schema)?;
        let mut cols = Vec::with_capacity(l.cols.len());
        for (i, left) in l.cols.iter().enumerate() {
            let right = r.cols.get(i).and_then(|c| c.column);
            let what = format!("{op} with a branch that is not the same encrypted column");
            let column = match (left.column, right) {
                (Some(a), Some(b)) => {
                    self.require_same_context(a, b, &format!("{op} with"))?;
                    // The result column carries `a` for origin look-ups; the role's action
                    // for it must also cover `b` (see `LinkKind::Merged`).
                    self.link(a, b, LinkKind::Merged);
                    Some(a)
                }
                (Some(a), None) | (None, Some(a)) => return Err(self.refuse(a, &what)),
                (None, None) => None,
            };
            cols.push(OutCol {
                name: left.name.clone(),
                column,
            });
        }
        if let Some(id) = r.cols.iter().skip(l.cols.len()).find_map(|c| c.column) {
            return Err(self.refuse(id, &format!("{op} with branches of different widths")));
        }
        Ok(QueryOut {
            cols,
            complete: l.complete && r.complete,
        })
    }

    fn select(
        &mut self,
        sel: &Select,
        parent: Option<&Scope<'_>>,
        order_by: Option<&OrderBy>,
        outputs: Outputs,
    ) -> Res<QueryOut> {
        let mut scope = Scope::new(parent);
        for twj in &sel.from {
            self.table_with_joins(twj, &mut scope)?;
        }
        let mut out = QueryOut::new();
        for item in &sel.projection {
            self.select_item(item, &scope, &mut out, outputs)?;
        }
        if let Some(w) = &sel.selection {
            self.predicate(w, &scope)?;
        }
        self.group_by(&sel.group_by, &scope, &out)?;
        if let Some(h) = &sel.having {
            self.predicate(h, &scope)?;
        }
        match &sel.distinct {
            Some(Distinct::Distinct) => {
                for id in out.cols.iter().filter_map(|c| c.column) {
                    self.use_column(id, Usage::Group);
                }
            }
            Some(Distinct::On(exprs)) => {
                for x in exprs {
                    self.group_item(x, &scope, &out)?;
                }
            }
            Some(Distinct::All) | None => {}
        }
        for x in sel.prewhere.iter().chain(sel.qualify.iter()) {
            self.fallback(x, &scope)?;
        }
        for w in &sel.named_window {
            self.fallback(w, &scope)?;
        }
        self.order_by_outputs(order_by, Some(&scope), &out)?;
        Ok(out)
    }

    pub fn select_item(
        &mut self,
        item: &SelectItem,
        scope: &Scope<'_>,
        out: &mut QueryOut,
        outputs: Outputs,
    ) -> Res<()> {
        match item {
            SelectItem::UnnamedExpr(e) => self.projection(e, output_name(e), scope, out),
            SelectItem::ExprWithAlias { expr, alias } => {
                self.projection(expr, fold(alias), scope, out)
            }
            SelectItem::ExprWithAliases { expr, aliases } => {
                let name = aliases
                    .first()
                    .map(fold)
                    .unwrap_or_else(|| output_name(expr));
                self.projection(expr, name, scope, out)
            }
            SelectItem::Wildcard(_) => {
                for rel in &scope.relations {
                    self.expand(rel, out, outputs)?;
                }
                Ok(())
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                let parts = name_parts(name).unwrap_or_default();
                let rel = parts
                    .last()
                    .and_then(|n| scope.relations.iter().find(|r| &r.name == n));
                match rel {
                    Some(rel) => self.expand(rel, out, outputs),
                    None => {
                        out.complete = false;
                        Ok(())
                    }
                }
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::Expr(e), _) => {
                self.opaque(e, scope, "a field expansion")?;
                out.complete = false;
                Ok(())
            }
        }
    }

    fn projection(
        &mut self,
        e: &sqlparser::ast::Expr,
        name: String,
        scope: &Scope<'_>,
        out: &mut QueryOut,
    ) -> Res<()> {
        let column = match self.classify(e, scope)? {
            Operand::Protected(id) => {
                self.use_column(id, Usage::Project);
                Some(id)
            }
            _ => None,
        };
        out.cols.push(OutCol { name, column });
        Ok(())
    }

    /// `*` / `t.*`: the relation's columns, in order.
    pub fn expand(&mut self, rel: &Relation, out: &mut QueryOut, outputs: Outputs) -> Res<()> {
        if !rel.complete {
            if let (Outputs::Needed, Some(id)) = (outputs, rel.first_protected(self.schema)) {
                return Err(self.refuse(
                    id,
                    "* over a table whose column list pgshroud does not know (the catalog did \
                     not provide it)",
                ));
            }
            out.complete = false;
        }
        for col in &rel.columns {
            if let Some(id) = col.column {
                self.use_column(id, Usage::Project);
            }
            out.cols.push(col.clone());
        }
        Ok(())
    }

    fn group_by(&mut self, g: &GroupByExpr, scope: &Scope<'_>, out: &QueryOut) -> Res<()> {
        match g {
            GroupByExpr::All(_) => {
                for id in out.cols.iter().filter_map(|c| c.column) {
                    self.use_column(id, Usage::Group);
                }
                Ok(())
            }
            GroupByExpr::Expressions(exprs, _) => exprs
                .iter()
                .try_for_each(|x| self.group_item(x, scope, out)),
        }
    }

    /// One GROUP BY / DISTINCT ON item: an input column, an output position or an output name.
    fn group_item(
        &mut self,
        e: &sqlparser::ast::Expr,
        scope: &Scope<'_>,
        out: &QueryOut,
    ) -> Res<()> {
        use sqlparser::ast::Expr;
        match strip_nested(e) {
            Expr::Value(v) => {
                if let Some(id) = position(&v.value)
                    .and_then(|p| out.cols.get(p))
                    .and_then(|c| c.column)
                {
                    self.use_column(id, Usage::Group);
                }
                Ok(())
            }
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => sets
                .iter()
                .flatten()
                .try_for_each(|x| self.group_item(x, scope, out)),
            Expr::Tuple(items) => items
                .iter()
                .try_for_each(|x| self.group_item(x, scope, out)),
            other => {
                match self.classify(other, scope)? {
                    Operand::Protected(id) => self.use_column(id, Usage::Group),
                    Operand::Column => {
                        if let Expr::Identifier(i) = other {
                            let name = fold(i);
                            if let Some(id) = out
                                .cols
                                .iter()
                                .find(|c| c.name == name)
                                .and_then(|c| c.column)
                            {
                                self.use_column(id, Usage::Group);
                            }
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// ORDER BY: refused on a protected output (by position or name) or a protected input
    /// column (`scope` is `None` for set operations, which can order by outputs only).
    fn order_by_outputs(
        &mut self,
        order_by: Option<&OrderBy>,
        scope: Option<&Scope<'_>>,
        out: &QueryOut,
    ) -> Res<()> {
        use sqlparser::ast::Expr;
        let Some(ob) = order_by else {
            return Ok(());
        };
        let exprs = match &ob.kind {
            OrderByKind::All(_) => {
                return match out.cols.iter().find_map(|c| c.column) {
                    Some(id) => Err(self.refuse(id, "ORDER BY")),
                    None => Ok(()),
                }
            }
            OrderByKind::Expressions(exprs) => exprs,
        };
        for ob in exprs {
            let by_output = match strip_nested(&ob.expr) {
                Expr::Value(v) => position(&v.value).and_then(|p| out.cols.get(p)),
                Expr::Identifier(i) => {
                    let name = fold(i);
                    out.cols.iter().find(|c| c.name == name)
                }
                _ => None,
            };
            if let Some(col) = by_output {
                match col.column {
                    Some(id) => return Err(self.refuse(id, "ORDER BY")),
                    None => continue,
                }
            }
            if let Some(scope) = scope {
                self.no_ordering(std::slice::from_ref(ob), scope)?;
            }
        }
        Ok(())
    }
}

/// The name PostgreSQL gives an unaliased select item.
pub fn output_name(e: &sqlparser::ast::Expr) -> String {
    use sqlparser::ast::Expr;
    match strip_nested(e) {
        Expr::Identifier(i) => fold(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold).unwrap_or_default(),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(fold)
            .unwrap_or_default(),
        Expr::Cast { expr, .. } => output_name(expr),
        _ => "?column?".to_string(),
    }
}

/// A 1-based output position literal -> 0-based index.
fn position(v: &Value) -> Option<usize> {
    match v {
        Value::Number(n, _) => n.parse::<usize>().ok()?.checked_sub(1),
        _ => None,
    }
}
