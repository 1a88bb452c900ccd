//! PostgreSQL's own reading of a statement text, through libpg_query (the server's scanner and
//! grammar, PostgreSQL 17's in `pg_query` 6.x): statement boundaries, kinds, every relation
//! with its schema and inheritance flag, constants and `$n` with their byte positions, the
//! settings a text changes, and server-side code bodies as the decoded strings the server runs.
//!
//! This is the authority the sqlparser analysis is checked against (see `agreement.rs`): where
//! the two readings differ, the statement is refused, never forwarded on sqlparser's word.
//!
//! The parse tree is walked through its serde form, so every node kind is visited: pg_query's
//! own `nodes()` iterator covers only a subset of node types, and a relation hidden in a node
//! it skips would be a relation pgshroud never saw.

use std::ops::Range;

use pg_query::protobuf::Token;
use serde_json::{Map, Value};

mod settings;
mod tree;

use super::pg_kind::kind_of;
use super::StatementKind;
use crate::sql_limits;
use settings::{is_set_statement, set_config_target, variable_set};
pub use settings::{SetForm, Setting, VariableSet};
use tree::{constant_value, function_name, int_field, str_field};

/// The PostgreSQL major version whose grammar `pg_query` carries (checked by a test against
/// the version libpg_query reports).
pub const GRAMMAR_VERSION: u32 = 17;

/// How PostgreSQL reads a whole text.
#[derive(Debug, Clone, PartialEq)]
pub struct PgReading {
    pub statements: Vec<PgStatement>,
    /// Byte offsets of every `;` token, as PostgreSQL's scanner finds them (not inside strings,
    /// comments, quoted names or dollar quotes).
    pub semicolons: Vec<usize>,
    /// Byte ranges of every token (comments included), in order.
    pub tokens: Vec<Range<usize>>,
    /// Byte offset of the first numeric constant in a form PostgreSQL reads only since
    /// version 16 (`0x1F`, `0o17`, `0b101`, `1_000`): an older server reads `0x1F` as `0 AS x1F`.
    pub new_number_form: Option<usize>,
}

/// How PostgreSQL reads one statement of a text.
///
/// Debug is written by hand: `strings` and `bodies` hold values from the text (plaintext).
#[derive(Clone, PartialEq)]
pub struct PgStatement {
    /// Byte range in the text (PostgreSQL's `stmt_location`/`stmt_len`).
    pub span: Range<usize>,
    pub kind: StatementKind,
    /// Every relation named anywhere in the statement (`RangeVar`s), CTE references included.
    pub relations: Vec<PgRelation>,
    /// Names of the WITH queries the statement defines, anywhere in it.
    pub cte_names: Vec<String>,
    /// Every constant (`A_Const`), NULL included, with PostgreSQL's decoded value.
    pub constants: Vec<PgConstant>,
    /// Every `$n`.
    pub params: Vec<PgParam>,
    /// The name of every function called (the last part of its name, as decoded).
    pub functions: Vec<String>,
    /// The options of a `COPY` statement: each option's name (lower case, as PostgreSQL's
    /// grammar names it: `format`, `encoding`, `force_not_null`, ...) and its string value.
    pub copy_options: Vec<(String, Option<String>)>,
    /// `CREATE TABLE ... AS EXECUTE name`: a prepared statement's rows stored in a new table,
    /// out of the sight of whoever reads that table next.
    pub stores_executed_rows: bool,
    /// Session settings the statement changes (`SET`, `RESET`, `DISCARD`, `set_config`).
    pub settings: Vec<Setting>,
    /// Bodies of `DO` blocks and created functions or procedures, decoded.
    pub bodies: Vec<String>,
    /// Every `SET`/`RESET` node anywhere in the statement: the statement itself, and the
    /// `SET` clauses of functions, procedures, roles, databases and `ALTER SYSTEM`.
    pub variable_sets: Vec<VariableSet>,
    /// The settings `set_config` calls name (also in `settings`).
    pub set_config_names: Vec<Setting>,
    /// `DISCARD ALL` (not `DISCARD PLANS`/`SEQUENCES`/`TEMP`, which leave settings alone).
    pub discards_all: bool,
    /// Its `$n` are the values of the protocol's Bind: the statement is a SELECT, INSERT,
    /// UPDATE, DELETE or MERGE (in `PREPARE` they are the EXECUTE's arguments, in a function
    /// body the function's).
    pub binds_params: bool,
    /// An `UPDATE` anywhere in the statement (a data-modifying WITH query included).
    pub updates: bool,
    /// Every decoded string in the tree: names of relations, columns, functions, aliases,
    /// constants' values, code bodies. What the statement can name, as the server reads it.
    pub strings: Vec<String>,
}

impl std::fmt::Debug for PgStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStatement")
            .field("span", &self.span)
            .field("kind", &self.kind)
            .field("relations", &self.relations)
            .field("cte_names", &self.cte_names)
            .field("constants", &self.constants)
            .field("params", &self.params)
            .field("functions", &self.functions)
            .field("copy_options", &self.copy_options.len())
            .field("stores_executed_rows", &self.stores_executed_rows)
            .field("settings", &self.settings)
            .field("bodies", &self.bodies.len())
            .field("strings", &self.strings.len())
            .finish()
    }
}

/// A relation reference, names as PostgreSQL decoded them (quoted case kept, escapes resolved,
/// unquoted names folded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgRelation {
    pub schema: Option<String>,
    pub name: String,
    /// `false` for `ONLY t`: the relation without its children or partitions.
    pub inh: bool,
    /// An unqualified name where a WITH query of that name is in scope (PostgreSQL's rules:
    /// a non-recursive WITH query is visible to the later ones and the statement body, a
    /// recursive one to all; the target of INSERT, UPDATE, DELETE, MERGE or COPY never is one).
    pub cte: bool,
    /// Byte offset of the name in the text.
    pub location: usize,
}

/// A constant and its value as the server decoded it.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConstant {
    pub location: usize,
    /// `None` for NULL.
    pub value: Option<String>,
}

impl std::fmt::Debug for PgConstant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConstant")
            .field("location", &self.location)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A `$n` parameter (`number` is 1-based, as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgParam {
    pub number: usize,
    pub location: usize,
}

/// Reads `sql` with PostgreSQL's scanner and grammar. `Err` carries PostgreSQL's message
/// (a syntax error, or a tree too deep to decode); it never quotes more than the server would.
pub fn read(sql: &str) -> Result<PgReading, String> {
    let scanned = pg_query::scan(sql).map_err(|e| e.to_string())?;
    // The grammar and the walk over its tree recurse as deep as the text nests: bounded from
    // the scanner's tokens first, on a stack sized for the bound (see `sql_limits`).
    let bound = sql_limits::pg::nesting_bound(&scanned);
    if bound > sql_limits::MAX_NESTING {
        return Err(format!(
            "statement nests more than {} levels deep",
            sql_limits::MAX_NESTING
        ));
    }
    sql_limits::with_stack_for(bound, || read_scanned(sql, &scanned))
        .unwrap_or_else(|| Err("no stack to read the statement on".to_owned()))
}

fn read_scanned(sql: &str, scanned: &pg_query::protobuf::ScanResult) -> Result<PgReading, String> {
    let parsed = pg_query::parse(sql).map_err(|e| e.to_string())?;
    let tree = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
    let mut semicolons = Vec::new();
    let mut tokens = Vec::with_capacity(scanned.tokens.len());
    let mut new_number_form = None;
    for t in &scanned.tokens {
        let range = offset(t.start)..offset(t.end);
        if t.token == Token::Ascii59 as i32 {
            semicolons.push(range.start);
        }
        let number = t.token == Token::Iconst as i32 || t.token == Token::Fconst as i32;
        if number && new_number_form.is_none() && is_new_number_form(sql.get(range.clone())) {
            new_number_form = Some(range.start);
        }
        tokens.push(range);
    }
    let statements = tree
        .get("stmts")
        .and_then(Value::as_array)
        .map(|stmts| stmts.iter().map(|raw| statement(sql, raw)).collect())
        .unwrap_or_default();
    Ok(PgReading {
        statements,
        semicolons,
        tokens,
        new_number_form,
    })
}

/// Non-decimal integers and digit separators, new in PostgreSQL 16.
fn is_new_number_form(text: Option<&str>) -> bool {
    let Some(text) = text else {
        return true;
    };
    let lower = text.to_ascii_lowercase();
    lower.contains('_') || ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p))
}

fn offset(v: i32) -> usize {
    usize::try_from(v).unwrap_or(0)
}

fn statement(sql: &str, raw: &Value) -> PgStatement {
    let start = raw
        .get("stmt_location")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let len = raw.get("stmt_len").and_then(Value::as_i64).unwrap_or(0);
    let start = usize::try_from(start).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => (start + len).min(sql.len()),
    };
    let node = raw.get("stmt").and_then(|s| s.get("node"));
    let mut out = PgStatement {
        span: start..end,
        kind: node.map_or(StatementKind::Other, kind_of),
        relations: Vec::new(),
        cte_names: Vec::new(),
        constants: Vec::new(),
        params: Vec::new(),
        functions: Vec::new(),
        copy_options: Vec::new(),
        stores_executed_rows: false,
        settings: Vec::new(),
        bodies: Vec::new(),
        variable_sets: Vec::new(),
        set_config_names: Vec::new(),
        discards_all: false,
        binds_params: node
            .and_then(Value::as_object)
            .and_then(|o| o.keys().next())
            .is_some_and(|k| {
                [
                    "SelectStmt",
                    "InsertStmt",
                    "UpdateStmt",
                    "DeleteStmt",
                    "MergeStmt",
                ]
                .contains(&k.as_str())
            }),
        updates: false,
        strings: Vec::new(),
    };
    if let Some(node) = node {
        top_level(node, &mut out);
        walk(node, &mut Vec::new(), &mut out);
        // The walk visits the statement's own node first.
        if let (Some(first), true) = (out.variable_sets.first_mut(), is_set_statement(node)) {
            first.top = true;
        }
    }
    out
}

/// What only the statement's own top node says: settings it changes, code it creates or runs.
fn top_level(node: &Value, out: &mut PgStatement) {
    let Some((name, body)) = node.as_object().and_then(|o| o.iter().next()) else {
        return;
    };
    match name.as_str() {
        "VariableSetStmt" => {
            let setting = str_field(body, "name");
            // kind 6 is RESET ALL (VAR_RESET_ALL); other kinds name their setting.
            if body.get("kind").and_then(Value::as_i64) == Some(6) || setting.is_empty() {
                out.settings.push(Setting::All);
            } else {
                out.settings
                    .push(Setting::Named(setting.to_ascii_lowercase()));
            }
        }
        "DiscardStmt" => {
            out.settings.push(Setting::All);
            // pg_query numbers DiscardMode from 1: DISCARD_ALL.
            out.discards_all = body.get("target").and_then(Value::as_i64) == Some(1);
        }
        "CopyStmt" => out.copy_options = def_elems(body.get("options")),
        "CreateTableAsStmt" => {
            out.stores_executed_rows = body
                .get("query")
                .and_then(|q| q.get("node"))
                .and_then(|n| n.get("ExecuteStmt"))
                .is_some();
        }
        "DoStmt" => out.bodies.extend(def_elem_strings(body.get("args"), "as")),
        "CreateFunctionStmt" => out
            .bodies
            .extend(def_elem_strings(body.get("options"), "as")),
        _ => {}
    }
}

/// Each `DefElem` of a list: its name and its value when that is one string (`encoding
/// 'latin1'`, `format csv`); lists and numbers give `None`.
fn def_elems(list: Option<&Value>) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(def) = item.get("node").and_then(|n| n.get("DefElem")) else {
            continue;
        };
        let arg = def
            .get("arg")
            .and_then(|a| a.get("node"))
            .and_then(|n| n.get("String"))
            .and_then(|s| s.get("sval"));
        found.push((
            str_field(def, "defname").to_ascii_lowercase(),
            arg.and_then(Value::as_str).map(str::to_owned),
        ));
    }
    found
}

/// The string values of the `DefElem`s named `name` in a list (`AS 'body'`, `AS 'obj', 'sym'`).
fn def_elem_strings(list: Option<&Value>, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(def) = item.get("node").and_then(|n| n.get("DefElem")) else {
            continue;
        };
        if str_field(def, "defname") == name {
            collect_strings(def.get("arg").unwrap_or(&Value::Null), &mut found);
        }
    }
    found
}

/// Every string under `v`, in tree order (shared with `sql_text.rs`).
pub(super) fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Visits every node of the tree, collecting relations, constants, parameters, CTE names,
/// `set_config` calls and every string. `ctes` holds the WITH query names in scope.
fn walk(v: &Value, ctes: &mut Vec<String>, out: &mut PgStatement) {
    match v {
        Value::String(s) => out.strings.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| walk(i, ctes, out)),
        Value::Object(map) => {
            let scope = ctes.len();
            with_clause(map, ctes, out);
            object(map, ctes, out);
            for (key, value) in map {
                match key.as_str() {
                    "with_clause" => {}
                    // A statement's target relation is a table even where a WITH query has
                    // its name.
                    "relation" => walk(value, &mut Vec::new(), out),
                    _ => walk(value, ctes, out),
                }
            }
            ctes.truncate(scope);
        }
        _ => {}
    }
}

/// Walks the WITH queries of a statement node, each with the names it sees, and leaves every
/// name in scope for the rest of the node.
fn with_clause(map: &Map<String, Value>, ctes: &mut Vec<String>, out: &mut PgStatement) {
    let Some(with) = map.get("with_clause").filter(|w| !w.is_null()) else {
        return;
    };
    let recursive = with.get("recursive").and_then(Value::as_bool) == Some(true);
    let list: Vec<&Value> = with
        .get("ctes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("node").and_then(|n| n.get("CommonTableExpr")))
        .collect();
    let names: Vec<String> = list
        .iter()
        .map(|c| str_field(c, "ctename").to_owned())
        .collect();
    out.cte_names.extend(names.iter().cloned());
    if recursive {
        ctes.extend(names.iter().cloned());
    }
    for (i, cte) in list.iter().enumerate() {
        let scope = ctes.len();
        if !recursive {
            ctes.extend(names[..i].iter().cloned());
        }
        walk(cte, ctes, out);
        ctes.truncate(scope);
    }
    if !recursive {
        ctes.extend(names);
    }
}

fn object(map: &Map<String, Value>, ctes: &[String], out: &mut PgStatement) {
    // A RangeVar appears both as a `Node` variant and as a typed field (INSERT's target), so
    // it is recognised by its shape: no other message has `relpersistence`.
    if map.contains_key("relpersistence") {
        let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
        let schema = text("schemaname");
        let name = text("relname");
        out.relations.push(PgRelation {
            schema: (!schema.is_empty()).then(|| schema.to_owned()),
            name: name.to_owned(),
            inh: map.get("inh").and_then(Value::as_bool).unwrap_or(true),
            cte: schema.is_empty() && ctes.iter().any(|c| c == name),
            location: map
                .get("location")
                .and_then(Value::as_i64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
        });
    }
    if let Some(c) = map.get("AConst") {
        out.constants.push(PgConstant {
            location: int_field(c, "location"),
            value: constant_value(c),
        });
    }
    if let Some(p) = map.get("ParamRef") {
        out.params.push(PgParam {
            number: int_field(p, "number"),
            location: int_field(p, "location"),
        });
    }
    if let Some(call) = map.get("FuncCall") {
        if let Some(name) = function_name(call) {
            out.functions.push(name.to_owned());
        }
        if let Some(setting) = set_config_target(call) {
            out.set_config_names.push(setting.clone());
            out.settings.push(setting);
        }
    }
    // A node where any node may stand, and the typed `setstmt` field of `ALTER ROLE`,
    // `ALTER DATABASE` and `ALTER SYSTEM`.
    for key in ["VariableSetStmt", "setstmt"] {
        if let Some(set) = map.get(key).filter(|s| s.is_object()) {
            out.variable_sets.push(variable_set(set));
        }
    }
    out.updates |= map.contains_key("UpdateStmt");
}

impl PgReading {
    /// Does any statement name `needle` (lower case) in any decoded string: a relation, a
    /// column, a function, an alias, a constant, a code body? Case-insensitive.
    pub fn mentions(&self, needle: &str) -> bool {
        self.mentions_any(&[needle])
    }

    /// Does any statement name one of `needles` (lower case) in any decoded string?
    pub fn mentions_any(&self, needles: &[&str]) -> bool {
        self.statements.iter().flat_map(|s| &s.strings).any(|text| {
            let lower = text.to_lowercase();
            needles.iter().any(|n| lower.contains(n))
        })
    }

    /// Does any statement name one of `needles` (lower case) in a decoded string other than a
    /// constant's value: a relation, a column, a function, an alias, an object of DDL, a code
    /// body? A protected table's name inside a string constant (`relname ~ '^(customers)$'`,
    /// as pg_dump and psql's `\d` send) touches no data by itself; functions that run a
    /// constant as SQL are checked on their own (`sql_text.rs`).
    pub fn names_any_outside_constants(&self, needles: &[&str]) -> bool {
        let hit = |text: &str| {
            let lower = text.to_lowercase();
            needles.iter().any(|n| lower.contains(n))
        };
        self.statements.iter().any(|s| {
            // Each constant's value appears once among the strings; skip that many.
            let mut constants: Vec<&str> = s
                .constants
                .iter()
                .filter_map(|c| c.value.as_deref())
                .filter(|v| hit(v))
                .collect();
            s.strings.iter().filter(|t| hit(t)).any(|t| {
                match constants.iter().position(|c| *c == t.as_str()) {
                    Some(i) => {
                        constants.swap_remove(i);
                        false
                    }
                    None => true,
                }
            })
        })
    }

    /// Is a PostgreSQL token starting exactly at byte `at`?
    pub fn token_starts_at(&self, at: usize) -> bool {
        self.tokens.binary_search_by(|t| t.start.cmp(&at)).is_ok()
    }

    /// Is a PostgreSQL token ending exactly at byte `at`? (Tokens do not overlap, so their
    /// ends are in order too.)
    pub fn token_ends_at(&self, at: usize) -> bool {
        self.tokens.binary_search_by(|t| t.end.cmp(&at)).is_ok()
    }
}

#[cfg(test)]
#[path = "../tests/pg_reading.rs"]
mod tests;
