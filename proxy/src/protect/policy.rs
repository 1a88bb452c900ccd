//! The caller's role applied to statements: which statement kinds it may run, which protected
//! columns it may read or write (refusals with 42501), and what each result column becomes.

use std::net::IpAddr;

use pgshroud_rules::{Action, Identity, Role, Rules};

use super::codec::Spec;
use super::engine::Plan;
use super::reveal::Output;
use crate::analyze::{StatementKind, Usage};
use crate::crypto::KeyRing;
use crate::pg_error::PgError;

/// SQLSTATE of refusals by role: insufficient_privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Why a role refused a statement (metrics and audit label it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRefusal {
    ColumnDenied,
    WriteDenied,
    StatementKindDenied,
}

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
}

impl Policy {
    pub fn new(role: Role) -> Policy {
        Policy { role }
    }

    /// The policy of the first role matching the caller (else the default role).
    pub fn for_caller(rules: &Rules, caller: &Caller) -> Policy {
        Policy::new(rules.role_for(&caller.identity()).clone())
    }

    /// Refuses a connection from outside the role's `networks` (SQLSTATE 28000).
    pub fn check_network(&self, addr: IpAddr) -> Result<(), PgError> {
        if self.role.allows_network(addr) {
            return Ok(());
        }
        Err(PgError::fatal(
            "28000",
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
    pub fn check(&self, plan: &Plan) -> Result<(), (RoleRefusal, PgError)> {
        for statement in &plan.statements {
            self.check_kind(statement.kind)?;
        }
        for (spec, usage) in &plan.columns {
            let action = self.action(spec);
            if action == Action::Deny {
                return Err((
                    RoleRefusal::ColumnDenied,
                    PgError::error(
                        INSUFFICIENT_PRIVILEGE,
                        format!(
                            "permission denied for protected column {}: role {} may not use it",
                            spec.qualified, self.role.name
                        ),
                    )
                    .with_hint("Leave the column out of the statement (also out of * and RETURNING *), or ask for a role that may see it."),
                ));
            }
            if *usage == Usage::Write && !self.role.may_write(&spec.qualified) {
                return Err((
                    RoleRefusal::WriteDenied,
                    PgError::error(
                        INSUFFICIENT_PRIVILEGE,
                        format!(
                            "permission denied to write protected column {}: role {} may not write protected columns",
                            spec.qualified, self.role.name
                        ),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a statement kind the role's `statements` list leaves out. Transaction
    /// control and session settings (`BEGIN`, `SET`, ...) are always allowed: drivers send
    /// them on their own.
    pub fn check_kind(&self, kind: StatementKind) -> Result<(), (RoleRefusal, PgError)> {
        if kind == StatementKind::Session || self.role.allows_statement(kind.as_str()) {
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
}
