//! Predicates: the comparisons in WHERE, ON and HAVING that ciphertext still supports
//! (equality with a supplied value or another column of the same key context, IN lists and
//! subqueries, `= ANY`), recorded as links and compare uses, and the refusal of the rest.

use sqlparser::ast::{BinaryOperator, Expr, Query, UnaryOperator};

use super::expr::{Outputs, COMPARED_WITH_EXPRESSION};
use super::scope::Scope;
use super::walk::{strip_nested, Operand, Res, Walker};
use super::{LinkKind, Usage};

impl<'a> Walker<'a> {
    /// A boolean condition in WHERE, ON or HAVING.
    pub fn predicate(&mut self, e: &Expr, scope: &Scope<'_>) -> Res<()> {
        if let Some(refusal) = self.orm_text_lookup(strip_nested(e), scope) {
            return Err(refusal);
        }
        match strip_nested(e) {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => {
                self.predicate(left, scope)?;
                self.predicate(right, scope)
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => self.predicate(expr, scope),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq | BinaryOperator::NotEq,
                right,
            }
            | Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right) => self.comparison(left, right, scope),
            Expr::IsNull(x) | Expr::IsNotNull(x) => {
                if let Operand::Protected(id) = self.classify(x, scope)? {
                    self.use_column(id, Usage::Compare);
                }
                Ok(())
            }
            Expr::InList { expr, list, .. } => self.in_list(expr, list, scope),
            Expr::InSubquery { expr, subquery, .. } => self.in_subquery(expr, subquery, scope),
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op: BinaryOperator::NotEq,
                right,
            } => self.any_array(left, right, scope),
            Expr::Exists { subquery, .. } => self
                .query(subquery, Some(scope), Outputs::Ignored)
                .map(drop),
            other => match self.classify(other, scope)? {
                Operand::Protected(id) => self.boolean_condition(id, other),
                _ => Ok(()),
            },
        }
    }

    /// A protected boolean column used as a condition (`WHERE flag`, `WHERE NOT flag`, as
    /// Django writes `filter(flag=True)`): sent as `(flag = <true, encrypted>)`, which is the
    /// same under three-valued logic (NULL stays NULL, and NOT applies to the comparison as
    /// it did to the column). A comparison with a value the proxy supplies: it needs the
    /// compare right. Anything but a plain column reference of logical type bool is refused.
    fn boolean_condition(&mut self, id: usize, e: &Expr) -> Res<()> {
        let refuse = |w: &Self| Err(w.refuse(id, "use as a boolean condition"));
        if self.schema.logical_type(id) != Some(pgshroud_rules::LogicalType::Bool) {
            return refuse(self);
        }
        let span = match e {
            Expr::Identifier(i) => i.span,
            Expr::CompoundIdentifier(parts) => match (parts.first(), parts.last()) {
                (Some(first), Some(last)) => first.span.union(&last.span),
                _ => return refuse(self),
            },
            _ => return refuse(self),
        };
        let Some(range) = self.source.byte_range(span) else {
            return refuse(self);
        };
        let Some(column) = self.source.text(range.clone()) else {
            return refuse(self);
        };
        let opening = format!("({column} = ");
        let at = self.literals.partition_point(|l| l.span.start <= range.end);
        self.literals.insert(
            at,
            super::LiteralSite {
                span: range.end..range.end,
                column: id,
                value: Some("true".to_owned()),
                array: false,
            },
        );
        // The engine splices literals before edits that start at the same place.
        self.edits.push(super::TextEdit {
            span: range.clone(),
            replacement: opening,
        });
        self.edits.push(super::TextEdit {
            span: range.end..range.end,
            replacement: ")".to_owned(),
        });
        self.use_column(id, Usage::CompareValue);
        Ok(())
    }

    /// `a = b`, `a <> b`, `a IS [NOT] DISTINCT FROM b`.
    fn comparison(&mut self, left: &Expr, right: &Expr, scope: &Scope<'_>) -> Res<()> {
        let l = self.classify(left, scope)?;
        let r = self.classify(right, scope)?;
        match (l, r) {
            (Operand::Protected(a), Operand::Protected(b)) => {
                self.compared_columns(a, b, "comparison with")
            }
            (Operand::Protected(id), other) | (other, Operand::Protected(id)) => {
                self.compared_value(id, &other)
            }
            _ => Ok(()),
        }
    }

    /// Records the value a protected column is compared with (a use that needs the role's
    /// compare right), or refuses it.
    fn compared_value(&mut self, id: usize, value: &Operand<'_>) -> Res<()> {
        let what = match value {
            Operand::Column => "comparison with a column that is not encrypted",
            _ => COMPARED_WITH_EXPRESSION,
        };
        self.value_site(id, value, what)?;
        self.use_column(id, Usage::CompareValue);
        Ok(())
    }

    /// Two protected columns compared with each other: they must share a key context.
    pub fn compared_columns(&mut self, a: usize, b: usize, what: &str) -> Res<()> {
        self.require_same_context(a, b, what)?;
        self.use_column(a, Usage::Compare);
        self.use_column(b, Usage::Compare);
        self.link(a, b, LinkKind::Compared);
        Ok(())
    }

    /// `c [NOT] IN (v, ...)`.
    fn in_list(&mut self, expr: &Expr, list: &[Expr], scope: &Scope<'_>) -> Res<()> {
        let Operand::Protected(id) = self.classify(expr, scope)? else {
            return list
                .iter()
                .try_for_each(|x| self.opaque(x, scope, "IN with an expression"));
        };
        for item in list {
            match self.classify(item, scope)? {
                Operand::Protected(b) => self.compared_columns(id, b, "comparison with")?,
                other => self.compared_value(id, &other)?,
            }
        }
        Ok(())
    }

    /// `c [NOT] IN (SELECT d ...)`: `d` must be protected with the same key context.
    fn in_subquery(&mut self, expr: &Expr, q: &Query, scope: &Scope<'_>) -> Res<()> {
        let left = self.classify(expr, scope)?;
        let out = self.query(q, Some(scope), Outputs::Needed)?;
        let right = match out.cols.as_slice() {
            [col] => col.column,
            _ => None,
        };
        match (left, right) {
            (Operand::Protected(a), Some(b)) => self.compared_columns(a, b, "IN (subquery) on"),
            (Operand::Protected(a), None) => Err(self.refuse(
                a,
                "IN (subquery) whose result is not an encrypted column of the same key context",
            )),
            (_, Some(b)) => Err(self.refuse(
                b,
                "IN (subquery) comparing it with a value that is not encrypted",
            )),
            _ => Ok(()),
        }
    }

    /// `c = ANY($n)`, `c = ANY(ARRAY[v, ...])`, `c <> ALL(...)`.
    fn any_array(&mut self, left: &Expr, right: &Expr, scope: &Scope<'_>) -> Res<()> {
        let Operand::Protected(id) = self.classify(left, scope)? else {
            return self.opaque(right, scope, "= ANY with an expression");
        };
        match strip_nested(right) {
            Expr::Array(a) => {
                for item in &a.elem {
                    let v = self.classify(item, scope)?;
                    self.compared_value(id, &v)?;
                }
            }
            Expr::Subquery(q) => return self.in_subquery(left, q, scope),
            other => match self.classify(other, scope)? {
                Operand::Param {
                    expr,
                    anchor,
                    index,
                } => self.param_site(id, expr, anchor, index, true)?,
                _ => {
                    return Err(self.refuse(
                        id,
                        "= ANY with something other than a $n array parameter or ARRAY[...] of literals",
                    ))
                }
            },
        }
        self.use_column(id, Usage::CompareValue);
        Ok(())
    }
}
