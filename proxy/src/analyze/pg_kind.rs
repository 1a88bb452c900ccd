//! The kind of a statement (for audit and roles' `statements` lists) from PostgreSQL's parse
//! tree: the same classification `statement.rs` makes from sqlparser's, read from the node
//! PostgreSQL's grammar produced.

use serde_json::Value;

use super::StatementKind;

/// Kind of the statement whose top node (a `Node` oneof: `{"SelectStmt": {...}}`) is `node`.
pub fn kind_of(node: &Value) -> StatementKind {
    let Some((name, body)) = node.as_object().and_then(|o| o.iter().next()) else {
        return StatementKind::Other;
    };
    match name.as_str() {
        "SelectStmt" => select_kind(body),
        "InsertStmt" => StatementKind::Insert,
        "UpdateStmt" => StatementKind::Update,
        "DeleteStmt" => StatementKind::Delete,
        "MergeStmt" => StatementKind::Merge,
        "CopyStmt" => StatementKind::Copy,
        "ExplainStmt" if explain_analyze(body) => inner_kind(body),
        "PrepareStmt" => inner_kind(body),
        "CreateTableAsStmt" => StatementKind::Ddl,
        "TransactionStmt" => StatementKind::Transaction,
        "VariableSetStmt" | "VariableShowStmt" | "DiscardStmt" | "DeallocateStmt" => {
            StatementKind::Utility
        }
        n if is_ddl(n) => StatementKind::Ddl,
        _ => StatementKind::Other,
    }
}

/// Schema changes, rights and comments: what `statement::is_ddl` lists, by PostgreSQL's names.
fn is_ddl(name: &str) -> bool {
    let prefixed = [
        "Create", "Alter", "Drop", "Define", "Rename", "Grant", "Comment",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    let named = matches!(
        name,
        "IndexStmt"
            | "ViewStmt"
            | "TruncateStmt"
            | "CompositeTypeStmt"
            | "RuleStmt"
            | "SecLabelStmt"
            | "ReassignOwnedStmt"
    );
    // `CreatedbStmt`, `DropdbStmt`, `CreateRoleStmt`... start with a prefix; these two do
    // not change a schema.
    (prefixed || named) && !matches!(name, "DropOwnedStmt" | "AlterSystemStmt")
}

/// A SELECT writes when it is `SELECT ... INTO` (creates a table) or one of its WITH queries
/// modifies data (the first such, as sqlparser's reading reports it).
fn select_kind(body: &Value) -> StatementKind {
    if !body.get("into_clause").is_none_or(Value::is_null) {
        return StatementKind::Ddl;
    }
    let ctes = body
        .get("with_clause")
        .and_then(|w| w.get("ctes"))
        .and_then(Value::as_array);
    for cte in ctes.into_iter().flatten() {
        let query = cte
            .get("node")
            .and_then(|n| n.get("CommonTableExpr"))
            .and_then(|c| c.get("ctequery"))
            .and_then(|q| q.get("node"));
        match query.map(kind_of) {
            None | Some(StatementKind::Select) => {}
            Some(kind) => return kind,
        }
    }
    StatementKind::Select
}

/// The kind of the statement an EXPLAIN ANALYZE or PREPARE holds.
fn inner_kind(body: &Value) -> StatementKind {
    body.get("query")
        .and_then(|q| q.get("node"))
        .map_or(StatementKind::Other, kind_of)
}

/// EXPLAIN runs its statement only with ANALYZE (`EXPLAIN ANALYZE`, `(ANALYZE)`,
/// `(ANALYZE true)`); any ANALYZE option counts, so the strictest reading wins.
fn explain_analyze(body: &Value) -> bool {
    body.get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("node").and_then(|n| n.get("DefElem")))
        .any(|d| d.get("defname").and_then(Value::as_str) == Some("analyze"))
}
