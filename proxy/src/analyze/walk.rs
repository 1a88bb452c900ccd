//! The walker's state (what one statement touches) and the recording of uses, literal sites
//! and parameter sites, with the checks that keep every recorded site rewritable.

use sqlparser::ast::{Expr, ObjectName, Value};
use sqlparser::tokenizer::{Location, Span};

use super::refusal::{self, cannot_locate};
use super::scope::{name_parts, Relation};
use super::search_path::Resolution;
use super::source::SourceMap;
use super::{
    ColumnId, ColumnLink, ColumnUse, LiteralSite, ParamSite, ProtectedSchema, Refusal, TextEdit,
    Usage,
};

pub type Res<T> = Result<T, Refusal>;

/// What an expression is, as far as encryption cares.
#[derive(Debug, Clone)]
pub enum Operand<'e> {
    /// A plain reference to a protected column.
    Protected(ColumnId),
    /// A literal, possibly signed, cast or typed (`'x'::text`, `-5`, `DATE '...'`); `value`
    /// is `None` for NULL. `anchor` is the literal token's span.
    Literal {
        expr: &'e Expr,
        anchor: Span,
        value: Option<String>,
    },
    /// `$n`, possibly cast; `index` is zero-based.
    Param {
        expr: &'e Expr,
        anchor: Span,
        index: usize,
    },
    /// The `DEFAULT` keyword in VALUES or SET.
    Default,
    /// A reference to a column that is not protected.
    Column,
    /// Anything else; already checked not to carry a protected value.
    Other,
}

/// A protected parameter occurrence, kept for the consistency check at the end.
#[derive(Debug, Clone)]
pub struct ParamAnchor {
    pub index: usize,
    pub location: Location,
    pub column: ColumnId,
    pub array: bool,
}

/// Accumulates what one statement touches.
pub struct Walker<'a> {
    pub schema: &'a ProtectedSchema,
    pub source: &'a SourceMap<'a>,
    pub tables: Vec<(String, String)>,
    pub uses: Vec<ColumnUse>,
    pub literals: Vec<LiteralSite>,
    pub params: Vec<ParamSite>,
    pub param_anchors: Vec<ParamAnchor>,
    pub links: Vec<ColumnLink>,
    /// Tables whose rows a DELETE removes.
    pub deleted_from: Vec<(String, String)>,
    pub edits: Vec<TextEdit>,
    /// CTEs visible at the current point, innermost last.
    pub ctes: Vec<Relation>,
    /// The text names a guard (`pgshroud_guard...`): only positively harmless statements pass.
    pub guard_mentioned: bool,
}

impl<'a> Walker<'a> {
    pub fn new(schema: &'a ProtectedSchema, source: &'a SourceMap<'a>) -> Self {
        Walker {
            schema,
            source,
            tables: Vec::new(),
            uses: Vec::new(),
            literals: Vec::new(),
            params: Vec::new(),
            param_anchors: Vec::new(),
            links: Vec::new(),
            deleted_from: Vec::new(),
            edits: Vec::new(),
            ctes: Vec::new(),
            guard_mentioned: false,
        }
    }

    /// The (schema, table) a relation name means; refuses a name that may or may not mean a
    /// protected table (see [`super::SearchPath`]).
    pub fn relation(&self, name: &ObjectName) -> Res<(String, String)> {
        let resolved = name_parts(name).and_then(|parts| self.schema.resolve_table(&parts));
        match resolved {
            Some(Resolution::Table(s, t)) => Ok((s, t)),
            Some(Resolution::Unsure { schema, table, why }) => {
                Err(refusal::unsure_table(&schema, &table, &why))
            }
            None => Err(refusal::unsupported_statement(
                "this form of table name",
                None,
            )),
        }
    }

    /// For checks that refuse (or guard) every protected table: the (schema, table) a name
    /// means, or the protected table it may mean.
    pub fn relation_or_candidate(&self, name: &ObjectName) -> Option<(String, String)> {
        match self.schema.resolve_table(&name_parts(name)?)? {
            Resolution::Table(s, t)
            | Resolution::Unsure {
                schema: s,
                table: t,
                ..
            } => Some((s, t)),
        }
    }

    /// Runs `f` and forgets what it recorded (tables, uses, sites): for looking at a part of a
    /// statement a second time, e.g. a recursive CTE's non-recursive term.
    pub fn unrecorded<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let tables = self.tables.clone();
        let uses = self.uses.clone();
        let literals = self.literals.clone();
        let params = self.params.clone();
        let anchors = self.param_anchors.clone();
        let links = self.links.clone();
        let edits = self.edits.clone();
        let ctes = self.ctes.len();
        let result = f(self);
        self.edits = edits;
        self.tables = tables;
        self.uses = uses;
        self.literals = literals;
        self.params = params;
        self.param_anchors = anchors;
        self.links = links;
        self.ctes.truncate(ctes);
        result
    }

    pub fn refuse(&self, id: ColumnId, what: &str) -> Refusal {
        refusal::unsupported(self.schema, id, what)
    }

    pub fn same_context(&self, a: ColumnId, b: ColumnId) -> bool {
        self.schema.context(a) == self.schema.context(b)
    }

    /// Refuses unless `b` shares `a`'s key context.
    pub fn require_same_context(&self, a: ColumnId, b: ColumnId, what: &str) -> Res<()> {
        if self.same_context(a, b) {
            Ok(())
        } else {
            Err(self.refuse(
                a,
                &format!(
                    "{what} column {}, which uses a different key context,",
                    self.schema.qualified_name(b)
                ),
            ))
        }
    }

    pub fn use_column(&mut self, column: ColumnId, usage: Usage) {
        let u = ColumnUse { column, usage };
        if !self.uses.contains(&u) {
            self.uses.push(u);
        }
    }

    pub fn add_table(&mut self, schema: &str, table: &str) {
        if !self.tables.iter().any(|(s, t)| s == schema && t == table) {
            self.tables.push((schema.to_string(), table.to_string()));
        }
    }

    /// Records `value` as written to / compared with protected column `id`. Literals and
    /// parameters become sites; anything else is refused with `what`.
    pub fn value_site(&mut self, id: ColumnId, value: &Operand<'_>, what: &str) -> Res<()> {
        match value {
            Operand::Literal {
                expr,
                anchor,
                value,
            } => self.literal_site(id, expr, *anchor, value.clone(), false),
            Operand::Param {
                expr,
                anchor,
                index,
            } => self.param_site(id, expr, *anchor, *index, false),
            _ => Err(self.refuse(id, what)),
        }
    }

    pub fn literal_site(
        &mut self,
        id: ColumnId,
        expr: &Expr,
        anchor: Span,
        value: Option<String>,
        array: bool,
    ) -> Res<()> {
        let span = self
            .source
            .value_range(expr, anchor)
            .ok_or_else(|| cannot_locate(self.schema, id))?;
        let at = self.literals.partition_point(|l| l.span.start < span.start);
        self.literals.insert(
            at,
            LiteralSite {
                span,
                column: id,
                value,
                array,
            },
        );
        Ok(())
    }

    pub fn param_site(
        &mut self,
        id: ColumnId,
        expr: &Expr,
        anchor: Span,
        index: usize,
        array: bool,
    ) -> Res<()> {
        let span = self
            .source
            .value_range(expr, anchor)
            .ok_or_else(|| cannot_locate(self.schema, id))?;
        self.params.push(ParamSite {
            index,
            column: id,
            array,
            span,
        });
        self.param_anchors.push(ParamAnchor {
            index,
            location: anchor.start,
            column: id,
            array,
        });
        Ok(())
    }
}

/// The operand a plain `Value` is: a literal, a `$n` parameter, or (for exotic literal kinds
/// this analyser does not rewrite) `Other`.
pub fn value_operand<'e>(expr: &'e Expr, value: &Value, anchor: Span) -> Operand<'e> {
    match value {
        Value::Placeholder(p) => match placeholder_index(p) {
            Some(index) => Operand::Param {
                expr,
                anchor,
                index,
            },
            None => Operand::Other,
        },
        Value::Null => Operand::Literal {
            expr,
            anchor,
            value: None,
        },
        other => match literal_text(other) {
            Some(text) => Operand::Literal {
                expr,
                anchor,
                value: Some(text),
            },
            None => Operand::Other,
        },
    }
}

/// `$3` -> 2.
pub fn placeholder_index(p: &str) -> Option<usize> {
    p.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
}

/// The value of a literal as text, already unescaped by the tokenizer. `N'...'` is not one:
/// PostgreSQL reads it as `'...'::bpchar`, which drops trailing blanks when it meets a text
/// column, so its value is not its text (it is an operand the analysis does not seal).
pub fn literal_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n, _) => Some(n.clone()),
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s) => Some(s.clone()),
        Value::DollarQuotedString(d) => Some(d.value.clone()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Strips redundant parentheses.
pub fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}
