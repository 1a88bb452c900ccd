//! The `pgshroud check` report: the protected columns, the roles and how callers reach them,
//! and what each role reads, may write and may compare with supplied values of each column. Deterministic, within 100 columns
//! for ordinary names.

use std::fmt::Write;

use crate::glob::Glob;
use crate::role::Role;
use crate::rules::Rules;

/// Renders the report for validated rules.
pub fn check_report(rules: &Rules) -> String {
    let mut out = String::new();
    columns_section(rules, &mut out);
    out.push('\n');
    roles_section(rules, &mut out);
    out.push('\n');
    access_section(rules, &mut out);
    out
}

fn columns_section(rules: &Rules, out: &mut String) {
    let count = rules.columns().count();
    let _ = writeln!(
        out,
        "Protected columns: {count} in {} {}",
        rules.tables.len(),
        plural(rules.tables.len(), "table", "tables")
    );
    let mut rows = vec![row(["COLUMN", "TYPE", "KEY CONTEXT"])];
    for (table, column) in rules.columns() {
        rows.push(vec![
            table.qualified_column(column),
            match column.modifier {
                Some(keep @ crate::TypeModifier::KeepScale) => {
                    format!("{} (keep_scale)", keep.type_name(column.logical))
                }
                Some(m) => m.type_name(column.logical),
                None => column.logical.name().to_owned(),
            },
            table.context_of(column),
        ]);
    }
    out.push_str(&render(&rows));
}

fn roles_section(rules: &Rules, out: &mut String) {
    let _ = writeln!(
        out,
        "Roles (first match wins; callers no role matches get \"{}\"):",
        rules.default_role
    );
    let mut rows = vec![row(["ROLE", "TEMPLATE", "MATCHES"])];
    for role in rules.effective_roles() {
        rows.push(vec![
            role.name.clone(),
            role.template.name().to_owned(),
            matchers(role),
        ]);
        for detail in details(role) {
            rows.push(vec![String::new(), String::new(), detail]);
        }
    }
    out.push_str(&render(&rows));
}

fn access_section(rules: &Rules, out: &mut String) {
    out.push_str(concat!(
        "What each role sees (COMPARE: may compare with values it supplies;\n",
        "where several columns feed one result the strictest READ wins:\n",
        "deny > null > ciphertext > mask > decrypt):\n",
    ));
    let mut rows = vec![row(["ROLE", "COLUMN", "READ", "WRITE", "COMPARE"])];
    for role in rules.effective_roles() {
        for (i, (table, column)) in rules.columns().enumerate() {
            let qualified = table.qualified_column(column);
            let yes_no = |right: bool| if right { "yes" } else { "no" };
            rows.push(vec![
                if i == 0 {
                    role.name.clone()
                } else {
                    String::new()
                },
                qualified.clone(),
                role.action_for(&qualified, column.logical).to_string(),
                yes_no(role.may_write(&qualified)).to_owned(),
                yes_no(role.may_compare(&qualified)).to_owned(),
            ]);
        }
    }
    out.push_str(&render(&rows));
}

/// `users app, support_*; pg_roles ops` or a note that only the default reaches the role.
fn matchers(role: &Role) -> String {
    let lists = [
        ("users", &role.users),
        ("pg_roles", &role.pg_roles),
        ("cert_subjects", &role.cert_subjects),
    ];
    let parts: Vec<String> = lists
        .iter()
        .filter(|(_, globs)| !globs.is_empty())
        .map(|(field, globs)| format!("{field} {}", join_globs(globs)))
        .collect();
    if parts.is_empty() {
        "nobody (reached only as the default role)".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Extra lines for what restricts a role beyond its template.
fn details(role: &Role) -> Vec<String> {
    let mut lines = Vec::new();
    if !role.networks.is_empty() {
        let nets: Vec<String> = role.networks.iter().map(ToString::to_string).collect();
        lines.push(format!("from networks {}", nets.join(", ")));
    }
    if let Some(kinds) = &role.statements {
        lines.push(format!("statements {}", kinds.join(", ")));
    }
    let mut limits = Vec::new();
    if let Some(n) = role.max_rows {
        limits.push(format!("max_rows {n}"));
    }
    if let Some(n) = role.max_protected_values_per_minute {
        limits.push(format!("max_protected_values_per_minute {n}"));
    }
    if !limits.is_empty() {
        let how = if role.enforce {
            "enforced"
        } else {
            "alert only"
        };
        lines.push(format!("limits {} ({how})", limits.join(", ")));
    }
    lines
}

fn join_globs(globs: &[Glob]) -> String {
    let names: Vec<&str> = globs.iter().map(Glob::as_str).collect();
    names.join(", ")
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Left-aligned columns, two spaces apart, indented by two; no trailing spaces.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../examples/rules.toml");

    fn report(text: &str) -> String {
        match crate::parse(text, "rules.toml") {
            Ok(rules) => check_report(&rules),
            Err(e) => panic!("invalid rules: {e}"),
        }
    }

    #[test]
    fn lists_every_protected_column_with_type_and_context() {
        let out = report(EXAMPLE);
        assert!(
            out.starts_with("Protected columns: 4 in 1 table\n"),
            "{out}"
        );
        assert!(out.contains("  public.customers.birthday  date  public.customers.birthday\n"));
    }

    #[test]
    fn shows_each_role_action_write_and_compare_right() {
        let out = report(EXAMPLE);
        let has = |line: &str| {
            out.lines()
                .any(|l| l.split_whitespace().eq(line.split_whitespace()))
        };
        assert!(has("app public.customers.email decrypt yes yes"), "{out}");
        assert!(
            has("support public.customers.email mask:email no yes"),
            "{out}"
        );
        assert!(has("public.customers.age null no yes"), "{out}");
        assert!(has("public.customers.birthday mask:year no yes"), "{out}");
        assert!(has("dba public.customers.email ciphertext no no"), "{out}");
        assert!(has("auditor public.customers.email deny no no"), "{out}");
    }

    #[test]
    fn names_default_role_matchers_and_restrictions() {
        let out = report(EXAMPLE);
        assert!(out.contains("callers no role matches get \"dba\""), "{out}");
        assert!(
            out.contains("  support  support   users support_*\n"),
            "{out}"
        );
    }

    #[test]
    fn shows_networks_statements_and_limits() {
        let out = report(
            r#"
default_role = "ops"
[[tables]]
name = "t"
  [[tables.columns]]
  name = "c"
  type = "text"
[[roles]]
name = "ops"
template = "dba"
pg_roles = ["ops"]
networks = ["10.0.0.0/8", "::1"]
statements = ["select", "ddl"]
max_rows = 10
max_protected_values_per_minute = 500
enforce = true
"#,
        );
        assert!(out.contains("pg_roles ops\n"), "{out}");
        assert!(out.contains("from networks 10.0.0.0/8, ::1/128\n"), "{out}");
        assert!(out.contains("statements select, ddl\n"), "{out}");
        assert!(
            out.contains("limits max_rows 10, max_protected_values_per_minute 500 (enforced)\n"),
            "{out}"
        );
    }

    #[test]
    fn file_without_roles_reports_builtin_app() {
        let out =
            report("[[tables]]\nname = \"t\"\n[[tables.columns]]\nname = \"c\"\ntype = \"int8\"\n");
        assert!(
            out.contains("  app   app       nobody (reached only as the default role)\n"),
            "{out}"
        );
        assert!(
            out.contains("  app   public.t.c  decrypt  yes    yes\n"),
            "{out}"
        );
    }

    #[test]
    fn report_is_deterministic_and_has_no_trailing_spaces() {
        let out = report(EXAMPLE);
        assert_eq!(out, report(EXAMPLE));
        assert!(out.lines().all(|l| !l.ends_with(' ')));
        assert!(out.lines().all(|l| l.chars().count() <= 100));
    }
}
