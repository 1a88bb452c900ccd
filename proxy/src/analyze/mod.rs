//! Statement analysis: parses SQL that mentions protected tables, resolves every reference to a
//! protected column, and either refuses the statement or lists the places the proxy must rewrite.
//!
//! # Whose grammar
//! PostgreSQL's. Every analysed text is read by libpg_query (`pg_query`: the server's own
//! scanner and grammar, see [`pg_reading`]) and by sqlparser, whose tree the analysis walks;
//! the analysis stands only where the two readings agree (`agreement.rs`), and is refused
//! otherwise. Texts sqlparser cannot parse are judged by PostgreSQL's decoded reading.
//!
//! # Grammar version against server version
//! `pg_query` 6.x carries PostgreSQL 17's grammar ([`pg_reading::GRAMMAR_VERSION`]).
//! Supported servers: PostgreSQL 13 to 18 (the tests run 15). Where the server's grammar
//! differs, pgshroud refuses rather than guesses:
//! - syntax newer than 17 (a PostgreSQL 18 server), or a word reserved since the server's
//!   version, does not parse with PostgreSQL 17's grammar: refused (42601) when the text may
//!   name a protected table, passed to the server untouched when it cannot;
//! - syntax older servers lack (MERGE before 15, SQL/JSON before 16/17) parses here and is
//!   rejected by the server itself, so nothing of it runs;
//! - the one known change of *reading* in the supported range, numeric constants written
//!   `0x1F`, `0o17`, `0b101` or `1_000` (PostgreSQL 16+; `0 AS x1F` before), is refused on
//!   every analysed text whatever the server (0A000); before 15, `123abc` read as `123 AS abc`
//!   does not parse here and is refused too.
//!
//! A second server version is tested by pointing the integration tests at its programs
//! (`PGSHROUD_PG_BIN_DIR=/usr/lib/postgresql/<v>/bin scripts/test.sh`).

mod agreement;
mod bulk;
mod copy;
mod dml;
mod escapes;
pub mod exposing;
mod expr;
mod from;
pub mod gates;
mod guard;
pub mod identity_settings;
mod kind;
mod links;
mod lookups;
mod only;
mod pg_kind;
pub mod pg_reading;
mod predicate;
mod query;
mod refusal;
mod schema;
mod scope;
mod search_path;
mod settings;
mod source;
mod spelling;
pub mod sql_text;
mod statement;
pub mod view_targets;
mod walk;

#[cfg(test)]
mod tests;

use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{TokenWithSpan, Tokenizer};

use crate::sql_limits as limits;

pub use kind::StatementKind;
pub use limits::{MAX_NESTING, PARSER_RECURSION_LIMIT};
pub use links::{merged_with, ColumnLink, LinkKind};
pub use refusal::{
    FEATURE_NOT_SUPPORTED, INSUFFICIENT_PRIVILEGE, STATEMENT_TOO_COMPLEX, SUPPORTED, SYNTAX_ERROR,
};
pub use schema::{ColumnId, ProtectedSchema};
pub use search_path::SearchPath;
pub use settings::{settings_changed, settings_changed_in, SettingsChanged};

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
    /// Other text the rewrite replaces: casts to a logical type on values that carry
    /// ciphertext once rewritten (a bulk INSERT's `SELECT p0::VARCHAR`).
    pub edits: Vec<TextEdit>,
    /// Positional result columns: `Some(id)` where a protected value flows out unchanged.
    pub outputs: Vec<Option<ColumnId>>,
    /// `COPY` of a protected table.
    pub copy: Option<CopyInfo>,
    /// Protected columns compared with each other, merged into one result column or copied
    /// into each other (the role's actions on them must agree).
    pub links: Vec<ColumnLink>,
    /// Tables, protected or not, whose rows the statement removes (`DELETE`) or that it
    /// changes as a whole (`TRUNCATE`, DDL): on a protected table that needs the role's write
    /// right, as writing its protected columns does.
    pub changed_tables: Vec<(String, String)>,
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
    /// Compared with another protected column, or tested with `IS [NOT] NULL`.
    Compare,
    /// Compared with a value the statement supplies (a literal or `$n`: `=`, `<>`, `IN`,
    /// `= ANY`, an `ON CONFLICT` target): needs the role's compare right.
    CompareValue,
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
    /// `UNNEST('{a,b}'::text[])`: `value` is an array literal, each element a value of the
    /// column.
    pub array: bool,
}

impl std::fmt::Debug for LiteralSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteralSite")
            .field("span", &self.span)
            .field("column", &self.column)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("array", &self.array)
            .finish()
    }
}

/// A piece of statement text replaced as it is (no value in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub span: Range<usize>,
    pub replacement: String,
}

/// A `$n` parameter whose Bind value must be encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSite {
    /// `$1` -> 0.
    pub index: usize,
    pub column: ColumnId,
    /// `c = ANY($n)`, `UNNEST($n)`: the parameter is an array of values for `c`.
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

/// The kinds of the statements of a text that touches no protected table (for roles with a
/// `statements` list), as PostgreSQL's grammar reads them. A text PostgreSQL's grammar does
/// not read (a newer server's syntax) is split at the `;` tokens of PostgreSQL's scanner and
/// each part classified by its first keyword.
pub fn statement_kinds(sql: &str) -> Vec<StatementKind> {
    match reading_within_limits(sql) {
        Some(reading) => reading.statements.iter().map(|s| s.kind).collect(),
        None => kinds_by_first_keyword(sql),
    }
}

/// PostgreSQL's reading of `sql`, on a stack sized for its nesting; `None` when it does not
/// parse or nests deeper than pgshroud reads.
pub fn reading_within_limits(sql: &str) -> Option<pg_reading::PgReading> {
    // The nesting bound sizes the stack PostgreSQL's reading recurses on (see `analyze`).
    let bound = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map(|tokens| limits::nesting_bound(&tokens));
    match bound {
        Ok(bound) if bound <= limits::MAX_NESTING => {
            limits::with_stack_for(bound, || pg_reading::read(sql).ok()).flatten()
        }
        _ => None,
    }
}

fn kinds_by_first_keyword(sql: &str) -> Vec<StatementKind> {
    use pg_query::protobuf::Token;
    let Ok(scanned) = pg_query::scan(sql) else {
        return vec![StatementKind::Other];
    };
    let skipped = [Token::Ascii40, Token::SqlComment, Token::CComment].map(|t| t as i32);
    let kinds: Vec<StatementKind> = scanned
        .tokens
        .split(|t| t.token == Token::Ascii59 as i32)
        .filter_map(|part| {
            let first = part.iter().find(|t| !skipped.contains(&t.token))?;
            let word = sql.get(first.start as usize..first.end as usize)?;
            Some(StatementKind::of_keyword(word))
        })
        .collect();
    if kinds.is_empty() {
        vec![StatementKind::Other]
    } else {
        kinds
    }
}

/// The parser every analysis uses, with its recursion limit set explicitly.
fn parser<'d>(dialect: &'d PostgreSqlDialect, tokens: Vec<TokenWithSpan>) -> Parser<'d> {
    Parser::new(dialect)
        .with_recursion_limit(limits::PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
}

/// Analyses `sql` (one or more statements) against the protected schema.
///
/// The text is read twice: by sqlparser, whose tree the analysis walks, and by PostgreSQL's
/// own scanner and grammar ([`pg_reading`]); the result stands only where both readings agree
/// (same tokens, statements, kinds, protected tables and rewritten values), and is refused
/// otherwise. Text that does not parse is refused with 42601 when PostgreSQL's reading of it
/// (or, where PostgreSQL's grammar does not read it either, its raw bytes) names a protected
/// table; when it does not, it cannot touch protected data and is reported as `Untouched`
/// (the proxy normally never calls this for such text: see
/// [`ProtectedSchema::mentions_protected_table`]). Text that nests too deeply to analyse safely
/// is refused with 54001 before it is parsed.
pub fn analyze(sql: &str, schema: &ProtectedSchema) -> Analysis {
    let dialect = PostgreSqlDialect {};
    let tokens = match Tokenizer::new(&dialect, sql).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(e) => return not_parsed(sql, schema, None, refusal::unparseable(&e.to_string())),
    };
    let tokens = match escapes::decode_escaped_identifiers(tokens) {
        Ok(tokens) => tokens,
        Err(refusal) => return Analysis::Refused(refusal),
    };
    let bound = limits::nesting_bound(&tokens);
    if bound > limits::MAX_NESTING {
        return not_parsed(sql, schema, None, refusal::too_complex(limits::MAX_NESTING));
    }
    // PostgreSQL's reading recurses over the tree as deep as the statement nests (in C, then
    // decoding, whose recursion limit refuses deeper trees): on the stack sized for it too.
    limits::with_stack_for(bound, || {
        let pg = pg_reading::read(sql);
        // `FROM ONLY t` in a read: analysed as `FROM t` (byte offsets kept); see only.rs.
        if let Some(blanked) = pg.as_ref().ok().and_then(|r| only::blanked(sql, r)) {
            return analyze(&blanked, schema);
        }
        analyze_tokens(sql, schema, tokens, &pg)
    })
    .unwrap_or_else(|| Analysis::Refused(refusal::no_resources()))
}

/// Text sqlparser did not parse: refused when it may touch protected data, else PostgreSQL's
/// (with the statements as PostgreSQL's reading classifies them, when it has one; `pg` is
/// `None` where the text was not given to PostgreSQL's reading, too deep to read safely).
fn not_parsed(
    sql: &str,
    schema: &ProtectedSchema,
    pg: Option<&Result<pg_reading::PgReading, String>>,
    refusal: Refusal,
) -> Analysis {
    let statements = match pg {
        Some(Ok(reading)) if !schema.named_in_reading(reading) => reading_infos(reading),
        Some(Ok(_)) => return Analysis::Refused(refusal),
        _ if !schema.mentions_protected_table(sql) => Vec::new(),
        _ => return Analysis::Refused(refusal),
    };
    Analysis::Untouched { statements }
}

/// What PostgreSQL's reading says of statements that touch no protected table.
fn reading_infos(reading: &pg_reading::PgReading) -> Vec<StatementInfo> {
    reading
        .statements
        .iter()
        .map(|s| {
            let mut tables: Vec<(String, String)> = Vec::new();
            for r in &s.relations {
                let schema = r.schema.as_deref().unwrap_or(scope::DEFAULT_SCHEMA);
                let pair = (scope::fold_name(schema), scope::fold_name(&r.name));
                if !tables.contains(&pair) {
                    tables.push(pair);
                }
            }
            let changed_tables = match s.kind {
                StatementKind::Ddl | StatementKind::Delete => tables.clone(),
                _ => Vec::new(),
            };
            StatementInfo {
                kind: s.kind,
                tables,
                columns: Vec::new(),
                literals: Vec::new(),
                params: Vec::new(),
                edits: Vec::new(),
                outputs: Vec::new(),
                copy: None,
                links: Vec::new(),
                changed_tables,
            }
        })
        .collect()
}

fn analyze_tokens(
    sql: &str,
    schema: &ProtectedSchema,
    tokens: Vec<TokenWithSpan>,
    pg: &Result<pg_reading::PgReading, String>,
) -> Analysis {
    let dialect = PostgreSqlDialect {};
    let statements = match parser(&dialect, tokens.clone()).parse_statements() {
        Ok(statements) => statements,
        Err(ParserError::RecursionLimitExceeded) => {
            return not_parsed(
                sql,
                schema,
                Some(pg),
                refusal::too_complex(limits::PARSER_RECURSION_LIMIT),
            )
        }
        Err(e) => return not_parsed(sql, schema, Some(pg), refusal::unparseable(&e.to_string())),
    };
    let reading = match pg {
        Ok(reading) => reading,
        Err(_) if schema.mentions_protected_table(sql) => {
            return Analysis::Refused(refusal::not_postgresql_grammar())
        }
        // Neither PostgreSQL's grammar nor anything in the text names a protected table.
        Err(_) => {
            return Analysis::Untouched {
                statements: Vec::new(),
            }
        }
    };
    let guard_mentioned =
        guard::mentions_guard(sql, &tokens) || reading.mentions(guard::GUARD_PREFIX);
    let source = source::SourceMap::new(sql, tokens);
    let Some(seen) = source.token_offsets() else {
        return Analysis::Refused(refusal::read_differently("where a token begins"));
    };
    let mut infos = Vec::with_capacity(statements.len());
    for stmt in &statements {
        let mut walker = walk::Walker::new(schema, &source);
        walker.guard_mentioned = guard_mentioned;
        match walker.statement(stmt) {
            Ok(info) => infos.push(info),
            Err(refusal) => return Analysis::Refused(refusal),
        }
    }
    if let Err(refusal) = agreement::check(reading, &seen, &mut infos, schema) {
        return Analysis::Refused(refusal);
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
