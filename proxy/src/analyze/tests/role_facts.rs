//! What roles decide on: comparisons with supplied values (the compare right), columns that
//! meet (compared, merged into one result, copied), and tables changed as a whole.

use super::*;

fn orders_email() -> ColumnId {
    id("orders", "customer_email")
}

fn links(info: &StatementInfo) -> Vec<(ColumnId, ColumnId, LinkKind)> {
    info.links.iter().map(|l| (l.a, l.b, l.kind)).collect()
}

#[test]
fn comparisons_with_supplied_values_need_the_compare_right() {
    for sql in [
        "SELECT id FROM customers WHERE email = 'a@example.com'",
        "SELECT id FROM customers WHERE email <> $1",
        "SELECT id FROM customers WHERE email IN ('a', $1)",
        "SELECT id FROM customers WHERE email = ANY($1)",
        "SELECT id FROM customers WHERE email = ANY(ARRAY['a', 'b'])",
        "SELECT id FROM customers WHERE email IS NOT DISTINCT FROM $1",
        "DELETE FROM customers WHERE email = $1",
    ] {
        let info = one(sql);
        assert!(has_use(&info, email(), Usage::CompareValue), "{sql}");
        assert!(!has_use(&info, email(), Usage::Compare), "{sql}");
    }
}

#[test]
fn comparing_protected_columns_with_each_other_supplies_no_value() {
    for sql in [
        "SELECT c.id FROM customers c JOIN orders o ON o.customer_email = c.email",
        "SELECT c.id FROM customers c JOIN contacts USING (email)",
        "SELECT id FROM customers WHERE email IN (SELECT customer_email FROM orders)",
        "SELECT email, count(*) FROM customers GROUP BY email",
        "SELECT DISTINCT email FROM customers",
        "SELECT id FROM customers WHERE email IS NULL",
    ] {
        let info = one(sql);
        assert!(
            info.columns.iter().all(|u| u.usage != Usage::CompareValue),
            "{sql}"
        );
    }
    let info = one("SELECT c.id FROM customers c JOIN orders o ON o.customer_email = c.email");
    assert_eq!(
        links(&info),
        vec![(orders_email(), email(), LinkKind::Compared)]
    );
}

#[test]
fn on_conflict_targets_compare_the_inserted_values() {
    let info = one("INSERT INTO customers (email) VALUES ($1) ON CONFLICT (email) DO NOTHING");
    assert!(has_use(&info, email(), Usage::CompareValue));
    // Without a column list the target is unknown: every written protected column counts.
    let info = one("INSERT INTO customers (email, ssn) VALUES ($1, $2) ON CONFLICT DO NOTHING");
    assert!(has_use(&info, email(), Usage::CompareValue));
    assert!(has_use(&info, id("customers", "ssn"), Usage::CompareValue));
    let info =
        one("INSERT INTO customers (email, name) VALUES ($1, 'x') ON CONFLICT (id) DO NOTHING");
    assert!(!has_use(&info, email(), Usage::CompareValue));
    let info = one("INSERT INTO customers (email) VALUES ($1)");
    assert!(!has_use(&info, email(), Usage::CompareValue));
}

#[test]
fn set_operations_merge_the_branches_columns_also_through_ctes_and_subqueries() {
    for sql in [
        "SELECT email FROM customers UNION SELECT customer_email FROM orders",
        "WITH x AS (SELECT email FROM customers UNION ALL SELECT customer_email FROM orders) \
         SELECT email FROM x",
        "SELECT e FROM (SELECT email AS e FROM customers EXCEPT SELECT customer_email FROM orders) s",
    ] {
        let info = one(sql);
        assert_eq!(info.outputs, vec![Some(email())], "{sql}");
        assert_eq!(
            links(&info),
            vec![(email(), orders_email(), LinkKind::Merged)],
            "{sql}"
        );
        let mut merged = merged_with(email(), &info.links);
        merged.sort_unstable();
        let mut want = vec![email(), orders_email()];
        want.sort_unstable();
        assert_eq!(merged, want, "{sql}");
    }
    let info = one("SELECT email FROM customers UNION SELECT email FROM customers");
    assert!(info.links.is_empty(), "a column merged with itself");
}

#[test]
fn writes_from_another_protected_column_are_copies() {
    let info = one("INSERT INTO orders (customer_email) SELECT email FROM customers");
    assert_eq!(
        links(&info),
        vec![(orders_email(), email(), LinkKind::Copied)]
    );
    let info =
        one("UPDATE orders SET customer_email = c.email FROM customers c WHERE c.id = orders.id");
    assert_eq!(
        links(&info),
        vec![(orders_email(), email(), LinkKind::Copied)]
    );
}

#[test]
fn deletes_truncates_and_ddl_change_their_tables_as_a_whole() {
    let customers = ("public".to_string(), "customers".to_string());
    for sql in [
        "DELETE FROM customers WHERE id = 1",
        "WITH d AS (DELETE FROM customers RETURNING id) SELECT count(*) FROM d",
        "TRUNCATE customers",
        "ALTER TABLE customers ADD COLUMN x int",
        "DROP TABLE customers",
        "CREATE INDEX ON customers (name)",
        "COMMENT ON TABLE customers IS 'x'",
    ] {
        let info = analyze(sql, &schema());
        let statements = match info {
            Analysis::Untouched { statements } | Analysis::Protected { statements } => statements,
            Analysis::Refused(r) => panic!("{sql}: refused: {}", r.message),
        };
        assert!(
            statements[0].changed_tables.contains(&customers),
            "{sql}: {:?}",
            statements[0].changed_tables
        );
    }
    let info = untouched("UPDATE customers SET name = 'x'");
    assert!(info[0].changed_tables.is_empty());
    let info = untouched("SELECT count(*) FROM customers");
    assert!(info[0].changed_tables.is_empty());
}

#[test]
fn cursors_and_sql_prepared_statements_over_set_operations_of_protected_columns_are_refused() {
    for sql in [
        "DECLARE c CURSOR FOR SELECT email FROM customers UNION SELECT customer_email FROM orders",
        "DECLARE c CURSOR FOR SELECT e FROM (SELECT email AS e FROM customers \
         UNION ALL SELECT email FROM customers) s",
        "DECLARE c CURSOR FOR WITH x AS (SELECT email FROM customers EXCEPT \
         SELECT customer_email FROM orders) SELECT email FROM x",
    ] {
        refused_on(
            sql,
            "public.customers.email",
            "a cursor or SQL-level prepared",
        );
        let prepared = sql.replace("DECLARE c CURSOR FOR", "PREPARE p AS");
        refused_on(&prepared, "public.customers.email", "SQL-level prepared");
    }
    one("DECLARE c CURSOR FOR SELECT email FROM customers");
    one("PREPARE p AS SELECT email FROM customers");
    untouched("PREPARE p AS SELECT id FROM customers UNION SELECT id FROM orders");
    untouched("DECLARE c CURSOR FOR SELECT id FROM customers UNION SELECT id FROM orders");
}

/// Values supplied through a VALUES list, UNNEST or a CTE of literals and compared with a
/// protected column are supplied values too: never a comparison of two columns.
#[test]
fn values_lists_joined_to_a_protected_column_are_supplied_values() {
    for sql in [
        "SELECT c.id FROM customers c JOIN (VALUES ('a@example.com')) v(s) ON c.email = v.s",
        "SELECT c.id FROM customers c, (VALUES ('a'), ('b')) v(s) WHERE c.email = v.s",
        "SELECT c.id FROM customers c JOIN UNNEST($1::text[]) u(s) ON c.email = u.s",
        "WITH g(s) AS (VALUES ('a')) SELECT c.id FROM customers c JOIN g ON c.email = g.s",
        "SELECT id FROM customers WHERE email IN (VALUES ('a'), ('b'))",
        "SELECT id FROM customers WHERE email IN (SELECT 'a' UNION SELECT $1)",
    ] {
        match analyze(sql, &schema()) {
            Analysis::Refused(_) => {}
            Analysis::Protected { statements } => {
                let info = &statements[0];
                assert!(
                    has_use(info, email(), Usage::CompareValue)
                        && info.links.iter().all(|l| l.a != email() && l.b != email()),
                    "{sql}: {:?} {:?}",
                    info.columns,
                    links(info)
                );
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
}
