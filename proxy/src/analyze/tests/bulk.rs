//! Bulk INSERT shapes (SQLAlchemy's VALUES derived table, Django's and sqlx's UNNEST): every
//! value for a protected column becomes a site, casts on it go, anything else is refused.

use super::*;

/// `schema()` with logical types: customers.email and ssn are text.
fn typed() -> ProtectedSchema {
    let mut s = schema();
    s.set_logical_type(email(), pgshroud_rules::LogicalType::Text);
    s.set_logical_type(id("customers", "ssn"), pgshroud_rules::LogicalType::Text);
    s
}

fn bulk(sql: &str) -> StatementInfo {
    match analyze(sql, &typed()) {
        Analysis::Protected { mut statements } => statements.remove(0),
        other => panic!("expected Protected for {sql:?}, got {other:?}"),
    }
}

fn bulk_refused(sql: &str, operation: &str) -> Refusal {
    let r = match analyze(sql, &typed()) {
        Analysis::Refused(r) => r,
        other => panic!("expected Refused for {sql:?}, got {other:?}"),
    };
    assert_eq!(r.sqlstate, "0A000", "{sql}: {}", r.message);
    assert!(r.message.contains(operation), "{sql}: {}", r.message);
    r
}

/// (source text, replacement) of each text edit.
fn edits<'s>(sql: &'s str, info: &StatementInfo) -> Vec<(&'s str, String)> {
    info.edits
        .iter()
        .map(|e| (&sql[e.span.clone()], e.replacement.clone()))
        .collect()
}

const SQLALCHEMY_LITERALS: &str = "INSERT INTO customers (email, name) SELECT p0::VARCHAR, \
     p1::VARCHAR FROM (VALUES ('a@x', 'A', 0), ('b@x', NULL, 1)) AS imp_sen(p0, p1, \
     sen_counter) ORDER BY sen_counter RETURNING customers.id, customers.id AS id__1";

#[test]
fn sqlalchemy_values_bulk_insert_with_literals_seals_each_row() {
    let sql = SQLALCHEMY_LITERALS;
    let info = bulk(sql);
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'a@x'", email(), Some("a@x")),
            lit("'b@x'", email(), Some("b@x"))
        ]
    );
    assert!(info.literals.iter().all(|l| !l.array));
    assert_eq!(edits(sql, &info), vec![("p0::VARCHAR", "p0".to_string())]);
    assert!(has_use(&info, email(), Usage::Write));
    assert_eq!(info.outputs, vec![None, None]);
}

#[test]
fn sqlalchemy_values_bulk_insert_with_parameters_psycopg_and_asyncpg() {
    // psycopg 3 casts strings only; asyncpg casts every parameter, with type modifiers.
    let sql = "INSERT INTO customers (email, ssn, id) SELECT p0::VARCHAR, p1::TEXT, p2::INTEGER \
               FROM (VALUES ($1::VARCHAR, $2, $3::INTEGER, 0), ($4::VARCHAR(100), $5, $6, 1)) \
               AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter RETURNING customers.id";
    let info = bulk(sql);
    let ssn = id("customers", "ssn");
    assert_eq!(
        params(sql, &info),
        vec![
            ("$1::VARCHAR", 0, email(), false),
            ("$2", 1, ssn, false),
            ("$4::VARCHAR(100)", 3, email(), false),
            ("$5", 4, ssn, false),
        ]
    );
    assert_eq!(
        edits(sql, &info),
        vec![
            ("p0::VARCHAR", "p0".to_string()),
            ("p1::TEXT", "p1".to_string())
        ]
    );
}

#[test]
fn bulk_values_qualified_and_parenthesised_casts_are_dropped() {
    let sql =
        "INSERT INTO customers (email) SELECT CAST((v.p0) AS text) FROM (VALUES ('a')) AS v(p0)";
    let info = bulk(sql);
    assert_eq!(
        edits(sql, &info),
        vec![("CAST((v.p0) AS text)", "v.p0".to_string())]
    );
    assert_eq!(literals(sql, &info), vec![lit("'a'", email(), Some("a"))]);
}

#[test]
fn django_unnest_with_array_literals_becomes_array_sites() {
    let sql = "INSERT INTO \"customers\" (\"email\", \"id\") SELECT * FROM \
               UNNEST(('{a@b,c@d}')::varchar[], ('{1,2}'::integer[])::integer[]) \
               RETURNING \"customers\".\"id\"";
    let info = bulk(sql);
    assert_eq!(
        literals(sql, &info),
        vec![lit("('{a@b,c@d}')::varchar[]", email(), Some("{a@b,c@d}"))]
    );
    assert!(info.literals[0].array);
    assert!(info.edits.is_empty());
}

#[test]
fn django_psycopg2_unnest_of_array_constructors_seals_each_element_and_retypes_the_casts() {
    let sql = "INSERT INTO \"customers\" (\"email\", \"id\", \"ssn\") SELECT * FROM \
               UNNEST((ARRAY['a@b',NULL])::varchar[], (ARRAY[1,2])::integer[], \
               ((ARRAY['x'::text]))::text[]::varchar(11)[]) RETURNING \"customers\".\"id\"";
    let info = bulk(sql);
    let ssn = id("customers", "ssn");
    assert_eq!(
        literals(sql, &info),
        vec![
            lit("'a@b'", email(), Some("a@b")),
            lit("NULL", email(), None),
            lit("'x'::text", ssn, Some("x")),
        ]
    );
    assert_eq!(
        edits(sql, &info),
        vec![
            ("::varchar[]", "::bytea[]".to_string()),
            ("::text[]", "::bytea[]".to_string()),
            ("::varchar(11)[]", "::bytea[]".to_string()),
        ]
    );
    let plain = "INSERT INTO customers (email) SELECT * FROM UNNEST(ARRAY['a'])";
    assert!(edits(plain, &bulk(plain)).is_empty());
}

#[test]
fn django_and_sqlx_unnest_with_array_parameters_become_array_param_sites() {
    let sql =
        "INSERT INTO customers (email, id) SELECT * FROM UNNEST(($1)::varchar[], ($2)::numeric[])";
    assert_eq!(
        params(sql, &bulk(sql)),
        vec![("($1)::varchar[]", 0, email(), true)]
    );
    let sql =
        "INSERT INTO customers (id, ssn, email) SELECT * FROM UNNEST($1::int8[], $2::text[], $3)";
    assert_eq!(
        params(sql, &bulk(sql)),
        vec![
            ("$2::text[]", 1, id("customers", "ssn"), true),
            ("$3", 2, email(), true)
        ]
    );
}

#[test]
fn unnest_with_alias_and_named_columns_maps_by_name() {
    let sql = "INSERT INTO customers (id, email) SELECT u.b, a::text FROM UNNEST($1::text[], $2::int8[]) AS u(a, b)";
    let info = bulk(sql);
    assert_eq!(edits(sql, &info), vec![("a::text", "a".to_string())]);
    assert_eq!(params(sql, &info), vec![("$1::text[]", 0, email(), true)]);
}

#[test]
fn bulk_shapes_that_stay_refused_name_what_is_wrong() {
    let values = "(VALUES ('a', 0), ('b', 1)) AS v(p0, n)";
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT p0 FROM {values} WHERE n > 0"),
        "a WHERE clause is not supported in a bulk INSERT",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT p0 FROM {values} ORDER BY p0"),
        "ORDER BY",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT p0 FROM {values} ORDER BY 1"),
        "ORDER BY",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT upper(p0) FROM {values}"),
        "a computed value",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT p0 || 'x' FROM {values}"),
        "a computed value",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT p0::int4 FROM {values}"),
        "a cast to int",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email, name) SELECT p0, p0 FROM {values}"),
        "copying its value into a column that is not encrypted",
    );
    bulk_refused(
        &format!("INSERT INTO customers (email) SELECT p0 FROM {values} JOIN products ON true"),
        "INSERT ... SELECT of a value that is not an encrypted column",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT p0 FROM (VALUES (lower('A'))) AS v(p0)",
        "a computed value",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT * FROM UNNEST(ARRAY[lower('a')])",
        "an ARRAY[...] element that is not a literal",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT * FROM UNNEST(ARRAY[$1])",
        "an ARRAY[...] element that is not a literal",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT * FROM UNNEST(CAST(ARRAY['a'] AS text[]))",
        "cannot locate",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT * FROM UNNEST(ARRAY['a'] || ARRAY['b'])",
        "UNNEST of something other than",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT * FROM UNNEST($1::int4[])",
        "a cast to int",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT * FROM UNNEST($1::text)",
        "a cast to text",
    );
    bulk_refused(
        "INSERT INTO customers (email) SELECT DISTINCT * FROM UNNEST($1::text[])",
        "DISTINCT",
    );
}

#[test]
fn copying_a_protected_column_beside_a_values_list_is_still_allowed() {
    let sql = "INSERT INTO customers (email) SELECT c.email FROM contacts c, (VALUES (1)) AS v(n)";
    let info = bulk(sql);
    assert!(info.literals.is_empty() && info.edits.is_empty());
}

#[test]
fn bulk_values_into_plain_columns_only_is_left_to_the_general_path() {
    let sql = "INSERT INTO customers (name) SELECT p0 FROM (VALUES ('a')) AS v(p0)";
    assert!(matches!(analyze(sql, &typed()), Analysis::Untouched { .. }));
}
