//! Validation of `[[tables]]`: names, types, duplicates and key contexts.

use std::collections::HashMap;

use super::raw::{RawColumn, RawTable};
use super::File;
use crate::error::{Problem, RulesError};
use crate::logical_type::{parse_column_type, LogicalType, TypeModifier};
use crate::names::{is_identifier, split_table};
use crate::table::{Column, Table};

/// Key contexts are bound into ciphertexts and key derivation: keep them printable and short.
const MAX_CONTEXT_LEN: usize = 200;

/// What has been seen so far, for duplicate and shared-context checks.
#[derive(Default)]
struct Seen {
    tables: HashMap<(String, String), usize>,
    /// context -> (qualified column, type, per tenant, keeps numeric scale)
    contexts: HashMap<String, (String, LogicalType, bool, bool)>,
}

pub(super) fn build(raw: Vec<RawTable>, file: &File) -> Result<Vec<Table>, RulesError> {
    let mut seen = Seen::default();
    raw.into_iter()
        .map(|t| build_table(t, file, &mut seen))
        .collect()
}

fn build_table(raw: RawTable, file: &File, seen: &mut Seen) -> Result<Table, RulesError> {
    let span = raw.name.span();
    let (schema, name) = split_table(raw.name.get_ref()).map_err(|bad| {
        let problem = match bad {
            Some(part) => Problem::BadIdentifier {
                what: "table name part",
                found: part,
            },
            None => Problem::BadTableName {
                found: raw.name.get_ref().clone(),
            },
        };
        file.error(span.clone(), problem)
    })?;
    let mut table = Table {
        schema,
        name,
        columns: Vec::new(),
    };
    let key = (table.schema.clone(), table.name.clone());
    if let Some(&first_line) = seen.tables.get(&key) {
        let table = table.qualified();
        return Err(file.error(span, Problem::DuplicateTable { table, first_line }));
    }
    seen.tables.insert(key, file.line(span.clone()));
    if raw.columns.is_empty() {
        let table = table.qualified();
        return Err(file.error(span, Problem::EmptyTable { table }));
    }
    let mut lines: HashMap<String, usize> = HashMap::new();
    for raw_column in raw.columns {
        let column = build_column(&table, raw_column, file, &mut lines, seen)?;
        table.columns.push(column);
    }
    Ok(table)
}

fn build_column(
    table: &Table,
    raw: RawColumn,
    file: &File,
    lines: &mut HashMap<String, usize>,
    seen: &mut Seen,
) -> Result<Column, RulesError> {
    let span = raw.name.span();
    if !is_identifier(raw.name.get_ref()) {
        let found = raw.name.into_inner();
        let what = "column name";
        return Err(file.error(span, Problem::BadIdentifier { what, found }));
    }
    let name = raw.name.get_ref().to_ascii_lowercase();
    let qualified = format!("{}.{name}", table.qualified());
    if let Some(&first_line) = lines.get(&name) {
        let problem = Problem::DuplicateColumn {
            column: qualified,
            first_line,
        };
        return Err(file.error(span, problem));
    }
    lines.insert(name.clone(), file.line(span.clone()));
    let found = raw.logical.get_ref().clone();
    let (logical, modifier) = match parse_column_type(&found) {
        Ok(parsed) => parsed,
        Err(why) if found.contains('(') && LogicalType::from_name(type_name(&found)).is_some() => {
            let column = qualified.clone();
            let problem = Problem::BadTypeModifier { column, found, why };
            return Err(file.error(raw.logical.span(), problem));
        }
        Err(_) => {
            let column = qualified.clone();
            let problem = Problem::UnknownType { column, found };
            return Err(file.error(raw.logical.span(), problem));
        }
    };
    let modifier = keep_scale(raw.keep_scale, logical, modifier, &qualified, file)?;
    let key_context = match raw.key_context {
        None => None,
        Some(context) => Some(check_context(context, &qualified, file)?),
    };
    if raw.migrating && logical == LogicalType::Bytea {
        // A plaintext bytea column and an unguarded protected one look alike in the
        // catalog: the proxy could not tell which form it serves.
        let problem = Problem::MigratingBytea { column: qualified };
        return Err(file.error(raw.logical.span(), problem));
    }
    let per_tenant = raw.per_tenant.map(|p| p.into_inner()).unwrap_or(false);
    if raw.migrating && per_tenant {
        // migrate seals with the master key's column keys (format 2), which a per-tenant
        // column's guard refuses: the run could never finish.
        let problem = Problem::MigratingPerTenant { column: qualified };
        return Err(file.error(span, problem));
    }
    let column = Column {
        name,
        logical,
        modifier,
        key_context,
        per_tenant,
        migrating: raw.migrating,
    };
    check_shared_context(table, &column, span, file, seen)?;
    Ok(column)
}

/// `keep_scale = true` turns an unconstrained `numeric` into one that keeps each value's display
/// scale; on anything else it would mean nothing, so it is refused rather than ignored.
fn keep_scale(
    raw: Option<toml::Spanned<bool>>,
    logical: LogicalType,
    modifier: Option<TypeModifier>,
    qualified: &str,
    file: &File,
) -> Result<Option<TypeModifier>, RulesError> {
    match raw {
        Some(flag) if *flag.get_ref() => {
            if logical == LogicalType::Numeric && modifier.is_none() {
                Ok(Some(TypeModifier::KeepScale))
            } else {
                let problem = Problem::KeepScaleNotApplicable {
                    column: qualified.to_owned(),
                };
                Err(file.error(flag.span(), problem))
            }
        }
        _ => Ok(modifier),
    }
}

/// The type name before a modifier's parenthesis.
fn type_name(found: &str) -> &str {
    found.split('(').next().unwrap_or(found)
}

fn check_context(
    context: toml::Spanned<String>,
    qualified: &str,
    file: &File,
) -> Result<String, RulesError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    let text = context.get_ref();
    if text.is_empty() || text.len() > MAX_CONTEXT_LEN || !text.chars().all(valid) {
        let problem = Problem::BadKeyContext {
            column: qualified.to_owned(),
            found: text.clone(),
        };
        return Err(file.error(context.span(), problem));
    }
    Ok(context.into_inner())
}

/// Columns sharing a context compare ciphertexts, and values are canonicalised per type
/// before encryption: an `int4` 7 and an `int8` 7 encrypt differently, so a join between
/// them would silently find nothing. Refuse the mix; likewise a per-tenant column and one
/// sealed with the master key's column key (their ciphertexts never match either).
fn check_shared_context(
    table: &Table,
    column: &Column,
    span: std::ops::Range<usize>,
    file: &File,
    seen: &mut Seen,
) -> Result<(), RulesError> {
    let context = table.context_of(column);
    let qualified = table.qualified_column(column);
    match seen.contexts.get(&context) {
        Some((other_column, _, other_per_tenant, _)) if *other_per_tenant != column.per_tenant => {
            let (tenant_column, shared_column) = if column.per_tenant {
                (qualified, other_column.clone())
            } else {
                (other_column.clone(), qualified)
            };
            let problem = Problem::ContextTenancyMismatch {
                context,
                tenant_column,
                shared_column,
            };
            Err(file.error(span, problem))
        }
        Some((other_column, other_logical, _, other_keeps))
            if *other_logical == column.logical && *other_keeps != keeps_scale(column) =>
        {
            let problem = Problem::ContextScaleMismatch {
                context,
                column: qualified,
                other_column: other_column.clone(),
            };
            Err(file.error(span, problem))
        }
        Some((other_column, other_logical, _, _)) if *other_logical != column.logical => {
            let problem = Problem::ContextTypeMismatch {
                context,
                column: qualified,
                logical: column.logical,
                other_column: other_column.clone(),
                other_logical: *other_logical,
            };
            Err(file.error(span, problem))
        }
        Some(_) => Ok(()),
        None => {
            let entry = (
                qualified,
                column.logical,
                column.per_tenant,
                keeps_scale(column),
            );
            seen.contexts.insert(context, entry);
            Ok(())
        }
    }
}

fn keeps_scale(column: &Column) -> bool {
    column.modifier == Some(TypeModifier::KeepScale)
}

#[cfg(test)]
mod tests {
    use crate::error::Problem;
    use crate::load::parse;

    const MIGRATING: &str = r#"
[[tables]]
name = "public.people"
  [[tables.columns]]
  name = "email"
  type = "text"
  migrating = true
  [[tables.columns]]
  name = "born"
  type = "date"
"#;

    #[test]
    fn a_column_may_be_marked_migrating() {
        let rules = parse(MIGRATING, "rules.toml").expect("valid rules");
        let table = &rules.tables[0];
        assert!(table.column("email").unwrap().migrating);
        assert!(!table.column("born").unwrap().migrating);
    }

    #[test]
    fn a_migrating_bytea_column_is_refused() {
        let text = MIGRATING.replace("\"text\"", "\"bytea\"");
        let error = parse(&text, "rules.toml").expect_err("bytea cannot be migrating");
        assert!(matches!(
            error.problem(),
            Some(Problem::MigratingBytea { column }) if column == "public.people.email"
        ));
        assert!(error.to_string().contains("look alike"), "{error}");
    }

    #[test]
    fn a_migrating_per_tenant_column_is_refused() {
        let text = MIGRATING.replace(
            "  migrating = true",
            "  migrating = true\n  per_tenant = true",
        ) + "[[tenants]]\nid = \"acme\"\nusers = [\"acme_*\"]\n";
        let error = parse(&text, "rules.toml").expect_err("not both");
        assert!(matches!(
            error.problem(),
            Some(Problem::MigratingPerTenant { column }) if column == "public.people.email"
        ));
    }
}
