//! DDL that would remove or weaken a guard (the `pgshroud_guard_*` CHECK constraints on
//! protected columns, and any `pgshroud*` object): refused for every role, whoever owns the
//! table. A text that names a guard passes only if every statement in it is positively harmless.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, AlterColumnOperation, AlterTableOperation, Expr, ObjectName, Query, SetExpr,
    Statement, Visit, Visitor,
};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::refusal;
use super::scope::{fold, name_parts};
use super::walk::{Res, Walker};

/// Every guard constraint's name starts with this.
pub const GUARD_PREFIX: &str = "pgshroud_guard";

/// Objects pgshroud installs are named with this prefix; texts naming one go to analysis.
pub const PGSHROUD_NAMES: &str = "pgshroud";

/// Does the text name a guard, as written or once decoded (escaped strings, `U&"..."`)?
pub fn mentions_guard(sql: &str, tokens: &[TokenWithSpan]) -> bool {
    let named = |s: &str| s.to_lowercase().contains(GUARD_PREFIX);
    named(sql)
        || tokens.iter().any(|t| match &t.token {
            Token::Word(w) => named(&w.value),
            Token::SingleQuotedString(s)
            | Token::EscapedStringLiteral(s)
            | Token::UnicodeStringLiteral(s)
            | Token::NationalStringLiteral(s) => named(s),
            Token::DollarQuotedString(d) => named(&d.value),
            _ => false,
        })
}

impl<'a> Walker<'a> {
    /// Refuses a statement that would drop, rename or weaken a guard, change the type of a
    /// protected column, or drop or alter a `pgshroud*` object; and, when the text names a
    /// guard, any statement not positively harmless.
    pub fn check_guards(&self, stmt: &Statement) -> Res<()> {
        match stmt {
            Statement::AlterTable(at) => {
                for op in &at.operations {
                    self.alter_table_operation(&at.name, op)?;
                }
            }
            Statement::Drop { names, .. } => self.no_pgshroud_object(names.iter(), "DROP")?,
            Statement::DropDomain(d) => {
                self.no_pgshroud_object(std::iter::once(&d.name), "DROP DOMAIN")?
            }
            Statement::DropFunction(f) => {
                self.no_pgshroud_object(f.func_desc.iter().map(|d| &d.name), "DROP FUNCTION")?
            }
            Statement::AlterType(t) => {
                self.no_pgshroud_object(std::iter::once(&t.name), "ALTER TYPE")?
            }
            _ => {}
        }
        if self.guard_mentioned && !harmless_naming_a_guard(stmt) {
            return Err(refusal::weakens_guard(
                "a statement that names a guard (pgshroud_guard...) and may change it",
            ));
        }
        Ok(())
    }

    fn alter_table_operation(&self, table: &ObjectName, op: &AlterTableOperation) -> Res<()> {
        match op {
            AlterTableOperation::DropConstraint { name, .. } if is_guard(&fold(name)) => Err(
                refusal::weakens_guard(&format!("dropping the guard constraint {}", fold(name))),
            ),
            AlterTableOperation::RenameConstraint { old_name, new_name }
                if is_guard(&fold(old_name)) || is_guard(&fold(new_name)) =>
            {
                Err(refusal::weakens_guard(&format!(
                    "renaming the guard constraint {}",
                    fold(old_name)
                )))
            }
            AlterTableOperation::AlterColumn {
                column_name,
                op: AlterColumnOperation::SetDataType { .. },
            }
            | AlterTableOperation::ChangeColumn {
                old_name: column_name,
                ..
            }
            | AlterTableOperation::ModifyColumn {
                col_name: column_name,
                ..
            } => match self.protected_column_of(table, &fold(column_name)) {
                Some(qualified) => Err(refusal::weakens_guard(&format!(
                    "changing the type of encrypted column {qualified}"
                ))),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// `schema.table.column` if `column` of the table `table` names (or may name) is protected.
    fn protected_column_of(&self, table: &ObjectName, column: &str) -> Option<String> {
        let (s, t) = self.relation_or_candidate(table)?;
        let id = self.schema.lookup(&s, &t, column)?;
        Some(self.schema.qualified_name(id))
    }

    fn no_pgshroud_object<'n>(
        &self,
        mut names: impl Iterator<Item = &'n ObjectName>,
        what: &str,
    ) -> Res<()> {
        let named = names.find_map(|n| {
            let last = name_parts(n)?.pop()?;
            last.starts_with(PGSHROUD_NAMES).then_some(last)
        });
        match named {
            Some(name) => Err(refusal::weakens_guard(&format!("{what} of {name}"))),
            None => Ok(()),
        }
    }
}

fn is_guard(name: &str) -> bool {
    name.starts_with(GUARD_PREFIX)
}

/// Statements that may name a guard without any power to change it: reading queries (no
/// data-modifying part, no `SELECT INTO`, no function given a guard's name), plain EXPLAIN,
/// transaction control and session settings.
fn harmless_naming_a_guard(stmt: &Statement) -> bool {
    match stmt {
        Statement::Query(q) => reads_only(q),
        Statement::Explain {
            statement, analyze, ..
        } => !*analyze || harmless_naming_a_guard(statement),
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::ShowVariable { .. } => true,
        _ => false,
    }
}

fn reads_only(q: &Query) -> bool {
    struct Writes;
    impl Visitor for Writes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            match &*q.body {
                SetExpr::Insert(_)
                | SetExpr::Update(_)
                | SetExpr::Delete(_)
                | SetExpr::Merge(_) => ControlFlow::Break(()),
                SetExpr::Select(s) if s.into.is_some() => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let calls_with_guard = visit_expressions(q, |e| match e {
        Expr::Function(f) if f.to_string().to_lowercase().contains(GUARD_PREFIX) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    q.visit(&mut Writes).is_continue() && calls_with_guard.is_continue()
}
