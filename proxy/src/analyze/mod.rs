//! Statement analysis: parses SQL that mentions protected tables, resolves every reference to a
//! protected column, and either refuses the statement or lists the places the proxy must rewrite.

mod copy;
mod dml;
mod expr;
mod query;
mod refusal;
mod schema;
mod scope;
mod source;
mod statement;
mod walk;

#[cfg(test)]
mod tests;

use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Tokenizer;

pub use refusal::{FEATURE_NOT_SUPPORTED, SUPPORTED, SYNTAX_ERROR};
pub use schema::{ColumnId, ProtectedSchema};

/// Outcome of analysing one SQL text (possibly several statements).
#[derive(Debug, Clone, PartialEq)]
pub enum Analysis {
    /// Parsed fine and no protected column is referenced at all.
    Untouched { statements: Vec<StatementInfo> },
    /// Forward after rewriting (the rewrite may be empty, e.g. a plain SELECT of a protected column).
    Protected { statements: Vec<StatementInfo> },
    /// Must not reach PostgreSQL.
    Refused(Refusal),
}

/// Why a statement is refused. The message never contains a value from the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
    pub column: Option<ColumnId>,
}

/// What the analyser found in one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementInfo {
    pub kind: StatementKind,
    /// Every table referenced (schema, table), protected or not, deduplicated.
    pub tables: Vec<(String, String)>,
    /// Each protected column touched, deduplicated by (id, usage).
    pub columns: Vec<ColumnUse>,
    /// Literals to be replaced with ciphertext, in source order.
    pub literals: Vec<LiteralSite>,
    /// `$n` parameters whose Bind values must be encrypted.
    pub params: Vec<ParamSite>,
    /// Positional result columns: `Some(id)` where a protected value flows out unchanged.
    pub outputs: Vec<Option<ColumnId>>,
    /// `COPY` of a protected table.
    pub copy: Option<CopyInfo>,
}

/// Statement kind, as reported to audit and role allow lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Copy,
    Ddl,
    /// Transaction control and session settings (`BEGIN`, `COMMIT`, `SET`, `SHOW`, ...).
    Session,
    Other,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::Copy => "copy",
            StatementKind::Ddl => "ddl",
            StatementKind::Session => "session",
            StatementKind::Other => "other",
        }
    }
}

/// One protected column and how the statement uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnUse {
    pub column: ColumnId,
    pub usage: Usage,
}

/// How a protected column is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Write,
    Compare,
    Project,
    /// GROUP BY, DISTINCT, count(c).
    Group,
}

/// A literal whose value must be replaced by a ciphertext literal.
///
/// Debug is written by hand: `value` is plaintext of a protected column.
#[derive(Clone, PartialEq)]
pub struct LiteralSite {
    /// Byte range in the SQL text of the whole value expression, including any cast.
    pub span: Range<usize>,
    pub column: ColumnId,
    /// The literal's value as text, unescaped; `None` for NULL.
    pub value: Option<String>,
}

impl std::fmt::Debug for LiteralSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteralSite")
            .field("span", &self.span)
            .field("column", &self.column)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A `$n` parameter whose Bind value must be encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSite {
    /// `$1` -> 0.
    pub index: usize,
    pub column: ColumnId,
    /// `c = ANY($n)`: the parameter is an array of values for `c`.
    pub array: bool,
    /// Byte range of `$n` including casts on it.
    pub span: Range<usize>,
}

/// A `COPY` on a protected table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInfo {
    pub direction: CopyDirection,
    /// Positional: every column of the COPY column list (or the table's catalog columns).
    pub columns: Vec<Option<ColumnId>>,
    pub options: CopyOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    From,
    To,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyFormat {
    #[default]
    Text,
    Csv,
    Binary,
}

/// COPY options that change how rows are framed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: Option<char>,
    pub null: Option<String>,
    pub header: bool,
    pub quote: Option<char>,
    pub escape: Option<char>,
}

/// Analyses `sql` (one or more statements) against the protected schema.
///
/// Text that does not parse is refused with 42601 when it mentions a protected table; when it
/// does not, it cannot touch protected data and is reported as `Untouched` with no statements
/// (the proxy normally never calls this for such text: see
/// [`ProtectedSchema::mentions_protected_table`]).
/// The kinds of the statements of a text that touches no protected table (for roles with a
/// `statements` list). A text that does not parse is classified by its first keyword.
pub fn statement_kinds(sql: &str) -> Vec<StatementKind> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements.iter().map(statement::statement_kind).collect(),
        Err(_) => vec![kind_of_first_keyword(sql)],
    }
}

fn kind_of_first_keyword(sql: &str) -> StatementKind {
    let word: String = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    match word.as_str() {
        "select" | "values" | "table" => StatementKind::Select,
        "insert" => StatementKind::Insert,
        "update" => StatementKind::Update,
        "delete" => StatementKind::Delete,
        "merge" => StatementKind::Merge,
        "copy" => StatementKind::Copy,
        "create" | "alter" | "drop" | "truncate" | "comment" | "grant" | "revoke" => {
            StatementKind::Ddl
        }
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release"
        | "set" | "reset" | "show" | "discard" | "deallocate" => StatementKind::Session,
        _ => StatementKind::Other,
    }
}

pub fn analyze(sql: &str, schema: &ProtectedSchema) -> Analysis {
    let dialect = PostgreSqlDialect {};
    let parsed = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| e.to_string())
        .and_then(|tokens| {
            let statements = Parser::new(&dialect)
                .with_tokens_with_locations(tokens.clone())
                .parse_statements()
                .map_err(|e| e.to_string())?;
            Ok((tokens, statements))
        });
    let (tokens, statements) = match parsed {
        Ok(parsed) => parsed,
        Err(message) if schema.mentions_protected_table(sql) => {
            return Analysis::Refused(refusal::unparseable(&message))
        }
        Err(_) => {
            return Analysis::Untouched {
                statements: Vec::new(),
            }
        }
    };
    let source = source::SourceMap::new(sql, tokens);
    let mut infos = Vec::with_capacity(statements.len());
    for stmt in &statements {
        match walk::Walker::new(schema, &source).statement(stmt) {
            Ok(info) => infos.push(info),
            Err(refusal) => return Analysis::Refused(refusal),
        }
    }
    let protected = infos
        .iter()
        .any(|i| !i.columns.is_empty() || i.copy.is_some());
    if protected {
        Analysis::Protected { statements: infos }
    } else {
        Analysis::Untouched { statements: infos }
    }
}
