//! Refusal wording, built in one place so every message names the column, the operation and
//! what deterministic encryption supports — and never quotes a value from the statement.

use super::{ColumnId, ProtectedSchema, Refusal};

/// SQLSTATE `feature_not_supported`.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// SQLSTATE `syntax_error`.
pub const SYNTAX_ERROR: &str = "42601";
/// SQLSTATE `statement_too_complex`.
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
/// SQLSTATE `insufficient_privilege`: DDL that would remove or weaken a guard.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE `insufficient_resources`.
const INSUFFICIENT_RESOURCES: &str = "53000";

/// What deterministic encryption lets a client do with a protected column.
pub const SUPPORTED: &str =
    "encrypted columns support =, <>, IN, = ANY, IS [NOT] NULL, GROUP BY, DISTINCT and count";

/// `column s.t.c is encrypted: <what> is not supported on it (<SUPPORTED>)`.
pub fn unsupported(schema: &ProtectedSchema, id: ColumnId, what: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "column {} is encrypted: {what} is not supported on it ({SUPPORTED})",
            schema.qualified_name(id)
        ),
        column: Some(id),
    }
}

/// Something a bulk INSERT ... SELECT (from VALUES or UNNEST) does to a protected column's
/// values beyond what is encrypted in place.
pub fn unsupported_in_bulk(schema: &ProtectedSchema, id: ColumnId, what: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "column {} is encrypted: {what} is not supported in a bulk INSERT ... SELECT writing              it (select the VALUES or UNNEST columns, each optionally cast to the column's type;              the values must be literals or $n parameters; ORDER BY only columns that are not              encrypted)",
            schema.qualified_name(id)
        ),
        column: Some(id),
    }
}

/// An operation an application (often its ORM) meant, which deterministic ciphertext cannot
/// do, with the fix.
pub fn not_on_ciphertext(
    schema: &ProtectedSchema,
    id: ColumnId,
    operation: &str,
    fix: &str,
) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "{operation} on protected column {} is not possible on deterministic ciphertext; \
             {fix} ({SUPPORTED})",
            schema.qualified_name(id)
        ),
        column: Some(id),
    }
}

/// A refusal about a statement form rather than one column (e.g. MERGE on a protected table).
pub fn unsupported_statement(what: &str, column: Option<ColumnId>) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!("pgshroud does not support {what} on tables with encrypted columns"),
        column,
    }
}

/// The analyser could not find the exact source text of a value it would have to rewrite.
pub fn cannot_locate(schema: &ProtectedSchema, id: ColumnId) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "column {} is encrypted: pgshroud cannot locate the value written or compared to it \
             in the statement text; write it as a plain literal or a $n parameter",
            schema.qualified_name(id)
        ),
        column: Some(id),
    }
}

/// An INSERT or COPY into a protected table whose column order is unknown.
pub fn name_the_columns(schema: &str, table: &str, statement: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "table {schema}.{table} has encrypted columns and its column order is not known to \
             pgshroud: name the columns in {statement}"
        ),
        column: None,
    }
}

/// The text mentions a protected table but does not parse. Only the error position is kept:
/// the parser's own message may quote a token, which could be plaintext.
pub fn unparseable(parser_error: &str) -> Refusal {
    let position = error_position(parser_error)
        .map(|(line, column)| format!(" (syntax error at line {line}, column {column})"))
        .unwrap_or_default();
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: format!(
            "pgshroud could not parse a statement that mentions protected table(s){position}; \
             statements on tables with encrypted columns must be understood before they are \
             forwarded"
        ),
        column: None,
    }
}

/// The statement nests deeper than pgshroud analyses (checked before anything recursive runs).
pub fn too_complex(limit: usize) -> Refusal {
    Refusal {
        sqlstate: STATEMENT_TOO_COMPLEX,
        message: format!(
            "statement too complex for pgshroud to analyse: nesting deeper than {limit}; split \
             long chains of operators (AND, OR, ||, UNION) or use IN lists and arrays"
        ),
        column: None,
    }
}

/// The analysis of a deep statement needed a thread of its own and none could be started.
pub fn no_resources() -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_RESOURCES,
        message: "pgshroud could not analyse the statement: out of resources".to_string(),
        column: None,
    }
}

/// A `U&"..."` identifier PostgreSQL would reject, or this decoder cannot read.
pub fn undecodable_identifier() -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: "pgshroud could not decode a Unicode-escaped identifier (U&\"...\" with an \
                  invalid escape or UESCAPE character)"
            .to_string(),
        column: None,
    }
}

/// DDL that would remove or weaken the guard of protected columns.
pub fn weakens_guard(what: &str) -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_PRIVILEGE,
        message: format!(
            "pgshroud refuses {what}: the guard constraints (pgshroud_guard_*) on encrypted \
             columns keep plaintext out of them and cannot be removed or weakened through \
             pgshroud, whatever the role"
        ),
        column: None,
    }
}

/// An unqualified table name that may mean a protected table or another relation.
pub fn unsure_table(schema: &str, table: &str, why: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgshroud cannot tell whether {table} means the table with encrypted columns \
             {schema}.{table}: {why}; qualify the name with its schema"
        ),
        column: None,
    }
}

/// PostgreSQL's scanner and pgshroud's analysis read the text's tokens or statements
/// differently (where a string, comment or statement ends): the analysis cannot be trusted.
pub fn read_differently(what: &str) -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: format!(
            "pgshroud refuses a statement on tables with encrypted columns that its analysis \
             reads differently from PostgreSQL ({what}); write it in plainer SQL (no \
             continued strings, unusual operators or quoting)"
        ),
        column: None,
    }
}

/// PostgreSQL's grammar and pgshroud's analysis disagree on what a statement does (its kind,
/// or which tables it reads or writes): forwarding it would rest on a reading the server
/// does not make.
pub fn analysed_differently(what: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgshroud refuses a statement on tables with encrypted columns: {what}, so its \
             analysis cannot be trusted"
        ),
        column: None,
    }
}

/// PostgreSQL's grammar (the one pgshroud reads with) does not read a text that mentions a
/// protected table. PostgreSQL's own message is not quoted: it may quote a token.
pub fn not_postgresql_grammar() -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: format!(
            "pgshroud could not read a statement that mentions protected table(s) with \
             PostgreSQL's grammar (PostgreSQL {}); statements on tables with encrypted columns \
             must be understood before they are forwarded",
            super::pg_reading::GRAMMAR_VERSION
        ),
        column: None,
    }
}

/// Extracts `Line: L, Column: C` from a sqlparser error message.
fn error_position(message: &str) -> Option<(u64, u64)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(',')?;
    let column = rest.trim_start().strip_prefix("Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_error_position_is_kept_and_token_text_dropped() {
        let r = unparseable(
            "sql parser error: Expected: end of statement, found: 'secret' at Line: 2, Column: 17",
        );
        assert_eq!(r.sqlstate, "42601");
        assert!(r.message.contains("line 2, column 17"), "{}", r.message);
        assert!(!r.message.contains("secret"));
    }

    #[test]
    fn parser_error_without_position_still_refuses() {
        let r = unparseable("sql parser error: recursion limit exceeded");
        assert_eq!(r.sqlstate, "42601");
        assert!(!r.message.contains("recursion"));
    }
}
