//! The session settings a statement changes, as PostgreSQL's grammar reads them: `SET` and
//! `RESET` nodes, and `set_config(...)` calls.

use serde_json::Value;

use super::tree::{constant_value, function_name, int_field, str_field};

/// A `SET`/`RESET` node (`VariableSetStmt`) as PostgreSQL's grammar reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSet {
    /// The setting's name, lower case (empty for `RESET ALL`).
    pub name: String,
    pub form: SetForm,
    /// `SET LOCAL`.
    pub local: bool,
    /// The node is the statement itself, not a clause of another (`ALTER ROLE ... SET`).
    pub top: bool,
}

/// Which kind of `SET`/`RESET` a node is (PostgreSQL's `VariableSetKind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetForm {
    /// `SET name = value`: the value when it is one constant (`None`: a list, or not a
    /// constant).
    Value(Option<String>),
    /// `SET name TO DEFAULT`, `RESET name`.
    Default,
    /// `RESET ALL`.
    ResetAll,
    /// `SET name FROM CURRENT` and multi-setting forms (`SET TRANSACTION ...`).
    Other,
}

/// A session setting a statement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// This setting (lower case, as PostgreSQL names it: `SET NAMES` is `client_encoding`,
    /// `SET SCHEMA` is `search_path`).
    Named(String),
    /// Every setting (`RESET ALL`, `DISCARD ALL`).
    All,
    /// A setting whose name is computed (`set_config(x, ...)` with `x` not a constant).
    Unknown,
    /// A setting named by the value of parameter `$n` (`set_config($n, ...)`).
    Bound(usize),
}

pub(super) fn is_set_statement(node: &Value) -> bool {
    node.get("VariableSetStmt").is_some()
}

/// A `VariableSetStmt` node's name, form and scope (`top` is decided by the caller).
pub(super) fn variable_set(body: &Value) -> VariableSet {
    let args: Vec<&Value> = body
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // PostgreSQL's VariableSetKind, as pg_query numbers it (0 is "undefined").
    let form = match body.get("kind").and_then(Value::as_i64) {
        Some(1) => SetForm::Value(match args.as_slice() {
            [one] => one
                .get("node")
                .and_then(|n| n.get("AConst"))
                .and_then(constant_value),
            _ => None,
        }),
        Some(2) | Some(5) => SetForm::Default,
        Some(6) => SetForm::ResetAll,
        _ => SetForm::Other,
    };
    VariableSet {
        name: str_field(body, "name").to_ascii_lowercase(),
        form,
        local: body.get("is_local").and_then(Value::as_bool) == Some(true),
        top: false,
    }
}

/// The setting a `set_config(name, value, local)` call changes (any schema: a user function
/// named `set_config` earlier on the search_path is not the built-in, but counting it costs
/// only a look-up).
pub(super) fn set_config_target(call: &Value) -> Option<Setting> {
    if function_name(call)? != "set_config" {
        return None;
    }
    let first = call
        .get("args")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let node = first.and_then(|a| a.get("node"));
    if let Some(param) = node.and_then(|n| n.get("ParamRef")) {
        return Some(Setting::Bound(int_field(param, "number")));
    }
    let value = node.and_then(|n| n.get("AConst")).and_then(constant_value);
    Some(match value {
        Some(v) => Setting::Named(v.to_ascii_lowercase()),
        None => Setting::Unknown,
    })
}
