//! PostgreSQL's grammar is the authority: every lexical corner of its scanner, read by both
//! readings, is either refused or analysed exactly as PostgreSQL reads it — never forwarded
//! on sqlparser's word alone.

use super::*;
use crate::analyze::pg_reading::{self, Setting};

/// Refused, or analysed with every protected table PostgreSQL reads among the analysis's.
fn refused_or_agrees(sql: &str) -> Analysis {
    let s = schema();
    assert!(s.mentions_protected_table(sql), "pre-filter missed {sql:?}");
    let analysis = analyze(sql, &s);
    if let Analysis::Protected { statements } | Analysis::Untouched { statements } = &analysis {
        let pg = pg_reading::read(sql).expect("PostgreSQL reads what pgshroud forwards");
        assert_eq!(pg.statements.len(), statements.len(), "{sql}");
        for (p, ours) in pg.statements.iter().zip(statements) {
            for rel in p.relations.iter().filter(|r| !r.cte) {
                let t = scope::fold_name(&rel.name);
                if s.has_protected_table("public", &t) {
                    assert!(
                        ours.tables
                            .iter()
                            .chain(&ours.changed_tables)
                            .any(|(_, n)| *n == t),
                        "{sql}: PostgreSQL reads {t}, the analysis does not"
                    );
                }
            }
        }
    }
    analysis
}

fn must_refuse(sql: &str) -> Refusal {
    match refused_or_agrees(sql) {
        Analysis::Refused(r) => {
            assert!(["0A000", "42601"].contains(&r.sqlstate), "{sql}: {r:?}");
            assert!(!r.message.contains("secret"), "{}", r.message);
            r
        }
        other => panic!("expected a refusal for {sql:?}, got {other:?}"),
    }
}

#[test]
fn dollar_quote_tags_with_odd_bytes_hide_nothing() {
    for sql in [
        "SELECT $é$; DELETE FROM customers; $é$",
        "SELECT $_$'$_$ FROM customers; DELETE FROM customers WHERE email = 'secret' --'",
        "SELECT $a$ $b$; DELETE FROM customers; $b$ $a$",
        "SELECT $a1$;$a1$, email FROM customers WHERE email = 'secret'",
    ] {
        refused_or_agrees(sql);
    }
}

#[test]
fn nested_comments_are_read_as_postgresql_nests_them() {
    // sqlparser nests comments as PostgreSQL does: one statement for both.
    let one_statement = "SELECT 1 /* /* */ ; DELETE FROM customers; */ FROM customers";
    match refused_or_agrees(one_statement) {
        Analysis::Untouched { statements } => assert_eq!(statements.len(), 1),
        other => panic!("{other:?}"),
    }
    if let Analysis::Protected { statements } =
        refused_or_agrees("SELECT email FROM customers /* /* */ WHERE email = 'secret' */")
    {
        assert!(
            statements[0].literals.is_empty(),
            "the WHERE is a comment for both"
        );
    }
    refused_or_agrees("SELECT email FROM customers /* a /* b */ c */ WHERE email = 'secret'");
}

#[test]
fn escape_strings_carry_the_value_postgresql_decodes() {
    let sql = r"SELECT id FROM customers WHERE email = E'a\'; DELETE FROM customers; --'";
    if let Analysis::Protected { statements } = refused_or_agrees(sql) {
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].literals[0].value.as_deref(),
            Some("a'; DELETE FROM customers; --")
        );
    }
    refused_or_agrees(r"SELECT id FROM customers WHERE email = E'\x41\101\u0041'");
}

#[test]
fn unicode_escapes_with_uescape_are_decoded_or_refused() {
    let info = one(r#"SELECT U&"\0065mail" FROM U&"!0063ustomers" UESCAPE '!' WHERE id = 1"#);
    assert_eq!(info.tables, vec![("public".into(), "customers".into())]);
    refused_or_agrees(r"SELECT id FROM customers WHERE email = U&'!0061' UESCAPE '!'");
    refused_or_agrees(r"INSERT INTO customers (id, email) VALUES (1, U&'\0061')");
}

#[test]
fn bit_strings_are_not_encrypted_as_text() {
    for sql in [
        "INSERT INTO customers (id, email) VALUES (1, X'41')",
        "INSERT INTO customers (id, email) VALUES (1, B'0101')",
        "SELECT id FROM customers WHERE email = x'41'",
    ] {
        if let Analysis::Protected { statements } = refused_or_agrees(sql) {
            assert!(statements[0].literals.is_empty(), "{sql}");
        }
    }
}

#[test]
fn operators_made_of_comment_characters() {
    refused_or_agrees("SELECT 2 */ 1 FROM customers");
    refused_or_agrees("SELECT id FROM customers WHERE id @-- c\n= 1");
    refused_or_agrees("SELECT id FROM customers WHERE id </**/= 1");
    refused_or_agrees(
        "SELECT email FROM customers WHERE email = 'secret' *--\n; DELETE FROM customers",
    );
}

#[test]
fn strings_continued_across_a_newline_are_one_value() {
    must_refuse("SELECT id FROM customers WHERE email = 'secret'\n'more'");
    must_refuse("INSERT INTO customers (id, email) VALUES (1, 'secret'\n-- c\n'more')");
    assert!(schema().mentions_protected_table("SELECT 'cust'\n'omers'::regclass"));
}

#[test]
fn keywords_used_as_names() {
    for sql in [
        "SELECT over.email FROM customers over WHERE over.email = 'secret'",
        "SELECT \"window\".email FROM customers AS \"window\"",
        "SELECT email FROM customers AS only",
        "SELECT email FROM customers value WHERE value.email = 'secret'",
        "SELECT email FROM public.customers AS of WHERE of.id = 1",
    ] {
        refused_or_agrees(sql);
    }
}

#[test]
fn only_on_a_protected_table_is_refused_in_writes_and_read_as_the_table_in_reads() {
    for sql in [
        "SELECT email FROM ONLY (customers)",
        "SELECT email FROM ONLY /* c */ customers",
        "DELETE FROM ONLY customers WHERE email = 'secret'",
        "UPDATE ONLY customers SET email = 'secret'",
    ] {
        must_refuse(sql);
    }
    // A read of the table's own rows is a read of the table (pg_dump --inserts).
    for sql in [
        "SELECT email FROM ONLY customers WHERE email = 'secret'",
        "SELECT email FROM ONLY public.customers",
        "DECLARE _pg_dump_cursor CURSOR FOR SELECT id, email FROM ONLY public.customers",
    ] {
        assert!(
            matches!(refused_or_agrees(sql), Analysis::Protected { .. }),
            "{sql}"
        );
    }
    assert_eq!(
        one("SELECT email FROM ONLY customers WHERE email = 'secret'").literals[0].span,
        47..55
    );
    // DDL keeps ONLY (pg_dump writes `ALTER TABLE ONLY`): no column values move.
    refused_or_agrees("ALTER TABLE ONLY customers ADD COLUMN x int");
}

#[test]
fn schema_qualified_quoted_names_are_the_table() {
    let sql = r#"SELECT "email" FROM "public"."customers" WHERE "email" = 'secret'"#;
    assert_eq!(one(sql).literals.len(), 1);
    let sql = r#"SELECT c."email" FROM "public" . "customers" c WHERE c.email = 'secret'"#;
    refused_or_agrees(sql);
}

#[test]
fn a_second_statement_hidden_from_one_reading_is_refused() {
    for sql in [
        "SELECT 'a' FROM customers WHERE email = $x$ ; DELETE FROM customers; $x$",
        "SELECT 1 FROM customers -- \r; DELETE FROM customers",
        "SELECT 1 FROM customers /* */; DELETE FROM customers WHERE email = 'secret'",
        "SELECT E'\\\\'; DELETE FROM customers; SELECT '\\'",
    ] {
        refused_or_agrees(sql);
    }
}

#[test]
fn do_blocks_touching_a_protected_table_once_decoded_are_refused() {
    for sql in [
        "DO $$ BEGIN DELETE FROM customers; END $$",
        "DO E'BEGIN DELETE FROM \\x63ustomers; END'",
        "DO U&'BEGIN DELETE FROM \\0063ustomers; END'",
        "DO 'BEGIN DELETE FROM cust'\n'omers; END'",
        "DO LANGUAGE plpgsql $f$ BEGIN UPDATE customers SET email = 'secret'; END $f$",
    ] {
        must_refuse(sql);
    }
    // Creating code that names one is refused too: calling it later runs what pgshroud never
    // reads (a view made over the table, a copy of its column).
    must_refuse("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS E'DELETE FROM \\x63ustomers'");
}

#[test]
fn postgresql_reads_settings_bodies_and_kinds() {
    let r = pg_reading::read(
        "SET search_path = a; RESET ALL; SELECT set_config('Search_Path', 'b', false); \
         SET NAMES 'LATIN1'; SET U&\"search\\005fpath\" TO c; DISCARD ALL; SELECT set_config($1, 'x', true)",
    )
    .unwrap();
    let settings: Vec<Setting> = r
        .statements
        .iter()
        .flat_map(|s| s.settings.clone())
        .collect();
    assert_eq!(
        settings,
        vec![
            Setting::Named("search_path".into()),
            Setting::All,
            Setting::Named("search_path".into()),
            Setting::Named("client_encoding".into()),
            Setting::Named("search_path".into()),
            Setting::All,
            Setting::Bound(1),
        ]
    );
    let r = pg_reading::read("DO E'BEGIN \\x45XECUTE 1; END'").unwrap();
    assert_eq!(
        r.statements[0].bodies,
        vec!["BEGIN EXECUTE 1; END".to_string()]
    );
    assert_eq!(
        statement_kinds("WITH d AS (DELETE FROM t RETURNING 1) SELECT 1; EXPLAIN ANALYZE UPDATE t SET a = 1; SELECT 1 INTO x; TABLE t"),
        vec![StatementKind::Delete, StatementKind::Update, StatementKind::Ddl, StatementKind::Select]
    );
}

#[test]
fn relations_carry_schema_inheritance_and_cte_scope() {
    let r = pg_reading::read(
        "WITH a AS (SELECT * FROM customers), customers AS (SELECT 1) \
         SELECT * FROM ONLY crm.leads, a, customers, (WITH x AS (SELECT 1) SELECT * FROM x, customers) s",
    )
    .unwrap();
    let rels: Vec<(Option<&str>, &str, bool, bool)> = r.statements[0]
        .relations
        .iter()
        .map(|r| (r.schema.as_deref(), r.name.as_str(), r.inh, r.cte))
        .collect();
    assert!(rels.contains(&(None, "customers", true, false)), "{rels:?}");
    assert!(
        rels.contains(&(Some("crm"), "leads", false, false)),
        "{rels:?}"
    );
    assert!(rels.contains(&(None, "a", true, true)), "{rels:?}");
    assert_eq!(
        rels.iter().filter(|r| r.1 == "customers" && r.3).count(),
        2,
        "{rels:?}"
    );
    let r = pg_reading::read("WITH customers AS (SELECT 1) DELETE FROM customers").unwrap();
    assert!(
        !r.statements[0].relations.iter().any(|r| r.cte),
        "the target is the table"
    );
}

#[test]
fn prefilter_sees_every_form_postgresql_decodes() {
    let s = schema();
    for sql in [
        r"SELECT E'\x63ustomers'::regclass",
        r"SELECT U&'\0063ustomers'::regclass",
        "SELECT 'cust'\n'omers'::regclass",
        "DO E'BEGIN DELETE FROM \\x63ustomers; END'",
    ] {
        assert!(s.mentions_protected_table(sql), "{sql}");
    }
    assert!(!s.mentions_protected_table("SELECT bbalance FROM pgbench_branches WHERE bid = 1"));
}

#[test]
fn numbers_older_servers_read_differently_are_refused() {
    for sql in [
        "SELECT id FROM customers WHERE id = 0x1F",
        "SELECT 0o17 AS n, email FROM customers",
        "SELECT id FROM customers WHERE id = 1_000",
    ] {
        must_refuse(sql);
    }
    one("SELECT email FROM customers WHERE id = 10 AND email = 'a'");
}

/// COPY options as PostgreSQL's grammar names them (the pre-9.0 forms read as the same
/// options): those that change how a field is read or quoted are refused, ENCODING is
/// followed only when it names UTF8.
#[test]
fn copy_options_are_followed_or_refused() {
    for sql in [
        "COPY customers (email) FROM STDIN WITH (ENCODING 'LATIN1')",
        "COPY customers (email) FROM STDIN (FORMAT csv, FORCE_NULL (email))",
        "COPY customers (email) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (email))",
        "COPY customers (email) FROM STDIN CSV FORCE NOT NULL email",
        "COPY customers (email) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
        "COPY customers (email) TO STDOUT CSV FORCE QUOTE email",
        "COPY customers (email) FROM STDIN (DEFAULT '\\D')",
        "COPY customers (email) FROM STDIN (ON_ERROR ignore)",
        "COPY customers (email) FROM STDIN (\"encoding\" 'win1252')",
    ] {
        let r = must_refuse(sql);
        // Refused by name, or earlier: sqlparser does not parse every option.
        assert!(
            r.message.contains("COPY option") || r.message.contains("could not parse"),
            "{sql}: {}",
            r.message
        );
    }
    for sql in [
        "COPY customers (email) FROM STDIN WITH (ENCODING 'UTF8')",
        "COPY customers (email) FROM STDIN WITH (ENCODING 'utf-8', FORMAT csv, HEADER)",
        "COPY customers (email) FROM STDIN DELIMITER ';' CSV HEADER QUOTE '\"'",
        "COPY customers (email) TO STDOUT (FORMAT text, NULL 'x', FREEZE false)",
    ] {
        let a = refused_or_agrees(sql);
        assert!(matches!(a, Analysis::Protected { .. }), "{sql}: {a:?}");
    }
}

/// Catalog queries sqlparser does not parse (pg_dump -t, psql's `\d`) name a protected table
/// only inside a string constant: they touch no data and are not refused. A protected table
/// PostgreSQL reads as a relation, a DDL object or in a code body still refuses the text.
#[test]
fn a_protected_name_only_in_a_constant_of_an_unparsed_text_touches_nothing() {
    let s = schema();
    for sql in [
        "SELECT c.oid FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n \
         ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' \
         COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
        "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
         ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' \
         COLLATE pg_catalog.default",
    ] {
        assert!(s.mentions_protected_table(sql));
        assert!(
            matches!(analyze(sql, &s), Analysis::Untouched { .. }),
            "{sql}"
        );
    }
    for sql in [
        "SELECT email FROM customers WHERE id OPERATOR(pg_catalog.=) 1",
        "SELECT email FROM customers WHERE name OPERATOR(pg_catalog.~) '^a' \
         COLLATE pg_catalog.default",
        "SELECT 1 FROM pg_class WHERE relname OPERATOR(pg_catalog.~) 'x' \
         COLLATE pg_catalog.default AND EXISTS (SELECT email FROM public.customers)",
        "DO $$ BEGIN DELETE FROM customers; END $$ ",
    ] {
        let a = analyze(sql, &s);
        assert!(!matches!(a, Analysis::Untouched { .. }), "{sql}: {a:?}");
    }
}

/// Every reader that asks PostgreSQL's grammar reads `sql` on a tokio worker's 2 MiB stack;
/// an overflow aborts the test process.
fn read_by_every_reader_on_a_worker_stack(sql: String) {
    let read = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let _ = crate::analyze::exposing::exposing_object(&sql);
            let _ = crate::analyze::sql_text::sql_text_calls(&sql);
            let _ = crate::analyze::settings_changed(&sql);
            let _ = crate::analyze::view_targets::view_targets(&sql);
            let _ = crate::analyze::pg_reading::read(&sql);
            let _ = crate::analyze::reading_within_limits(&sql);
            let _ = crate::protocol::tracker::sql_effects(&sql);
            let _ = crate::audit::normalize::normalize(&sql);
            let _ = crate::sql_limits::pg::parse(&sql);
        })
        .unwrap()
        .join();
    assert!(read.is_ok(), "a reader overflowed the stack");
}

/// Every reader that asks PostgreSQL's grammar (server-code calls, catalog views, settings,
/// the tracker's statements, the audit normaliser, FETCH detection, view definitions) reads or
/// refuses deeply nested text on a tokio worker's stack. libpg_query's parser is a loop, but
/// its output and its decoding recurse once per level: `1+1+...` twenty thousand terms long
/// overflowed 2 MiB there (the process aborts) until every reading went through
/// `sql_limits::pg::parse`.
#[test]
fn deep_nesting_is_read_or_refused_by_every_reader_without_exhausting_the_stack() {
    let n = 20_000;
    let shapes = [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("1{}", "+1".repeat(n)),
        format!("1{}", " || 1".repeat(n)),
        format!("{}true", "NOT ".repeat(n)),
        vec!["a = 1"; n].join(" AND "),
        format!("{}1{}", "ARRAY[".repeat(n), "]".repeat(n)),
        format!("{}1{}", "(SELECT ".repeat(n / 8), ")".repeat(n / 8)),
    ];
    for deep in shapes {
        let sql = format!(
            "SELECT query_to_xml('x', true, false, '') FROM pg_stats WHERE {deep} = 1; \
             DO $$ BEGIN EXECUTE 'x'; END $$; PREPARE p AS SELECT {deep}; \
             BEGIN ATOMIC SELECT 1; END; SET search_path = x; EXECUTE p({deep}); FETCH c"
        );
        read_by_every_reader_on_a_worker_stack(sql);
    }
}

/// The same readers on texts nesting just under the bound, which are parsed: each tree is read
/// (and dropped) on a 2 MiB stack without overflowing it. The readers that walk the tree's
/// serde form (SQL-text calls, view definitions) overflowed it here until they read on the
/// stack sized for the text (`sql_limits::pg::parse_with`).
#[test]
fn nesting_just_under_the_bound_is_read_by_every_reader_without_exhausting_the_stack() {
    type Shape = fn(usize) -> String;
    let shapes: [Shape; 7] = [
        |k| format!("{}1{}", "(".repeat(k), ")".repeat(k)),
        |k| format!("1{}", "+1".repeat(k)),
        |k| format!("'a'{}", " || 'b'".repeat(k)),
        |k| format!("{}true", "NOT ".repeat(k)),
        |k| vec!["1 = 1"; k].join(" AND "),
        |k| format!("{}1{}", "ARRAY[".repeat(k), "]".repeat(k)),
        |k| format!("{}1{}", "(SELECT ".repeat(k), ")".repeat(k)),
    ];
    let statements: [fn(&str) -> String; 2] = [
        |deep| format!("SELECT query_to_xml('x', true, false, '') WHERE {deep} IS NOT NULL"),
        |deep| format!("PREPARE p AS SELECT {deep}"),
    ];
    let bound = |sql: &str| crate::sql_limits::pg::nesting_bound(&pg_query::scan(sql).unwrap());
    for shape in shapes {
        for statement in statements {
            // The deepest text of this shape still under the bound (so it is parsed).
            let mut k = crate::sql_limits::MAX_NESTING;
            while bound(&statement(&shape(k))) > crate::sql_limits::MAX_NESTING {
                k -= 1;
            }
            let sql = statement(&shape(k));
            assert!(crate::sql_limits::pg::parse(&sql).is_ok(), "{sql:.60}");
            read_by_every_reader_on_a_worker_stack(sql);
        }
    }
}
