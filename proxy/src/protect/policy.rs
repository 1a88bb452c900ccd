//! The caller's role applied to statements: which statement kinds it may run, which protected
//! columns it may read, write or compare with values it supplies (refusals with 42501), and
//! what each result column becomes (the strictest action of every column that can reach it).

use std::net::IpAddr;
use std::sync::Arc;

use pgshroud_rules::{Action, Identity, Role, Rules};

use super::backstop::Backstop;
use super::codec::Spec;
use super::engine::Plan;
use super::reveal::Output;
use crate::analyze::{LinkKind, StatementKind, Usage};
use crate::crypto::envelope::context_tag;
use crate::crypto::KeyRing;
use crate::protocol::error::PgError;

/// SQLSTATE of refusals by role: insufficient_privilege.
pub use crate::protocol::error::sqlstate::INSUFFICIENT_PRIVILEGE;

/// Why a role refused a statement (metrics and audit label it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRefusal {
    ColumnDenied,
    WriteDenied,
    CompareDenied,
    /// Columns the role sees differently meet in one result column, comparison or copy.
    MixedActions,
    StatementKindDenied,
}

type Refused = (RoleRefusal, PgError);

/// Who is calling, as the proxy knows once authentication succeeded.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The PostgreSQL user from the startup message.
    pub user: String,
    /// PostgreSQL roles the user is a member of (looked up when the rules match on them).
    pub pg_roles: Vec<String>,
    /// The TLS client-certificate subject, when the client presented one.
    pub cert_subject: Option<String>,
    pub addr: IpAddr,
}

impl Caller {
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            user: &self.user,
            pg_roles: &self.pg_roles,
            cert_subject: self.cert_subject.as_deref(),
        }
    }
}

/// The session's role, as the policy sees it.
#[derive(Debug, Clone)]
pub struct Policy {
    role: Role,
    /// (schema, table, `schema.table.column`) of every protected column whose stored
    /// ciphertext the role may not receive (its action is a mask, null or deny).
    withheld: Vec<(String, String, String)>,
    /// (schema, table, `schema.table.column`) of every protected column the role may not
    /// write (no write right, or the column is denied to it).
    unwritable: Vec<(String, String, String)>,
    /// The key contexts of the withheld columns, for results of no known origin.
    backstop: Arc<Backstop>,
}

impl Policy {
    pub fn new(role: Role, rules: &Rules) -> Policy {
        let place = |(table, column): (&pgshroud_rules::Table, &pgshroud_rules::Column)| {
            let qualified = table.qualified_column(column);
            (table.schema.clone(), table.name.clone(), qualified)
        };
        let unwritable = rules
            .columns()
            .filter(|(table, column)| !role.may_write(&table.qualified_column(column)))
            .map(place)
            .collect();
        let withheld: Vec<(String, String, String)> = rules
            .columns()
            .filter(|(table, column)| {
                let qualified = table.qualified_column(column);
                !matches!(
                    role.action_for(&qualified, column.logical),
                    Action::Decrypt | Action::Ciphertext
                )
            })
            .map(place)
            .collect();
        let mut tags: Vec<_> = rules
            .columns()
            .filter(|(table, column)| {
                withheld
                    .iter()
                    .any(|(_, _, q)| *q == table.qualified_column(column))
            })
            .map(|(table, column)| context_tag(&table.context_of(column)))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        Policy {
            role,
            withheld,
            unwritable,
            backstop: Arc::new(Backstop::new(tags)),
        }
    }

    /// Protected columns whose stored values the role may not receive.
    pub(super) fn withheld(&self) -> &[(String, String, String)] {
        &self.withheld
    }

    /// What a result column of no known origin holds back for this role.
    pub fn backstop(&self) -> &Arc<Backstop> {
        &self.backstop
    }

    /// Protected columns the role may not write.
    pub(super) fn unwritable(&self) -> &[(String, String, String)] {
        &self.unwritable
    }

    /// The policy of the first role matching the caller (else the default role).
    pub fn for_caller(rules: &Rules, caller: &Caller) -> Policy {
        Policy::new(rules.role_for(&caller.identity()).clone(), rules)
    }

    /// Refuses a connection from outside the role's `networks` (SQLSTATE 28000).
    pub fn check_network(&self, addr: IpAddr) -> Result<(), PgError> {
        if self.role.allows_network(addr) {
            return Ok(());
        }
        Err(PgError::fatal(
            crate::protocol::error::sqlstate::INVALID_AUTHORIZATION,
            format!(
                "role {} may not connect from {addr}: the address is outside the role's networks",
                self.role.name
            ),
        ))
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// Whether statement kinds must be checked for every statement, also those that touch
    /// no protected table (only roles with a `statements` list pay for that).
    pub fn restricts_statements(&self) -> bool {
        self.role.statements.is_some()
    }

    /// The role's verdict on an analysed statement text.
    pub fn check(&self, plan: &Plan) -> Result<(), Refused> {
        for statement in &plan.statements {
            self.check_kind(statement.kind)?;
        }
        for (spec, usage) in &plan.columns {
            if self.action(spec) == Action::Deny {
                return Err(self.column_denied(spec));
            }
            match usage {
                Usage::Write if !self.role.may_write(&spec.qualified) => {
                    return Err(self.write_denied(spec, "write protected columns"));
                }
                Usage::CompareValue if !self.role.may_compare(&spec.qualified) => {
                    return Err(self.compare_denied(spec));
                }
                _ => {}
            }
        }
        for spec in &plan.computed {
            if !matches!(self.action(spec), Action::Decrypt | Action::Ciphertext) {
                return Err(self.computed_denied(spec));
            }
        }
        for spec in &plan.table_writes {
            if !self.role.may_write(&spec.qualified) {
                let what = "delete rows of, truncate or change the definition of a table with protected columns";
                return Err(self.write_denied(spec, what));
            }
        }
        self.check_links(plan)
    }

    /// Columns that meet must not let the role learn more of one than its action on it says:
    /// a result column fed by several gets the strictest action (two different masks have no
    /// order: refused); comparing columns the role sees differently tells it the values of
    /// one from the other, so it needs the compare right on both (as if it supplied them);
    /// copying a column into one the role sees more of would launder it.
    fn check_links(&self, plan: &Plan) -> Result<(), Refused> {
        for (a, b, kind) in &plan.links {
            let (action_a, action_b) = (self.action(a), self.action(b));
            match kind {
                LinkKind::Merged => {
                    let group = self.merged_group(plan, a);
                    let actions = group.iter().map(|s| self.action(s));
                    if Action::strictest(actions).is_err() {
                        return Err(self.mixed(a, b, "in one result column"));
                    }
                }
                LinkKind::Compared if action_a != action_b => {
                    let missing = [a, b]
                        .into_iter()
                        .find(|s| !self.role.may_compare(&s.qualified));
                    if let Some(spec) = missing {
                        return Err(self.compare_denied(spec));
                    }
                }
                LinkKind::Copied => {
                    let sources = self.merged_group(plan, b);
                    let actions = sources.iter().map(|s| self.action(s));
                    let strictest = Action::strictest(actions.chain([action_a]));
                    if strictest != Ok(action_a) {
                        return Err(self.mixed(
                            a,
                            b,
                            "by copying the values of one into the other",
                        ));
                    }
                }
                LinkKind::Compared => {}
            }
        }
        Ok(())
    }

    /// `spec` and every column merged with it into a result column by the plan's set
    /// operations (transitively).
    fn merged_group(&self, plan: &Plan, spec: &Spec) -> Vec<Spec> {
        let mut group = vec![spec.clone()];
        let mut i = 0;
        while let Some(at) = group.get(i).cloned() {
            for (a, b, kind) in &plan.links {
                if *kind != LinkKind::Merged {
                    continue;
                }
                let other = if Spec::ptr_eq(a, &at) {
                    b
                } else if Spec::ptr_eq(b, &at) {
                    a
                } else {
                    continue;
                };
                if !group.iter().any(|s| Spec::ptr_eq(s, other)) {
                    group.push(other.clone());
                }
            }
            i += 1;
        }
        group
    }

    fn column_denied(&self, spec: &Spec) -> Refused {
        (
            RoleRefusal::ColumnDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied for protected column {}: role {} may not use it",
                    spec.qualified, self.role.name
                ),
            )
            .with_hint("Leave the column out of the statement (also out of * and RETURNING *), or ask for a role that may see it."),
        )
    }

    /// A view's output computed from a protected column is no envelope of one column: a
    /// role that may see less than its stored value or plaintext gets nothing of the view.
    fn computed_denied(&self, spec: &Spec) -> Refused {
        (
            RoleRefusal::ColumnDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: the statement reads a view with an output computed from protected column {} (not a plain reference to it), and role {} may not read that column",
                    spec.qualified, self.role.name
                ),
            )
            .with_hint("Read the view's plain columns through a view without computed outputs, or ask for a role that may read the column."),
        )
    }

    fn write_denied(&self, spec: &Spec, what: &str) -> Refused {
        (
            RoleRefusal::WriteDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied to write protected column {}: role {} may not {what}",
                    spec.qualified, self.role.name
                ),
            ),
        )
    }

    fn compare_denied(&self, spec: &Spec) -> Refused {
        (
            RoleRefusal::CompareDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied to compare protected column {}: role {} has no compare right on it (it may not test values of its own against the column)",
                    spec.qualified, self.role.name
                ),
            )
            .with_hint("Comparing two protected columns with each other (joins, GROUP BY, DISTINCT) is allowed; comparing with a literal or parameter needs the compare right ([roles.compare] in the rules file)."),
        )
    }

    fn mixed(&self, a: &Spec, b: &Spec, how: &str) -> Refused {
        (
            RoleRefusal::MixedActions,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: role {} sees protected columns {} ({}) and {} ({}) differently, and the statement would join their values {how}",
                    self.role.name,
                    a.qualified,
                    self.action(a),
                    b.qualified,
                    self.action(b)
                ),
            ),
        )
    }

    /// Refuses a statement kind the role's `statements` list leaves out. Transaction
    /// control and session settings (`BEGIN`, `SET`, ...) are always allowed: drivers send
    /// them on their own.
    pub fn check_kind(&self, kind: StatementKind) -> Result<(), Refused> {
        if kind.is_session() || self.role.allows_statement(kind.as_str()) {
            return Ok(());
        }
        Err((
            RoleRefusal::StatementKindDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: role {} may not run {} statements",
                    self.role.name,
                    kind.as_str()
                ),
            ),
        ))
    }

    /// The role's read action on a protected column.
    pub fn action(&self, spec: &Spec) -> Action {
        self.role.action_for(&spec.qualified, spec.logical)
    }

    /// What a result column of `spec` becomes for this role.
    pub fn output(&self, spec: Spec, keys: &KeyRing) -> Output {
        let action = self.action(&spec);
        Output::new(spec, action, keys)
    }

    /// What a result column becomes that values of all `sources` (one key context, `spec`
    /// among them) can reach: the strictest of the role's actions for them. Two different
    /// masks were refused when the statement was checked; should they meet here, NULL.
    pub fn merged_output(&self, spec: Spec, sources: &[Spec], keys: &KeyRing) -> Output {
        let actions = sources.iter().chain([&spec]).map(|s| self.action(s));
        let action = Action::strictest(actions).unwrap_or(Action::Null);
        Output::new(spec, action, keys)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use pgshroud_rules::{LogicalType, Mask};

    use super::super::codec::ColumnSpec;
    use super::super::engine::PlanAction;
    use super::*;
    use crate::crypto::KeyContext;

    const RULES: &str = r#"
default_role = "app"
[[tables]]
name = "customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "email"
[[tables]]
name = "leads"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "email"
[[roles]]
name = "app"
template = "app"
[[roles]]
name = "sales"
template = "app"
  [roles.columns]
  "customers.email" = "mask:redact"
[[roles]]
name = "dba"
template = "dba"
[[roles]]
name = "caller"
template = "support"
statements = ["select", "function_call"]
"#;

    /// The policy of `role` in this module's rules (customers and leads, app, sales, dba,
    /// caller): shared with the other policy tests.
    pub(in crate::protect) fn policy(role: &str) -> Policy {
        let rules = pgshroud_rules::parse(RULES, "rules.toml").expect("rules");
        Policy::new(rules.role(role).expect("role").clone(), &rules)
    }

    fn spec(table: &str) -> Spec {
        Arc::new(ColumnSpec {
            qualified: format!("public.{table}.email"),
            logical: LogicalType::Text,
            modifier: None,
            context: KeyContext::new("email"),
        })
    }

    fn plan(columns: Vec<(Spec, Usage)>, links: Vec<(Spec, Spec, LinkKind)>) -> Plan {
        Plan {
            action: PlanAction::Forward,
            params: Vec::new(),
            statements: Vec::new(),
            columns,
            refreshes_catalog: false,
            table_writes: Vec::new(),
            links,
            computed: Vec::new(),
        }
    }

    fn refusal(policy: &Policy, plan: &Plan) -> Option<RoleRefusal> {
        policy.check(plan).err().map(|(why, _)| why)
    }

    #[test]
    fn comparing_with_a_supplied_value_needs_the_compare_right() {
        let p = plan(vec![(spec("customers"), Usage::CompareValue)], Vec::new());
        assert_eq!(refusal(&policy("app"), &p), None);
        assert_eq!(
            refusal(&policy("dba"), &p),
            Some(RoleRefusal::CompareDenied)
        );
        let p = plan(vec![(spec("customers"), Usage::Compare)], Vec::new());
        assert_eq!(refusal(&policy("dba"), &p), None, "column with column");
        let (_, error) = policy("dba")
            .check(&plan(
                vec![(spec("customers"), Usage::CompareValue)],
                Vec::new(),
            ))
            .unwrap_err();
        assert_eq!(error.code, "42501");
        assert!(
            error.message.contains("public.customers.email"),
            "{}",
            error.message
        );
        assert!(error.message.contains("compare right"), "{}", error.message);
    }

    #[test]
    fn deleting_from_a_protected_table_needs_the_write_right() {
        let mut p = plan(Vec::new(), Vec::new());
        p.table_writes = vec![spec("customers")];
        assert_eq!(refusal(&policy("app"), &p), None);
        assert_eq!(refusal(&policy("dba"), &p), Some(RoleRefusal::WriteDenied));
    }

    #[test]
    fn merged_outputs_take_the_strictest_action() {
        let keys = KeyRing::single(crate::crypto::MasterKey::from_bytes(&[7; 32]).expect("key"));
        let sales = policy("sales");
        let out = sales.merged_output(spec("leads"), &[spec("customers")], &keys);
        assert_eq!(out.action, Action::Mask(Mask::Redact));
        let out = policy("dba").merged_output(spec("leads"), &[spec("customers")], &keys);
        assert_eq!(out.action, Action::Ciphertext);
    }

    #[test]
    fn copies_into_a_column_the_role_sees_more_of_are_refused() {
        let launder = plan(
            Vec::new(),
            vec![(spec("leads"), spec("customers"), LinkKind::Copied)],
        );
        assert_eq!(
            refusal(&policy("sales"), &launder),
            Some(RoleRefusal::MixedActions)
        );
        assert_eq!(refusal(&policy("app"), &launder), None);
        let stricter = plan(
            Vec::new(),
            vec![(spec("customers"), spec("leads"), LinkKind::Copied)],
        );
        assert_eq!(refusal(&policy("sales"), &stricter), None);
    }
}
