//! Server functions that run SQL, or dump tables, named in a text argument (`query_to_xml`,
//! `table_to_xml`, `dblink`, `ts_stat`, `crosstab`, ...), and code that runs SQL built from
//! strings (`EXECUTE` in `DO` and function bodies). What they read reaches the client as raw
//! stored bytes the proxy cannot transform, so roles that may not see a column's ciphertext
//! must not reach it this way: the caller checks the texts found here.
//!
//! The calls and their arguments are read from PostgreSQL's own parse tree (libpg_query):
//! function names and string constants arrive decoded exactly as the server decodes them
//! (`U&""` names, `E''` escapes, strings continued across lines, dollar quotes), so no escape
//! is decoded here. The tree is walked through its serde form, as in `pg_reading.rs`, so no
//! node kind is skipped.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::pg_reading::collect_strings;
use super::spelling;

/// Lower-case words that must be present for a text to reach any of these paths. `u&` is
/// there because a Unicode-escaped identifier can spell any function name; `language`
/// because code in a language other than plpgsql or SQL runs SQL through functions of its
/// own (`spi_exec_query`, `plpy.cursor`), and naming one takes a `LANGUAGE` clause.
pub(super) const TRIGGERS: [&str; 9] = [
    "_to_xml",
    "dblink",
    "ts_stat",
    "ts_rewrite",
    "crosstab",
    "connectby",
    "execute",
    "u&",
    "language",
];

/// Whether `sql` may call a function that runs SQL text (a cheap scan; `false` is certain):
/// one of the trigger words, or a form PostgreSQL decodes into words its bytes do not show.
/// Certain because PostgreSQL folds unquoted names with ASCII rules only, keeps quoted ones
/// byte for byte, and every decoding form is flagged by [`spelling::may_hide_text`].
pub fn may_run_sql_text(sql: &str) -> bool {
    static WORDS: LazyLock<spelling::Words> = LazyLock::new(|| spelling::Words::new(&TRIGGERS));
    WORDS.in_text(sql) || spelling::may_hide_text(sql)
}

/// What a text hands to functions that run SQL or dump tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlText {
    /// Nothing: no such call.
    None,
    /// The string-literal arguments of every such call (SQL texts, table names).
    Literals(Vec<String>),
    /// A call whose effect cannot be read from the text (the argument is computed, names a
    /// schema, database or cursor, or the code runs SQL it builds); the string says what it is.
    Unreadable(String),
}

/// Finds calls of functions that run SQL text in `sql`, as PostgreSQL parses it. Text
/// PostgreSQL's grammar does not accept (or that nests too deeply for it) is `Unreadable`.
pub fn sql_text_calls(sql: &str) -> SqlText {
    let unparsed = || SqlText::Unreadable("a statement pgshroud cannot parse".to_owned());
    // The tree's serde form is built and walked recursively, a few frames per level: on the
    // stack sized for the text (a text just under the nesting bound overflowed a session
    // thread's 2 MiB here).
    crate::sql_limits::pg::parse_with(sql, |parsed| calls_in(&parsed))
        .unwrap_or_else(|_| unparsed())
}

fn calls_in(parsed: &pg_query::ParseResult) -> SqlText {
    let unparsed = || SqlText::Unreadable("a statement pgshroud cannot parse".to_owned());
    let Ok(tree) = serde_json::to_value(&parsed.protobuf) else {
        return unparsed();
    };
    let mut found = Found::default();
    let statements = tree.get("stmts").and_then(Value::as_array);
    for raw in statements.into_iter().flatten() {
        let Some(node) = raw.get("stmt").and_then(|s| s.get("node")) else {
            continue;
        };
        if let Err(what) = statement(node, &mut found) {
            return SqlText::Unreadable(what);
        }
    }
    if found.calls == 0 {
        SqlText::None
    } else {
        SqlText::Literals(found.literals)
    }
}

#[derive(Default)]
struct Found {
    /// Calls of functions that run SQL text.
    calls: usize,
    literals: Vec<String>,
}

/// How a function named `name` takes what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// An SQL text or a table name (`query_to_xml`, `table_to_xml`, `dblink`, `ts_stat`).
    Text,
    /// A schema, the database or a cursor: which tables it reads is not in the text.
    Opaque,
}

/// Matched without regard to case: a quoted `"QUERY_TO_XML"` is another function to the
/// server, but treating it as the built-in only costs a look at its arguments.
fn runs_sql_text(name: &str) -> Option<Runner> {
    let last = name.to_lowercase();
    let opaque = ["schema_to_xml", "database_to_xml", "cursor_to_xml"];
    if opaque.iter().any(|p| last.starts_with(p)) {
        return Some(Runner::Opaque);
    }
    let text = last.contains("_to_xml")
        || last.starts_with("dblink")
        || ["ts_stat", "ts_rewrite", "crosstab", "connectby"]
            .iter()
            .any(|p| last.starts_with(p));
    text.then_some(Runner::Text)
}

/// One top-level statement: code it creates or runs is judged by its language and body,
/// everything else is walked for calls.
fn statement(node: &Value, found: &mut Found) -> Result<(), String> {
    let Some((name, body)) = node.as_object().and_then(|o| o.iter().next()) else {
        return Ok(());
    };
    match name.as_str() {
        "DoStmt" => code(body.get("args"), Some("plpgsql"), "a DO block"),
        "CreateFunctionStmt" => {
            // A SQL-standard body (`BEGIN ATOMIC ... END`, `RETURN expr`) is parsed already:
            // walk it like any statement. A string body is code pgshroud reads only as text.
            let options = body.get("options");
            if body.get("sql_body").is_some_and(|b| !b.is_null()) {
                walk(body, found)
            } else {
                code(options, None, "a created function or procedure")
            }
        }
        "CreateTrigStmt" | "CreateEventTrigStmt" => Err(
            "creating a trigger, which runs a function on other sessions' statements".to_owned(),
        ),
        _ => walk(body, found),
    }
}

/// Checks server-side code given as a string (a `DO` block, a function's `AS` body): plpgsql
/// and SQL bodies are refused when they may run SQL text (the same scan as for a whole text,
/// over the body PostgreSQL decoded); code in any other language is refused outright, since
/// it runs SQL through that language's own functions.
fn code(options: Option<&Value>, default_language: Option<&str>, what: &str) -> Result<(), String> {
    let mut language = default_language.map(str::to_owned);
    let mut bodies = Vec::new();
    for item in options.and_then(Value::as_array).into_iter().flatten() {
        let Some(def) = item.get("node").and_then(|n| n.get("DefElem")) else {
            continue;
        };
        let arg = def.get("arg").unwrap_or(&Value::Null);
        match def.get("defname").and_then(Value::as_str) {
            Some("language") => language = string_node(arg).map(str::to_owned),
            Some("as") => collect_strings(arg, &mut bodies),
            _ => {}
        }
    }
    match language.as_deref() {
        Some("plpgsql" | "sql") => {}
        Some(other) => {
            return Err(format!(
                "{what} in language {other}, whose code pgshroud cannot analyse"
            ))
        }
        None => return Err(format!("{what} in a language pgshroud cannot tell")),
    }
    if bodies.iter().any(|b| may_run_sql_text(b)) {
        return Err(format!(
            "{what} whose code may run SQL text it builds, which pgshroud cannot analyse"
        ));
    }
    Ok(())
}

/// The decoded value of a `String` node (`{"node": {"String": {"sval": ...}}}`).
fn string_node(v: &Value) -> Option<&str> {
    v.get("node")?.get("String")?.get("sval")?.as_str()
}

/// Visits every node: calls are checked; a function that runs SQL text named anywhere but in
/// a call (`CREATE OPERATOR ... FUNCTION = query_to_xml`, `CREATE CAST ... WITH FUNCTION`,
/// an aggregate's state function) is a use pgshroud cannot follow. Column references and
/// constants are names and values, not functions, and are passed over.
fn walk(v: &Value, found: &mut Found) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| walk(i, found)),
        Value::Object(map) => object(map, found),
        _ => Ok(()),
    }
}

fn object(map: &Map<String, Value>, found: &mut Found) -> Result<(), String> {
    if let Some(call) = map.get("FuncCall") {
        return func_call(call, found);
    }
    if map.contains_key("ColumnRef") || map.contains_key("AConst") {
        return Ok(());
    }
    if let Some(name) = map
        .get("String")
        .and_then(|s| s.get("sval"))
        .and_then(Value::as_str)
    {
        if runs_sql_text(name).is_some() {
            return Err(format!(
                "{name}(), named where pgshroud cannot follow what it is given"
            ));
        }
        return Ok(());
    }
    map.values().try_for_each(|v| walk(v, found))
}

fn func_call(call: &Value, found: &mut Found) -> Result<(), String> {
    let name = call
        .get("funcname")
        .and_then(Value::as_array)
        .and_then(|parts| parts.last())
        .and_then(string_node)
        .unwrap_or("");
    // Arguments, ORDER BY, FILTER and OVER may hold calls of their own.
    let rest = call
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.as_str() != "funcname");
    for (_, v) in rest {
        walk(v, found)?;
    }
    let Some(runner) = runs_sql_text(name) else {
        return Ok(());
    };
    if runner == Runner::Opaque {
        return Err(format!(
            "{name}(), which reads tables not named in its arguments"
        ));
    }
    let args = call.get("args").and_then(Value::as_array);
    for arg in args.into_iter().flatten() {
        match literal(arg) {
            Some(Some(text)) => found.literals.push(text),
            Some(None) => {}
            None => {
                return Err(format!(
                    "{name}() with an argument that is not a string literal"
                ))
            }
        }
    }
    if call.get("agg_star").and_then(Value::as_bool) == Some(true) {
        return Err(format!("{name}(*)"));
    }
    found.calls += 1;
    Ok(())
}

/// `Some(Some(text))` for a string constant, `Some(None)` for a boolean or NULL, `None` for
/// anything else (a number names a table by OID; an expression is computed). Casts
/// (`'customers'::regclass`) and named arguments (`query => '...'`) are looked through.
fn literal(node: &Value) -> Option<Option<String>> {
    let inner = node.get("node")?;
    if let Some(cast) = inner.get("TypeCast") {
        return literal(cast.get("arg")?);
    }
    if let Some(named) = inner.get("NamedArgExpr") {
        return literal(named.get("arg")?);
    }
    let constant = inner.get("AConst")?;
    if constant.get("isnull").and_then(Value::as_bool) == Some(true) {
        return Some(None);
    }
    let val = constant.get("val")?;
    if let Some(s) = val.get("Sval") {
        return Some(Some(s.get("sval")?.as_str()?.to_owned()));
    }
    val.get("Boolval").map(|_| None)
}

#[cfg(test)]
#[path = "tests/sql_text.rs"]
mod tests;
