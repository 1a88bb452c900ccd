//! A view's output columns as PostgreSQL's grammar reads its definition (`pg_get_viewdef`):
//! for each position, every column name its expression mentions (in any branch of a set
//! operation, in sub-queries too) and whether it takes a whole row (`c.*`, `c`), so an output
//! that is not a plain column reference can be traced, by name, to the protected columns
//! that may reach it (an over-approximation: a name match is enough to count).

use serde_json::Value;

/// What one output position of a view's definition mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewTarget {
    /// The last part of every column reference in the expression, as PostgreSQL decoded it.
    pub names: Vec<String>,
    /// A `*` or a bare relation name (a whole row) occurs in the expression.
    pub whole_row: bool,
}

/// The output positions of a view definition, or `None` when the text is not one query
/// PostgreSQL reads (the caller then treats every output as reached by everything).
pub fn view_targets(definition: &str) -> Option<Vec<ViewTarget>> {
    // The tree's serde form is built and walked recursively: on the stack sized for the text.
    crate::sql_limits::pg::parse_with(definition, |parsed| targets_in(&parsed))
        .ok()
        .flatten()
}

fn targets_in(parsed: &pg_query::ParseResult) -> Option<Vec<ViewTarget>> {
    let tree = serde_json::to_value(&parsed.protobuf).ok()?;
    let stmts = tree.get("stmts")?.as_array()?;
    let [stmt] = stmts.as_slice() else {
        return None;
    };
    let select = stmt.get("stmt")?.get("node")?.get("SelectStmt")?;
    let mut relations = Vec::new();
    relation_names(&tree, &mut relations);
    let mut targets: Vec<ViewTarget> = Vec::new();
    leaf_targets(select, &relations, &mut targets)?;
    Some(targets)
}

/// Adds each leaf query's target list (set operations have several) to `out` by position.
fn leaf_targets(select: &Value, relations: &[String], out: &mut Vec<ViewTarget>) -> Option<()> {
    let larg = select.get("larg").filter(|v| !v.is_null());
    let rarg = select.get("rarg").filter(|v| !v.is_null());
    if let (Some(l), Some(r)) = (larg, rarg) {
        leaf_targets(l, relations, out)?;
        return leaf_targets(r, relations, out);
    }
    if let Some(rows) = select.get("values_lists").and_then(Value::as_array) {
        if !rows.is_empty() {
            for row in rows {
                let items = row.get("node")?.get("List")?.get("items")?.as_array()?;
                for (i, item) in items.iter().enumerate() {
                    merge(out, i, target_of(item, relations));
                }
            }
            return Some(());
        }
    }
    let list = select.get("target_list").and_then(Value::as_array);
    for (i, entry) in list.into_iter().flatten().enumerate() {
        let res = entry.get("node")?.get("ResTarget")?;
        let target = res
            .get("val")
            .map(|v| target_of(v, relations))
            .unwrap_or_default();
        merge(out, i, target);
    }
    Some(())
}

fn merge(out: &mut Vec<ViewTarget>, i: usize, target: ViewTarget) {
    if out.len() <= i {
        out.resize(i + 1, ViewTarget::default());
    }
    out[i].names.extend(target.names);
    out[i].whole_row |= target.whole_row;
}

/// Every column reference under `node`.
fn target_of(node: &Value, relations: &[String]) -> ViewTarget {
    let mut target = ViewTarget::default();
    column_refs(node, relations, &mut target);
    target
}

fn column_refs(node: &Value, relations: &[String], out: &mut ViewTarget) {
    match node {
        Value::Object(map) => {
            if let Some(fields) = map
                .get("ColumnRef")
                .and_then(|c| c.get("fields"))
                .and_then(Value::as_array)
            {
                let parts: Vec<Option<&str>> = fields
                    .iter()
                    .map(|f| {
                        f.get("node")
                            .and_then(|n| n.get("String"))
                            .and_then(|s| s.get("sval"))
                            .and_then(Value::as_str)
                    })
                    .collect();
                // A `*` (AStar) has no string; a lone name may be a whole row (`c`).
                match parts.as_slice() {
                    [.., None] => out.whole_row = true,
                    [Some(one)] if relations.iter().any(|r| r == one) => {
                        out.whole_row = true;
                        out.names.push((*one).to_owned());
                    }
                    [.., Some(last)] => out.names.push((*last).to_owned()),
                    [] => out.whole_row = true,
                }
            }
            for value in map.values() {
                column_refs(value, relations, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| column_refs(item, relations, out)),
        _ => {}
    }
}

/// Every relation name and alias in the tree (a bare one of them in an expression is a
/// whole row).
fn relation_names(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if map.contains_key("relpersistence") {
                if let Some(name) = map.get("relname").and_then(Value::as_str) {
                    out.push(name.to_owned());
                }
            }
            if let Some(alias) = map
                .get("alias")
                .and_then(|a| a.get("aliasname"))
                .and_then(Value::as_str)
            {
                out.push(alias.to_owned());
            }
            if let Some(name) = map.get("ctename").and_then(Value::as_str) {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| relation_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| relation_names(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &ViewTarget) -> Vec<&str> {
        t.names.iter().map(String::as_str).collect()
    }

    #[test]
    fn plain_and_computed_outputs_name_their_columns() {
        let t = view_targets(
            "SELECT c.id, c.email AS mail, COALESCE(c.email, c.phone) AS any, \
             (SELECT o.email FROM orders o LIMIT 1) AS sub, 1 AS one FROM customers c",
        )
        .unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(names(&t[0]), ["id"]);
        assert_eq!(names(&t[1]), ["email"]);
        assert_eq!(names(&t[2]), ["email", "phone"]);
        assert_eq!(names(&t[3]), ["email"]);
        assert!(t[4].names.is_empty() && !t[4].whole_row);
    }

    #[test]
    fn whole_rows_and_stars_are_marked() {
        let t =
            view_targets("SELECT row_to_json(c.*) AS j, to_jsonb(c) AS k, c.id FROM customers c")
                .unwrap();
        assert!(t[0].whole_row);
        assert!(t[1].whole_row);
        assert!(!t[2].whole_row);
    }

    #[test]
    fn set_operations_merge_every_branch_by_position() {
        let t = view_targets(
            "SELECT customers.id, customers.name FROM customers \
             UNION ALL SELECT leads.id, leads.email FROM leads",
        )
        .unwrap();
        assert_eq!(names(&t[1]), ["name", "email"]);
        let v = view_targets("VALUES (1, 'a')").unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn texts_that_are_not_one_query_are_not_read() {
        assert_eq!(view_targets("SELECT 1; SELECT 2"), None);
        assert_eq!(view_targets("DELETE FROM t"), None);
        assert_eq!(view_targets("SELECT FROM WHERE"), None);
    }
}
