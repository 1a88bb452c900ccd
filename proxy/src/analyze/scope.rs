//! Name resolution: which relations are in scope at a point of a query (tables, aliases,
//! subqueries, CTEs) and what a column reference there denotes.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::{ColumnId, ProtectedSchema};

/// Schema assumed for unqualified names that are no protected table's name (and for all of them
/// under [`super::SearchPath::AssumePublic`]).
pub const DEFAULT_SCHEMA: &str = "public";

/// One output column of a query or relation: its name and, when a protected value flows into
/// it unchanged, the protected column.
#[derive(Debug, Clone, PartialEq)]
pub struct OutCol {
    pub name: String,
    pub column: Option<ColumnId>,
}

/// A relation visible in a FROM clause (or an INSERT/UPDATE/DELETE target).
#[derive(Debug, Clone)]
pub struct Relation {
    /// Name used to qualify columns: the alias, or the table name.
    pub name: String,
    /// (schema, table) of a base table.
    pub base: Option<(String, String)>,
    /// Known columns, in order.
    pub columns: Vec<OutCol>,
    /// Whether `columns` is the complete list.
    pub complete: bool,
}

/// What a relation says about a column name.
enum Lookup {
    Found(Option<ColumnId>),
    Maybe,
    Absent,
}

impl Relation {
    /// A base table, with its catalog columns when known.
    pub fn base_table(
        schema: &ProtectedSchema,
        schema_name: &str,
        table: &str,
        alias: Option<&Ident>,
    ) -> Self {
        let (columns, complete) = match schema.table_columns(schema_name, table) {
            Some(cols) => (
                cols.iter()
                    .map(|c| OutCol {
                        name: c.clone(),
                        column: schema.lookup(schema_name, table, c),
                    })
                    .collect(),
                true,
            ),
            None => (Vec::new(), false),
        };
        Relation {
            name: alias.map_or_else(|| table.to_string(), fold),
            base: Some((schema_name.to_string(), table.to_string())),
            columns,
            complete,
        }
    }

    /// A derived relation (subquery, CTE, function) with the given output columns.
    pub fn derived(name: String, columns: Vec<OutCol>, complete: bool) -> Self {
        Relation {
            name,
            base: None,
            columns,
            complete,
        }
    }

    /// Applies `AS alias(a, b, ...)` column renames.
    pub fn rename_columns(&mut self, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            match self.columns.get_mut(i) {
                Some(col) => col.name = name.clone(),
                None => self.columns.push(OutCol {
                    name: name.clone(),
                    column: None,
                }),
            }
        }
        // A protected column renamed by position is only found by its new name when the
        // position is known; without a complete list, names beyond it stay unknown.
    }

    /// The first protected column this relation carries, if any.
    pub fn first_protected(&self, schema: &ProtectedSchema) -> Option<ColumnId> {
        self.columns.iter().find_map(|c| c.column).or_else(|| {
            let (s, t) = self.base.as_ref()?;
            schema.protected_columns_of(s, t).first().copied()
        })
    }

    /// The protected column this relation provides under `column`, if any.
    pub fn protected_column(&self, schema: &ProtectedSchema, column: &str) -> Option<ColumnId> {
        match self.lookup(schema, column) {
            Lookup::Found(id) => id,
            Lookup::Maybe | Lookup::Absent => None,
        }
    }

    fn lookup(&self, schema: &ProtectedSchema, column: &str) -> Lookup {
        if let Some(col) = self.columns.iter().find(|c| c.name == column) {
            return Lookup::Found(col.column);
        }
        if let Some((s, t)) = &self.base {
            if let Some(id) = schema.lookup(s, t, column) {
                return Lookup::Found(Some(id));
            }
        }
        if self.complete {
            Lookup::Absent
        } else {
            Lookup::Maybe
        }
    }
}

/// The relations of one query level, chained to the enclosing levels (correlated references).
pub struct Scope<'p> {
    pub relations: Vec<Relation>,
    pub parent: Option<&'p Scope<'p>>,
}

/// What a column reference denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Protected(ColumnId),
    Plain,
    /// A whole-row reference (`t` used as a value); names a protected column of the row if
    /// it has one.
    WholeRow(Option<ColumnId>),
    /// A qualified reference naming no relation in scope, whose column name is protected
    /// somewhere: refused rather than guessed.
    Unresolved,
    /// An unqualified name that is this protected column of an outer level unless a relation
    /// of an inner level whose columns are not known has a column of that name.
    Ambiguous(ColumnId),
}

impl<'p> Scope<'p> {
    pub fn new(parent: Option<&'p Scope<'p>>) -> Self {
        Scope {
            relations: Vec::new(),
            parent,
        }
    }

    fn levels(&self) -> impl Iterator<Item = &Scope<'p>> {
        std::iter::successors(Some(self), |s| s.parent)
    }

    /// Finds a relation by qualifier, innermost level first.
    pub fn relation(&self, name: &str) -> Option<&Relation> {
        self.levels()
            .find_map(|level| level.relations.iter().rev().find(|r| r.name == name))
    }

    /// Resolves a (folded) column reference of 1 to 4 parts.
    pub fn resolve(&self, schema: &ProtectedSchema, parts: &[String]) -> Resolved {
        match parts {
            [column] => self.resolve_unqualified(schema, column),
            [qualifier, column] => match self.relation(qualifier) {
                Some(rel) => found_to_resolved(rel.lookup(schema, column)),
                None => unresolved(schema, column),
            },
            [.., s, t, column] => {
                let rel = self.levels().find_map(|level| {
                    level.relations.iter().find(|r| {
                        r.name == *t && r.base.as_ref().is_some_and(|(bs, bt)| bs == s && bt == t)
                    })
                });
                match rel {
                    Some(rel) => found_to_resolved(rel.lookup(schema, column)),
                    None => unresolved(schema, column),
                }
            }
            [] => Resolved::Plain,
        }
    }

    /// PostgreSQL resolves an unqualified name in the innermost level that has it. A level
    /// whose tables might have it (unknown columns) does not stop the search outward: if an
    /// outer level has a protected column of that name, the reference is treated as protected.
    /// The first level with a relation that might have the column hides the outer levels
    /// from PostgreSQL only if it really has it, which the proxy cannot tell: a protected
    /// column found further out is then `Ambiguous`.
    fn resolve_unqualified(&self, schema: &ProtectedSchema, column: &str) -> Resolved {
        let mut maybe_inner = false;
        for level in self.levels() {
            let mut plain = false;
            let mut maybe = false;
            for rel in &level.relations {
                match rel.lookup(schema, column) {
                    Lookup::Found(Some(id)) if maybe_inner => return Resolved::Ambiguous(id),
                    Lookup::Found(Some(id)) => return Resolved::Protected(id),
                    Lookup::Found(None) => plain = true,
                    Lookup::Maybe => maybe = true,
                    Lookup::Absent => {}
                }
            }
            if plain {
                return Resolved::Plain;
            }
            if let Some(rel) = level.relations.iter().find(|r| r.name == column) {
                return match rel.first_protected(schema) {
                    Some(id) if maybe || maybe_inner => Resolved::Ambiguous(id),
                    protected => Resolved::WholeRow(protected),
                };
            }
            maybe_inner |= maybe;
        }
        Resolved::Plain
    }
}

fn found_to_resolved(lookup: Lookup) -> Resolved {
    match lookup {
        Lookup::Found(Some(id)) => Resolved::Protected(id),
        _ => Resolved::Plain,
    }
}

fn unresolved(schema: &ProtectedSchema, column: &str) -> Resolved {
    if schema.is_protected_column_name(column) {
        Resolved::Unresolved
    } else {
        Resolved::Plain
    }
}

/// Folds an identifier for lookup. Comparison is case-insensitive even for quoted names: a
/// quoted `"Email"` is treated as `email`, which can only err towards protecting.
pub fn fold(ident: &Ident) -> String {
    fold_name(&ident.value)
}

/// PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes (on a character boundary).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Lower-cases a name and truncates it as PostgreSQL does, so a longer spelling of a protected
/// name (PostgreSQL only warns and truncates) still finds it.
pub fn fold_name(name: &str) -> String {
    let mut folded = name.to_lowercase();
    if folded.len() > MAX_IDENTIFIER_BYTES {
        let mut cut = MAX_IDENTIFIER_BYTES;
        while !folded.is_char_boundary(cut) {
            cut -= 1;
        }
        folded.truncate(cut);
    }
    folded
}

/// Folded identifier parts of an object name; `None` if a part is not a plain identifier.
pub fn name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(fold(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}
