//! Errors from loading a rules file. Every problem names the file and line it was found on
//! and says what to write instead, because the reader is an operator fixing a config file.

use std::fmt;
use std::path::PathBuf;

use crate::logical_type::LogicalType;

/// Why a rules file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read at all.
    #[error("{}: cannot read the rules file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but says something wrong at `at`.
    #[error("{at}: {problem}")]
    Invalid { at: Location, problem: Box<Problem> },
}

impl RulesError {
    /// The problem, when the file was readable.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RulesError::Read { .. } => None,
            RulesError::Invalid { problem, .. } => Some(problem),
        }
    }

    /// The 1-based line the problem was found on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            RulesError::Read { .. } => None,
            RulesError::Invalid { at, .. } => at.line,
        }
    }
}

/// Where in which file a problem is: displayed as `FILE:LINE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as the caller gave it to [`crate::parse`].
    pub source: String,
    /// 1-based line; `None` only when the TOML parser could not say.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.source),
            None => f.write_str(&self.source),
        }
    }
}

/// What is wrong, with the fix. Values quoted here come from the rules file, never from data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Syntax(String),
    #[error(
        "unknown type \"{found}\" for column {column}; write one of {}",
        type_names()
    )]
    UnknownType { column: String, found: String },
    #[error(
        "column {column} is marked migrating but its type is bytea: a plaintext bytea column and \
         an unguarded protected one look alike in the database, so pgshroud could not tell which \
         form it serves; remove `migrating` and list the column once its migration is done"
    )]
    MigratingBytea { column: String },
    #[error(
        "column {column} is marked both migrating and per_tenant: pgshroud migrate seals with the \
         shared column key, which a per-tenant column's guard refuses; migrate it without \
         per_tenant"
    )]
    MigratingPerTenant { column: String },
    #[error(
        "type \"{found}\" of column {column}: {why}; modifiers are written as in PostgreSQL: \
         numeric(12, 2), varchar(100), timestamp(3), timestamptz(3)"
    )]
    BadTypeModifier {
        column: String,
        found: String,
        why: String,
    },
    #[error(
        "{what} \"{found}\" is not a plain identifier; write 1 to 63 letters, digits, `_` or `$`, \
         not starting with a digit (quoted identifiers are not supported)"
    )]
    BadIdentifier { what: &'static str, found: String },
    #[error("table name \"{found}\" has too many parts; write \"schema.table\" or \"table\"")]
    BadTableName { found: String },
    #[error(
        "table {table} is listed twice (first on line {first_line}); \
         put all of its columns under one [[tables]] entry"
    )]
    DuplicateTable { table: String, first_line: usize },
    #[error(
        "column {column} is listed twice (first on line {first_line}); remove one of the entries"
    )]
    DuplicateColumn { column: String, first_line: usize },
    #[error("table {table} lists no columns; add [[tables.columns]] entries or remove the table")]
    EmptyTable { table: String },
    #[error(
        "key_context \"{found}\" of column {column} is not valid; write 1 to 200 letters, \
         digits, `_`, `-`, `.` or `:`"
    )]
    BadKeyContext { column: String, found: String },
    #[error(
        "columns {column} ({logical}) and {other_column} ({other_logical}) share key_context \
         \"{context}\" but have different types; only columns of one type can share a context"
    )]
    ContextTypeMismatch {
        context: String,
        column: String,
        logical: LogicalType,
        other_column: String,
        other_logical: LogicalType,
    },
    #[error(
        "column {tenant_column} is per_tenant but shares key_context \"{context}\" with \
         {shared_column}, which is not; values sealed with a tenant key never equal values sealed \
         with the shared column key, so mark both per_tenant or give them separate contexts"
    )]
    ContextTenancyMismatch {
        context: String,
        tenant_column: String,
        shared_column: String,
    },
    #[error(
        "column {column}: keep_scale applies only to a numeric column without a modifier \
         (numeric(p, s) prints its fixed scale already); remove it"
    )]
    KeepScaleNotApplicable { column: String },
    #[error(
        "columns {column} and {other_column} share key_context \"{context}\" but only one keeps \
         the numeric scale (keep_scale); 1.50 would then match in one and not the other, so set \
         it on both or neither"
    )]
    ContextScaleMismatch {
        context: String,
        column: String,
        other_column: String,
    },
    #[error(
        "tenant id \"{found}\" is not valid; write 1 to 63 letters, digits, `_`, `-` or `.`, \
         starting with a letter or digit"
    )]
    BadTenantId { found: String },
    #[error(
        "tenant \"{tenant}\": {field} entry \"{found}\" is not a valid pattern; write a non-empty \
         name without control characters, `*` matching any run of characters"
    )]
    BadTenantPattern {
        tenant: String,
        field: &'static str,
        found: String,
    },
    #[error(
        "tenant \"{tenant}\" has no users or cert_subjects, so no session can belong to it; add \
         a matcher, or let the application name tenants (choose_tenant = true on its role)"
    )]
    TenantWithoutMatcher { tenant: String },
    #[error(
        "column {column} is per_tenant, but nothing gives a session a tenant; add [[tenants]] \
         entries (id, users or cert_subjects) or set choose_tenant = true on the role that writes it"
    )]
    NoTenantSource { column: String },
    #[error(
        "role \"{role}\" has no template; add template = one of {}",
        crate::template::Template::names()
    )]
    MissingTemplate { role: String },
    #[error(
        "unknown template \"{found}\" for role \"{role}\"; write one of {}",
        crate::template::Template::names()
    )]
    UnknownTemplate { role: String, found: String },
    #[error("role name \"{found}\" is not valid; write 1 to 63 letters, digits, `_` or `-`")]
    BadRoleName { found: String },
    #[error("role \"{role}\" is defined twice (first on line {first_line}); rename one of them")]
    DuplicateRole { role: String, first_line: usize },
    #[error(
        "role \"{role}\": {field} entry \"{found}\" is not a valid pattern; write a non-empty \
         name without control characters, `*` matching any run of characters"
    )]
    BadPattern {
        role: String,
        field: &'static str,
        found: String,
    },
    #[error("role \"{role}\": network \"{found}\" {why}")]
    BadNetwork {
        role: String,
        found: String,
        why: String,
    },
    #[error(
        "role \"{role}\": unknown statement kind \"{found}\"; write some of {}",
        crate::role::STATEMENT_KINDS.join(", ")
    )]
    UnknownStatementKind { role: String, found: String },
    #[error(
        "role \"{role}\" sets an action for {column}, which is not a protected column; \
         write schema.table.column of a column listed under [[tables]]"
    )]
    UnknownColumn { role: String, column: String },
    #[error(
        "role \"{role}\" sets a compare right for {column}, which is not a protected column; \
         write \"*\" or schema.table.column of a column listed under [[tables]]"
    )]
    UnknownCompareColumn { role: String, column: String },
    #[error(
        "role \"{role}\" may write protected column {column} but not compare it; a write is a \
         comparison of its own (an INSERT into a unique column fails exactly when the value is \
         stored already, and a row written with a guess can be joined with the others), so \
         give the role the compare right on it ([roles.compare]) or write = false"
    )]
    WriteWithoutCompare { role: String, column: String },
    #[error("role \"{role}\" sets {column} twice; keep one entry")]
    DuplicateOverride { role: String, column: String },
    #[error("role \"{role}\", column {column}: action \"{found}\" {why}")]
    BadAction {
        role: String,
        column: String,
        found: String,
        why: String,
    },
    #[error(
        "role \"{role}\", column {column}: mask:{mask} does not apply to type {logical}; \
         {hint}"
    )]
    MaskNotForType {
        role: String,
        column: String,
        mask: String,
        logical: LogicalType,
        hint: &'static str,
    },
    #[error("role \"{role}\": {field} must be at least 1; remove it for no limit")]
    ZeroLimit { role: String, field: &'static str },
    #[error(
        "roles are defined but default_role is not; add default_role = \"<role>\" at the top of \
         the file, naming the role for callers no role matches (one of {roles})"
    )]
    MissingDefaultRole { roles: String },
    #[error("default_role \"{found}\" names no role; write one of {choices}")]
    UnknownDefaultRole { found: String, choices: String },
}

fn type_names() -> String {
    let names: Vec<&str> = LogicalType::ALL.iter().map(|t| t.name()).collect();
    names.join(", ")
}
