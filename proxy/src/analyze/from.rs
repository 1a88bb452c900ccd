//! FROM clauses: the relations a query reads (tables, joins with USING and NATURAL, derived
//! tables, functions) added to its scope, with their aliases and column renames.

use sqlparser::ast::{
    JoinConstraint, JoinOperator, ObjectName, TableAlias, TableFactor, TableWithJoins,
};

use super::expr::Outputs;
use super::scope::{fold, name_parts, Relation, Scope};
use super::walk::{Res, Walker};

impl<'a> Walker<'a> {
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
    pub(super) fn named_relation(
        &mut self,
        name: &ObjectName,
        alias: Option<&TableAlias>,
    ) -> Res<Relation> {
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

pub(super) fn alias_columns(alias: &TableAlias) -> Vec<String> {
    alias.columns.iter().map(|c| fold(&c.name)).collect()
}
