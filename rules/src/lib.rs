//! The rules model: which columns are protected and what each role sees. Knows nothing of
//! sockets or SQL: the proxy loads a [`Rules`] once, shares it read-only, and asks it.
//!
//! The file (see `examples/rules.toml`):
//! - `[[tables]]` `name = "schema.table"` with `[[tables.columns]]` `name`, `type` (a
//!   [`LogicalType`] name) and optional `key_context` (columns sharing one can be compared).
//!   SQL names are folded to lower case; quoted identifiers are not supported.
//! - `[[roles]]` `name`, `template` ([`Template`]), matchers `users` / `pg_roles` /
//!   `cert_subjects` (`*` globs; first matching role in file order wins), optional `write`,
//!   `statements`, `networks`, `max_rows`, `max_protected_values_per_minute`, `enforce`, and
//!   `[roles.columns]` `"schema.table.column" = "<action>"` ([`Action`]), and
//!   `[roles.compare]` `"*"` or `"schema.table.column"` `= true|false` (may the role compare
//!   the column with values it supplies).
//! - `[[tenants]]` `id` with matchers `users` / `cert_subjects`: the tenant of matching
//!   sessions; a role with `choose_tenant = true` may name one per request instead. A column
//!   with `per_tenant = true` is sealed with the session's tenant key.
//! - `default_role`: the role for callers no role matches; required once roles exist. With
//!   no roles it may name a template and defaults to `app`.

pub mod action;
pub mod error;
pub mod glob;
mod load;
pub mod logical_type;
pub mod mask;
pub mod names;
pub mod network;
mod report;
pub mod role;
mod rules;
pub mod table;
pub mod template;
pub mod tenant;

pub use action::Action;
pub use error::{Location, Problem, RulesError};
pub use glob::Glob;
pub use load::{load, parse};
pub use logical_type::{
    parse_column_type, LogicalType, TypeModifier, BYTEA_ARRAY_OID, BYTEA_OID, TEXT_OID,
};
pub use mask::{Mask, REDACTED};
pub use network::Network;
pub use report::check_report;
pub use role::{Identity, Role, STATEMENT_KINDS};
pub use rules::Rules;
pub use table::{Column, Table};
pub use template::Template;
pub use tenant::{is_valid_tenant_id, TenantRule};
