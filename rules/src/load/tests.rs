//! Loading rules files: good files, and each problem with its line.

use super::*;
use crate::role::Identity;
use crate::{Action, LogicalType, Mask};

const EXAMPLE: &str = include_str!("../../examples/rules.toml");

const CUSTOMERS: &str = r#"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"
  [[tables.columns]]
  name = "birthday"
  type = "date"
"#;

fn rules(text: &str) -> Rules {
    match parse(text, "rules.toml") {
        Ok(rules) => rules,
        Err(e) => panic!("expected valid rules, got: {e}"),
    }
}

/// The error's line, problem and full message.
fn fails(text: &str) -> (Option<usize>, Problem, String) {
    match parse(text, "rules.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => {
            let shown = e.to_string();
            (e.line(), e.problem().cloned().expect("a problem"), shown)
        }
    }
}

/// CUSTOMERS (lines 2-11) plus `roles` text.
fn with_roles(roles: &str) -> String {
    format!("default_role = \"app\"\n{CUSTOMERS}{roles}")
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

fn who<'a>(user: &'a str) -> Identity<'a> {
    Identity {
        user,
        pg_roles: &[],
        cert_subject: None,
    }
}

#[test]
fn example_file_loads() {
    let rules = rules(EXAMPLE);
    assert_eq!(rules.tables.len(), 1);
    let names: Vec<&str> = rules.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["app", "support", "dba", "auditor"]);
    assert_eq!(rules.default_role, "dba");
    let (table, card) = rules.column("public", "customers", "card").expect("card");
    assert_eq!(table.qualified(), "public.customers");
    assert_eq!(card.logical, LogicalType::Text);
}

#[test]
fn support_role_sees_masked_email() {
    let rules = rules(EXAMPLE);
    let support = rules.role_for(&who("support_alice"));
    assert_eq!(support.name, "support");
    let email = support.action_for("public.customers.email", LogicalType::Text);
    assert_eq!(email, Action::Mask(Mask::Email));
    assert_eq!(email.to_string(), "mask:email");
    assert_eq!(
        support.action_for("public.customers.age", LogicalType::Int4),
        Action::Null
    );
    assert_eq!(
        support.action_for("public.customers.birthday", LogicalType::Date),
        Action::Mask(Mask::Year)
    );
    assert!(!support.may_write("public.customers.email"));
    assert!(
        support.allows_statement("update"),
        "no statements list: every kind"
    );
    assert_eq!(support.max_rows, None);
}

#[test]
fn unmatched_caller_gets_default_role() {
    let rules = rules(EXAMPLE);
    assert_eq!(rules.role_for(&who("mallory")).name, "dba");
    assert_eq!(rules.role_for(&who("app")).name, "app");
}

#[test]
fn first_matching_role_in_file_order_wins() {
    let rules = rules(&with_roles(
        r#"
[[roles]]
name = "oncall"
template = "dba"
users = ["support_oncall"]
[[roles]]
name = "support"
template = "support"
users = ["support_*"]
[[roles]]
name = "app"
template = "app"
users = ["app"]
"#,
    ));
    assert_eq!(rules.role_for(&who("support_oncall")).name, "oncall");
    assert_eq!(rules.role_for(&who("support_bob")).name, "support");
    assert_eq!(rules.role_for(&who("someone")).name, "app");
}

#[test]
fn pg_role_membership_and_cert_subjects_match() {
    let rules = rules(&with_roles(
        r#"
[[roles]]
name = "app"
template = "app"
[[roles]]
name = "analysts"
template = "analyst"
pg_roles = ["analytics"]
[[roles]]
name = "svc"
template = "app"
cert_subjects = ["CN=*.svc.example.com"]
"#,
    ));
    assert!(rules.needs_pg_roles());
    let groups = vec!["analytics".to_owned()];
    let member = Identity {
        user: "ann",
        pg_roles: &groups,
        cert_subject: None,
    };
    assert_eq!(rules.role_for(&member).name, "analysts");
    let svc = Identity {
        user: "batch",
        pg_roles: &[],
        cert_subject: Some("CN=batch.svc.example.com"),
    };
    assert_eq!(rules.role_for(&svc).name, "svc");
    let analyst = rules.role("analysts").expect("analysts");
    assert_eq!(
        analyst.action_for("public.customers.email", LogicalType::Text),
        Action::Mask(Mask::Hash)
    );
}

#[test]
fn file_without_roles_gives_everyone_builtin_app() {
    let rules = rules(CUSTOMERS);
    assert!(rules.roles.is_empty());
    assert!(!rules.needs_pg_roles());
    assert_eq!(rules.default_role, "app");
    let role = rules.role_for(&who("anyone"));
    assert_eq!(role.name, "app");
    assert_eq!(
        role.action_for("public.customers.email", LogicalType::Text),
        Action::Decrypt
    );
    assert!(role.may_write("public.customers.email"));
}

#[test]
fn file_without_roles_may_default_to_a_template() {
    let rules = rules(&format!("default_role = \"dba\"\n{CUSTOMERS}"));
    let role = rules.role_for(&who("anyone"));
    assert_eq!(role.name, "dba");
    assert_eq!(
        role.action_for("public.customers.email", LogicalType::Text),
        Action::Ciphertext
    );
    assert!(!role.may_write("public.customers.email"));
}

#[test]
fn empty_file_protects_nothing() {
    let rules = rules("");
    assert!(rules.tables.is_empty());
    assert_eq!(rules.role_for(&who("x")).name, "app");
}

#[test]
fn names_fold_to_lower_case_and_schema_defaults_to_public() {
    let rules = rules(
        "[[tables]]\nname = \"Orders\"\n[[tables.columns]]\nname = \"CardNo\"\ntype = \"TEXT\"\n",
    );
    let (table, column) = rules.column("PUBLIC", "orders", "cardno").expect("column");
    assert_eq!(
        (table.schema.as_str(), table.name.as_str()),
        ("public", "orders")
    );
    assert_eq!(column.name, "cardno");
    assert_eq!(table.context_of(column), "public.orders.cardno");
}

#[test]
fn shared_key_context_is_kept() {
    let rules = rules(
        r#"
[[tables]]
name = "orders"
  [[tables.columns]]
  name = "customer_email"
  type = "text"
  key_context = "person-email"
[[tables]]
name = "crm.people"
  [[tables.columns]]
  name = "email"
  type = "text"
  key_context = "person-email"
"#,
    );
    let contexts: Vec<String> = rules.columns().map(|(t, c)| t.context_of(c)).collect();
    assert_eq!(contexts, ["person-email", "person-email"]);
}

#[test]
fn override_keys_without_schema_and_in_any_case_resolve() {
    let rules = rules(&with_roles(
        r#"
[[roles]]
name = "app"
template = "app"
  [roles.columns]
  "Customers.Email" = "mask:partial(1, 1)"
"#,
    ));
    let app = rules.role("app").expect("app");
    assert_eq!(
        app.column_actions.get("public.customers.email"),
        Some(&Action::Mask(Mask::Partial { first: 1, last: 1 }))
    );
}

#[test]
fn write_networks_and_limits_are_read() {
    let rules = rules(&with_roles(
        r#"
[[roles]]
name = "app"
template = "support"
write = true
networks = ["10.0.0.0/8", "::1/128"]
statements = ["SELECT", "insert"]
max_rows = 500
enforce = true
max_protected_values_per_minute = 1000
"#,
    ));
    let app = rules.role("app").expect("app");
    assert!(app.write);
    assert!(app.may_write("public.customers.email"));
    assert!(app.allows_network("10.1.1.1".parse().expect("ip")));
    assert!(!app.allows_network("192.168.0.1".parse().expect("ip")));
    assert_eq!(
        app.statements.as_deref(),
        Some(&["select".to_owned(), "insert".to_owned()][..])
    );
    assert_eq!(app.max_rows, Some(500));
    assert!(app.enforce);
    assert_eq!(app.max_protected_values_per_minute, Some(1000));
}

#[test]
fn compare_rights_come_from_template_star_and_columns() {
    let rules = rules(&with_roles(
        r#"
[[roles]]
name = "app"
template = "app"

[[roles]]
name = "dba"
template = "dba"

[[roles]]
name = "lookup"
template = "dba"
  [roles.compare]
  "customers.email" = true

[[roles]]
name = "narrow"
template = "support"
  [roles.compare]
  "*" = false
  "public.customers.birthday" = true
"#,
    ));
    let may = |role: &str, column: &str| {
        rules
            .role(role)
            .expect("role")
            .may_compare(&format!("public.customers.{column}"))
    };
    assert!(may("app", "age"));
    assert!(!may("dba", "age"));
    assert!(may("lookup", "email"));
    assert!(!may("lookup", "age"));
    assert!(!may("narrow", "email"));
    assert!(may("narrow", "birthday"));
}

#[test]
fn compare_right_for_an_unprotected_column_names_its_line() {
    let text = with_roles(
        r#"
[[roles]]
name = "app"
template = "app"
  [roles.compare]
  "public.customers.phone" = true
"#,
    );
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "customers.phone")));
    assert!(matches!(problem, Problem::UnknownCompareColumn { .. }));
    assert!(shown.contains("compare right"), "{shown}");
}

#[test]
fn type_modifiers_are_read_with_the_type() {
    let text = CUSTOMERS.replace("\"int4\"", "\"numeric(12, 2)\"");
    let rules = crate::parse(&text, "rules.toml").unwrap();
    let age = &rules.tables[0].columns[1];
    assert_eq!(age.logical, crate::LogicalType::Numeric);
    assert_eq!(
        age.modifier,
        Some(crate::TypeModifier::Numeric {
            precision: 12,
            scale: 2
        })
    );
}

// ---- problems, each with its line ---------------------------------------------------

#[test]
fn bad_type_modifier_names_line_and_the_rule() {
    let text = CUSTOMERS.replace("\"int4\"", "\"numeric(5, 7)\"");
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "numeric(5, 7)")));
    assert!(matches!(problem, Problem::BadTypeModifier { .. }));
    assert!(
        shown.contains("numeric scale must be between 0 and the precision"),
        "{shown}"
    );
    let (_, problem, _) = fails(&CUSTOMERS.replace("\"int4\"", "\"int4(3)\""));
    assert!(matches!(problem, Problem::BadTypeModifier { .. }));
    let (_, problem, _) = fails(&CUSTOMERS.replace("\"int4\"", "\"money(3)\""));
    assert!(matches!(problem, Problem::UnknownType { .. }));
}

#[test]
fn unknown_type_names_line_column_and_choices() {
    let text = CUSTOMERS.replace("\"int4\"", "\"integr\"");
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "integr")));
    assert!(matches!(problem, Problem::UnknownType { .. }));
    assert!(
        shown.starts_with(
            "rules.toml:9: unknown type \"integr\" for column public.customers.age; \
             write one of text, varchar, int2,"
        ),
        "{shown}"
    );
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = CUSTOMERS.replace("type = \"date\"", "type = \"date\"\n  encrypt = true");
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "encrypt")));
    assert!(matches!(problem, Problem::Syntax(_)));
    assert!(shown.contains("unknown field `encrypt`"), "{shown}");
    assert!(
        shown.contains("expected one of `name`, `type`, `key_context`"),
        "{shown}"
    );
}

#[test]
fn missing_field_says_to_add_it() {
    let text = CUSTOMERS.replace("  type = \"date\"\n", "");
    let (line, _, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "name = \"birthday\"") - 1));
    assert!(
        shown.ends_with("missing field `type`; add it to this entry"),
        "{shown}"
    );
}

#[test]
fn toml_syntax_error_names_its_line() {
    let (line, problem, _) = fails("[[tables]]\nname = \"t\n");
    assert_eq!(line, Some(2));
    assert!(matches!(problem, Problem::Syntax(_)));
}

#[test]
fn duplicate_table_names_both_lines() {
    let text = format!("{CUSTOMERS}[[tables]]\nname = \"customers\"\n");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "name = \"customers\"")));
    assert_eq!(
        problem,
        Problem::DuplicateTable {
            table: "public.customers".into(),
            first_line: line_of(&text, "public.customers")
        }
    );
}

#[test]
fn duplicate_column_is_refused() {
    let text = CUSTOMERS.replace("name = \"age\"", "name = \"EMAIL\"");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "EMAIL")));
    assert_eq!(
        problem,
        Problem::DuplicateColumn {
            column: "public.customers.email".into(),
            first_line: line_of(&text, "\"email\"")
        }
    );
}

#[test]
fn table_without_columns_is_refused() {
    let (line, problem, _) = fails("\n[[tables]]\nname = \"t\"\n");
    assert_eq!(line, Some(3));
    assert!(matches!(problem, Problem::EmptyTable { .. }));
}

#[test]
fn bad_identifiers_are_refused() {
    let text = CUSTOMERS.replace("\"email\"", "\"e-mail\"");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(5));
    assert!(matches!(
        problem,
        Problem::BadIdentifier {
            what: "column name",
            ..
        }
    ));
    let text = CUSTOMERS.replace("public.customers", "a.b.c");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(3));
    assert!(matches!(problem, Problem::BadTableName { .. }));
}

#[test]
fn shared_context_with_different_types_is_refused() {
    let text = r#"[[tables]]
name = "t"
  [[tables.columns]]
  name = "a"
  type = "int4"
  key_context = "id"
  [[tables.columns]]
  name = "b"
  type = "int8"
  key_context = "id"
"#;
    let (line, problem, _) = fails(text);
    assert_eq!(line, Some(8));
    assert!(matches!(problem, Problem::ContextTypeMismatch { .. }));
}

#[test]
fn bad_key_context_is_refused() {
    let text = CUSTOMERS.replace(
        "type = \"date\"",
        "type = \"date\"\n  key_context = \"a b\"",
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "a b")));
    assert!(matches!(problem, Problem::BadKeyContext { .. }));
}

#[test]
fn unknown_template_lists_templates() {
    let text = with_roles("[[roles]]\nname = \"app\"\ntemplate = \"admin\"\n");
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "admin")));
    assert!(matches!(problem, Problem::UnknownTemplate { .. }));
    assert!(
        shown.ends_with("write one of app, support, analyst, dba, auditor"),
        "{shown}"
    );
}

#[test]
fn missing_template_is_refused() {
    let text = with_roles("[[roles]]\nname = \"app\"\n");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "name = \"app\"")));
    assert_eq!(problem, Problem::MissingTemplate { role: "app".into() });
}

#[test]
fn duplicate_role_is_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\n[[roles]]\nname = \"APP\"\ntemplate = \"dba\"\n",
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "APP")));
    assert_eq!(
        problem,
        Problem::DuplicateRole {
            role: "APP".into(),
            first_line: line_of(&text, "name = \"app\"")
        }
    );
}

#[test]
fn bad_role_name_is_refused() {
    let (line, problem, _) = fails("[[roles]]\nname = \"a b\"\ntemplate = \"app\"\n");
    assert_eq!(line, Some(2));
    assert!(matches!(problem, Problem::BadRoleName { .. }));
}

#[test]
fn empty_user_pattern_is_refused() {
    let text = with_roles("[[roles]]\nname = \"app\"\ntemplate = \"app\"\nusers = [\"\"]\n");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "users")));
    assert!(matches!(
        problem,
        Problem::BadPattern { field: "users", .. }
    ));
}

#[test]
fn bad_network_says_what_to_write() {
    let text =
        with_roles("[[roles]]\nname = \"app\"\ntemplate = \"app\"\nnetworks = [\"10.1.2.3/8\"]\n");
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "networks")));
    assert!(matches!(problem, Problem::BadNetwork { .. }));
    assert!(
        shown.ends_with("has host bits set; write \"10.0.0.0/8\""),
        "{shown}"
    );
}

#[test]
fn unknown_statement_kind_is_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\nstatements = [\"select\", \"drop\"]\n",
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "statements")));
    assert!(matches!(problem, Problem::UnknownStatementKind { .. }));
}

#[test]
fn override_of_unprotected_column_is_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\n[roles.columns]\n\"public.customers.phone\" = \"null\"\n",
    );
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "phone")));
    assert_eq!(
        problem,
        Problem::UnknownColumn {
            role: "app".into(),
            column: "public.customers.phone".into()
        }
    );
    assert!(shown.contains("not a protected column"), "{shown}");
}

#[test]
fn same_column_overridden_twice_is_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\n[roles.columns]\n\"customers.age\" = \"null\"\n\"public.customers.age\" = \"deny\"\n",
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "deny")));
    assert!(matches!(problem, Problem::DuplicateOverride { .. }));
}

#[test]
fn unknown_mask_function_is_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\n[roles.columns]\n\"customers.email\" = \"mask:shuffle\"\n",
    );
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "shuffle")));
    assert!(matches!(problem, Problem::BadAction { .. }));
    assert!(
        shown.contains("write one of redact, partial(first, last)"),
        "{shown}"
    );
}

#[test]
fn bad_mask_arguments_are_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\n[roles.columns]\n\"customers.email\" = \"mask:partial(1)\"\n",
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "partial(1)")));
    assert!(matches!(problem, Problem::BadAction { .. }));
}

#[test]
fn mask_for_wrong_type_is_refused() {
    let text = with_roles(
        "[[roles]]\nname = \"app\"\ntemplate = \"app\"\n[roles.columns]\n\"customers.email\" = \"mask:year\"\n",
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "mask:year")));
    assert!(matches!(
        problem,
        Problem::MaskNotForType {
            logical: LogicalType::Text,
            ..
        }
    ));
}

#[test]
fn zero_limit_is_refused() {
    let text = with_roles("[[roles]]\nname = \"app\"\ntemplate = \"app\"\nmax_rows = 0\n");
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "max_rows")));
    assert!(matches!(
        problem,
        Problem::ZeroLimit {
            field: "max_rows",
            ..
        }
    ));
}

#[test]
fn roles_without_default_role_are_refused() {
    let text = format!("{CUSTOMERS}[[roles]]\nname = \"app\"\ntemplate = \"app\"\n");
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(1));
    assert_eq!(
        problem,
        Problem::MissingDefaultRole {
            roles: "app".into()
        }
    );
    assert!(shown.contains("add default_role = "), "{shown}");
}

#[test]
fn default_role_must_name_a_role() {
    let text = format!(
        "default_role = \"dba\"\n{CUSTOMERS}[[roles]]\nname = \"app\"\ntemplate = \"app\"\n"
    );
    let (line, problem, _) = fails(&text);
    assert_eq!(line, Some(1));
    assert!(matches!(problem, Problem::UnknownDefaultRole { .. }));
    let (line, _, _) = fails("default_role = \"root\"\n");
    assert_eq!(line, Some(1));
}

#[test]
fn unreadable_file_names_the_path() {
    let err = load(Path::new("/nonexistent/rules.toml")).expect_err("missing file");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/rules.toml: cannot read"),
        "{err}"
    );
    assert_eq!(err.line(), None);
}

#[test]
fn a_role_that_may_write_a_column_must_be_allowed_to_compare_it() {
    let text = with_roles(
        r#"
[[roles]]
name = "app"
template = "dba"
write = true
"#,
    );
    let (line, problem, shown) = fails(&text);
    assert_eq!(line, Some(line_of(&text, "name = \"app\"")));
    assert!(
        matches!(&problem, Problem::WriteWithoutCompare { role, .. } if role == "app"),
        "{problem:?}"
    );
    assert!(shown.contains("compare right"), "{shown}");
    let allowed = with_roles(
        r#"
[[roles]]
name = "app"
template = "dba"
write = true
compare = { "*" = true }
"#,
    );
    assert!(rules(&allowed).role("app").expect("app").write);
    // A column the role may not compare is fine when it may not write it either.
    let denied = with_roles(
        r#"
[[roles]]
name = "app"
template = "app"
  [roles.compare]
  "public.customers.email" = false
"#,
    );
    assert!(matches!(
        fails(&denied).1,
        Problem::WriteWithoutCompare { .. }
    ));
}

const TENANT_TABLE: &str = r#"
[[tables]]
name = "public.notes"
  [[tables.columns]]
  name = "body"
  type = "text"
  per_tenant = true
"#;

#[test]
fn tenants_map_sessions_and_columns_say_per_tenant() {
    let text = format!(
        "{TENANT_TABLE}\n[[tenants]]\nid = \"acme\"\nusers = [\"acme_*\"]\n\
         [[tenants]]\nid = \"globex\"\nusers = [\"globex_app\", \"acme_globex\"]\n"
    );
    let rules = rules(&text);
    assert!(rules.has_per_tenant_columns());
    assert!(
        rules
            .column("public", "notes", "body")
            .unwrap()
            .1
            .per_tenant
    );
    assert_eq!(rules.tenant_for(&who("acme_app")), Some("acme"));
    // First entry in file order wins.
    assert_eq!(rules.tenant_for(&who("acme_globex")), Some("acme"));
    assert_eq!(rules.tenant_for(&who("globex_app")), Some("globex"));
    assert_eq!(rules.tenant_for(&who("someone")), None);
    assert!(!rules.role("app").unwrap().choose_tenant);
}

#[test]
fn a_role_may_choose_its_tenant_instead() {
    let text = format!(
        "default_role = \"app\"\n{TENANT_TABLE}\n[[roles]]\nname = \"app\"\ntemplate = \"app\"\n\
         users = [\"app\"]\nchoose_tenant = true\n"
    );
    let rules = rules(&text);
    assert!(rules.role("app").unwrap().choose_tenant);
    assert!(rules.tenants.is_empty());
}

#[test]
fn per_tenant_columns_need_a_tenant_source() {
    let (_, problem, shown) = fails(TENANT_TABLE);
    assert!(matches!(problem, Problem::NoTenantSource { .. }), "{shown}");
    assert!(shown.contains("public.notes.body"), "{shown}");
}

#[test]
fn bad_tenant_entries_name_their_line() {
    let text = format!("{TENANT_TABLE}\n[[tenants]]\nid = \"../etc\"\nusers = [\"x\"]\n");
    let (line, problem, _) = fails(&text);
    assert!(matches!(problem, Problem::BadTenantId { .. }));
    assert_eq!(line, Some(line_of(&text, "../etc")));

    let text = format!("{TENANT_TABLE}\n[[tenants]]\nid = \"acme\"\n");
    let (_, problem, _) = fails(&text);
    assert!(matches!(problem, Problem::TenantWithoutMatcher { .. }));

    let text = format!("{TENANT_TABLE}\n[[tenants]]\nid = \"acme\"\nusers = [\"\"]\n");
    let (_, problem, _) = fails(&text);
    assert!(matches!(problem, Problem::BadTenantPattern { .. }));
}

#[test]
fn a_context_is_either_per_tenant_or_shared() {
    let text = format!(
        "{TENANT_TABLE}  key_context = \"note\"\n[[tables]]\nname = \"public.drafts\"\n\
         [[tables.columns]]\nname = \"body\"\ntype = \"text\"\nkey_context = \"note\"\n\
         [[tenants]]\nid = \"acme\"\nusers = [\"acme_*\"]\n"
    );
    let (_, problem, shown) = fails(&text);
    assert!(
        matches!(problem, Problem::ContextTenancyMismatch { .. }),
        "{shown}"
    );
    assert!(shown.contains("public.notes.body") && shown.contains("public.drafts.body"));
}

#[test]
fn keep_scale_is_for_unconstrained_numeric_only() {
    let column = |ty: &str, extra: &str| {
        format!(
            "[[tables]]\nname = \"public.pay\"\n[[tables.columns]]\nname = \"amount\"\n\
             type = \"{ty}\"\n{extra}"
        )
    };
    let rules = rules(&column("numeric", "keep_scale = true\n"));
    let (_, amount) = rules.column("public", "pay", "amount").unwrap();
    assert_eq!(amount.modifier, Some(crate::TypeModifier::KeepScale));
    assert_eq!(crate::TypeModifier::KeepScale.typmod(), -1);
    assert!(crate::check_report(&rules).contains("numeric (keep_scale)"));
    let plain = rules_plain(&column("numeric", "keep_scale = false\n"));
    assert_eq!(plain, None);
    for ty in ["numeric(12, 2)", "text", "int4"] {
        let text = column(ty, "keep_scale = true\n");
        let (line, problem, _) = fails(&text);
        assert!(
            matches!(problem, Problem::KeepScaleNotApplicable { .. }),
            "{ty}"
        );
        assert_eq!(line, Some(line_of(&text, "keep_scale")));
    }
    // A shared context must agree: 1.50 would match in one column and not the other.
    let text = format!(
        "{}key_context = \"amt\"\n[[tables]]\nname = \"public.refunds\"\n[[tables.columns]]\n\
         name = \"amount\"\ntype = \"numeric\"\nkey_context = \"amt\"\n",
        column("numeric", "keep_scale = true\n")
    );
    let (_, problem, _) = fails(&text);
    assert!(matches!(problem, Problem::ContextScaleMismatch { .. }));
}

fn rules_plain(text: &str) -> Option<crate::TypeModifier> {
    rules(text)
        .column("public", "pay", "amount")
        .unwrap()
        .1
        .modifier
}
