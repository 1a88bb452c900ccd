//! Bulk INSERT shapes that ORMs and drivers emit for many rows at once: SQLAlchemy's
//! `INSERT INTO t (a, b) SELECT p0::VARCHAR, p1 FROM (VALUES (...), ...) AS v(p0, p1, n) ORDER BY n`
//! and Django's / sqlx's `INSERT INTO t (a, b) SELECT * FROM UNNEST($1::text[], ...)`. Every
//! value that lands in a protected column is still a literal or a parameter, so it is encrypted
//! where it stands; anything else done to it is refused by name.

use sqlparser::ast::{
    ArrayElemTypeDef, CastKind, DataType, Expr, GroupByExpr, OrderByKind, Query, Select,
    SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, Value, Values,
};
use sqlparser::tokenizer::Span;

use pgshroud_rules::LogicalType;

use super::scope::{fold, name_parts, OutCol, Relation, Scope};
use super::walk::{strip_nested, Operand, Res, Walker};
use super::{ColumnId, Refusal, TextEdit};

const COMPUTED_VALUE: &str = "a computed value (not a literal or $n parameter)";
const UNNEST_VALUE: &str = "UNNEST of something other than a $n array parameter, an array \
     literal ('{...}') or ARRAY[...] of literals";
const ARRAY_ELEMENT: &str = "an ARRAY[...] element that is not a literal";

/// A relation whose rows are written out in the statement: `(VALUES ...) AS v(a, b)` or
/// `UNNEST(x, y) AS u(a, b)`.
struct BulkSource<'q> {
    /// The name columns may be qualified with.
    name: String,
    columns: Vec<String>,
    rows: Rows<'q>,
}

enum Rows<'q> {
    /// One expression per column in each row.
    Values(&'q Values),
    /// One array expression per column.
    Unnest(&'q [Expr]),
}

/// One output of the SELECT: the source column it is (after casts), if it is one.
struct Item<'q> {
    expr: Option<&'q Expr>,
    source: Option<usize>,
}

impl<'a> Walker<'a> {
    /// Walks `INSERT ... SELECT` from a VALUES list or UNNEST into a table with protected
    /// columns. Returns `false` when `source` has no such shape (the general path applies).
    pub fn bulk_insert(
        &mut self,
        source: &Query,
        targets: &[Option<ColumnId>],
        parent: Option<&Scope<'_>>,
    ) -> Res<bool> {
        let Some(&first) = targets.iter().flatten().next() else {
            return Ok(false);
        };
        let SetExpr::Select(sel) = &*source.body else {
            return Ok(false);
        };
        if source.with.is_some() {
            return Ok(false);
        }
        // With a join or a second FROM item the general path applies: it lets a protected
        // column be copied from another of its key context, and refuses everything else.
        let [from] = sel.from.as_slice() else {
            return Ok(false);
        };
        if !from.joins.is_empty() {
            return Ok(false);
        }
        let Some(bulk) = bulk_source(&from.relation) else {
            return Ok(false);
        };
        if let Some(what) = extra_clause(source, sel) {
            return Err(self.bulk_refusal(first, what));
        }
        let items = self.bulk_items(sel, &bulk, first)?;
        let marks = self.mark_sources(&items, targets, bulk.columns.len())?;
        for (item, target) in items.iter().zip(targets) {
            if let (Some(id), Some(expr)) = (target, item.expr) {
                self.drop_casts(*id, expr)?;
            }
        }
        let mut scope = Scope::new(parent);
        let columns = bulk.columns.iter().zip(&marks);
        let cols = columns
            .map(|(name, mark)| OutCol {
                name: name.clone(),
                column: *mark,
            })
            .collect();
        scope
            .relations
            .push(Relation::derived(bulk.name.clone(), cols, true));
        for (i, item) in items.iter().enumerate() {
            if targets.get(i).copied().flatten().is_none() {
                if let Some(expr) = item.expr {
                    self.write_plain(expr, &scope)?;
                }
            }
        }
        self.bulk_order_by(source, &items, &marks, &scope)?;
        let values_scope = Scope::new(parent);
        match bulk.rows {
            Rows::Values(values) => self.bulk_values(values, &marks, &values_scope),
            Rows::Unnest(arrays) => self.bulk_arrays(arrays, &marks, &values_scope),
        }?;
        Ok(true)
    }

    /// The SELECT list, `*` expanded over the source's columns.
    fn bulk_items<'q>(
        &self,
        sel: &'q Select,
        bulk: &BulkSource<'_>,
        first: ColumnId,
    ) -> Res<Vec<Item<'q>>> {
        let mut items = Vec::new();
        let all = |items: &mut Vec<Item<'q>>| {
            items.extend((0..bulk.columns.len()).map(|j| Item {
                expr: None,
                source: Some(j),
            }))
        };
        for item in &sel.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => items
                    .push(Item {
                        expr: Some(e),
                        source: source_column(e, bulk),
                    }),
                SelectItem::Wildcard(_) => all(&mut items),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) if name_parts(n).and_then(|p| p.last().cloned()).as_ref() == Some(&bulk.name) => {
                    all(&mut items)
                }
                _ => return Err(self.bulk_refusal(first, "this kind of select item")),
            }
        }
        Ok(items)
    }

    /// Which protected column each source column feeds (all of one key context), refusing a
    /// protected column fed by an expression.
    fn mark_sources(
        &self,
        items: &[Item<'_>],
        targets: &[Option<ColumnId>],
        width: usize,
    ) -> Res<Vec<Option<ColumnId>>> {
        let mut marks: Vec<Option<ColumnId>> = vec![None; width];
        for (item, target) in items.iter().zip(targets) {
            let Some(id) = *target else { continue };
            let Some(j) = item.source.filter(|&j| j < width) else {
                return Err(
                    self.bulk_refusal(id, "a computed value (not a VALUES or UNNEST column)")
                );
            };
            match marks[j] {
                Some(other) => self.require_same_context(id, other, "writing the value of")?,
                None => marks[j] = Some(id),
            }
        }
        Ok(marks)
    }

    /// `p0::VARCHAR` writing protected column `id`: the casts must name the column's type,
    /// and go (the value is ciphertext once rewritten).
    fn drop_casts(&mut self, id: ColumnId, expr: &Expr) -> Res<()> {
        let (base, casts) = peel_casts(expr);
        self.casts_fit(id, &casts, false)?;
        if casts.is_empty() {
            return Ok(());
        }
        let parts = match base {
            Expr::Identifier(i) => std::slice::from_ref(i),
            Expr::CompoundIdentifier(parts) => parts.as_slice(),
            _ => return Err(self.bulk_refusal(id, COMPUTED_VALUE)),
        };
        let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
            return Err(self.bulk_refusal(id, COMPUTED_VALUE));
        };
        let name = Span::new(first.span.start, last.span.end);
        let located = self.source.value_range(expr, first.span).and_then(|span| {
            let replacement = self.source.text(self.source.byte_range(name)?)?;
            Some(TextEdit {
                span,
                replacement: replacement.to_owned(),
            })
        });
        let edit = located.ok_or_else(|| super::refusal::cannot_locate(self.schema, id))?;
        self.edits.push(edit);
        Ok(())
    }

    /// A select item written to a column that is not encrypted: it may not carry a protected
    /// value.
    fn write_plain(&mut self, expr: &Expr, scope: &Scope<'_>) -> Res<()> {
        match self.classify(expr, scope)? {
            Operand::Protected(id) => {
                Err(self.refuse(id, "copying its value into a column that is not encrypted"))
            }
            _ => Ok(()),
        }
    }

    /// ORDER BY of the SELECT: by output position or by a column, never a protected one.
    fn bulk_order_by(
        &mut self,
        source: &Query,
        items: &[Item<'_>],
        marks: &[Option<ColumnId>],
        scope: &Scope<'_>,
    ) -> Res<()> {
        let Some(order_by) = &source.order_by else {
            return Ok(());
        };
        let exprs = match &order_by.kind {
            OrderByKind::Expressions(exprs) => exprs,
            OrderByKind::All(_) => {
                return match marks.iter().flatten().next() {
                    Some(&id) => Err(self.refuse(id, "ORDER BY")),
                    None => Ok(()),
                }
            }
        };
        for ob in exprs {
            if let Expr::Value(v) = strip_nested(&ob.expr) {
                let Value::Number(n, _) = &v.value else {
                    continue;
                };
                let position = n.parse::<usize>().ok().and_then(|p| p.checked_sub(1));
                let source = position.and_then(|p| items.get(p)).and_then(|i| i.source);
                if let Some(id) = source.and_then(|j| marks.get(j).copied().flatten()) {
                    return Err(self.refuse(id, "ORDER BY"));
                }
            }
        }
        self.no_ordering(exprs, scope)
    }

    /// Each row's value for a protected column is a literal or parameter, sealed in place.
    fn bulk_values(
        &mut self,
        values: &Values,
        marks: &[Option<ColumnId>],
        scope: &Scope<'_>,
    ) -> Res<()> {
        for row in &values.rows {
            for (j, x) in row.iter().enumerate() {
                match marks.get(j).copied().flatten() {
                    Some(id) => {
                        self.casts_fit(id, &peel_casts(x).1, false)?;
                        match self.classify(x, scope)? {
                            v @ (Operand::Literal { .. } | Operand::Param { .. }) => {
                                self.value_site(id, &v, COMPUTED_VALUE)?
                            }
                            _ => return Err(self.bulk_refusal(id, COMPUTED_VALUE)),
                        }
                    }
                    None => {
                        if let Operand::Protected(id) = self.classify(x, scope)? {
                            return Err(self.refuse(id, "VALUES"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Each array for a protected column is a `$n` array parameter or an array literal.
    fn bulk_arrays(
        &mut self,
        arrays: &[Expr],
        marks: &[Option<ColumnId>],
        scope: &Scope<'_>,
    ) -> Res<()> {
        for (j, x) in arrays.iter().enumerate() {
            let Some(id) = marks.get(j).copied().flatten() else {
                self.opaque(x, scope, "function unnest()")?;
                continue;
            };
            let (base, casts) = peel_casts(x);
            self.casts_fit(id, &casts, true)?;
            if let Expr::Array(array) = base {
                self.array_constructor(id, x, &array.elem, casts.len(), scope)?;
                continue;
            }
            match self.classify(x, scope)? {
                Operand::Literal {
                    expr,
                    anchor,
                    value,
                } => self.literal_site(id, expr, anchor, value, true)?,
                Operand::Param {
                    expr,
                    anchor,
                    index,
                } => self.param_site(id, expr, anchor, index, true)?,
                _ => return Err(self.bulk_refusal(id, UNNEST_VALUE)),
            }
        }
        Ok(())
    }

    /// `(ARRAY['a', NULL])::varchar[]` (psycopg2's list): each element is sealed where it
    /// stands, and the casts around the array become `::bytea[]`.
    fn array_constructor(
        &mut self,
        id: ColumnId,
        whole: &Expr,
        elements: &[Expr],
        casts: usize,
        scope: &Scope<'_>,
    ) -> Res<()> {
        if elements.is_empty() {
            return Err(self.bulk_refusal(id, "an empty ARRAY[]"));
        }
        let mut last_end = None;
        for element in elements {
            self.casts_fit(id, &peel_casts(element).1, false)?;
            match self.classify(element, scope)? {
                v @ Operand::Literal { expr, anchor, .. } => {
                    last_end = self.source.value_range(expr, anchor).map(|r| r.end);
                    self.value_site(id, &v, COMPUTED_VALUE)?
                }
                _ => return Err(self.bulk_refusal(id, ARRAY_ELEMENT)),
            }
        }
        let closers = 1 + nesting(whole);
        let ranges = last_end.and_then(|end| self.source.trailing_casts(end, closers));
        match ranges {
            Some(ranges) if ranges.len() == casts => {
                self.edits.extend(ranges.into_iter().map(|span| TextEdit {
                    span,
                    replacement: "::bytea[]".to_owned(),
                }));
                Ok(())
            }
            _ => Err(super::refusal::cannot_locate(self.schema, id)),
        }
    }

    fn bulk_refusal(&self, id: ColumnId, what: &str) -> Refusal {
        super::refusal::unsupported_in_bulk(self.schema, id, what)
    }

    /// Casts on a value of protected column `id` must name its logical type (or one of its
    /// family: text and varchar, the integer types), as arrays where `array`.
    fn casts_fit(&self, id: ColumnId, casts: &[&DataType], array: bool) -> Res<()> {
        let Some(logical) = self.schema.logical_type(id) else {
            return match casts.first() {
                Some(_) => Err(self.bulk_refusal(id, "a cast (the column's type is not known)")),
                None => Ok(()),
            };
        };
        for dt in casts {
            let fits = match cast_type(dt) {
                Some((t, is_array)) => is_array == array && same_family(t, logical),
                None => false,
            };
            if !fits {
                let wanted = if array {
                    format!("{logical}[]")
                } else {
                    logical.to_string()
                };
                let cast = dt.to_string().to_lowercase();
                return Err(self.bulk_refusal(
                    id,
                    &format!("a cast to {cast} (the column's type is {wanted})"),
                ));
            }
        }
        Ok(())
    }
}

/// `(VALUES ...) AS v(...)` or `UNNEST(...)`, as a FROM item.
fn bulk_source(tf: &TableFactor) -> Option<BulkSource<'_>> {
    match tf {
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => {
            let plain = subquery.with.is_none()
                && subquery.order_by.is_none()
                && subquery.limit_clause.is_none()
                && subquery.fetch.is_none()
                && subquery.locks.is_empty();
            let SetExpr::Values(values) = &*subquery.body else {
                return None;
            };
            if !plain {
                return None;
            }
            let width = values.rows.iter().map(|r| r.len()).max().unwrap_or(0);
            let defaults = (1..=width).map(|i| format!("column{i}")).collect();
            Some(named(
                alias.as_ref(),
                String::new(),
                defaults,
                Rows::Values(values),
            ))
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: false,
        } => {
            let defaults = vec!["unnest".to_string(); array_exprs.len()];
            let rows = Rows::Unnest(array_exprs);
            Some(named(alias.as_ref(), "unnest".to_string(), defaults, rows))
        }
        _ => None,
    }
}

fn named<'q>(
    alias: Option<&sqlparser::ast::TableAlias>,
    default_name: String,
    mut columns: Vec<String>,
    rows: Rows<'q>,
) -> BulkSource<'q> {
    let name = alias.map_or(default_name, |a| fold(&a.name));
    for (i, c) in alias.iter().flat_map(|a| &a.columns).enumerate() {
        if let Some(slot) = columns.get_mut(i) {
            *slot = fold(&c.name);
        }
    }
    BulkSource {
        name,
        columns,
        rows,
    }
}

/// A clause of the SELECT (or its query) beyond select list, FROM and ORDER BY.
fn extra_clause(q: &Query, sel: &Select) -> Option<&'static str> {
    let grouped =
        !matches!(&sel.group_by, GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty());
    let checks: [(bool, &'static str); 8] = [
        (sel.selection.is_some(), "a WHERE clause"),
        (sel.distinct.is_some(), "DISTINCT"),
        (grouped || sel.having.is_some(), "GROUP BY or HAVING"),
        (
            q.limit_clause.is_some() || q.fetch.is_some(),
            "LIMIT, OFFSET or FETCH",
        ),
        (!q.locks.is_empty(), "a locking clause"),
        (!sel.named_window.is_empty(), "a WINDOW clause"),
        (
            sel.into.is_some() || sel.top.is_some() || sel.qualify.is_some(),
            "a clause pgshroud does not analyse here",
        ),
        (
            sel.prewhere.is_some()
                || !sel.connect_by.is_empty()
                || !sel.lateral_views.is_empty()
                || !sel.cluster_by.is_empty()
                || !sel.distribute_by.is_empty()
                || !sel.sort_by.is_empty()
                || sel.exclude.is_some()
                || sel.value_table_mode.is_some()
                || !matches!(sel.flavor, SelectFlavor::Standard)
                || q.for_clause.is_some()
                || q.settings.is_some()
                || q.format_clause.is_some()
                || !q.pipe_operators.is_empty(),
            "a clause pgshroud does not analyse here",
        ),
    ];
    checks
        .into_iter()
        .find(|(hit, _)| *hit)
        .map(|(_, what)| what)
}

/// The source column a select item names, through parentheses and casts.
fn source_column(e: &Expr, bulk: &BulkSource<'_>) -> Option<usize> {
    let name = match peel_casts(e).0 {
        Expr::Identifier(i) => fold(i),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if fold(q) == bulk.name => fold(c),
            _ => return None,
        },
        _ => return None,
    };
    let mut found = bulk.columns.iter().enumerate().filter(|(_, c)| **c == name);
    match (found.next(), found.next()) {
        (Some((j, _)), None) => Some(j),
        _ => None,
    }
}

/// The expression under parentheses and casts, and the casts' types (outermost first).
fn peel_casts(mut e: &Expr) -> (&Expr, Vec<&DataType>) {
    let mut casts = Vec::new();
    loop {
        match e {
            Expr::Nested(inner) => e = inner,
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
            } => {
                casts.push(data_type);
                e = expr;
            }
            _ => return (e, casts),
        }
    }
}

/// How many parentheses wrap the expression under its casts (`((ARRAY[..])::text[])`: 2).
fn nesting(mut e: &Expr) -> usize {
    let mut n = 0;
    loop {
        match e {
            Expr::Nested(inner) => {
                n += 1;
                e = inner;
            }
            Expr::Cast { expr, .. } => e = expr,
            _ => return n,
        }
    }
}

/// The logical type a cast names, and whether as an array; type modifiers are ignored.
fn cast_type(dt: &DataType) -> Option<(LogicalType, bool)> {
    let (element, array) = match dt {
        DataType::Array(ArrayElemTypeDef::SquareBracket(inner, _)) => (&**inner, true),
        DataType::Array(_) => return None,
        other => (other, false),
    };
    let text = element.to_string().to_ascii_lowercase();
    let mut name = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => name.push(c),
            _ => {}
        }
    }
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    LogicalType::from_name(&name).map(|t| (t, array))
}

/// Casts between these keep the value PostgreSQL would store (an int8 7 into an int4
/// column is 7; a varchar into a text column is the same string).
fn same_family(a: LogicalType, b: LogicalType) -> bool {
    use LogicalType::*;
    let family = |t| match t {
        Text | Varchar => 1,
        Int2 | Int4 | Int8 => 2,
        _ => 0,
    };
    a == b || (family(a) != 0 && family(a) == family(b))
}
