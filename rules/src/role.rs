//! Roles: who a caller is (matchers) and what they may see and do (template, overrides,
//! statement kinds, networks, limits).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::action::Action;
use crate::glob::Glob;
use crate::logical_type::LogicalType;
use crate::network::Network;
use crate::template::Template;

/// The statement kinds a role's `statements` list may name. `function_call` is the
/// protocol's FunctionCall message (a function run by OID, outside any SQL text).
pub const STATEMENT_KINDS: [&str; 9] = [
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "copy",
    "ddl",
    "other",
    "function_call",
];

/// A role from the rules file (or the built-in one when the file defines none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub template: Template,
    /// PostgreSQL user names (`*` globs).
    pub users: Vec<Glob>,
    /// PostgreSQL roles the user is a member of (`*` globs).
    pub pg_roles: Vec<Glob>,
    /// TLS client-certificate subjects (`*` globs).
    pub cert_subjects: Vec<Glob>,
    /// Source networks the role may connect from; empty means anywhere.
    pub networks: Vec<Network>,
    /// Statement kinds the role may run at all (lower case); `None` means every kind.
    pub statements: Option<Vec<String>>,
    /// Whether the role may write protected columns (template default unless set).
    pub write: bool,
    /// Whether the role may compare protected columns with values it supplies (literals,
    /// `$n`): template default unless `[roles.compare]` sets `"*"`. Without it a role cannot
    /// confirm guesses against deterministic ciphertext (no equality oracle).
    pub compare: bool,
    /// Per-column compare rights (`schema.table.column`, lower case) replacing `compare`.
    pub column_compare: BTreeMap<String, bool>,
    /// Per-column read actions (`schema.table.column`, lower case) replacing the template's.
    pub column_actions: BTreeMap<String, Action>,
    /// Audit alert when one statement returns more rows than this.
    pub max_rows: Option<u64>,
    /// Whether exceeded limits refuse the statement rather than only alert.
    pub enforce: bool,
    /// Audit alert when the role reads more protected values than this in a minute.
    pub max_protected_values_per_minute: Option<u64>,
    /// Whether sessions of this role may name their tenant per request
    /// (`SET pgshroud.tenant`), overriding any `[[tenants]]` match.
    pub choose_tenant: bool,
}

/// Who is calling, as the proxy knows once authentication succeeded.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The PostgreSQL user from the startup message.
    pub user: &'a str,
    /// The PostgreSQL roles the user is a member of (looked up only when
    /// [`crate::Rules::needs_pg_roles`]).
    pub pg_roles: &'a [String],
    /// The TLS client-certificate subject, when the client presented one.
    pub cert_subject: Option<&'a str>,
}

impl Role {
    /// A role with a template's defaults and no matchers (it matches nobody).
    pub fn from_template(name: &str, template: Template) -> Role {
        Role {
            name: name.to_owned(),
            template,
            users: Vec::new(),
            pg_roles: Vec::new(),
            cert_subjects: Vec::new(),
            networks: Vec::new(),
            statements: None,
            write: template.default_write(),
            compare: template.default_compare(),
            column_compare: BTreeMap::new(),
            column_actions: BTreeMap::new(),
            max_rows: None,
            enforce: false,
            max_protected_values_per_minute: None,
            choose_tenant: false,
        }
    }

    /// The read action for a protected column: the override if any, else the template's.
    pub fn action_for(&self, qualified_column: &str, logical: LogicalType) -> Action {
        self.override_for(qualified_column)
            .unwrap_or_else(|| self.template.default_action(logical))
    }

    /// Whether the role may write the column: its write right, unless the column is denied
    /// to it (a denied column may not be touched at all).
    pub fn may_write(&self, qualified_column: &str) -> bool {
        self.write && !self.denies(qualified_column)
    }

    /// Whether the role may compare the column with a value it supplies (a literal or `$n`
    /// in `=`, `<>`, `IN`, `= ANY`, an `ON CONFLICT` target): its per-column right, else its
    /// role-wide one, never for a denied column. Comparing two protected columns with each
    /// other supplies no value and needs no compare right.
    pub fn may_compare(&self, qualified_column: &str) -> bool {
        if self.denies(qualified_column) {
            return false;
        }
        let lower = qualified_column.to_ascii_lowercase();
        self.column_compare
            .get(&lower)
            .copied()
            .unwrap_or(self.compare)
    }

    /// Whether the column is denied to the role (it may not be touched at all).
    pub fn denies(&self, qualified_column: &str) -> bool {
        match self.override_for(qualified_column) {
            Some(action) => action == Action::Deny,
            None => self.template == Template::Auditor,
        }
    }

    /// Whether the role may run statements of `kind` (one of [`STATEMENT_KINDS`]).
    pub fn allows_statement(&self, kind: &str) -> bool {
        match &self.statements {
            None => true,
            Some(kinds) => kinds.iter().any(|k| k.eq_ignore_ascii_case(kind)),
        }
    }

    /// Whether the role may connect from `ip`; `true` when it lists no networks.
    pub fn allows_network(&self, ip: IpAddr) -> bool {
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(ip))
    }

    /// Whether any matcher of this role matches the caller.
    pub fn matches(&self, who: &Identity) -> bool {
        self.users.iter().any(|g| g.matches(who.user))
            || self
                .pg_roles
                .iter()
                .any(|g| who.pg_roles.iter().any(|r| g.matches(r)))
            || match who.cert_subject {
                Some(subject) => self.cert_subjects.iter().any(|g| g.matches(subject)),
                None => false,
            }
    }

    fn override_for(&self, qualified_column: &str) -> Option<Action> {
        if let Some(action) = self.column_actions.get(qualified_column) {
            return Some(*action);
        }
        let lower = qualified_column.to_ascii_lowercase();
        self.column_actions.get(&lower).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Mask;

    fn globs(patterns: &[&str]) -> Vec<Glob> {
        patterns.iter().filter_map(|p| Glob::new(p)).collect()
    }

    fn support() -> Role {
        let mut role = Role::from_template("support", Template::Support);
        role.users = globs(&["support_*"]);
        role.column_actions
            .insert("public.customers.email".into(), Action::Mask(Mask::Email));
        role.column_actions
            .insert("public.customers.card".into(), Action::Deny);
        role
    }

    fn who<'a>(user: &'a str, pg_roles: &'a [String], cert: Option<&'a str>) -> Identity<'a> {
        Identity {
            user,
            pg_roles,
            cert_subject: cert,
        }
    }

    #[test]
    fn override_replaces_template_action() {
        let role = support();
        assert_eq!(
            role.action_for("public.customers.email", LogicalType::Text),
            Action::Mask(Mask::Email)
        );
        assert_eq!(
            role.action_for("Public.Customers.Email", LogicalType::Text),
            Action::Mask(Mask::Email)
        );
        assert_eq!(
            role.action_for("public.customers.birthday", LogicalType::Date),
            Action::Mask(Mask::Year)
        );
    }

    #[test]
    fn denied_column_is_never_writable() {
        let mut role = support();
        role.write = true;
        assert!(role.may_write("public.customers.email"));
        assert!(!role.may_write("public.customers.card"));
        let mut auditor = Role::from_template("auditor", Template::Auditor);
        auditor.write = true;
        assert!(!auditor.may_write("public.customers.email"));
    }

    #[test]
    fn compare_right_comes_from_column_then_role_and_never_for_denied_columns() {
        let mut role = support();
        assert!(
            role.may_compare("public.customers.email"),
            "support compares"
        );
        assert!(!role.may_compare("public.customers.card"), "denied column");
        role.compare = false;
        role.column_compare
            .insert("public.customers.email".into(), true);
        assert!(role.may_compare("Public.Customers.Email"));
        assert!(!role.may_compare("public.customers.age"));
        role.column_compare
            .insert("public.customers.card".into(), true);
        assert!(!role.may_compare("public.customers.card"), "deny wins");
    }

    #[test]
    fn statements_default_to_all_kinds() {
        let mut role = support();
        assert!(role.allows_statement("ddl"));
        role.statements = Some(vec!["select".into(), "copy".into()]);
        assert!(role.allows_statement("select"));
        assert!(role.allows_statement("SELECT"));
        assert!(!role.allows_statement("update"));
    }

    #[test]
    fn networks_restrict_only_when_listed() {
        let mut role = support();
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert!(role.allows_network(ip("203.0.113.1")));
        role.networks = vec![
            Network::parse("10.0.0.0/8").expect("net"),
            Network::parse("::1/128").expect("net"),
        ];
        assert!(role.allows_network(ip("10.2.3.4")));
        assert!(role.allows_network(ip("::1")));
        assert!(!role.allows_network(ip("203.0.113.1")));
    }

    #[test]
    fn any_matcher_matches() {
        let mut role = Role::from_template("ops", Template::Dba);
        assert!(
            !role.matches(&who("anyone", &[], None)),
            "no matchers, no match"
        );
        role.pg_roles = globs(&["ops_*"]);
        role.cert_subjects = globs(&["CN=*.ops.example.com"]);
        let groups = vec!["staff".to_owned(), "ops_oncall".to_owned()];
        assert!(role.matches(&who("carol", &groups, None)));
        assert!(role.matches(&who("carol", &[], Some("CN=db1.ops.example.com"))));
        assert!(!role.matches(&who("carol", &groups[..1], Some("CN=x.example.com"))));
    }
}
