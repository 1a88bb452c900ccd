//! Server functions that run SQL, or dump tables, named in a text argument (`query_to_xml`,
//! `table_to_xml`, `dblink`, `ts_stat`, `crosstab`, ...), and plpgsql that runs SQL built from
//! strings (`EXECUTE` in `DO` and function bodies). What they read reaches the client as raw
//! stored bytes the proxy cannot transform, so roles that may not see a column's ciphertext
//! must not reach it this way: the caller checks the texts found here.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_relations, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectName, Statement, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::Tokenizer;

use super::{escapes, limits, parser, spelling};

/// Lower-case words that must be present for a text to reach any of these paths. `u&` is
/// there because a Unicode-escaped identifier can spell any function name.
const TRIGGERS: [&str; 8] = [
    "_to_xml",
    "dblink",
    "ts_stat",
    "ts_rewrite",
    "crosstab",
    "connectby",
    "execute",
    "u&",
];

/// Whether `sql` may call a function that runs SQL text (a cheap scan; `false` is certain):
/// one of the trigger words, or a form PostgreSQL decodes into words its bytes do not show.
pub fn may_run_sql_text(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    TRIGGERS.iter().any(|t| lower.contains(t)) || spelling::may_hide_text(sql)
}

/// What a text hands to functions that run SQL or dump tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlText {
    /// Nothing: no such call.
    None,
    /// The string-literal arguments of every such call (SQL texts, table names).
    Literals(Vec<String>),
    /// A call whose effect cannot be read from the text (the argument is computed, names a
    /// schema, database or cursor, or the code is plpgsql); the string says what it is.
    Unreadable(String),
}

/// Finds calls of functions that run SQL text in `sql`. Text that does not parse, or nests
/// too deeply to parse safely, is `Unreadable`.
pub fn sql_text_calls(sql: &str) -> SqlText {
    let unparsed = || SqlText::Unreadable("a statement pgshroud cannot parse".to_owned());
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return unparsed();
    };
    let Ok(tokens) = escapes::decode_escaped_identifiers(tokens) else {
        return unparsed();
    };
    let bound = limits::nesting_bound(&tokens);
    if bound > limits::MAX_NESTING {
        return unparsed();
    }
    let statements =
        limits::with_stack_for(bound, || parser(&dialect, tokens).parse_statements().ok())
            .flatten();
    let Some(statements) = statements else {
        return unparsed();
    };
    let mut literals = Vec::new();
    for statement in &statements {
        if let Err(what) = statement_calls(statement, &mut literals) {
            return SqlText::Unreadable(what);
        }
    }
    if literals.is_empty() && !any_call(&statements) {
        SqlText::None
    } else {
        SqlText::Literals(literals)
    }
}

fn any_call(statements: &[Statement]) -> bool {
    statements.iter().any(|s| {
        visit_expressions(s, |e| match e {
            Expr::Function(f) if runs_sql_text(&f.name).is_some() => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    })
}

/// How a function named `name` takes what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// An SQL text or a table name (`query_to_xml`, `table_to_xml`, `dblink`, `ts_stat`).
    Text,
    /// A schema, the database or a cursor: which tables it reads is not in the text.
    Opaque,
}

fn runs_sql_text(name: &ObjectName) -> Option<Runner> {
    let last = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
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

/// Collects the literal arguments of one statement's calls; `Err` says what cannot be read.
fn statement_calls(statement: &Statement, literals: &mut Vec<String>) -> Result<(), String> {
    if let Statement::CreateFunction(_)
    | Statement::CreateProcedure { .. }
    | Statement::CreateTrigger(_) = statement
    {
        return Err(
            "creating a function, procedure or trigger whose body pgshroud cannot analyse"
                .to_owned(),
        );
    }
    // `FROM dblink(...)`: a function in FROM shows as a relation name; its arguments are not
    // walked here, so it cannot be read.
    let in_from = visit_relations(statement, |name| match runs_sql_text(name) {
        Some(_) => ControlFlow::Break(()),
        None => ControlFlow::Continue(()),
    });
    if in_from.is_break() {
        return Err("a function that runs SQL text, called in FROM".to_owned());
    }
    let found = visit_expressions(statement, |e| {
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        let Some(runner) = runs_sql_text(&f.name) else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string();
        if runner == Runner::Opaque {
            return ControlFlow::Break(format!(
                "{name}(), which reads tables not named in its arguments"
            ));
        }
        match string_arguments(&f.args) {
            Some(mut texts) => {
                literals.append(&mut texts);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(format!(
                "{name}() with an argument that is not a string literal"
            )),
        }
    });
    match found {
        ControlFlow::Break(what) => Err(what),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The string values of a call's arguments, or `None` when one is anything but a string
/// (or boolean) literal, possibly cast (`'customers'::regclass`).
fn string_arguments(args: &FunctionArguments) -> Option<Vec<String>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    let mut texts = Vec::new();
    for arg in &list.args {
        let (FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
        | FunctionArg::Named {
            arg: FunctionArgExpr::Expr(e),
            ..
        }
        | FunctionArg::ExprNamed {
            arg: FunctionArgExpr::Expr(e),
            ..
        }) = arg
        else {
            return None;
        };
        if let Some(text) = literal(e)? {
            texts.push(text);
        }
    }
    Some(texts)
}

/// `Some(Some(text))` for a string literal, `Some(None)` for a boolean, `None` otherwise.
fn literal(e: &Expr) -> Option<Option<String>> {
    match e {
        Expr::Nested(inner) => literal(inner),
        Expr::Cast { expr, .. } => literal(expr),
        Expr::Value(v) => match &v.value {
            Value::Boolean(_) => Some(None),
            other => other.clone().into_string().map(Some),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(sql: &str) -> Vec<String> {
        match sql_text_calls(sql) {
            SqlText::Literals(texts) => texts,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn unreadable(sql: &str) -> String {
        match sql_text_calls(sql) {
            SqlText::Unreadable(what) => what,
            other => panic!("{sql}: expected unreadable, got {other:?}"),
        }
    }

    #[test]
    fn the_scan_misses_no_spelling_the_parser_would_read() {
        for sql in [
            "SELECT query_to_xml('x', true, false, '')",
            "select QUERY_TO_XML('x', true, false, '')",
            "SELECT \"query_to_xml\"('x', true, false, '')",
            "SELECT U&\"query\\005fto\\005fxml\"('x', true, false, '')",
            "DO $$ BEGIN EXECUTE 'select 1'; END $$",
        ] {
            assert!(may_run_sql_text(sql), "{sql}");
        }
        assert!(!may_run_sql_text(
            "SELECT email FROM customers WHERE id = 1"
        ));
    }

    #[test]
    fn literal_arguments_are_collected() {
        assert_eq!(
            literals("SELECT query_to_xml('select email from customers', true, false, '')"),
            ["select email from customers", ""]
        );
        assert_eq!(
            literals("SELECT pg_catalog.table_to_xml('customers'::regclass, true, false, '')"),
            ["customers", ""]
        );
        assert_eq!(
            literals("SELECT U&\"query\\005fto\\005fxml\"('select 1', true, false, '')"),
            ["select 1", ""]
        );
        assert_eq!(sql_text_calls("EXECUTE my_statement(1)"), SqlText::None);
        assert_eq!(sql_text_calls("SELECT 'query_to_xml'"), SqlText::None);
    }

    #[test]
    fn computed_arguments_schemas_cursors_and_plpgsql_are_unreadable() {
        for sql in [
            "SELECT query_to_xml('select email from cust' || 'omers', true, false, '')",
            "SELECT query_to_xml($1, true, false, '')",
            "SELECT table_to_xml(16384, true, false, '')",
            "SELECT schema_to_xml('public', true, false, '')",
            "SELECT database_to_xml(true, false, '')",
            "SELECT cursor_to_xml('c', 10, true, false, '')",
            "SELECT * FROM dblink('dbname=x', 'select 1') AS t(x int)",
            "DO $$ BEGIN EXECUTE 'select 1'; END $$",
            "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'select 1'; RETURN ''; END $$",
        ] {
            assert!(!unreadable(sql).is_empty(), "{sql}");
        }
    }
}
