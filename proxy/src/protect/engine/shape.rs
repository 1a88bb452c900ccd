//! A statement's shape: PostgreSQL's own scanner (`pg_query::scan`) reads the text into tokens;
//! the shape is every token's kind plus the text of every token that is not a literal. Two
//! texts of one shape differ only in their literals (and the whitespace between tokens), so
//! a plan built for one can be instantiated for the other (see `template.rs`) where the parse
//! tree proves each literal's value cannot change the analysis.
//!
//! Only the plainest literals take part: `'...'` strings (no `E''`, `U&''`, `$$`, no
//! backslash, no line break, so no continuation across lines) and unsigned decimal numbers
//! (`42`, `1.50`; no exponent, no leading zero, no `0x`/`_` forms). Any other constant token
//! (bit strings, `U&` strings) makes the text shapeless: it takes the full path.

use std::collections::HashSet;
use std::ops::Range;

use pg_query::protobuf::Token;
use serde_json::Value;

/// A literal token and its value as PostgreSQL and the analysis both decode it.
#[derive(Debug, Clone)]
pub(super) struct Literal {
    /// Index of the token in `Scanned::tokens`.
    pub token: usize,
    pub value: String,
}

/// A text read into tokens, with its shape key.
pub(super) struct Scanned {
    /// Byte range of every token (comments included), in order.
    pub tokens: Vec<Range<usize>>,
    /// The literal tokens, in order.
    pub literals: Vec<Literal>,
    /// Token kinds and the text of every non-literal token: the cache key (with the layout).
    pub key: Vec<u8>,
}

impl Scanned {
    /// Whether token `i` is a literal.
    pub fn is_literal(&self, i: usize) -> bool {
        self.literals.binary_search_by_key(&i, |l| l.token).is_ok()
    }
}

/// Reads `sql` into its shape, or `None` when the text cannot take the shape path (a literal
/// form outside the plain ones, text between tokens that is not whitespace, a scanner error).
pub(super) fn scan(sql: &str) -> Option<Scanned> {
    let scanned = pg_query::scan(sql).ok()?;
    let mut tokens = Vec::with_capacity(scanned.tokens.len());
    let mut literals = Vec::new();
    let mut key = Vec::with_capacity(sql.len() + scanned.tokens.len() * 2);
    let mut at = 0;
    for t in &scanned.tokens {
        let (start, end) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
        // Everything between tokens must be whitespace: nothing the key leaves out may
        // change how the server reads the text.
        if !sql.get(at..start)?.bytes().all(is_pg_space) || end < start {
            return None;
        }
        let text = sql.get(start..end)?;
        key.extend_from_slice(&t.token.to_le_bytes());
        let literal = match Token::try_from(t.token) {
            Ok(Token::Sconst) => Some(plain_string(text)?),
            Ok(Token::Iconst) => Some(plain_integer(text)?),
            Ok(Token::Fconst) => Some(plain_decimal(text)?),
            Ok(Token::Bconst | Token::Xconst | Token::Usconst) => return None,
            _ => None,
        };
        match literal {
            Some(value) => literals.push(Literal {
                token: tokens.len(),
                value,
            }),
            None => {
                // Statement text is a C string: 0 never occurs in it and ends each token.
                key.extend_from_slice(text.as_bytes());
                key.push(0);
            }
        }
        tokens.push(start..end);
        at = end;
    }
    if !sql.get(at..)?.bytes().all(is_pg_space) {
        return None;
    }
    Some(Scanned {
        tokens,
        literals,
        key,
    })
}

/// PostgreSQL's scanner's whitespace (`space` in scan.l).
fn is_pg_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
}

/// `'...'` with `''` for a quote and nothing that reads differently under another setting or
/// reader: its value, or `None`.
pub(super) fn plain_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.contains(['\\', '\n', '\r']) || mentions_pgshroud(inner) {
        return None;
    }
    // The scanner's token ends at the closing quote, so every inner quote is doubled.
    Some(inner.replace("''", "'"))
}

/// A value naming a guard or pgshroud object changes the analysis (see `analyze::guard`):
/// such texts take the full path.
fn mentions_pgshroud(value: &str) -> bool {
    // ASCII case-insensitive, without a lowercase copy (it runs for every string literal).
    value
        .as_bytes()
        .windows(b"pgshroud".len())
        .any(|w| w.eq_ignore_ascii_case(b"pgshroud"))
}

/// Decimal digits without a leading zero (PostgreSQL decodes `007` to 7, which the analysis
/// compares with the text as written).
pub(super) fn plain_integer(text: &str) -> Option<String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    (digits && (text == "0" || !text.starts_with('0'))).then(|| text.to_owned())
}

/// `digits.digits`: PostgreSQL keeps a float constant's text as written.
pub(super) fn plain_decimal(text: &str) -> Option<String> {
    let (whole, fraction) = text.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction)).then(|| text.to_owned())
}

/// Byte offsets of the constants whose value the parse tree proves cannot change what the
/// statement is: an operand of a comparison (`=`, `<>`, `!=`, `<`, `>`, `<=`, `>=`), an item
/// of an `IN` list or a `VALUES` row, an `UPDATE ... SET` value, a `LIMIT` or `OFFSET`.
/// Anything else (a function argument, a cast, `ORDER BY 1`, a type modifier, a utility
/// statement) is left out. `None` when the text does not parse or is not only SELECT,
/// INSERT, UPDATE and DELETE statements.
pub(super) fn value_positions(sql: &str) -> Option<HashSet<usize>> {
    // The tree is turned into JSON and walked recursively, a few frames per level: on the
    // stack sized for the text (a statement just under the nesting bound overflowed a
    // session thread's 2 MiB here, aborting the process).
    crate::sql_limits::pg::parse_with(sql, |parsed| value_positions_in(&parsed))
        .ok()
        .flatten()
}

fn value_positions_in(parsed: &pg_query::ParseResult) -> Option<HashSet<usize>> {
    let tree = serde_json::to_value(&parsed.protobuf).ok()?;
    let mut found = HashSet::new();
    for raw in tree.get("stmts")?.as_array()? {
        let (kind, body) = node_of(raw.get("stmt")?)?;
        if !matches!(
            kind,
            "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt"
        ) {
            return None;
        }
        visit(kind, body, Place::Other, &mut found);
    }
    Some(found)
}

/// Where a node sits, as far as its constants are concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Other,
    /// A constant here is a value.
    Value,
    /// A `List` here holds values (`IN (...)`, a `VALUES` row).
    ValueList,
    /// A `ResTarget` here is an UPDATE's `SET` target: its `val` is a value.
    SetTarget,
}

/// A serialized `Node`: `{"node": {"Kind": {...}}}`.
fn node_of(v: &Value) -> Option<(&str, &Value)> {
    let (kind, body) = v.get("node")?.as_object()?.iter().next()?;
    Some((kind.as_str(), body))
}

/// Walks any value of the tree; nodes found get `place`.
fn walk(v: &Value, place: Place, found: &mut HashSet<usize>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, place, found)),
        Value::Object(map) => match node_of(v) {
            Some((kind, body)) if map.len() == 1 => visit(kind, body, place, found),
            _ => map.values().for_each(|f| walk(f, Place::Other, found)),
        },
        _ => {}
    }
}

fn visit(kind: &str, body: &Value, place: Place, found: &mut HashSet<usize>) {
    if kind == "AConst" {
        if place == Place::Value {
            if let Some(at) = body.get("location").and_then(Value::as_u64) {
                found.insert(at as usize);
            }
        }
        return;
    }
    let Some(fields) = body.as_object() else {
        return;
    };
    for (field, child) in fields {
        let child_place = match (kind, field.as_str(), place) {
            ("List", "items", Place::ValueList) => Place::Value,
            ("ResTarget", "val", Place::SetTarget) => Place::Value,
            ("AExpr", "lexpr" | "rexpr", _) if is_comparison(body) => Place::Value,
            ("AExpr", "lexpr", _) if is_in(body) => Place::Value,
            ("AExpr", "rexpr", _) if is_in(body) => Place::ValueList,
            ("SelectStmt", "values_lists", _) => Place::ValueList,
            ("SelectStmt", "limit_count" | "limit_offset", _) => Place::Value,
            ("UpdateStmt", "target_list", _) => Place::SetTarget,
            _ => Place::Other,
        };
        walk(child, child_place, found);
    }
}

/// `AEXPR_OP` with one of the comparison operators, unqualified.
fn is_comparison(body: &Value) -> bool {
    const AEXPR_OP: i64 = 1;
    body.get("kind").and_then(Value::as_i64) == Some(AEXPR_OP)
        && matches!(
            operator(body),
            Some("=" | "<>" | "!=" | "<" | ">" | "<=" | ">=")
        )
}

/// `x IN (...)` / `x NOT IN (...)` (`AEXPR_IN`).
fn is_in(body: &Value) -> bool {
    const AEXPR_IN: i64 = 7;
    body.get("kind").and_then(Value::as_i64) == Some(AEXPR_IN)
}

/// The operator's name when it has one part.
fn operator(body: &Value) -> Option<&str> {
    let name = body.get("name")?.as_array()?;
    if name.len() != 1 {
        return None;
    }
    node_of(&name[0])?.1.get("sval")?.as_str()
}
