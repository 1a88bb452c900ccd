//! Shared fixtures: the benchmark's rules file (the same `customers` table the end-to-end
//! encrypted scenario uses), a fixed master key, and wire messages as pgbench sends them.

use std::sync::Arc;

use bytes::BytesMut;
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud::protect::engine::{GuardPolicy, Protection};
use pgshroud::protocol::frame::message;

/// `customers` with protected `email` (text) and `age` (int4), as in `run.sh`.
pub const RULES: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"
"#;

/// A fixed master key (bytes 0..32): benchmarks need no secrecy, only repeatability.
pub fn key_ring() -> Arc<KeyRing> {
    let bytes: Vec<u8> = (0..32).collect();
    Arc::new(KeyRing::single(
        MasterKey::from_bytes(&bytes).expect("32 bytes"),
    ))
}

/// The shared protection state for [`RULES`]. Its catalog is empty (no database), so no guard
/// can be seen: guards are not required, or every planned write would be a refusal.
pub fn protection() -> Arc<Protection> {
    let rules = pgshroud_rules::parse(RULES, "bench-rules.toml").expect("valid rules");
    Arc::new(Protection::new(rules, key_ring(), GuardPolicy::NotRequired))
}

/// A point lookup by encrypted email, as the encrypted scenario's script sends it.
pub const LOOKUP_SQL: &str =
    "SELECT id, email, age, name FROM customers WHERE email = 'user42@example.com'";
/// An insert of both protected columns with literals.
pub const INSERT_SQL: &str =
    "INSERT INTO customers (email, age, name) VALUES ('new1@example.com', 42, 'New Customer')";
/// pgbench's select-only statement, which mentions no protected table.
pub const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";

/// The pipeline `pgbench -M prepared -S` sends per transaction: Bind, Execute, Sync.
pub fn prepared_select_pipeline(aid: i32) -> BytesMut {
    let mut out = BytesMut::new();
    let value = aid.to_string();
    let mut bind = Vec::new();
    bind.extend_from_slice(b"\0P0_1\0");
    bind.extend_from_slice(&0i16.to_be_bytes()); // parameter formats: all text
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
    bind.extend_from_slice(value.as_bytes());
    bind.extend_from_slice(&0i16.to_be_bytes()); // result formats: all text
    out.extend_from_slice(&message(b'B', &bind));
    out.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    out.extend_from_slice(&message(b'S', b""));
    out
}

/// The server's answer to one prepared select: BindComplete, DataRow, CommandComplete,
/// ReadyForQuery.
pub fn prepared_select_answer() -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&message(b'2', b""));
    out.extend_from_slice(&data_row(&[Some(b"-2417")]));
    out.extend_from_slice(&message(b'C', b"SELECT 1\0"));
    out.extend_from_slice(&message(b'Z', b"I"));
    out
}

/// The pipeline `pgbench -M extended -S` sends per transaction: Parse (unnamed), Bind,
/// Describe (portal), Execute, Sync. Its text mentions no protected table.
pub fn extended_select_pipeline(aid: i32) -> BytesMut {
    let mut out = BytesMut::new();
    let mut parse = b"\0".to_vec();
    parse.extend_from_slice(PGBENCH_SELECT.as_bytes());
    parse.extend_from_slice(b"\0\0\0");
    out.extend_from_slice(&message(b'P', &parse));
    let value = aid.to_string();
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
    bind.extend_from_slice(value.as_bytes());
    bind.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&message(b'B', &bind));
    out.extend_from_slice(&message(b'D', b"P\0"));
    out.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    out.extend_from_slice(&message(b'S', b""));
    out
}

/// The server's answer to one extended select: ParseComplete, BindComplete, RowDescription
/// (`abalance`, int4, of a table that is not protected), DataRow, CommandComplete,
/// ReadyForQuery.
pub fn extended_select_answer() -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&message(b'1', b""));
    out.extend_from_slice(&message(b'2', b""));
    let mut fields = 1i16.to_be_bytes().to_vec();
    fields.extend_from_slice(b"abalance\0");
    fields.extend_from_slice(&16_400u32.to_be_bytes()); // table OID
    fields.extend_from_slice(&3i16.to_be_bytes()); // attribute number
    fields.extend_from_slice(&23u32.to_be_bytes()); // int4
    fields.extend_from_slice(&4i16.to_be_bytes());
    fields.extend_from_slice(&(-1i32).to_be_bytes());
    fields.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&message(b'T', &fields));
    out.extend_from_slice(&data_row(&[Some(b"-2417")]));
    out.extend_from_slice(&message(b'C', b"SELECT 1\0"));
    out.extend_from_slice(&message(b'Z', b"I"));
    out
}

/// A DataRow of the given text values.
pub fn data_row(values: &[Option<&[u8]>]) -> BytesMut {
    let mut body = Vec::new();
    body.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    message(b'D', &body)
}
