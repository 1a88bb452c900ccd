//! Expressions: which uses of a protected column are comparisons the ciphertext still supports
//! (in WHERE / ON / HAVING), and refusal of every other use, named by the operation.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_relations, BinaryOperator, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentClause, FunctionArguments, OrderByExpr, Query, UnaryOperator,
    Value, ValueWithSpan, Visit, WindowType,
};

use super::refusal;
use super::scope::{fold, name_parts, Resolved, Scope};
use super::walk::{strip_nested, value_operand, Operand, Res, Walker};
use super::Usage;

/// Label for comparisons found outside WHERE / ON / HAVING.
const COMPARISON_AS_VALUE: &str = "a comparison outside WHERE, ON or HAVING";
pub(super) const COMPARED_WITH_EXPRESSION: &str =
    "comparison with an expression that is not a literal, $n parameter or NULL";

/// Whether a subquery's select list matters to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    Needed,
    Ignored,
}

impl<'a> Walker<'a> {
    /// Resolves a column reference expression.
    pub fn column_ref<'e>(&self, e: &'e Expr, scope: &Scope<'_>) -> Res<Operand<'e>> {
        let parts: Vec<String> = match e {
            Expr::Identifier(i) => vec![fold(i)],
            Expr::CompoundIdentifier(v) => v.iter().map(fold).collect(),
            _ => return Ok(Operand::Other),
        };
        match scope.resolve(self.schema, &parts) {
            Resolved::Protected(id) => Ok(Operand::Protected(id)),
            Resolved::Plain | Resolved::WholeRow(None) => Ok(Operand::Column),
            Resolved::WholeRow(Some(id)) => Err(self.refuse(id, "a whole-row reference")),
            Resolved::Ambiguous(id) => Err(self.refuse(
                id,
                &format!(
                    "an unqualified reference {} that may also name a column of a table whose \
                     columns pgshroud does not know (qualify it with its table)",
                    parts.join(".")
                ),
            )),
            Resolved::Unresolved => Err(refusal::unsupported_statement(
                &format!(
                    "the column reference {} (pgshroud cannot tell which table it belongs to, \
                     and a column of that name is encrypted)",
                    parts.join(".")
                ),
                None,
            )),
        }
    }

    /// Classifies an operand of a comparison, write or projection. Any use of a protected
    /// column inside it other than a plain reference (or `count(c)`) is refused.
    pub fn classify<'e>(&mut self, e: &'e Expr, scope: &Scope<'_>) -> Res<Operand<'e>> {
        let e = strip_nested(e);
        match e {
            Expr::Identifier(i)
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") =>
            {
                Ok(Operand::Default)
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => self.column_ref(e, scope),
            Expr::Value(v) => Ok(value_operand(e, &v.value, v.span)),
            Expr::TypedString(ts) => Ok(literal_of(e, &ts.value)),
            Expr::UnaryOp {
                op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
                expr: inner,
            } => match strip_nested(inner) {
                Expr::Value(ValueWithSpan {
                    value: Value::Number(n, _),
                    span,
                }) => Ok(Operand::Literal {
                    expr: e,
                    anchor: *span,
                    value: Some(match op {
                        UnaryOperator::Minus => format!("-{n}"),
                        _ => n.clone(),
                    }),
                }),
                _ => self.opaque(e, scope, "").map(|()| Operand::Other),
            },
            Expr::Cast { expr: inner, .. } => Ok(match self.classify(inner, scope)? {
                Operand::Literal { anchor, value, .. } => Operand::Literal {
                    expr: e,
                    anchor,
                    value,
                },
                Operand::Param { anchor, index, .. } => Operand::Param {
                    expr: e,
                    anchor,
                    index,
                },
                Operand::Protected(id) => return Err(self.refuse(id, "a cast")),
                _ => Operand::Other,
            }),
            Expr::Function(f) => self.function(f, scope).map(|()| Operand::Other),
            _ => self.opaque(e, scope, "").map(|()| Operand::Other),
        }
    }

    /// Walks an expression whose value is computed: a protected column anywhere inside is
    /// refused, named by the innermost operation applied to it (`label` when `e` itself is
    /// the column).
    pub fn opaque(&mut self, e: &Expr, scope: &Scope<'_>, label: &str) -> Res<()> {
        match e {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                match self.column_ref(e, scope)? {
                    Operand::Protected(id) => Err(self.refuse(id, label)),
                    _ => Ok(()),
                }
            }
            Expr::Nested(x) => self.opaque(x, scope, label),
            Expr::Value(_) | Expr::TypedString(_) | Expr::Wildcard(_) => Ok(()),
            Expr::QualifiedWildcard(name, _) => self.qualified_wildcard_value(name, scope, label),
            Expr::BinaryOp { left, op, right } => {
                let l = binary_label(op, label);
                self.opaque(left, scope, &l)?;
                self.opaque(right, scope, &l)
            }
            Expr::UnaryOp { op, expr } => self.opaque(expr, scope, &unary_label(op)),
            Expr::Cast { expr, .. } => self.opaque(expr, scope, "a cast"),
            Expr::Function(f) => self.function(f, scope),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let parts = operand
                    .iter()
                    .map(|b| &**b)
                    .chain(else_result.iter().map(|b| &**b));
                for x in parts {
                    self.opaque(x, scope, "CASE")?;
                }
                for w in conditions {
                    self.opaque(&w.condition, scope, "CASE")?;
                    self.opaque(&w.result, scope, "CASE")?;
                }
                Ok(())
            }
            Expr::Like { expr, pattern, .. } => self.opaque_all([expr, pattern], scope, "LIKE"),
            Expr::ILike { expr, pattern, .. } => self.opaque_all([expr, pattern], scope, "ILIKE"),
            Expr::SimilarTo { expr, pattern, .. } => {
                self.opaque_all([expr, pattern], scope, "SIMILAR TO")
            }
            Expr::RLike { expr, pattern, .. } => {
                self.opaque_all([expr, pattern], scope, "regular expression matching")
            }
            Expr::Between {
                expr, low, high, ..
            } => self.opaque_all([expr, low, high], scope, "BETWEEN"),
            Expr::InList { expr, list, .. } => {
                let l = comparison_label(label);
                self.opaque(expr, scope, l)?;
                list.iter().try_for_each(|x| self.opaque(x, scope, l))
            }
            Expr::InSubquery { expr, subquery, .. } => {
                let l = comparison_label(label);
                self.opaque(expr, scope, l)?;
                self.subquery_value(subquery, scope, l)
            }
            Expr::Subquery(q) => {
                self.subquery_value(q, scope, "a scalar subquery in an expression")
            }
            Expr::Exists { subquery, .. } => self
                .query(subquery, Some(scope), Outputs::Ignored)
                .map(drop),
            Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x) => self.opaque(x, scope, comparison_label(label)),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.opaque_all([a, b], scope, comparison_label(label))
            }
            Expr::AnyOp {
                left,
                right,
                compare_op,
                ..
            }
            | Expr::AllOp {
                left,
                right,
                compare_op,
            } => {
                let l = match compare_op {
                    BinaryOperator::Eq | BinaryOperator::NotEq => {
                        comparison_label(label).to_string()
                    }
                    other => format!("operator {other} with ANY/ALL"),
                };
                self.opaque_all([left, right], scope, &l)
            }
            Expr::Tuple(items) => items
                .iter()
                .try_for_each(|x| self.opaque(x, scope, "a row constructor")),
            Expr::Array(a) => a
                .elem
                .iter()
                .try_for_each(|x| self.opaque(x, scope, "an array constructor")),
            Expr::Collate { expr, .. } => self.opaque(expr, scope, "COLLATE"),
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => self.opaque_all([timestamp, time_zone], scope, "AT TIME ZONE"),
            Expr::Extract { expr, .. } => self.opaque(expr, scope, "EXTRACT"),
            Expr::Ceil { expr, .. } => self.opaque(expr, scope, "function ceil()"),
            Expr::Floor { expr, .. } => self.opaque(expr, scope, "function floor()"),
            Expr::Position { expr, r#in } => {
                self.opaque_all([expr, r#in], scope, "function position()")
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let l = "function substring()";
                self.opaque(expr, scope, l)?;
                for x in substring_from.iter().chain(substring_for.iter()) {
                    self.opaque(x, scope, l)?;
                }
                Ok(())
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                let l = "function trim()";
                self.opaque(expr, scope, l)?;
                for x in trim_what.iter() {
                    self.opaque(x, scope, l)?;
                }
                for x in trim_characters.iter().flatten() {
                    self.opaque(x, scope, l)?;
                }
                Ok(())
            }
            Expr::Interval(i) => self.opaque(&i.value, scope, "INTERVAL"),
            Expr::JsonAccess { value, .. } => {
                self.opaque(value, scope, "JSON access")?;
                self.fallback(e, scope)
            }
            Expr::CompoundFieldAccess { root, .. } => {
                self.opaque(root, scope, "field or subscript access")?;
                self.fallback(e, scope)
            }
            _ => self.fallback(e, scope),
        }
    }

    fn opaque_all<const N: usize>(
        &mut self,
        exprs: [&Expr; N],
        scope: &Scope<'_>,
        label: &str,
    ) -> Res<()> {
        exprs
            .into_iter()
            .try_for_each(|x| self.opaque(x, scope, label))
    }

    /// Fail-closed check for expression forms not walked structurally: refuses if any column
    /// reference inside resolves to a protected column, or any subquery reads a protected table.
    pub fn fallback<V: Visit>(&self, node: &V, scope: &Scope<'_>) -> Res<()> {
        let refused = visit_expressions(node, |x| match x {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match self.column_ref(x, scope) {
                Ok(Operand::Protected(id)) => {
                    ControlFlow::Break(self.refuse(id, "this kind of expression"))
                }
                Err(r) => ControlFlow::Break(r),
                Ok(_) => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        });
        if let ControlFlow::Break(r) = refused {
            return Err(r);
        }
        let refused = visit_relations(node, |name| {
            let protected = self
                .relation_or_candidate(name)
                .and_then(|(s, t)| self.schema.protected_columns_of(&s, &t).first().copied());
            match protected {
                Some(id) => ControlFlow::Break(self.refuse(id, "this kind of expression")),
                None => ControlFlow::Continue(()),
            }
        });
        match refused {
            ControlFlow::Break(r) => Err(r),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// A subquery whose value is used in a computation: it may not yield a protected value.
    fn subquery_value(&mut self, q: &Query, scope: &Scope<'_>, label: &str) -> Res<()> {
        let out = self.query(q, Some(scope), Outputs::Needed)?;
        match out.cols.iter().find_map(|c| c.column) {
            Some(id) => Err(self.refuse(id, label)),
            None => Ok(()),
        }
    }

    /// `t.*` used as a value (e.g. `row_to_json(t.*)`).
    fn qualified_wildcard_value(
        &self,
        name: &sqlparser::ast::ObjectName,
        scope: &Scope<'_>,
        label: &str,
    ) -> Res<()> {
        let Some(parts) = name_parts(name) else {
            return self.fallback(name, scope);
        };
        let protected = parts
            .last()
            .and_then(|n| scope.relation(n))
            .and_then(|r| r.first_protected(self.schema));
        match protected {
            Some(id) => Err(self.refuse(id, &format!("{label} over a whole row"))),
            None => Ok(()),
        }
    }

    /// A function call: `count(c)` groups by the ciphertext (allowed); every other function
    /// applied to a protected column is refused.
    pub fn function(&mut self, f: &Function, scope: &Scope<'_>) -> Res<()> {
        let name = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(fold)
            .unwrap_or_default();
        let label = format!("function {name}()");
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => self.subquery_value(q, scope, &label)?,
            FunctionArguments::List(list) => {
                let single = match list.args.as_slice() {
                    [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => Some(x),
                    _ => None,
                };
                match single {
                    Some(x) if name == "count" => {
                        if let Operand::Protected(id) = self.classify(x, scope)? {
                            self.use_column(id, Usage::Group);
                        }
                    }
                    _ => {
                        for arg in &list.args {
                            self.function_arg(arg, scope, &label)?;
                        }
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(obs) => self.no_ordering(obs, scope)?,
                        FunctionArgumentClause::Where(x) | FunctionArgumentClause::Limit(x) => {
                            self.opaque(x, scope, &label)?
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(filter) = &f.filter {
            self.predicate(filter, scope)?;
        }
        self.no_ordering(&f.within_group, scope)?;
        if let Some(WindowType::WindowSpec(w)) = &f.over {
            for x in &w.partition_by {
                if let Operand::Protected(id) = self.classify(x, scope)? {
                    self.use_column(id, Usage::Group);
                }
            }
            self.no_ordering(&w.order_by, scope)?;
        }
        Ok(())
    }

    fn function_arg(&mut self, arg: &FunctionArg, scope: &Scope<'_>, label: &str) -> Res<()> {
        let a = match arg {
            FunctionArg::Unnamed(a)
            | FunctionArg::Named { arg: a, .. }
            | FunctionArg::ExprNamed { arg: a, .. } => a,
        };
        match a {
            FunctionArgExpr::Expr(x) => self.opaque(x, scope, label),
            FunctionArgExpr::QualifiedWildcard(name) => {
                self.qualified_wildcard_value(name, scope, label)
            }
            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => Ok(()),
        }
    }

    /// ORDER BY on ciphertext would expose nothing but is meaningless; refuse it.
    pub fn no_ordering(&mut self, obs: &[OrderByExpr], scope: &Scope<'_>) -> Res<()> {
        for ob in obs {
            if let Operand::Protected(id) = self.classify(&ob.expr, scope)? {
                return Err(self.refuse(id, "ORDER BY"));
            }
        }
        Ok(())
    }
}

fn literal_of<'e>(e: &'e Expr, v: &ValueWithSpan) -> Operand<'e> {
    match value_operand(e, &v.value, v.span) {
        Operand::Param { .. } => Operand::Other,
        other => other,
    }
}

/// A comparison inside a computed value is named after the enclosing construct (`CASE`), or
/// as a comparison outside WHERE / ON / HAVING at the top of a select item.
fn comparison_label(outer: &str) -> &str {
    if outer.is_empty() {
        COMPARISON_AS_VALUE
    } else {
        outer
    }
}

fn binary_label(op: &BinaryOperator, outer: &str) -> String {
    match op {
        BinaryOperator::Eq | BinaryOperator::NotEq => comparison_label(outer).to_string(),
        BinaryOperator::And | BinaryOperator::Or => format!("{op} outside WHERE, ON or HAVING"),
        other => format!("operator {other}"),
    }
}

fn unary_label(op: &UnaryOperator) -> String {
    match op {
        UnaryOperator::Not => "NOT outside WHERE, ON or HAVING".to_string(),
        other => format!("operator {other}"),
    }
}
