//! Behaviour tests for statement analysis: allowed uses and their rewrite sites, refusals with
//! their SQLSTATE and wording, name resolution and byte-exact spans.

use super::*;

/// customers(id, email*, name, note, ssn*), orders(id, customer_email*, amount),
/// contacts(id, email*) share the `customer_email` context; accounts(email*) has another
/// context and no catalog columns; crm.leads(phone*); products is not protected.
fn schema() -> ProtectedSchema {
    let mut s = ProtectedSchema::new();
    s.protect("public", "customers", "email", "customer_email");
    s.protect("public", "customers", "ssn", "ssn");
    s.set_table_columns(
        "public",
        "customers",
        cols(&["id", "email", "name", "note", "ssn"]),
    );
    s.protect("public", "orders", "customer_email", "customer_email");
    s.set_table_columns(
        "public",
        "orders",
        cols(&["id", "customer_email", "amount"]),
    );
    s.protect("public", "contacts", "email", "customer_email");
    s.set_table_columns("public", "contacts", cols(&["id", "email"]));
    s.protect("public", "accounts", "email", "acct_email");
    s.protect("crm", "leads", "phone", "phone");
    s.set_table_columns("public", "products", cols(&["id", "email", "title"]));
    s
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn id(table: &str, column: &str) -> ColumnId {
    let s = schema();
    let (schema_name, table) = table.split_once('.').unwrap_or(("public", table));
    s.lookup(schema_name, table, column)
        .expect("protected column")
}

fn email() -> ColumnId {
    id("customers", "email")
}

fn statements(sql: &str) -> Vec<StatementInfo> {
    match analyze(sql, &schema()) {
        Analysis::Protected { statements } => statements,
        other => panic!("expected Protected for {sql:?}, got {other:?}"),
    }
}

fn one(sql: &str) -> StatementInfo {
    let mut v = statements(sql);
    assert_eq!(v.len(), 1, "{sql}");
    v.remove(0)
}

fn untouched(sql: &str) -> Vec<StatementInfo> {
    match analyze(sql, &schema()) {
        Analysis::Untouched { statements } => statements,
        other => panic!("expected Untouched for {sql:?}, got {other:?}"),
    }
}

fn refused(sql: &str) -> Refusal {
    match analyze(sql, &schema()) {
        Analysis::Refused(r) => r,
        other => panic!("expected Refused for {sql:?}, got {other:?}"),
    }
}

/// Refused with 0A000, naming `column` and `operation`.
fn refused_on(sql: &str, column: &str, operation: &str) -> Refusal {
    let r = refused(sql);
    assert_eq!(r.sqlstate, "0A000", "{sql}: {}", r.message);
    assert!(
        r.message.contains(&format!("column {column} is encrypted")),
        "{sql}: {}",
        r.message
    );
    assert!(r.message.contains(operation), "{sql}: {}", r.message);
    assert!(r.message.contains(SUPPORTED), "{sql}: {}", r.message);
    r
}

/// (source text at span, column, value) of each literal site.
fn literals<'s>(sql: &'s str, info: &StatementInfo) -> Vec<(&'s str, ColumnId, Option<String>)> {
    info.literals
        .iter()
        .map(|l| (&sql[l.span.clone()], l.column, l.value.clone()))
        .collect()
}

/// (source text at span, index, column, array) of each parameter site.
fn params<'s>(sql: &'s str, info: &StatementInfo) -> Vec<(&'s str, usize, ColumnId, bool)> {
    info.params
        .iter()
        .map(|p| (&sql[p.span.clone()], p.index, p.column, p.array))
        .collect()
}

fn lit<'s>(
    text: &'s str,
    column: ColumnId,
    value: Option<&str>,
) -> (&'s str, ColumnId, Option<String>) {
    (text, column, value.map(str::to_string))
}

fn has_use(info: &StatementInfo, column: ColumnId, usage: Usage) -> bool {
    info.columns.contains(&ColumnUse { column, usage })
}

// ---- pre-filter -------------------------------------------------------------------------

#[test]
fn prefilter_finds_protected_table_name_in_any_case() {
    let s = schema();
    assert!(s.mentions_protected_table("select * from CUSTOMERS"));
    assert!(s.mentions_protected_table("SELECT 1 FROM \"Orders\""));
    assert!(s.mentions_protected_table("select phone from crm.leads"));
}

#[test]
fn prefilter_is_false_for_text_without_protected_tables() {
    let s = schema();
    assert!(!s.mentions_protected_table("SELECT * FROM products WHERE title = 'x'"));
    assert!(!s.mentions_protected_table(""));
    assert!(!ProtectedSchema::new().mentions_protected_table("SELECT * FROM customers"));
}

#[test]
fn prefilter_errs_towards_parsing_on_longer_names() {
    assert!(schema().mentions_protected_table("SELECT * FROM customers_archive"));
}

// ---- untouched statements ---------------------------------------------------------------

#[test]
fn statement_on_unprotected_table_is_untouched() {
    let v = untouched("SELECT title FROM products WHERE email = 'x' ORDER BY email");
    assert_eq!(v[0].kind, StatementKind::Select);
    assert_eq!(
        v[0].tables,
        vec![("public".to_string(), "products".to_string())]
    );
    assert_eq!(v[0].outputs, vec![None]);
}

#[test]
fn unprotected_columns_of_a_protected_table_leave_it_untouched() {
    let v = untouched("SELECT id, name FROM customers WHERE id = $1 ORDER BY name LIMIT 5");
    assert_eq!(
        v[0].tables,
        vec![("public".to_string(), "customers".to_string())]
    );
    assert!(v[0].params.is_empty());
    assert_eq!(v[0].outputs, vec![None, None]);
}

#[test]
fn unparseable_text_without_protected_tables_is_not_refused() {
    let statements = untouched("DO $$ BEGIN PERFORM 1; END $$");
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0].kind, StatementKind::Other);
}

#[test]
fn unparseable_text_mentioning_a_protected_table_is_refused_with_42601_without_token_text() {
    let r = refused(
        "SELECT email FROM customers WHERE email = 'secret@x' FOR NO KEY UPDATE SKIP secret@y",
    );
    assert_eq!(r.sqlstate, "42601");
    assert!(r.message.contains("could not parse"), "{}", r.message);
    assert!(!r.message.contains("secret"), "{}", r.message);
}

#[test]
fn transaction_control_is_a_session_kind() {
    let v = statements("BEGIN; INSERT INTO customers (email) VALUES ('a@b.c'); COMMIT");
    let kinds: Vec<_> = v.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["transaction", "insert", "transaction"]);
    assert!(v[0].kind.is_session() && !v[1].kind.is_session());
}

// ---- writes -------------------------------------------------------------------------------

#[test]
fn insert_values_literals_become_sites() {
    let sql = "INSERT INTO customers (id, email, ssn) VALUES (1, 'a@b.c', '123')";
    let info = one(sql);
    assert_eq!(info.kind, StatementKind::Insert);
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'a@b.c'", email(), Some("a@b.c")),
            lit("'123'", id("customers", "ssn"), Some("123")),
        ]
    );
    assert!(has_use(&info, email(), Usage::Write));
    assert!(info.outputs.is_empty());
}

#[test]
fn insert_multi_row_reports_every_row() {
    let sql = "INSERT INTO customers (email) VALUES ('a'), ('b'), (NULL)";
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'a'", email(), Some("a")),
            lit("'b'", email(), Some("b")),
            lit("NULL", email(), None)
        ]
    );
}

#[test]
fn insert_spans_are_byte_offsets_after_multibyte_text() {
    let sql = "INSERT INTO customers (note, email) VALUES ('ünïcødé ✓', 'a@b.c')";
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![lit("'a@b.c'", email(), Some("a@b.c"))]
    );
}

#[test]
fn spans_on_later_lines_after_multibyte_lines_are_exact() {
    let sql = "INSERT INTO customers (note, email)\n VALUES ('é✓',\r\n 'ü'::text), ('✓', E'x\\ny')";
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'ü'::text", email(), Some("ü")),
            lit("E'x\\ny'", email(), Some("x\ny"))
        ]
    );
}

#[test]
fn insert_params_and_casts_become_param_sites() {
    let sql = "INSERT INTO customers (email, ssn, name) VALUES ($1, $2::text, $3)";
    let info = one(sql);
    assert_eq!(
        params(sql, &info),
        vec![
            ("$1", 0, email(), false),
            ("$2::text", 1, id("customers", "ssn"), false)
        ]
    );
}

#[test]
fn insert_default_writes_without_a_site() {
    let info = one("INSERT INTO customers (email) VALUES (DEFAULT)");
    assert!(info.literals.is_empty());
    assert!(has_use(&info, email(), Usage::Write));
}

#[test]
fn insert_without_column_list_uses_catalog_columns() {
    let sql = "INSERT INTO customers VALUES (1, 'a@b.c', 'n', 'x', '999')";
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'a@b.c'", email(), Some("a@b.c")),
            lit("'999'", id("customers", "ssn"), Some("999"))
        ]
    );
}

#[test]
fn insert_without_column_list_into_table_with_unknown_columns_is_refused() {
    let r = refused("INSERT INTO accounts VALUES ('a@b.c')");
    assert_eq!(r.sqlstate, "0A000");
    assert!(r.message.contains("public.accounts"), "{}", r.message);
    assert!(r.message.contains("name the columns"), "{}", r.message);
}

#[test]
fn insert_of_function_of_parameter_is_refused() {
    refused_on(
        "INSERT INTO customers (email) VALUES (lower($1))",
        "public.customers.email",
        "writing a computed expression",
    );
}

#[test]
fn insert_of_concatenation_is_refused() {
    refused_on(
        "INSERT INTO customers (email) VALUES ('a' || 'b')",
        "public.customers.email",
        "writing a computed expression",
    );
}

#[test]
fn insert_select_of_same_context_column_is_allowed() {
    let info = one(
        "INSERT INTO orders (id, customer_email) SELECT id, email FROM customers WHERE email = 'a'",
    );
    assert!(has_use(&info, id("orders", "customer_email"), Usage::Write));
    assert!(has_use(&info, email(), Usage::Project));
    assert_eq!(info.literals.len(), 1);
}

#[test]
fn insert_select_of_different_context_column_is_refused() {
    refused_on(
        "INSERT INTO accounts (email) SELECT email FROM customers",
        "public.accounts.email",
        "different key context",
    );
}

#[test]
fn insert_select_of_plain_value_into_protected_column_is_refused() {
    refused_on(
        "INSERT INTO customers (email) SELECT name FROM customers",
        "public.customers.email",
        "INSERT ... SELECT",
    );
}

#[test]
fn insert_select_of_protected_value_into_plain_column_is_refused() {
    refused_on(
        "INSERT INTO customers (note) SELECT email FROM customers",
        "public.customers.email",
        "not encrypted",
    );
}

#[test]
fn a_new_table_made_from_a_protected_column_is_refused() {
    for sql in [
        "CREATE TEMP TABLE copied AS SELECT id, email AS body FROM customers",
        "SELECT id, email AS body INTO TEMP copied FROM customers",
        "CREATE TABLE copied AS SELECT c.email FROM customers c WHERE c.id = 1",
    ] {
        refused_on(
            sql,
            "public.customers.email",
            "new table the rules do not cover",
        );
    }
    // Columns that are not protected may be copied.
    let analysis = analyze(
        "CREATE TEMP TABLE ids AS SELECT id FROM customers",
        &schema(),
    );
    assert!(
        matches!(&analysis, Analysis::Untouched { statements } if statements[0].kind == StatementKind::Ddl),
        "{analysis:?}"
    );
}

#[test]
fn a_function_whose_body_names_a_protected_table_is_refused() {
    for sql in [
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN CREATE TEMP VIEW v AS SELECT email FROM customers; END$$",
        "CREATE FUNCTION f() RETURNS SETOF bytea LANGUAGE sql AS 'SELECT email FROM public.customers'",
    ] {
        let r = refused(sql);
        assert_eq!(r.sqlstate, "0A000", "{sql}: {}", r.message);
        assert!(r.message.contains("a function whose body"), "{}", r.message);
    }
}

#[test]
fn insert_returning_reports_outputs() {
    let info = one("INSERT INTO customers (email) VALUES ($1) RETURNING id, email AS e");
    assert_eq!(info.outputs, vec![None, Some(email())]);
    assert!(has_use(&info, email(), Usage::Project));
}

#[test]
fn insert_returning_star_expands_catalog_columns() {
    let info = one("INSERT INTO customers (email) VALUES ($1) RETURNING *");
    assert_eq!(
        info.outputs,
        vec![
            None,
            Some(email()),
            None,
            None,
            Some(id("customers", "ssn"))
        ]
    );
}

#[test]
fn on_conflict_update_from_excluded_or_literal_is_allowed() {
    let sql = "INSERT INTO customers (id, email) VALUES (1, 'a') ON CONFLICT (email) \
               DO UPDATE SET email = EXCLUDED.email, ssn = 'x' WHERE customers.email = 'b'";
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'a'", email(), Some("a")),
            lit("'x'", id("customers", "ssn"), Some("x")),
            lit("'b'", email(), Some("b")),
        ]
    );
}

#[test]
fn on_conflict_update_with_expression_is_refused() {
    refused_on(
        "INSERT INTO customers (email) VALUES ('a') ON CONFLICT (id) DO UPDATE SET email = lower(EXCLUDED.email)",
        "public.customers.email",
        "function lower()",
    );
}

#[test]
fn update_set_literal_and_param_with_where() {
    let sql = "UPDATE customers SET email = 'new', ssn = $1, name = 'n' WHERE email = $2";
    let info = one(sql);
    assert_eq!(info.kind, StatementKind::Update);
    assert_eq!(
        literals(sql, &info),
        vec![lit("'new'", email(), Some("new"))]
    );
    assert_eq!(
        params(sql, &info),
        vec![
            ("$1", 0, id("customers", "ssn"), false),
            ("$2", 1, email(), false)
        ]
    );
    assert!(has_use(&info, email(), Usage::Write));
    assert!(has_use(&info, email(), Usage::CompareValue));
}

#[test]
fn update_set_null_is_a_site_without_value() {
    let sql = "UPDATE customers SET email = NULL";
    assert_eq!(literals(sql, &one(sql)), vec![lit("NULL", email(), None)]);
}

#[test]
fn update_set_concatenation_is_refused() {
    refused_on(
        "UPDATE customers SET email = email || 'x'",
        "public.customers.email",
        "operator ||",
    );
}

#[test]
fn update_set_function_of_param_is_refused() {
    refused_on(
        "UPDATE customers SET email = lower($1)",
        "public.customers.email",
        "writing a computed expression",
    );
}

#[test]
fn update_copying_protected_value_into_plain_column_is_refused() {
    refused_on(
        "UPDATE customers SET note = email",
        "public.customers.email",
        "not encrypted",
    );
}

#[test]
fn update_from_join_on_same_context_is_allowed() {
    let info = one(
        "UPDATE orders o SET amount = 0 FROM customers c WHERE c.email = o.customer_email AND c.id = 1",
    );
    assert!(has_use(&info, email(), Usage::Compare));
    assert!(has_use(
        &info,
        id("orders", "customer_email"),
        Usage::Compare
    ));
}

#[test]
fn delete_where_follows_comparison_rules() {
    let sql = "DELETE FROM customers WHERE email IN ('a', $1) RETURNING email";
    let info = one(sql);
    assert_eq!(info.kind, StatementKind::Delete);
    assert_eq!(literals(sql, &info), vec![lit("'a'", email(), Some("a"))]);
    assert_eq!(params(sql, &info), vec![("$1", 0, email(), false)]);
    assert_eq!(info.outputs, vec![Some(email())]);
}

#[test]
fn delete_where_like_is_refused() {
    refused_on(
        "DELETE FROM customers WHERE email LIKE '%x'",
        "public.customers.email",
        "LIKE",
    );
}

#[test]
fn data_modifying_cte_is_walked() {
    let sql = "WITH n AS (INSERT INTO customers (email) VALUES ('a') RETURNING email) SELECT email FROM n";
    let info = one(sql);
    assert_eq!(literals(sql, &info), vec![lit("'a'", email(), Some("a"))]);
    assert_eq!(info.outputs, vec![Some(email())]);
}

// ---- comparisons ----------------------------------------------------------------------------

#[test]
fn equality_with_literal_on_either_side() {
    let sql =
        "SELECT id FROM customers WHERE email = 'a' OR 'b' = email OR email <> 'c' OR email != 'd'";
    let got: Vec<_> = literals(sql, &one(sql)).into_iter().map(|l| l.0).collect();
    assert_eq!(got, ["'a'", "'b'", "'c'", "'d'"]);
}

#[test]
fn literal_forms_cover_casts_signs_and_typed_strings() {
    let ssn = id("customers", "ssn");
    let sql = "SELECT 1 FROM customers WHERE ssn = -5 OR ssn = CAST('x' AS int4) OR ssn = DATE '2024-01-01' \
               OR ssn = $$dollar's$$ OR ssn = 'it''s' OR ssn = TRUE OR ssn = 42.5 OR ssn = ('p')::varchar(10)";
    assert_eq!(
        literals(sql, &one(sql)),
        vec![
            lit("-5", ssn, Some("-5")),
            lit("CAST('x' AS int4)", ssn, Some("x")),
            lit("DATE '2024-01-01'", ssn, Some("2024-01-01")),
            lit("$$dollar's$$", ssn, Some("dollar's")),
            lit("'it''s'", ssn, Some("it's")),
            lit("TRUE", ssn, Some("true")),
            lit("42.5", ssn, Some("42.5")),
            lit("('p')::varchar(10)", ssn, Some("p")),
        ]
    );
}

#[test]
fn in_list_and_not_in_list_report_each_value() {
    let sql = "SELECT 1 FROM customers WHERE email NOT IN ('a', $2::text, NULL)";
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![lit("'a'", email(), Some("a")), lit("NULL", email(), None)]
    );
    assert_eq!(params(sql, &info), vec![("$2::text", 1, email(), false)]);
}

#[test]
fn any_with_array_parameter_is_an_array_param_site() {
    let sql = "SELECT 1 FROM customers WHERE email = ANY($1) OR ssn = ANY($2::text[])";
    assert_eq!(
        params(sql, &one(sql)),
        vec![
            ("$1", 0, email(), true),
            ("$2::text[]", 1, id("customers", "ssn"), true)
        ]
    );
}

#[test]
fn any_with_array_constructor_reports_each_literal() {
    let sql = "SELECT 1 FROM customers WHERE email = ANY(ARRAY['a', 'b'])";
    let got: Vec<_> = literals(sql, &one(sql)).into_iter().map(|l| l.0).collect();
    assert_eq!(got, ["'a'", "'b'"]);
}

#[test]
fn any_with_array_string_literal_is_refused() {
    refused_on(
        "SELECT 1 FROM customers WHERE email = ANY('{a,b}')",
        "public.customers.email",
        "= ANY",
    );
}

#[test]
fn null_tests_are_comparisons_without_sites() {
    let info = one("SELECT 1 FROM customers WHERE email IS NULL OR ssn IS NOT NULL");
    assert!(info.literals.is_empty());
    assert!(has_use(&info, email(), Usage::Compare));
    assert!(has_use(&info, id("customers", "ssn"), Usage::Compare));
}

#[test]
fn is_distinct_from_is_treated_as_equality() {
    let sql = "SELECT 1 FROM customers WHERE email IS DISTINCT FROM 'a' AND email IS NOT DISTINCT FROM $1";
    let info = one(sql);
    assert_eq!(literals(sql, &info).len(), 1);
    assert_eq!(info.params.len(), 1);
}

#[test]
fn join_on_columns_with_same_context_is_allowed() {
    let info = one("SELECT o.id FROM orders o JOIN customers c ON c.email = o.customer_email");
    assert!(has_use(&info, email(), Usage::Compare));
    assert!(has_use(
        &info,
        id("orders", "customer_email"),
        Usage::Compare
    ));
    assert_eq!(info.tables.len(), 2);
}

#[test]
fn join_on_columns_with_different_contexts_is_refused() {
    refused_on(
        "SELECT 1 FROM customers c JOIN accounts a ON a.email = c.email",
        "public.accounts.email",
        "different key context",
    );
}

#[test]
fn comparison_with_unprotected_column_is_refused() {
    refused_on(
        "SELECT 1 FROM customers c JOIN products p ON p.title = c.email",
        "public.customers.email",
        "column that is not encrypted",
    );
}

#[test]
fn comparison_with_an_expression_is_refused() {
    refused_on(
        "SELECT 1 FROM customers WHERE email = lower('A')",
        "public.customers.email",
        "comparison with an expression",
    );
}

#[test]
fn comparison_with_a_scalar_subquery_is_refused() {
    refused_on(
        "SELECT 1 FROM customers WHERE email = (SELECT 'a')",
        "public.customers.email",
        "comparison with an expression",
    );
}

#[test]
fn in_subquery_of_same_context_is_allowed() {
    let info = one("SELECT id FROM customers WHERE email IN (SELECT customer_email FROM orders WHERE amount > 5)");
    assert!(has_use(
        &info,
        id("orders", "customer_email"),
        Usage::Compare
    ));
}

#[test]
fn in_subquery_of_other_context_or_plain_column_is_refused() {
    refused_on(
        "SELECT id FROM customers WHERE email IN (SELECT email FROM accounts)",
        "public.customers.email",
        "different key context",
    );
    refused_on(
        "SELECT id FROM customers WHERE email IN (SELECT title FROM products)",
        "public.customers.email",
        "IN (subquery)",
    );
}

#[test]
fn correlated_exists_compares_outer_and_inner_columns() {
    let info = one(
        "SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.email = o.customer_email)",
    );
    assert!(has_use(&info, email(), Usage::Compare));
    assert!(has_use(
        &info,
        id("orders", "customer_email"),
        Usage::Compare
    ));
}

#[test]
fn join_using_same_context_is_allowed_and_other_context_refused() {
    let info = one("SELECT id FROM customers JOIN contacts USING (email)");
    assert!(has_use(&info, id("contacts", "email"), Usage::Compare));
    refused_on(
        "SELECT 1 FROM customers JOIN accounts USING (email)",
        "public.customers.email",
        "different key context",
    );
}

#[test]
fn natural_join_compares_common_columns() {
    let info = one("SELECT 1 FROM customers NATURAL JOIN contacts");
    assert!(has_use(&info, id("contacts", "email"), Usage::Compare));
}

// ---- refused operations ---------------------------------------------------------------------

#[test]
fn pattern_and_range_operators_are_refused_with_0a000() {
    let cases = [
        ("email LIKE 'a%'", "LIKE"),
        ("email ILIKE 'a%'", "ILIKE"),
        ("email SIMILAR TO 'a%'", "SIMILAR TO"),
        ("email < 'a'", "operator <"),
        ("email > 'a'", "operator >"),
        ("email <= 'a'", "operator <="),
        ("email >= 'a'", "operator >="),
        ("email BETWEEN 'a' AND 'b'", "BETWEEN"),
    ];
    for (cond, op) in cases {
        refused_on(
            &format!("SELECT 1 FROM customers WHERE {cond}"),
            "public.customers.email",
            op,
        );
    }
}

#[test]
fn like_refusal_reads_as_documented() {
    let r = refused("SELECT 1 FROM customers WHERE email LIKE 'secret%'");
    assert_eq!(
        r.message,
        "column public.customers.email is encrypted: LIKE is not supported on it (encrypted \
         columns support =, <>, IN, = ANY, IS [NOT] NULL, GROUP BY, DISTINCT and count)"
    );
    assert_eq!(r.column, Some(email()));
}

#[test]
fn order_by_protected_column_position_or_alias_is_refused() {
    for sql in [
        "SELECT id FROM customers ORDER BY email",
        "SELECT id, email FROM customers ORDER BY 2",
        "SELECT email AS e FROM customers ORDER BY e DESC",
        "SELECT email FROM customers UNION SELECT email FROM contacts ORDER BY 1",
    ] {
        refused_on(sql, "public.customers.email", "ORDER BY");
    }
}

#[test]
fn functions_other_than_count_are_refused() {
    for f in [
        "lower(email)",
        "coalesce(email, 'x')",
        "max(email)",
        "min(email)",
        "length(email)",
    ] {
        let name = &f[..f.find('(').unwrap()];
        refused_on(
            &format!("SELECT {f} FROM customers"),
            "public.customers.email",
            &format!("function {name}()"),
        );
    }
}

#[test]
fn casts_and_arithmetic_on_protected_column_are_refused() {
    refused_on(
        "SELECT email::text FROM customers",
        "public.customers.email",
        "a cast",
    );
    refused_on(
        "SELECT 1 FROM customers WHERE ssn + 1 = 5",
        "public.customers.ssn",
        "operator +",
    );
    refused_on(
        "SELECT email || 'x' FROM customers",
        "public.customers.email",
        "operator ||",
    );
}

#[test]
fn case_on_protected_column_is_refused() {
    refused_on(
        "SELECT CASE WHEN email = 'a' THEN 1 ELSE 0 END FROM customers",
        "public.customers.email",
        "CASE",
    );
    refused_on(
        "SELECT 1 FROM customers WHERE CASE email WHEN 'a' THEN true END",
        "public.customers.email",
        "CASE",
    );
}

#[test]
fn comparison_in_select_list_is_refused() {
    refused_on(
        "SELECT email = 'a' FROM customers",
        "public.customers.email",
        "comparison outside WHERE",
    );
}

#[test]
fn whole_row_reference_of_protected_table_is_refused() {
    refused_on(
        "SELECT row_to_json(c) FROM customers c",
        "public.customers.email",
        "whole-row",
    );
    refused_on(
        "SELECT to_jsonb(c.*) FROM customers c",
        "public.customers.email",
        "whole row",
    );
}

#[test]
fn unresolvable_qualified_reference_to_protected_name_is_refused() {
    let r = refused("SELECT x.email FROM customers");
    assert_eq!(r.sqlstate, "0A000");
    assert!(r.message.contains("x.email"), "{}", r.message);
}

#[test]
fn refusal_messages_never_quote_values() {
    for sql in [
        "SELECT 1 FROM customers WHERE email LIKE 'secret%'",
        "UPDATE customers SET email = lower('secret')",
        "SELECT 1 FROM customers WHERE email = upper('secret')",
    ] {
        let r = refused(sql);
        assert!(!r.message.contains("secret"), "{}", r.message);
    }
}

// ---- grouping and projection --------------------------------------------------------------

#[test]
fn group_by_distinct_and_count_are_group_uses() {
    let info = one("SELECT email, count(*) FROM customers GROUP BY email HAVING count(email) > 1");
    assert!(has_use(&info, email(), Usage::Group));
    assert_eq!(info.outputs, vec![Some(email()), None]);
    let info = one("SELECT DISTINCT ssn FROM customers");
    assert!(has_use(&info, id("customers", "ssn"), Usage::Group));
    let info = one("SELECT count(DISTINCT email) FROM customers");
    assert!(has_use(&info, email(), Usage::Group));
    assert_eq!(info.outputs, vec![None]);
}

#[test]
fn group_by_position_and_alias_are_group_uses() {
    let info = one("SELECT id, email FROM customers GROUP BY 1, 2");
    assert!(has_use(&info, email(), Usage::Group));
    let info = one("SELECT email AS e FROM customers GROUP BY e");
    assert!(has_use(&info, email(), Usage::Group));
}

#[test]
fn window_partition_is_grouping_and_window_order_is_refused() {
    let info = one("SELECT count(*) OVER (PARTITION BY email) FROM customers");
    assert!(has_use(&info, email(), Usage::Group));
    refused_on(
        "SELECT row_number() OVER (ORDER BY email) FROM customers",
        "public.customers.email",
        "ORDER BY",
    );
}

#[test]
fn select_star_and_qualified_star_map_outputs_from_catalog() {
    let ssn = id("customers", "ssn");
    let info = one("SELECT * FROM customers");
    assert_eq!(
        info.outputs,
        vec![None, Some(email()), None, None, Some(ssn)]
    );
    let info = one("SELECT o.id, c.* FROM orders o JOIN customers c ON c.email = o.customer_email");
    assert_eq!(
        info.outputs,
        vec![None, None, Some(email()), None, None, Some(ssn)]
    );
}

#[test]
fn star_over_protected_table_with_unknown_columns_is_refused() {
    refused_on("SELECT * FROM accounts", "public.accounts.email", "*");
}

#[test]
fn exists_select_star_needs_no_column_list() {
    let sql = "SELECT EXISTS (SELECT * FROM accounts WHERE email = 'a')";
    let info = one(sql);
    assert_eq!(literals(sql, &info).len(), 1);
    assert_eq!(info.outputs, vec![None]);
}

#[test]
fn aliases_resolve_to_their_tables() {
    let info = one("SELECT c.email AS mail, c.id FROM customers AS c WHERE c.ssn = $1");
    assert_eq!(info.outputs, vec![Some(email()), None]);
    assert_eq!(info.params[0].column, id("customers", "ssn"));
}

#[test]
fn cte_projection_keeps_the_protected_column() {
    let sql = "WITH x AS (SELECT id, email FROM customers) SELECT email FROM x WHERE x.email = 'a'";
    let info = one(sql);
    assert_eq!(literals(sql, &info), vec![lit("'a'", email(), Some("a"))]);
    assert_eq!(info.outputs, vec![Some(email())]);
}

#[test]
fn cte_column_renames_follow_positions() {
    let sql = "WITH x (k, m) AS (SELECT id, email FROM customers) SELECT m FROM x WHERE m = 'a'";
    let info = one(sql);
    assert_eq!(info.outputs, vec![Some(email())]);
    assert_eq!(info.literals.len(), 1);
}

#[test]
fn subquery_in_from_keeps_the_protected_column() {
    let sql = "SELECT s.mail FROM (SELECT email AS mail FROM customers) s WHERE s.mail = $1";
    let info = one(sql);
    assert_eq!(info.outputs, vec![Some(email())]);
    assert_eq!(params(sql, &info), vec![("$1", 0, email(), false)]);
}

#[test]
fn unqualified_name_ambiguous_between_protected_and_plain_is_protected() {
    let sql = "SELECT 1 FROM products, customers WHERE email = 'a'";
    assert_eq!(literals(sql, &one(sql))[0].1, email());
}

#[test]
fn union_of_same_context_columns_maps_the_output() {
    let info = one("SELECT email FROM customers UNION SELECT customer_email FROM orders");
    assert_eq!(info.outputs, vec![Some(email())]);
    assert!(has_use(
        &info,
        id("orders", "customer_email"),
        Usage::Project
    ));
}

#[test]
fn union_with_plain_or_other_context_branch_is_refused() {
    refused_on(
        "SELECT email FROM customers UNION SELECT title FROM products",
        "public.customers.email",
        "UNION",
    );
    refused_on(
        "SELECT email FROM customers EXCEPT SELECT email FROM accounts",
        "public.customers.email",
        "different key context",
    );
}

#[test]
fn quoted_identifiers_are_compared_case_insensitively() {
    let sql = "SELECT \"Email\" FROM \"Customers\" WHERE \"email\" = 'a'";
    let info = one(sql);
    assert_eq!(info.outputs, vec![Some(email())]);
    assert_eq!(info.literals.len(), 1);
}

#[test]
fn schema_qualified_names_resolve() {
    let phone = id("crm.leads", "phone");
    let sql = "SELECT crm.leads.phone FROM crm.leads WHERE leads.phone = '1'";
    let info = one(sql);
    assert_eq!(info.outputs, vec![Some(phone)]);
    assert_eq!(info.tables, vec![("crm".to_string(), "leads".to_string())]);
    assert!(untouched("SELECT phone FROM leads WHERE phone LIKE '1%'").len() == 1);
}

// ---- parameters -----------------------------------------------------------------------------

#[test]
fn parameter_used_for_protected_and_plain_value_is_refused() {
    refused_on(
        "SELECT 1 FROM customers WHERE email = $1 OR name = $1",
        "public.customers.email",
        "same $n parameter",
    );
}

#[test]
fn parameter_shared_by_columns_of_different_contexts_is_refused() {
    refused_on(
        "SELECT 1 FROM customers WHERE email = $1 OR ssn = $1",
        "public.customers.email",
        "different key contexts",
    );
}

#[test]
fn parameter_shared_by_columns_of_same_context_is_allowed() {
    let info =
        one("SELECT 1 FROM customers c, orders o WHERE c.email = $1 AND o.customer_email = $1");
    assert_eq!(info.params.len(), 2);
}

#[test]
fn unprotected_parameters_are_not_reported() {
    let info = one("SELECT email FROM customers WHERE id = $1 LIMIT $2");
    assert!(info.params.is_empty());
}

// ---- COPY -------------------------------------------------------------------------------------

#[test]
fn copy_from_stdin_reports_columns_and_csv_options() {
    let info = one("COPY customers (id, email) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';', NULL 'NA')");
    assert_eq!(info.kind, StatementKind::Copy);
    assert!(has_use(&info, email(), Usage::Write));
    let copy = info.copy.expect("copy info");
    assert_eq!(copy.direction, CopyDirection::From);
    assert_eq!(copy.columns, vec![None, Some(email())]);
    assert_eq!(copy.options.format, CopyFormat::Csv);
    assert!(copy.options.header);
    assert_eq!(copy.options.delimiter, Some(';'));
    assert_eq!(copy.options.null.as_deref(), Some("NA"));
}

#[test]
fn copy_to_stdout_without_columns_uses_catalog_columns() {
    let info = one("COPY customers TO STDOUT");
    let copy = info.copy.expect("copy info");
    assert_eq!(copy.direction, CopyDirection::To);
    assert_eq!(copy.columns.len(), 5);
    assert_eq!(copy.options.format, CopyFormat::Text);
}

#[test]
fn copy_of_unprotected_table_is_untouched() {
    let v = untouched("COPY products FROM STDIN");
    assert_eq!(v[0].kind, StatementKind::Copy);
    assert!(v[0].copy.is_none());
}

#[test]
fn binary_copy_and_file_copy_are_refused() {
    refused_on(
        "COPY customers FROM STDIN WITH (FORMAT binary)",
        "public.customers.email",
        "binary COPY",
    );
    refused_on(
        "COPY (SELECT email FROM customers) TO '/tmp/x'",
        "public.customers.email",
        "COPY (query) to a server file",
    );
    refused_on(
        "COPY (SELECT email FROM customers) TO STDOUT (FORMAT binary)",
        "public.customers.email",
        "binary COPY",
    );
    refused_on(
        "COPY customers TO '/tmp/x'",
        "public.customers.email",
        "server file",
    );
}

#[test]
fn copy_without_columns_into_table_with_unknown_columns_is_refused() {
    let r = refused("COPY accounts FROM STDIN");
    assert!(r.message.contains("name the columns"), "{}", r.message);
}

// ---- DDL and other statements -----------------------------------------------------------

#[test]
fn ddl_on_protected_tables_is_allowed() {
    for sql in [
        "CREATE INDEX ON customers (email)",
        "ALTER TABLE customers ADD COLUMN age int",
        "DROP TABLE customers",
        "TRUNCATE customers",
        "COMMENT ON TABLE customers IS 'x'",
        "GRANT SELECT ON customers TO app",
    ] {
        let v = untouched(sql);
        assert_eq!(v[0].kind, StatementKind::Ddl, "{sql}");
    }
}

#[test]
fn create_view_applies_select_rules() {
    let sql = "CREATE VIEW v AS SELECT email FROM customers WHERE email = 'a'";
    let info = one(sql);
    assert_eq!(info.kind, StatementKind::Ddl);
    assert_eq!(literals(sql, &info).len(), 1);
    assert!(info.outputs.is_empty());
    refused_on(
        "CREATE VIEW v AS SELECT lower(email) FROM customers",
        "public.customers.email",
        "function lower()",
    );
}

#[test]
fn explain_keeps_the_sites_of_its_statement() {
    let sql = "EXPLAIN SELECT * FROM customers WHERE email = 'a'";
    let info = one(sql);
    assert_eq!(info.kind, StatementKind::Other);
    assert_eq!(literals(sql, &info).len(), 1);
    assert_eq!(info.outputs, vec![None]);
}

#[test]
fn merge_into_protected_table_is_refused() {
    let r = refused("MERGE INTO customers c USING products p ON p.id = c.id WHEN MATCHED THEN UPDATE SET email = 'x'");
    assert_eq!(r.sqlstate, "0A000");
    assert!(r.message.contains("MERGE"), "{}", r.message);
}

#[test]
fn lock_and_vacuum_of_protected_tables_are_allowed() {
    assert_eq!(
        untouched("LOCK TABLE customers")[0].kind,
        StatementKind::Other
    );
}

// ---- redaction ----------------------------------------------------------------------------

#[test]
fn literal_site_debug_redacts_the_value() {
    let site = LiteralSite {
        span: 0..3,
        column: 0,
        value: Some("secret".to_string()),
        array: false,
    };
    assert!(!format!("{site:?}").contains("secret"));
}

#[test]
fn multi_word_typed_string_span_covers_the_type() {
    let sql = "SELECT 1 FROM customers WHERE ssn = timestamp with time zone '2020-01-01 00:00+00'";
    assert_eq!(
        literals(sql, &one(sql))[0].0,
        "timestamp with time zone '2020-01-01 00:00+00'"
    );
}

#[test]
fn lateral_subquery_sees_earlier_from_items() {
    let info = one("SELECT x.m FROM customers c, LATERAL (SELECT c.email AS m) x");
    assert_eq!(info.outputs, vec![Some(email())]);
}

#[test]
fn scalar_subquery_yielding_protected_value_in_select_list_is_refused() {
    refused_on(
        "SELECT (SELECT email FROM customers LIMIT 1) AS e",
        "public.customers.email",
        "scalar subquery",
    );
}

#[test]
fn json_operators_on_protected_column_are_refused() {
    refused_on(
        "SELECT email ->> 'k' FROM customers",
        "public.customers.email",
        "operator ->>",
    );
}

#[test]
fn statement_kinds_classify_parsed_and_unparseable_texts() {
    assert_eq!(
        statement_kinds("BEGIN; SELECT 1; UPDATE t SET a = 1; COMMIT"),
        vec![
            StatementKind::Transaction,
            StatementKind::Select,
            StatementKind::Update,
            StatementKind::Transaction
        ]
    );
    assert_eq!(
        statement_kinds("SET search_path = public"),
        vec![StatementKind::Utility]
    );
    assert_eq!(
        statement_kinds("CREATE TABLE t (a int)"),
        vec![StatementKind::Ddl]
    );
    // DO blocks do not parse: the first keyword decides, and an unknown one is `other`.
    assert_eq!(
        statement_kinds("DO $$ BEGIN END $$"),
        vec![StatementKind::Other]
    );
    assert_eq!(
        statement_kinds("  vacuum full t"),
        vec![StatementKind::Other]
    );
}

mod bulk;
mod fail_closed;
mod grammar;
mod lookups;
mod role_facts;

#[test]
fn copy_query_to_stdout_maps_each_field_to_the_query_output() {
    let v = one("COPY (SELECT id, email, lower(name) FROM customers WHERE id > 1) TO STDOUT WITH (FORMAT csv, HEADER)");
    let copy = v.copy.as_ref().expect("copy info");
    assert_eq!(copy.direction, CopyDirection::To);
    assert_eq!(copy.columns.len(), 3);
    assert!(copy.columns[0].is_none() && copy.columns[1].is_some() && copy.columns[2].is_none());
    assert!(copy.options.header);
    let v =
        one("COPY (SELECT email FROM customers UNION SELECT customer_email FROM orders) TO STDOUT");
    assert!(v.copy.as_ref().expect("copy").columns[0].is_some());
    assert!(!v.links.is_empty(), "the merged columns are linked");
    let v = untouched("COPY (SELECT name FROM customers) TO STDOUT");
    assert!(v[0].copy.is_none());
}
