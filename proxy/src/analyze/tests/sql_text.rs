use super::*;

fn literals(sql: &str) -> Vec<String> {
    match sql_text_calls(sql) {
        SqlText::Literals(texts) => texts,
        other => panic!("{sql}: {other:?}"),
    }
}

fn unreadable(sql: &str) -> String {
    match sql_text_calls(sql) {
        SqlText::Unreadable(what) => what,
        other => panic!("{sql}: expected unreadable, got {other:?}"),
    }
}

const SECRET_QUERY: &str = "select email from customers";

#[test]
fn the_scan_misses_no_spelling_the_parser_would_read() {
    for sql in [
        "SELECT query_to_xml('x', true, false, '')",
        "select QUERY_TO_XML('x', true, false, '')",
        "SELECT \"query_to_xml\"('x', true, false, '')",
        "SELECT U&\"query\\005fto\\005fxml\"('x', true, false, '')",
        "DO $$ BEGIN EXECUTE 'select 1'; END $$",
        "DO E'BEGIN \\x45XECUTE ''select 1''; END'",
        "DO $$ BEGIN PERFORM 1; END $$ LANGUAGE plperl",
    ] {
        assert!(may_run_sql_text(sql), "{sql}");
    }
    assert!(!may_run_sql_text(
        "SELECT email FROM customers WHERE id = 1"
    ));
}

#[test]
fn literal_arguments_are_collected() {
    assert_eq!(
        literals("SELECT query_to_xml('select email from customers', true, false, '')"),
        [SECRET_QUERY, ""]
    );
    assert_eq!(
        literals("SELECT pg_catalog.table_to_xml('customers'::regclass, true, false, '')"),
        ["customers", ""]
    );
    assert_eq!(
        literals("SELECT U&\"query\\005fto\\005fxml\"('select 1', true, false, '')"),
        ["select 1", ""]
    );
    assert_eq!(
        literals("SELECT lower(query_to_xml('select 1', true, false, '')::text)"),
        ["select 1", ""]
    );
    assert_eq!(
        literals("SELECT query_to_xml(query => 'select 1', nulls => true, tableforest => false, targetns => '')"),
        ["select 1", ""]
    );
    assert_eq!(sql_text_calls("EXECUTE my_statement(1)"), SqlText::None);
    assert_eq!(sql_text_calls("SELECT 'query_to_xml'"), SqlText::None);
    assert_eq!(
        sql_text_calls("SELECT execute_count, dblink_host FROM t"),
        SqlText::None
    );
}

/// Each string below is decoded by PostgreSQL's scanner before the function sees it; the
/// old reading (sqlparser's tokenizer) refused the ones marked, or read them wrongly.
#[test]
fn arguments_are_read_as_the_server_decodes_them() {
    for sql in [
        // Continued across a newline: one constant to the server (sqlparser: a parse error).
        "SELECT query_to_xml('select email from cust'\n'omers', true, false, '')",
        // UESCAPE (sqlparser: a parse error).
        "SELECT query_to_xml(U&'select email from !0063ustomers' UESCAPE '!', true, false, '')",
        "SELECT query_to_xml(E'select email from \\x63ustomers', true, false, '')",
        "SELECT query_to_xml(e'select email from \\143ustomers', true, false, '')",
        "SELECT query_to_xml($q$select email from customers$q$, true, false, '')",
        "SELECT query_to_xml($é$select email from customers$é$, true, false, '')",
        "SELECT U&\"query!005fto!005fxml\" UESCAPE '!' ('select email from customers', true, false, '')",
        // `*/*` is the operator `*` followed by a comment.
        "SELECT 1 */* x */ 2, query_to_xml('select email from customers', true, false, '')",
        "SELECT $a$ $$ $a$, query_to_xml('select email from customers', true, false, '')",
    ] {
        assert_eq!(literals(sql), [SECRET_QUERY, ""], "{sql}");
    }
    // Comments, nested ones included, and dollar quotes hold no call.
    for sql in [
        "SELECT /* /* */ query_to_xml('select email from customers', true, false, '') */ 1",
        "SELECT 1 --- query_to_xml('select email from customers', true, false, '')\n",
        "SELECT $x$ query_to_xml('select email from customers', true, false, '') $x$",
    ] {
        assert_eq!(sql_text_calls(sql), SqlText::None, "{sql}");
    }
}

#[test]
fn calls_in_from_and_in_sql_standard_bodies_are_read() {
    // sqlparser could not walk these, so they were refused whatever they read.
    assert_eq!(
        literals("SELECT * FROM dblink('dbname=x', 'select email from customers') AS t(x text)"),
        ["dbname=x", SECRET_QUERY]
    );
    assert_eq!(
        literals("SELECT * FROM LATERAL ts_stat('select 1') s"),
        ["select 1"]
    );
    assert_eq!(
        literals("CREATE FUNCTION f() RETURNS xml LANGUAGE sql RETURN query_to_xml('select email from customers', true, false, '')"),
        [SECRET_QUERY, ""]
    );
    assert_eq!(
        literals("CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT query_to_xml('select email from customers', true, false, ''); END"),
        [SECRET_QUERY, ""]
    );
}

#[test]
fn computed_arguments_schemas_cursors_and_code_are_unreadable() {
    for sql in [
        "SELECT query_to_xml('select email from cust' || 'omers', true, false, '')",
        "SELECT query_to_xml($1, true, false, '')",
        "SELECT query_to_xml('select 1' COLLATE \"C\", true, false, '')",
        "SELECT table_to_xml(16384, true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        "SELECT cursor_to_xml('c', 10, true, false, '')",
        "SELECT * FROM dblink(current_setting('x'), 'select 1') AS t(x int)",
        "DO $$ BEGIN EXECUTE 'select 1'; END $$",
        "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'select 1'; RETURN ''; END $$",
        "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()",
        "SELECT query_to_xml('select 1', true, false, '') FROM t WHERE syntax error",
    ] {
        assert!(!unreadable(sql).is_empty(), "{sql}");
    }
}

/// Code bodies are read as PostgreSQL decodes them, and code in a language pgshroud cannot
/// read is refused: plperl's `spi_exec_query` runs SQL without any of the trigger words.
#[test]
fn code_is_judged_by_its_decoded_body_and_its_language() {
    for sql in [
        // `\x45` is `E`: the body PostgreSQL runs says EXECUTE.
        "DO E'BEGIN \\x45XECUTE ''select email from customers''; END'",
        "DO $$ BEGIN PERFORM query_to_xml('select 1', true, false, ''); END $$",
        "DO U&'BEGIN \\0045XECUTE ''select 1''; END'",
        "DO $$ my $r = spi_exec_query('select email from customers'); $$ LANGUAGE plperl",
        "DO LANGUAGE plpython3u $$ plpy.cursor('select email from customers') $$",
        "CREATE FUNCTION f() RETURNS xml LANGUAGE internal AS 'query_to_xml'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1 FROM dblink(''x'', ''y'') AS t(a int)'",
    ] {
        assert!(!unreadable(sql).is_empty(), "{sql}");
    }
    for sql in [
        "DO $$ BEGIN PERFORM 1; END $$",
        "DO LANGUAGE plpgsql 'BEGIN PERFORM 1; END'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ] {
        assert_eq!(sql_text_calls(sql), SqlText::None, "{sql}");
    }
}

/// A function that runs SQL text handed over by name rather than called: the old reading
/// passed these (`SqlText::None`), though the operator or cast then calls query_to_xml on
/// whatever it is given.
#[test]
fn a_runner_named_outside_a_call_is_unreadable() {
    for sql in [
        "CREATE OPERATOR @@ (FUNCTION = query_to_xml, LEFTARG = text, RIGHTARG = bool)",
        "CREATE CAST (text AS xml) WITH FUNCTION query_to_xml(text, bool, bool, text)",
        "CREATE AGGREGATE a(text) (SFUNC = dblink_exec, STYPE = text)",
    ] {
        assert!(unreadable(sql).contains("named where"), "{sql}");
    }
}
