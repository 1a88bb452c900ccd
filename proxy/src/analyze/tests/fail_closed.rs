//! Fail closed by construction: resource limits, every spelling of a protected name, guards,
//! and name resolution as PostgreSQL does it.

use std::collections::BTreeSet;

use super::*;

/// Runs `f` on a thread with a tokio worker's default stack, as the proxy does.
fn on_worker_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

fn too_complex(sql: &str) {
    let r = on_worker_stack(|| refused(sql));
    assert_eq!(r.sqlstate, "54001", "{}", r.message);
    assert!(
        r.message
            .starts_with("statement too complex for pgshroud to analyse: nesting deeper than"),
        "{}",
        r.message
    );
}

/// Deep statements of every shape, `n` levels deep, on the protected table.
fn deep_shapes(n: usize) -> Vec<String> {
    vec![
        format!(
            "SELECT id FROM customers WHERE note = 'a'{}",
            " || note".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE {}",
            vec!["note = 'a'"; n].join(" AND ")
        ),
        format!(
            "SELECT {} FROM customers",
            vec!["note = 'a'"; n].join(" OR ")
        ),
        format!(
            "SELECT id FROM customers WHERE {}note = 'a'{}",
            "(".repeat(n),
            ")".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE id IN {}(1){}",
            "(SELECT id FROM customers WHERE id IN ".repeat(n),
            ")".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE note = {}'x'{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE note = {}1{}",
            "ARRAY[".repeat(n),
            "]".repeat(n)
        ),
        vec!["SELECT email FROM customers"; n].join(" UNION "),
        format!(
            "INSERT INTO customers (note) VALUES ('a'{})",
            " || 'b'".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE note = 'a'{}",
            "::text".repeat(n)
        ),
        format!(
            "SELECT id FROM customers WHERE note = 'a' {}",
            "[1]".repeat(n)
        ),
    ]
}

#[test]
fn statements_nesting_ten_thousand_deep_are_refused_with_54001() {
    for n in [10_000, 100_000] {
        for sql in deep_shapes(n) {
            too_complex(&sql);
        }
    }
}

/// The nesting is bounded from each reader's own scanner: a chain that sqlparser's tokenizer
/// reads as one string or comment, and PostgreSQL's scanner as operators, must not reach
/// PostgreSQL's grammar unbounded (its output and decoding recurse once per level). The texts
/// are spellings where the two scanners may part; none of them is known to have overflowed.
#[test]
fn a_chain_only_postgresql_reads_as_code_does_not_exhaust_the_stack() {
    let chain = " + 1".repeat(20_000);
    for sql in [
        format!("SELECT id FROM customers WHERE note = '\\' , 1{chain} --'"),
        format!("SELECT id FROM customers WHERE a$x$ = 1{chain} -- $x$"),
        format!("SELECT id FROM customers -- /*\n WHERE id = 1{chain} */"),
        // sqlparser reads a dollar-quoted string here (its nesting bound is 1); PostgreSQL's
        // scanner a parameter with trailing junk, which its grammar rejects.
        format!("SELECT id FROM customers WHERE $1$ = 1{chain} -- $1$"),
    ] {
        let r = on_worker_stack(|| analyze(&sql, &schema()));
        assert!(matches!(r, Analysis::Refused(_)), "{sql:.80}: {r:?}");
    }
}

#[test]
fn unparseable_deep_text_is_refused_without_overflow() {
    too_complex(&format!(
        "SELECT id FROM customers WHERE note = 'a'{} ) ) garbage",
        " || note".repeat(100_000)
    ));
}

#[test]
fn nesting_past_the_parser_limit_is_refused_with_54001() {
    let n = PARSER_RECURSION_LIMIT + 5;
    too_complex(&format!(
        "SELECT id FROM customers WHERE note = {}1{}",
        "abs(".repeat(n),
        ")".repeat(n)
    ));
}

#[test]
fn deepest_accepted_chains_are_analysed_on_a_worker_stack() {
    let concat = format!(
        "SELECT id FROM customers WHERE email = 'a' AND note = 'b'{}",
        " || note".repeat(MAX_NESTING - 20)
    );
    let info = on_worker_stack(|| one(&concat));
    assert_eq!(info.literals.len(), 1);
    let ands = format!(
        "SELECT id FROM customers WHERE email = 'a' AND {}",
        vec!["note = 'b'"; MAX_NESTING / 2 - 20].join(" AND ")
    );
    assert_eq!(on_worker_stack(|| one(&ands)).literals.len(), 1);
    let unions = vec!["SELECT email FROM customers"; MAX_NESTING / 3 - 20].join(" UNION ");
    assert_eq!(
        on_worker_stack(|| one(&unions)).outputs,
        vec![Some(email())]
    );
}

#[test]
fn deepest_statements_analysed_inline_need_under_half_a_worker_stack() {
    let bound = |sql: &str| {
        let tokens = sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        limits::nesting_bound(&tokens)
    };
    for shape in 0..deep_shapes(1).len() {
        let n = (1..)
            .take_while(|&n| bound(&deep_shapes(n)[shape]) <= limits::INLINE_NESTING)
            .last()
            .unwrap_or(1);
        let sql = deep_shapes(n).swap_remove(shape);
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn_scoped(s, || analyze(&sql, &schema()))
                .unwrap()
                .join()
                .unwrap()
        });
    }
}

#[test]
fn statement_kinds_of_deep_or_unparseable_text_split_at_semicolons() {
    let deep = format!("SELECT 1{}; DROP TABLE t", " || 1".repeat(100_000));
    let kinds = on_worker_stack(|| statement_kinds(&deep));
    assert_eq!(kinds, vec![StatementKind::Select, StatementKind::Ddl]);
    assert_eq!(
        statement_kinds("SELECT 1; DO $$ BEGIN DELETE FROM t; END $$"),
        vec![StatementKind::Select, StatementKind::Other]
    );
}

// ---- pre-filter: every spelling ----------------------------------------------------------

#[test]
fn prefilter_passes_escaped_identifiers_and_pgshroud_names_to_analysis() {
    let s = schema();
    assert!(s.mentions_protected_table(r#"INSERT INTO U&"\0063ustomers" VALUES (1)"#));
    assert!(s.mentions_protected_table(r#"insert into u&"!0063ustomers" uescape '!' values (1)"#));
    assert!(s.mentions_protected_table("ALTER TABLE t DROP CONSTRAINT PGSHROUD_GUARD_email"));
    assert!(s.mentions_protected_table("DROP DOMAIN pgshroud_ctx"));
    assert!(!s.mentions_protected_table("SELECT u & x FROM t"));
}

#[test]
fn prefilter_finds_non_ascii_and_quote_holding_names_in_any_case() {
    let mut s = ProtectedSchema::new();
    s.protect("public", "Kunden_Ä", "email", "k");
    s.protect("public", "we\"ird", "email", "w");
    assert!(s.mentions_protected_table(r#"SELECT * FROM "KUNDEN_Ä""#));
    assert!(s.mentions_protected_table(r#"SELECT * FROM "kunden_ä""#));
    assert!(s.mentions_protected_table(r#"SELECT * FROM "WE""IRD""#));
    assert!(!s.mentions_protected_table(r#"SELECT * FROM "kunden_ö""#));
}

#[test]
fn write_through_a_unicode_escaped_name_is_encrypted() {
    let sql = r#"INSERT INTO U&"\0063ustomers" (U&"\0065mail") VALUES ('a@x')"#;
    let info = one(sql);
    assert_eq!(
        literals(sql, &info),
        vec![lit("'a@x'", email(), Some("a@x"))]
    );
    let sql = r#"UPDATE U&"!0063ustomers" UESCAPE '!' SET email = $1"#;
    assert_eq!(params(sql, &one(sql)), vec![("$1", 0, email(), false)]);
    let r = refused(r#"SELECT U&"\0065mail" FROM customers WHERE U&"\0065mail" LIKE 'a%'"#);
    assert_eq!(r.sqlstate, "0A000");
}

#[test]
fn undecodable_escaped_identifier_is_refused_with_42601() {
    let r = refused(r#"INSERT INTO U&"\00zzustomers" VALUES (1)"#);
    assert_eq!(r.sqlstate, "42601");
    let r = refused(r#"INSERT INTO U&"!0063ustomers" UESCAPE 'a' VALUES (1)"#);
    assert_eq!(r.sqlstate, "42601");
}

#[test]
fn identifiers_longer_than_postgres_keeps_are_truncated_like_postgres() {
    let long = "t".repeat(63);
    let mut s = ProtectedSchema::new();
    let id = s.protect("public", &long, "email", "c");
    let sql = format!("INSERT INTO {long}xyz (email) VALUES ('a')");
    let Analysis::Protected { statements } = analyze(&sql, &s) else {
        panic!("{sql}");
    };
    assert_eq!(statements[0].literals[0].column, id);
}

// ---- guards ----------------------------------------------------------------------------------

fn weakens_guard(sql: &str) {
    let r = refused(sql);
    assert_eq!(r.sqlstate, "42501", "{sql}: {}", r.message);
    assert!(r.message.contains("guard"), "{sql}: {}", r.message);
}

#[test]
fn ddl_removing_or_weakening_a_guard_is_refused_with_42501() {
    for sql in [
        "ALTER TABLE customers DROP CONSTRAINT pgshroud_guard_email",
        "ALTER TABLE public.customers DROP CONSTRAINT IF EXISTS \"PGSHROUD_GUARD_EMAIL\" CASCADE",
        "ALTER TABLE other DROP CONSTRAINT pgshroud_guard_x",
        "ALTER TABLE customers RENAME CONSTRAINT pgshroud_guard_email TO x",
        "ALTER TABLE customers ALTER COLUMN email TYPE text",
        "ALTER TABLE customers ALTER COLUMN email SET DATA TYPE bytea USING email::bytea",
        "ALTER TABLE customers ADD COLUMN x int, ALTER email TYPE text",
        r#"ALTER TABLE U&"\0063ustomers" DROP CONSTRAINT U&"pgshroud\005fguard_email""#,
        "ALTER TABLE customers ADD CONSTRAINT pgshroud_guard_email CHECK (true)",
        "DROP DOMAIN pgshroud_email",
        "DROP TYPE IF EXISTS public.pgshroud_email CASCADE",
        "SELECT run_sql('ALTER TABLE customers DROP CONSTRAINT pgshroud_guard_email')",
        "SELECT 1; ALTER TABLE t DROP CONSTRAINT x -- pgshroud_guard",
        "WITH d AS (DELETE FROM notes WHERE body = 'pgshroud_guard' RETURNING 1) SELECT 1",
    ] {
        weakens_guard(sql);
    }
}

#[test]
fn unparseable_text_naming_a_guard_is_refused_with_42601() {
    for sql in [
        "ALTER TABLE customers ALTER CONSTRAINT pgshroud_guard_email NOT DEFERRABLE",
        "ALTER DOMAIN pgshroud_email DROP CONSTRAINT c",
        "COMMENT ON CONSTRAINT pgshroud_guard_email ON customers IS 'x'",
    ] {
        assert_eq!(refused(sql).sqlstate, "42601", "{sql}");
    }
}

#[test]
fn harmless_statements_and_ddl_that_keeps_guards_pass() {
    let plain = ProtectedSchema::new();
    for sql in [
        "SELECT conname FROM pg_constraint WHERE conname LIKE 'pgshroud_guard%'",
        "EXPLAIN SELECT 1 FROM pg_constraint WHERE conname = 'pgshroud_guard_email'",
    ] {
        assert!(
            matches!(analyze(sql, &plain), Analysis::Untouched { .. }),
            "{sql}"
        );
    }
    for sql in [
        "ALTER TABLE customers ALTER COLUMN note TYPE varchar(10)",
        "ALTER TABLE customers DROP CONSTRAINT customers_pkey",
        "ALTER TABLE products ALTER COLUMN email TYPE text",
    ] {
        assert_eq!(untouched(sql)[0].kind, StatementKind::Ddl, "{sql}");
    }
}

// ---- name resolution -------------------------------------------------------------------------

#[test]
fn derived_table_does_not_see_its_sibling_from_items() {
    // `email` inside the subquery is unknown_t's (PostgreSQL binds it there or fails), never
    // the sibling customers.email: writing it into an encrypted column is refused.
    let r = refused(
        "INSERT INTO customers (email) SELECT s.email FROM customers c, \
         (SELECT email FROM unknown_t) s",
    );
    assert_eq!(r.sqlstate, "0A000");
    assert!(r.message.contains("INSERT ... SELECT"), "{}", r.message);
}

#[test]
fn unqualified_column_that_may_belong_to_an_unknown_inner_table_is_refused() {
    let r = refused(
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM unknown_t WHERE email = 'a')",
    );
    assert!(r.message.contains("qualify it"), "{}", r.message);
    // Qualified, it is the outer column.
    let sql = "SELECT id FROM customers c WHERE id IN (SELECT customer_id FROM unknown_t WHERE c.email = 'a')";
    assert_eq!(literals(sql, &one(sql)).len(), 1);
}

#[test]
fn cte_named_like_a_protected_table_shadows_it_in_from_but_not_as_a_target() {
    untouched("WITH customers AS (SELECT 'x'::text AS email) SELECT email FROM customers WHERE email LIKE 'a%'");
    untouched(
        "WITH RECURSIVE customers(email) AS (SELECT 'x'::text UNION ALL \
         SELECT email FROM customers WHERE false) SELECT email FROM customers WHERE email LIKE 'a%'",
    );
    let sql = "WITH customers AS (SELECT 1 AS id) DELETE FROM customers WHERE email = 'a'";
    assert_eq!(
        literals(sql, &one(sql)),
        vec![lit("'a'", email(), Some("a"))]
    );
    let sql = "WITH customers AS (SELECT 1 AS id) UPDATE customers SET email = 'a'";
    assert_eq!(literals(sql, &one(sql)).len(), 1);
}

#[test]
fn recursive_cte_keeps_its_protected_column_through_the_recursion() {
    let sql = "WITH RECURSIVE r(e, n) AS (SELECT email, 1 FROM customers UNION ALL \
               SELECT e, n + 1 FROM r WHERE n < 3) SELECT e FROM r WHERE e = 'a'";
    let info = one(sql);
    assert_eq!(info.outputs, vec![Some(email())]);
    assert_eq!(literals(sql, &info), vec![lit("'a'", email(), Some("a"))]);
}

#[test]
fn non_recursive_cte_does_not_see_later_ones() {
    // `customers` in the first CTE is the table: its email is encrypted.
    let sql = "WITH a AS (SELECT email FROM customers), customers AS (SELECT 1 AS x) \
               SELECT 1 FROM a WHERE a.email = 'q'";
    assert_eq!(literals(sql, &one(sql)).len(), 1);
}

fn with_path(path: SearchPath) -> ProtectedSchema {
    let mut s = schema();
    s.set_search_path(path);
    s
}

fn known(schemas: &[&str], relations: &[(&str, &str)]) -> SearchPath {
    SearchPath::Known {
        schemas: schemas.iter().map(|s| s.to_string()).collect(),
        relations: relations
            .iter()
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect::<BTreeSet<_>>(),
    }
}

#[test]
fn unqualified_names_resolve_through_the_search_path() {
    let s = with_path(known(&["pg_catalog", "crm", "public"], &[("crm", "leads")]));
    let sql = "UPDATE leads SET phone = '1'";
    let Analysis::Protected { statements } = analyze(sql, &s) else {
        panic!("{sql}");
    };
    assert_eq!(statements[0].literals[0].column, id("crm.leads", "phone"));
}

#[test]
fn shadowed_or_unknown_resolution_of_a_protected_name_is_refused() {
    let shadowed = with_path(known(
        &["pg_temp_3", "pg_catalog", "public"],
        &[("pg_temp_3", "customers"), ("public", "customers")],
    ));
    for schema in [shadowed, with_path(SearchPath::Unknown)] {
        for sql in [
            "INSERT INTO customers (email) VALUES ('a')",
            "SELECT email FROM customers",
            "COPY customers (email) FROM STDIN",
            "DELETE FROM customers WHERE email = 'a'",
        ] {
            let Analysis::Refused(r) = analyze(sql, &schema) else {
                panic!("{sql}");
            };
            assert_eq!(r.sqlstate, "0A000", "{sql}");
            assert!(r.message.contains("public.customers"), "{}", r.message);
        }
        // Qualified names need no search path; guards stay guarded.
        assert!(matches!(
            analyze("INSERT INTO public.customers (email) VALUES ('a')", &schema),
            Analysis::Protected { .. }
        ));
        assert!(matches!(
            analyze(
                "ALTER TABLE customers ALTER COLUMN email TYPE text",
                &schema
            ),
            Analysis::Refused(Refusal {
                sqlstate: "42501",
                ..
            })
        ));
    }
}

#[test]
fn multi_part_write_targets_naming_a_protected_column_are_refused() {
    for sql in [
        "UPDATE customers c SET c.email = 'a'",
        "UPDATE customers SET email.x = 'a'",
        "INSERT INTO customers (email.x) VALUES ('a')",
    ] {
        assert_eq!(refused(sql).sqlstate, "0A000", "{sql}");
    }
}

// ---- statement kinds ---------------------------------------------------------------------------

#[test]
fn statements_that_write_through_another_form_report_the_write() {
    let cases = [
        (
            "WITH d AS (DELETE FROM products RETURNING id) SELECT id FROM d",
            StatementKind::Delete,
        ),
        (
            "EXPLAIN ANALYZE DELETE FROM products",
            StatementKind::Delete,
        ),
        ("EXPLAIN DELETE FROM products", StatementKind::Other),
        ("PREPARE p AS DELETE FROM products", StatementKind::Delete),
        ("SELECT * INTO copy_t FROM products", StatementKind::Ddl),
    ];
    for (sql, kind) in cases {
        assert_eq!(statement_kinds(sql), vec![kind], "{sql}");
    }
}
