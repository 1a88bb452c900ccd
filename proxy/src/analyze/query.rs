//! Queries: FROM clauses and scopes, CTEs, select lists (which result columns carry protected
//! values), set operations, GROUP BY / DISTINCT and ORDER BY.

use sqlparser::ast::{
    Cte, Distinct, GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart,
    OrderBy, OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    SetOperator, Table, TableAlias, TableFactor, TableWithJoins, Value,
};

use super::expr::Outputs;
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

    /// Adds the relations of one FROM item (with its joins) to `scope`.
    pub fn table_with_joins(&mut self, twj: &TableWithJoins, scope: &mut Scope<'_>) -> Res<()> {
        self.table_factor(&twj.relation, scope)?;
        for join in &twj.joins {
            let split = scope.relations.len();
            self.table_factor(&join.relation, scope)?;
            match join_constraint(&join.join_operator) {
                Some(JoinConstraint::On(e)) => self.predicate(e, scope)?,
                Some(JoinConstraint::Using(cols)) => {
                    let names: Vec<String> = cols
                        .iter()
                        .filter_map(|c| name_parts(c).and_then(|p| p.last().cloned()))
                        .collect();
                    self.join_using(&names, scope, split)?;
                }
                Some(JoinConstraint::Natural) => self.natural_join(scope, split)?,
                Some(JoinConstraint::None) | None => {}
            }
        }
        Ok(())
    }

    /// `JOIN ... USING (c)` compares `left.c = right.c`.
    fn join_using(&mut self, names: &[String], scope: &Scope<'_>, split: usize) -> Res<()> {
        let (left, right) = scope.relations.split_at(split);
        for name in names {
            let find = |rels: &[Relation]| {
                rels.iter()
                    .find_map(|r| r.protected_column(self.schema, name))
            };
            match (find(left), find(right)) {
                (Some(a), Some(b)) => self.compared_columns(a, b, "a USING join with")?,
                (Some(a), None) | (None, Some(a)) => {
                    return Err(self.refuse(a, "a USING join with a column that is not encrypted"))
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// NATURAL JOIN compares every common column; only allowed when the columns are known.
    fn natural_join(&mut self, scope: &Scope<'_>, split: usize) -> Res<()> {
        let rels = &scope.relations;
        let protected = rels.iter().find_map(|r| r.first_protected(self.schema));
        let Some(id) = protected else {
            return Ok(());
        };
        if !rels.iter().all(|r| r.complete) {
            return Err(self.refuse(id, "NATURAL JOIN over tables whose columns are not known"));
        }
        let (left, right) = rels.split_at(split);
        let common: Vec<String> = right
            .iter()
            .flat_map(|r| r.columns.iter().map(|c| c.name.clone()))
            .filter(|n| left.iter().any(|l| l.columns.iter().any(|c| &c.name == n)))
            .collect();
        self.join_using(&common, scope, split)
    }

    fn table_factor(&mut self, tf: &TableFactor, scope: &mut Scope<'_>) -> Res<()> {
        let rel = match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => match args {
                Some(args) => {
                    self.fallback(args, scope)?;
                    let fname = name_parts(name).and_then(|p| p.last().cloned());
                    function_relation(alias.as_ref(), fname)
                }
                None => self.named_relation(name, alias.as_ref())?,
            },
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                // Only a LATERAL subquery sees the FROM items before it; any other sees the
                // enclosing query levels only, as in PostgreSQL.
                let parent = if *lateral {
                    Some(&*scope)
                } else {
                    scope.parent
                };
                let out = self.query(subquery, parent, Outputs::Needed)?;
                let name = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                let mut rel = Relation::derived(name, out.cols, out.complete);
                if let Some(a) = alias {
                    rel.rename_columns(&alias_columns(a));
                }
                rel
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                for arg in args {
                    self.fallback(arg, scope)?;
                }
                let fname = name_parts(name).and_then(|p| p.last().cloned());
                function_relation(alias.as_ref(), fname)
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                for x in array_exprs {
                    self.opaque(x, scope, "function unnest()")?;
                }
                function_relation(alias.as_ref(), Some("unnest".to_string()))
            }
            TableFactor::TableFunction { expr, alias } => {
                self.opaque(expr, scope, "a table function")?;
                function_relation(alias.as_ref(), None)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let before = scope.relations.len();
                self.table_with_joins(table_with_joins, scope)?;
                let protected = scope.relations[before..]
                    .iter()
                    .find_map(|r| r.first_protected(self.schema));
                if let (Some(_), Some(id)) = (alias, protected) {
                    return Err(self.refuse(id, "an aliased parenthesised join"));
                }
                return Ok(());
            }
            other => {
                self.fallback(other, scope)?;
                function_relation(None, None)
            }
        };
        scope.relations.push(rel);
        Ok(())
    }

    /// A table name in FROM: a CTE if one of that name is visible, else a base table.
    fn named_relation(&mut self, name: &ObjectName, alias: Option<&TableAlias>) -> Res<Relation> {
        let parts = name_parts(name).unwrap_or_default();
        if let [single] = parts.as_slice() {
            if let Some(cte) = self.ctes.iter().rev().find(|c| &c.name == single) {
                let mut rel = cte.clone();
                if let Some(a) = alias {
                    rel.name = fold(&a.name);
                    rel.rename_columns(&alias_columns(a));
                }
                return Ok(rel);
            }
        }
        let (schema_name, table) = self.relation(name)?;
        self.add_table(&schema_name, &table);
        let mut rel =
            Relation::base_table(self.schema, &schema_name, &table, alias.map(|a| &a.name));
        if let Some(a) = alias.filter(|a| !a.columns.is_empty()) {
            if let (false, Some(id)) = (rel.complete, rel.first_protected(self.schema)) {
                return Err(self.refuse(
                    id,
                    "renaming the columns of a table whose column order pgshroud does not know",
                ));
            }
            rel.rename_columns(&alias_columns(a));
        }
        Ok(rel)
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

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => Some(c),
        JoinOperator::CrossApply
        | JoinOperator::OuterApply
        | JoinOperator::ArrayJoin
        | JoinOperator::LeftArrayJoin
        | JoinOperator::InnerArrayJoin => None,
    }
}

/// A relation produced by a function: unknown, unprotected columns.
fn function_relation(alias: Option<&TableAlias>, fname: Option<String>) -> Relation {
    let name = alias.map(|a| fold(&a.name)).or(fname).unwrap_or_default();
    let mut rel = Relation::derived(name, Vec::new(), false);
    if let Some(a) = alias {
        rel.rename_columns(&alias_columns(a));
    }
    rel
}

fn alias_columns(alias: &TableAlias) -> Vec<String> {
    alias.columns.iter().map(|c| fold(&c.name)).collect()
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
