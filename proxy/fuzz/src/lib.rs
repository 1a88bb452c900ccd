//! What the fuzz targets share: splitting input into wire frames, polling the proxy's async
//! readers over an in-memory slice, and one protected schema (rules, key, catalog) for the
//! targets that analyse statements or run a protected session.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud::protect::catalog::Catalog;
use pgshroud::protect::engine::{GuardPolicy, Protection};
use pgshroud::protocol::frame::{check_frame, FrameCheck};

/// Largest message the targets accept: big enough for any input libFuzzer makes, small
/// enough that a length word cannot make a target allocate much.
pub const MAX_FRAME: usize = 1 << 20;

/// Splits `data` into whole typed messages the way the relay does; stops at the first
/// incomplete or invalid header.
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || match check_frame(data, MAX_FRAME) {
        FrameCheck::Complete(n) => {
            let (frame, rest) = data.split_at(n);
            data = rest;
            Some(frame)
        }
        _ => None,
    })
}

/// Runs a future that reads only from memory: such a future never waits, so one poll must
/// finish it.
pub fn run_ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("an in-memory read was left pending"),
    }
}

/// Protected columns of every logical type, two tables sharing a key context (joins), a
/// schema other than public, and roles whose templates and masks differ.
pub const RULES: &str = r#"
default_role = "app"

[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "customer_email"
  [[tables.columns]]
  name = "age"
  type = "int4"
  [[tables.columns]]
  name = "birthday"
  type = "date"
  [[tables.columns]]
  name = "card"
  type = "text"
  [[tables.columns]]
  name = "balance"
  type = "numeric"
  [[tables.columns]]
  name = "profile"
  type = "jsonb"

[[tables]]
name = "public.orders"
  [[tables.columns]]
  name = "customer_email"
  type = "text"
  key_context = "customer_email"
  [[tables.columns]]
  name = "token"
  type = "uuid"
  [[tables.columns]]
  name = "paid_at"
  type = "timestamptz"
  [[tables.columns]]
  name = "doc"
  type = "bytea"

[[tables]]
name = "crm.leads"
  [[tables.columns]]
  name = "phone"
  type = "varchar"
  [[tables.columns]]
  name = "score"
  type = "int8"
  [[tables.columns]]
  name = "vip"
  type = "bool"
  [[tables.columns]]
  name = "small"
  type = "int2"
  [[tables.columns]]
  name = "seen"
  type = "timestamp"

[[roles]]
name = "app"
template = "app"
users = ["app"]

[[roles]]
name = "support"
template = "support"
users = ["support"]
max_rows = 3
enforce = true
  [roles.columns]
  "public.customers.email" = "mask:email"
  "public.customers.card" = "mask:last4"
  "public.customers.age" = "null"

[[roles]]
name = "analyst"
template = "analyst"
users = ["analyst"]
statements = ["select"]

[[roles]]
name = "dba"
template = "dba"
users = ["dba"]

[[roles]]
name = "auditor"
template = "auditor"
users = ["auditor"]
"#;

/// Users the rules above map to each role.
pub const USERS: [&str; 5] = ["app", "support", "analyst", "dba", "auditor"];

/// OIDs the catalog gives the protected tables (seeds' RowDescriptions use them).
pub const CUSTOMERS_OID: u32 = 16384;
pub const ORDERS_OID: u32 = 16390;
pub const LEADS_OID: u32 = 16400;

/// A fixed master key (bytes 0..32): seeds carry values sealed under it.
pub fn key_ring() -> Arc<KeyRing> {
    let bytes: Vec<u8> = (0..32).collect();
    Arc::new(KeyRing::single(
        MasterKey::from_bytes(&bytes).expect("32 bytes"),
    ))
}

/// The protection state for [`RULES`]. Guards are not required: the catalog below has none,
/// and requiring them would refuse every write before the interesting code runs.
pub fn protection() -> Arc<Protection> {
    let rules = pgshroud_rules::parse(RULES, "fuzz-rules.toml").expect("valid rules");
    Arc::new(Protection::new(rules, key_ring(), GuardPolicy::NotRequired))
}

/// A table as the catalog look-up reports it: OID, schema, name, and its columns in order as
/// (name, storage type).
type CatalogTable = (
    u32,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The catalog as the look-up would report it: every table's columns in order, protected
/// ones stored as bytea.
pub fn catalog() -> Catalog {
    let tables: [CatalogTable; 3] = [
        (
            CUSTOMERS_OID,
            "public",
            "customers",
            &[
                ("id", "int4"),
                ("email", "bytea"),
                ("name", "text"),
                ("age", "bytea"),
                ("birthday", "bytea"),
                ("card", "bytea"),
                ("balance", "bytea"),
                ("profile", "bytea"),
            ],
        ),
        (
            ORDERS_OID,
            "public",
            "orders",
            &[
                ("id", "int4"),
                ("customer_email", "bytea"),
                ("amount", "numeric"),
                ("token", "bytea"),
                ("paid_at", "bytea"),
                ("doc", "bytea"),
            ],
        ),
        (
            LEADS_OID,
            "crm",
            "leads",
            &[
                ("phone", "bytea"),
                ("score", "bytea"),
                ("vip", "bytea"),
                ("small", "bytea"),
                ("seen", "bytea"),
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (oid, schema, table, columns) in tables {
        for (i, (name, ty)) in columns.iter().enumerate() {
            rows.push(vec![
                Some(oid.to_string()),
                Some(schema.to_owned()),
                Some(table.to_owned()),
                Some((i + 1).to_string()),
                Some((*name).to_owned()),
                Some((*ty).to_owned()),
                None,
            ]);
        }
    }
    Catalog::from_rows(rows)
}
