//! The validated rules: protected tables and roles, and the look-ups the proxy makes on them.

use crate::role::{Identity, Role};
use crate::table::{Column, Table};
use crate::template::Template;
use crate::tenant::TenantRule;

/// A validated rules file. Built only by [`crate::parse`] / [`crate::load`], so every
/// cross-reference (overrides, `default_role`, key contexts) is known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub tables: Vec<Table>,
    /// Roles in file order: the first whose matchers match a caller wins.
    pub roles: Vec<Role>,
    /// The role for callers no role matches (`app` when the file defines no roles).
    pub default_role: String,
    /// The role used when the file defines no roles: built from the template named by
    /// `default_role`.
    pub(crate) builtin: Role,
    /// `[[tenants]]` in file order: the first whose matchers match a session gives its tenant.
    pub tenants: Vec<TenantRule>,
}

impl Rules {
    /// Assembles rules; `default_role` must name one of `roles` or, with no roles, a template.
    pub(crate) fn new(tables: Vec<Table>, roles: Vec<Role>, default_role: String) -> Rules {
        let template = Template::from_name(&default_role).unwrap_or(Template::App);
        let builtin = Role::from_template(&default_role, template);
        Rules {
            tables,
            roles,
            default_role,
            builtin,
            tenants: Vec::new(),
        }
    }

    pub(crate) fn with_tenants(mut self, tenants: Vec<TenantRule>) -> Rules {
        self.tenants = tenants;
        self
    }

    /// The tenant `[[tenants]]` gives the caller (first match in file order), if any. A role
    /// with `choose_tenant` may replace it per request; that choice is the proxy's to track.
    pub fn tenant_for(&self, who: &Identity) -> Option<&str> {
        self.tenants
            .iter()
            .find(|t| t.matches(who))
            .map(|t| t.id.as_str())
    }

    /// Whether any protected column is sealed per tenant.
    pub fn has_per_tenant_columns(&self) -> bool {
        self.tables
            .iter()
            .any(|t| t.columns.iter().any(|c| c.per_tenant))
    }

    /// The caller's role: the first role in file order with a matching matcher, else the
    /// default role.
    pub fn role_for(&self, who: &Identity) -> &Role {
        self.roles
            .iter()
            .find(|role| role.matches(who))
            .unwrap_or_else(|| self.unmatched_role())
    }

    /// The role for callers nobody matched.
    pub fn unmatched_role(&self) -> &Role {
        self.role(&self.default_role).unwrap_or(&self.builtin)
    }

    /// The role named `name`; with no roles defined, the built-in one.
    pub fn role(&self, name: &str) -> Option<&Role> {
        if self.roles.is_empty() {
            return (self.builtin.name == name).then_some(&self.builtin);
        }
        self.roles.iter().find(|r| r.name == name)
    }

    /// The roles callers can get: the file's, or the built-in one.
    pub fn effective_roles(&self) -> &[Role] {
        if self.roles.is_empty() {
            std::slice::from_ref(&self.builtin)
        } else {
            &self.roles
        }
    }

    /// Whether any role matches on PostgreSQL role membership, so the proxy must look it up.
    pub fn needs_pg_roles(&self) -> bool {
        self.roles.iter().any(|r| !r.pg_roles.is_empty())
    }

    /// A protected column by name (compared case-insensitively).
    pub fn column(&self, schema: &str, table: &str, column: &str) -> Option<(&Table, &Column)> {
        self.table(schema, table)
            .and_then(|t| t.column(column).map(|c| (t, c)))
    }

    /// A protected table by name (compared case-insensitively).
    pub fn table(&self, schema: &str, table: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.is(schema, table))
    }

    /// Every protected column with its table, in file order.
    pub fn columns(&self) -> impl Iterator<Item = (&Table, &Column)> {
        self.tables
            .iter()
            .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
    }
}
