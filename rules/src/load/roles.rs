//! Validation of `[[roles]]`: names, templates, matchers, networks, statement kinds,
//! per-column overrides and limits.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::raw::RawRole;
use super::File;
use crate::action::Action;
use crate::error::{Problem, RulesError};
use crate::glob::Glob;
use crate::names::split_column;
use crate::network::Network;
use crate::role::{Role, STATEMENT_KINDS};
use crate::table::Table;
use crate::template::Template;

pub(super) fn build(
    raw: Vec<RawRole>,
    tables: &[Table],
    file: &File,
) -> Result<Vec<Role>, RulesError> {
    let mut lines: HashMap<String, usize> = HashMap::new();
    let mut roles = Vec::with_capacity(raw.len());
    for raw_role in raw {
        let span = raw_role.name.span();
        let key = raw_role.name.get_ref().to_ascii_lowercase();
        if let Some(&first_line) = lines.get(&key) {
            let role = raw_role.name.into_inner();
            return Err(file.error(span, Problem::DuplicateRole { role, first_line }));
        }
        lines.insert(key, file.line(span));
        roles.push(build_role(raw_role, tables, file)?);
    }
    Ok(roles)
}

fn build_role(raw: RawRole, tables: &[Table], file: &File) -> Result<Role, RulesError> {
    let span = raw.name.span();
    let role = build_role_fields(raw, tables, file)?;
    writes_need_compare(&role, tables).map_err(|problem| file.error(span, problem))?;
    Ok(role)
}

/// A role that may write a protected column must also be allowed to compare it: a write is an
/// equality test of its own (an INSERT into a unique column fails with 23505 exactly when the
/// value is stored already; a row written with a guess can be joined with the others, which
/// needs no compare right), so write without compare would promise what it cannot keep.
fn writes_need_compare(role: &Role, tables: &[Table]) -> Result<(), Problem> {
    let columns = tables
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| t.qualified_column(c)));
    for column in columns {
        if role.may_write(&column) && !role.may_compare(&column) {
            return Err(Problem::WriteWithoutCompare {
                role: role.name.clone(),
                column,
            });
        }
    }
    Ok(())
}

fn build_role_fields(raw: RawRole, tables: &[Table], file: &File) -> Result<Role, RulesError> {
    let name = check_name(&raw.name, file)?;
    let template = template(&name, raw.template, raw.name.span(), file)?;
    let mut role = Role::from_template(&name, template);
    role.users = globs(&name, "users", raw.users, file)?;
    role.pg_roles = globs(&name, "pg_roles", raw.pg_roles, file)?;
    role.cert_subjects = globs(&name, "cert_subjects", raw.cert_subjects, file)?;
    role.networks = networks(&name, raw.networks, file)?;
    role.statements = match raw.statements {
        None => None,
        Some(kinds) => Some(statements(&name, kinds, file)?),
    };
    role.write = raw.write.unwrap_or(template.default_write());
    role.column_actions = overrides(&name, raw.columns, tables, file)?;
    compare_rights(&mut role, raw.compare, tables, file)?;
    role.max_rows = limit(&name, "max_rows", raw.max_rows, file)?;
    role.enforce = raw.enforce.unwrap_or(false);
    role.max_protected_values_per_minute = limit(
        &name,
        "max_protected_values_per_minute",
        raw.max_protected_values_per_minute,
        file,
    )?;
    role.choose_tenant = raw.choose_tenant.unwrap_or(false);
    Ok(role)
}

fn check_name(name: &Spanned<String>, file: &File) -> Result<String, RulesError> {
    let text = name.get_ref();
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if text.is_empty() || text.len() > 63 || !text.chars().all(valid) {
        let found = text.clone();
        return Err(file.error(name.span(), Problem::BadRoleName { found }));
    }
    Ok(text.clone())
}

fn template(
    role: &str,
    raw: Option<Spanned<String>>,
    name_span: std::ops::Range<usize>,
    file: &File,
) -> Result<Template, RulesError> {
    let role = role.to_owned();
    let Some(raw) = raw else {
        return Err(file.error(name_span, Problem::MissingTemplate { role }));
    };
    Template::from_name(raw.get_ref()).ok_or_else(|| {
        let found = raw.get_ref().clone();
        file.error(raw.span(), Problem::UnknownTemplate { role, found })
    })
}

fn globs(
    role: &str,
    field: &'static str,
    raw: Vec<Spanned<String>>,
    file: &File,
) -> Result<Vec<Glob>, RulesError> {
    super::globs(raw, file, |found| Problem::BadPattern {
        role: role.to_owned(),
        field,
        found,
    })
}

fn networks(
    role: &str,
    raw: Vec<Spanned<String>>,
    file: &File,
) -> Result<Vec<Network>, RulesError> {
    raw.into_iter()
        .map(|text| {
            Network::parse(text.get_ref()).map_err(|why| {
                let problem = Problem::BadNetwork {
                    role: role.to_owned(),
                    found: text.get_ref().clone(),
                    why,
                };
                file.error(text.span(), problem)
            })
        })
        .collect()
}

fn statements(
    role: &str,
    raw: Vec<Spanned<String>>,
    file: &File,
) -> Result<Vec<String>, RulesError> {
    raw.into_iter()
        .map(|kind| {
            let lower = kind.get_ref().trim().to_ascii_lowercase();
            if STATEMENT_KINDS.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                let problem = Problem::UnknownStatementKind {
                    role: role.to_owned(),
                    found: kind.get_ref().clone(),
                };
                Err(file.error(kind.span(), problem))
            }
        })
        .collect()
}

fn overrides(
    role: &str,
    raw: BTreeMap<Spanned<String>, Spanned<String>>,
    tables: &[Table],
    file: &File,
) -> Result<BTreeMap<String, Action>, RulesError> {
    // Report problems in file order, not key order.
    let mut entries: Vec<_> = raw.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut actions = BTreeMap::new();
    for (key, value) in entries {
        let (qualified, action) = column_override(role, &key, &value, tables, file)?;
        if actions.insert(qualified.clone(), action).is_some() {
            let problem = Problem::DuplicateOverride {
                role: role.to_owned(),
                column: qualified,
            };
            return Err(file.error(key.span(), problem));
        }
    }
    Ok(actions)
}

/// `[roles.compare]`: `"*" = bool` replaces the template's right for every column, and
/// `"schema.table.column" = bool` sets one column's.
fn compare_rights(
    role: &mut Role,
    raw: BTreeMap<Spanned<String>, bool>,
    tables: &[Table],
    file: &File,
) -> Result<(), RulesError> {
    let mut entries: Vec<_> = raw.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, allowed) in entries {
        if key.get_ref().trim() == "*" {
            role.compare = allowed;
            continue;
        }
        let Some(qualified) = protected_column(key.get_ref(), tables) else {
            let problem = Problem::UnknownCompareColumn {
                role: role.name.clone(),
                column: key.get_ref().clone(),
            };
            return Err(file.error(key.span(), problem));
        };
        if role
            .column_compare
            .insert(qualified.clone(), allowed)
            .is_some()
        {
            let problem = Problem::DuplicateOverride {
                role: role.name.clone(),
                column: qualified,
            };
            return Err(file.error(key.span(), problem));
        }
    }
    Ok(())
}

/// The `schema.table.column` of a protected column a rules-file key names.
fn protected_column(key: &str, tables: &[Table]) -> Option<String> {
    let (schema, table, column) = split_column(key)?;
    let table = tables.iter().find(|t| t.is(&schema, &table))?;
    Some(table.qualified_column(table.column(&column)?))
}

/// One `"schema.table.column" = "action"` entry: the column must be protected, the action
/// well-formed, and a mask must suit the column's type.
fn column_override(
    role: &str,
    key: &Spanned<String>,
    value: &Spanned<String>,
    tables: &[Table],
    file: &File,
) -> Result<(String, Action), RulesError> {
    let found = split_column(key.get_ref()).and_then(|(schema, table, column)| {
        let table = tables.iter().find(|t| t.is(&schema, &table))?;
        let column = table.column(&column)?;
        Some((table.qualified_column(column), column.logical))
    });
    let Some((qualified, logical)) = found else {
        let problem = Problem::UnknownColumn {
            role: role.to_owned(),
            column: key.get_ref().clone(),
        };
        return Err(file.error(key.span(), problem));
    };
    let action = Action::parse(value.get_ref()).map_err(|why| {
        let problem = Problem::BadAction {
            role: role.to_owned(),
            column: qualified.clone(),
            found: value.get_ref().clone(),
            why,
        };
        file.error(value.span(), problem)
    })?;
    if let Action::Mask(mask) = action {
        mask.check_type(logical).map_err(|hint| {
            let problem = Problem::MaskNotForType {
                role: role.to_owned(),
                column: qualified.clone(),
                mask: mask.to_string(),
                logical,
                hint,
            };
            file.error(value.span(), problem)
        })?;
    }
    Ok((qualified, action))
}

fn limit(
    role: &str,
    field: &'static str,
    raw: Option<Spanned<u64>>,
    file: &File,
) -> Result<Option<u64>, RulesError> {
    match raw {
        Some(value) if *value.get_ref() == 0 => {
            let problem = Problem::ZeroLimit {
                role: role.to_owned(),
                field,
            };
            Err(file.error(value.span(), problem))
        }
        other => Ok(other.map(Spanned::into_inner)),
    }
}
