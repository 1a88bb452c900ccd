//! Fields of pg_query's parse tree in its serde form, read the same way by every part of
//! PostgreSQL's reading.

use serde_json::Value;

pub(super) fn str_field<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn int_field(v: &Value, key: &str) -> usize {
    v.get(key)
        .and_then(Value::as_i64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// The last part of a `FuncCall`'s name, as PostgreSQL decoded it.
pub(super) fn function_name(call: &Value) -> Option<&str> {
    call.get("funcname")?
        .as_array()?
        .last()?
        .get("node")?
        .get("String")?
        .get("sval")?
        .as_str()
}

/// `None` for NULL; integers, floats, booleans and bit strings as PostgreSQL prints them
/// before any cast (`-5`, `1.5`, `true`, `x41`/`b0101`).
pub(super) fn constant_value(c: &Value) -> Option<String> {
    if c.get("isnull").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let val = c.get("val")?.as_object()?;
    let (_, inner) = val.iter().next()?;
    let scalar = inner.as_object()?.values().next()?;
    Some(match scalar {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    })
}
