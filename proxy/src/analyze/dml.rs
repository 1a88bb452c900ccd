//! Data-changing statements: INSERT (VALUES, SELECT, ON CONFLICT), UPDATE, DELETE, MERGE and
//! their RETURNING lists — where protected columns are written and what may be written there.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_relations, Assignment, AssignmentTarget, Delete, Expr, FromTable, Insert, ObjectName,
    OnConflictAction, OnInsert, SelectItem, SetExpr, Statement, TableFactor, TableObject, Update,
    UpdateTableFromKind,
};

use super::expr::Outputs;
use super::query::QueryOut;
use super::refusal;
use super::scope::{name_parts, Relation, Scope};
use super::walk::{Operand, Res, Walker};
use super::{ColumnId, LinkKind, Usage};

const WRITE_EXPRESSION: &str =
    "writing a computed expression (encrypted columns accept literals, $n parameters, NULL, \
     DEFAULT or the same encrypted column)";
const COPY_TO_PLAIN: &str = "copying its value into a column that is not encrypted";

impl<'a> Walker<'a> {
    /// INSERT / UPDATE / DELETE / MERGE, at top level or inside a CTE; returns RETURNING columns.
    pub fn dml(&mut self, stmt: &Statement, parent: Option<&Scope<'_>>) -> Res<QueryOut> {
        match stmt {
            Statement::Insert(i) => self.insert(i, parent),
            Statement::Update(u) => self.update(u, parent),
            Statement::Delete(d) => self.delete(d, parent),
            Statement::Merge(m) => {
                self.refuse_if_protected(m, "MERGE")?;
                Ok(QueryOut::default())
            }
            _ => Err(refusal::unsupported_statement(
                "this statement inside a query",
                None,
            )),
        }
    }

    /// Refuses a statement form this analyser does not walk if it reads or writes a protected
    /// table anywhere.
    pub fn refuse_if_protected<V: sqlparser::ast::Visit>(
        &mut self,
        node: &V,
        what: &str,
    ) -> Res<()> {
        let mut protected = None;
        let _ = visit_relations(node, |name| {
            if let Some((s, t)) = self.relation_or_candidate(name) {
                self.add_table(&s, &t);
                if protected.is_none() {
                    protected = self.schema.protected_columns_of(&s, &t).first().copied();
                }
            }
            ControlFlow::<()>::Continue(())
        });
        match protected {
            Some(id) => Err(refusal::unsupported_statement(what, Some(id))),
            None => Ok(()),
        }
    }

    fn insert(&mut self, ins: &Insert, parent: Option<&Scope<'_>>) -> Res<QueryOut> {
        let TableObject::TableName(name) = &ins.table else {
            self.refuse_if_protected(ins, "this form of INSERT")?;
            return Ok(QueryOut::default());
        };
        let (s, t) = self.target_table(name)?;
        let targets = self.insert_targets(ins, &s, &t)?;
        for id in targets.iter().flatten() {
            self.use_column(*id, Usage::Write);
        }
        if let Some(source) = &ins.source {
            match (&*source.body, &source.with) {
                (SetExpr::Values(values), None) => {
                    let scope = Scope::new(parent);
                    for row in &values.rows {
                        for (i, x) in row.iter().enumerate() {
                            let target = targets.get(i).copied().flatten();
                            self.write(target, x, &scope)?;
                        }
                    }
                }
                _ if self.bulk_insert(source, &targets, parent)? => {}
                _ => {
                    let out = self.query(source, parent, Outputs::Needed)?;
                    self.insert_from_query(&targets, &out)?;
                }
            }
        }
        let alias = ins.table_alias.as_ref().map(|a| &a.alias);
        let target = Relation::base_table(self.schema, &s, &t, alias);
        if let Some(OnInsert::OnConflict(oc)) = &ins.on {
            self.on_conflict_targets(oc, &targets, &s, &t);
            if let OnConflictAction::DoUpdate(du) = &oc.action {
                let mut scope = Scope::new(parent);
                let mut excluded = target.clone();
                excluded.name = "excluded".to_string();
                scope.relations.push(target.clone());
                scope.relations.push(excluded);
                self.assignments(&du.assignments, &s, &t, &scope)?;
                if let Some(sel) = &du.selection {
                    self.predicate(sel, &scope)?;
                }
            }
        }
        let mut scope = Scope::new(parent);
        scope.relations.push(target);
        self.returning(ins.returning.as_deref(), &scope)
    }

    /// Resolves and records the target table of a write.
    fn target_table(&mut self, name: &ObjectName) -> Res<(String, String)> {
        let (s, t) = self.relation(name)?;
        self.add_table(&s, &t);
        Ok((s, t))
    }

    /// The protected column (if any) at each position of the INSERT column list.
    fn insert_targets(&self, ins: &Insert, s: &str, t: &str) -> Res<Vec<Option<ColumnId>>> {
        if !ins.columns.is_empty() {
            return ins
                .columns
                .iter()
                .map(|c| self.assigned_column(c, s, t))
                .collect();
        }
        if let Some(cols) = self.schema.table_columns(s, t) {
            return Ok(cols.iter().map(|c| self.schema.lookup(s, t, c)).collect());
        }
        let has_source = ins.source.is_some();
        if has_source && self.schema.has_protected_table(s, t) {
            return Err(refusal::name_the_columns(s, t, "the INSERT"));
        }
        Ok(Vec::new())
    }

    /// `INSERT INTO t (c, ...) SELECT d, ...`: each protected target takes a protected source
    /// of the same key context; no protected source lands in a plain column.
    fn insert_from_query(&mut self, targets: &[Option<ColumnId>], out: &QueryOut) -> Res<()> {
        out.require_exact(self.schema)?;
        for (i, target) in targets.iter().enumerate() {
            let source = out.cols.get(i).and_then(|c| c.column);
            match (*target, source) {
                (Some(c), Some(d)) => self.copied(c, d)?,
                (Some(c), None) => {
                    return Err(self.refuse(
                        c,
                        "INSERT ... SELECT of a value that is not an encrypted column of the same \
                         key context",
                    ))
                }
                (None, Some(d)) => return Err(self.refuse(d, COPY_TO_PLAIN)),
                (None, None) => {}
            }
        }
        if let Some(d) = out.cols.iter().skip(targets.len()).find_map(|c| c.column) {
            return Err(self.refuse(d, COPY_TO_PLAIN));
        }
        Ok(())
    }

    /// One value written to a column: protected targets take literals, parameters, NULL,
    /// DEFAULT or a protected column of the same context; plain targets take anything that
    /// does not carry a protected value.
    fn write(&mut self, target: Option<ColumnId>, value: &Expr, scope: &Scope<'_>) -> Res<()> {
        let v = self.classify(value, scope)?;
        match (target, v) {
            (Some(c), Operand::Protected(d)) => self.copied(c, d),
            (Some(_), Operand::Default) => Ok(()),
            (Some(c), other) => self.value_site(c, &other, WRITE_EXPRESSION),
            (None, Operand::Protected(d)) => Err(self.refuse(d, COPY_TO_PLAIN)),
            (None, _) => Ok(()),
        }
    }

    /// The value of protected column `source` written to protected column `target`.
    fn copied(&mut self, target: ColumnId, source: ColumnId) -> Res<()> {
        self.require_same_context(target, source, "writing the value of")?;
        self.link(target, source, LinkKind::Copied);
        Ok(())
    }

    /// `ON CONFLICT`: the inserted values are compared with the stored ones of the conflict
    /// target's columns (the statement's outcome tells whether a supplied value is stored), so
    /// they need the role's compare right. Without a column list (no target, `ON CONSTRAINT`)
    /// the target is unknown: every protected column the INSERT writes counts.
    fn on_conflict_targets(
        &mut self,
        oc: &sqlparser::ast::OnConflict,
        written: &[Option<ColumnId>],
        s: &str,
        t: &str,
    ) {
        let named = match &oc.conflict_target {
            Some(sqlparser::ast::ConflictTarget::Columns(cols)) => Some(
                cols.iter()
                    .filter_map(|c| self.schema.lookup(s, t, &super::scope::fold(c)))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        let compared = named.unwrap_or_else(|| written.iter().flatten().copied().collect());
        for id in compared {
            self.use_column(id, Usage::CompareValue);
        }
    }

    /// `SET c = v, (a, b) = (v, w)` on table (s, t).
    fn assignments(&mut self, list: &[Assignment], s: &str, t: &str, scope: &Scope<'_>) -> Res<()> {
        for a in list {
            match &a.target {
                AssignmentTarget::ColumnName(col) => {
                    let target = self.assigned_column(col, s, t)?;
                    if let Some(id) = target {
                        self.use_column(id, Usage::Write);
                    }
                    self.write(target, &a.value, scope)?;
                }
                AssignmentTarget::Tuple(cols) => {
                    let targets = cols
                        .iter()
                        .map(|c| self.assigned_column(c, s, t))
                        .collect::<Res<Vec<_>>>()?;
                    match &a.value {
                        Expr::Tuple(values) if values.len() == targets.len() => {
                            for (target, value) in targets.iter().zip(values) {
                                if let Some(id) = target {
                                    self.use_column(*id, Usage::Write);
                                }
                                self.write(*target, value, scope)?;
                            }
                        }
                        other => {
                            if let Some(id) = targets.iter().flatten().next() {
                                return Err(self.refuse(
                                    *id,
                                    "a multi-column assignment from a subquery or row expression",
                                ));
                            }
                            self.write(None, other, scope)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The protected column a write target names. PostgreSQL reads `SET a.b = v` as field `b`
    /// of column `a` (and rejects a table-qualified target), so a multi-part target naming a
    /// protected column in any part is refused rather than guessed.
    fn assigned_column(&self, col: &ObjectName, s: &str, t: &str) -> Res<Option<ColumnId>> {
        let parts = name_parts(col).unwrap_or_default();
        match parts.as_slice() {
            [name] => Ok(self.schema.lookup(s, t, name)),
            parts => match parts.iter().find_map(|p| self.schema.lookup(s, t, p)) {
                Some(id) => Err(self.refuse(id, "a qualified, field or element write target")),
                None => Ok(None),
            },
        }
    }

    fn update(&mut self, u: &Update, parent: Option<&Scope<'_>>) -> Res<QueryOut> {
        let TableFactor::Table { name, alias, .. } = &u.table.relation else {
            self.refuse_if_protected(u, "this form of UPDATE")?;
            return Ok(QueryOut::default());
        };
        let (s, t) = self.target_table(name)?;
        let mut scope = Scope::new(parent);
        scope.relations.push(Relation::base_table(
            self.schema,
            &s,
            &t,
            alias.as_ref().map(|a| &a.name),
        ));
        if !u.table.joins.is_empty() {
            self.refuse_if_protected(&u.table, "UPDATE with a join in its target")?;
        }
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &u.from
        {
            for twj in from {
                self.table_with_joins(twj, &mut scope)?;
            }
        }
        self.assignments(&u.assignments, &s, &t, &scope)?;
        if let Some(sel) = &u.selection {
            self.predicate(sel, &scope)?;
        }
        self.returning(u.returning.as_deref(), &scope)
    }

    fn delete(&mut self, d: &Delete, parent: Option<&Scope<'_>>) -> Res<QueryOut> {
        let mut scope = Scope::new(parent);
        let from = match &d.from {
            FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
        };
        for twj in from {
            // The target is always a table: a CTE of the same name does not shadow it.
            match &twj.relation {
                TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } if twj.joins.is_empty() => {
                    let (s, t) = self.target_table(name)?;
                    self.deleted_from.push((s.clone(), t.clone()));
                    let alias = alias.as_ref().map(|a| &a.name);
                    scope
                        .relations
                        .push(Relation::base_table(self.schema, &s, &t, alias));
                }
                _ => {
                    self.refuse_if_protected(twj, "this form of DELETE")?;
                    self.table_with_joins(twj, &mut scope)?;
                }
            }
        }
        for twj in d.using.iter().flatten() {
            self.table_with_joins(twj, &mut scope)?;
        }
        if let Some(sel) = &d.selection {
            self.predicate(sel, &scope)?;
        }
        self.returning(d.returning.as_deref(), &scope)
    }

    /// RETURNING follows the select-list rules.
    fn returning(&mut self, items: Option<&[SelectItem]>, scope: &Scope<'_>) -> Res<QueryOut> {
        let mut out = QueryOut {
            cols: Vec::new(),
            complete: true,
        };
        let Some(items) = items else {
            return Ok(out);
        };
        for item in items {
            self.select_item(item, scope, &mut out, Outputs::Needed)?;
        }
        out.require_exact(self.schema)?;
        Ok(out)
    }
}
