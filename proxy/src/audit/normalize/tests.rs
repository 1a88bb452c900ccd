use super::*;

fn one(sql: &str) -> NormalStatement {
    let n = normalize(sql);
    assert_eq!(n.statements.len(), 1, "{sql}: {n:?}");
    n.statements[0].clone()
}

#[test]
fn literals_of_every_kind_become_placeholders() {
    let cases = [
        (
            "SELECT * FROM t WHERE a = 'secret'",
            "SELECT * FROM t WHERE a = ?",
        ),
        ("SELECT 42, -3.5e10, .5", "SELECT ?, -?, ?"),
        ("SELECT E'it\\'s secret\\n'", "SELECT ?"),
        ("SELECT $$secret$$, $tag$secret$tag$", "SELECT ?, ?"),
        (
            "SELECT ARRAY['secret1', 'secret2'], '{1,2}'::int[]",
            "SELECT ARRAY[?, ?], ?::int[]",
        ),
        (
            "SELECT B'1010', X'ff', U&'secr\\0065t', N'secret'",
            "SELECT ?, ?, ?, N?",
        ),
        ("SELECT 'it''s secret'", "SELECT ?"),
        ("SELECT date '2020-01-01'", "SELECT date ?"),
        (
            "INSERT INTO t (a, b) VALUES ('x', 1), ('y', 2)",
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        ),
        (
            "ALTER ROLE bob PASSWORD 'hunter2'",
            "ALTER ROLE bob PASSWORD ?",
        ),
    ];
    for (sql, want) in cases {
        let got = one(sql);
        assert_eq!(got.text, want, "{sql}");
        for secret in ["secret", "hunter2", "42", "2020", "1010", "ff"] {
            assert!(!got.text.contains(secret), "{sql} leaked {secret}");
        }
    }
}

#[test]
fn parameters_names_and_casts_are_kept() {
    let got = one("select u.email from public.users u where u.id = $1::int8");
    assert_eq!(
        got.text,
        "select u.email from public.users u where u.id = $1::int8"
    );
    assert_eq!(got.tables, vec!["public.users"]);
}

#[test]
fn comments_are_dropped_and_whitespace_collapsed() {
    let got = one("SELECT /* token=abc */ a\n\t FROM t -- password=x\n");
    assert_eq!(got.text, "SELECT a FROM t");
}

#[test]
fn untokenisable_text_is_not_shown_at_all() {
    let got = one("SELECT 'unterminated secret");
    assert_eq!(got.text, UNREADABLE);
    assert_eq!(got.kind, "select");
    assert!(!got.text.contains("secret"));
}

#[test]
fn fingerprint_is_equal_for_the_same_shape_and_different_otherwise() {
    let a = one("SELECT * FROM t WHERE id = 1");
    let b = one("select *   from T where ID = 99 /* x */");
    let c = one("SELECT * FROM t WHERE id = 'x'");
    let d = one("SELECT * FROM t WHERE name = 1");
    let e = one("SELECT * FROM \"T\" WHERE id = 1");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, c.fingerprint);
    assert_ne!(a.fingerprint, d.fingerprint);
    assert_ne!(a.fingerprint, e.fingerprint);
    assert_eq!(a.fingerprint.len(), 16);
}

#[test]
fn a_simple_query_splits_into_statements() {
    let n = normalize("BEGIN; INSERT INTO t VALUES ('a;b'); COMMIT;");
    let texts: Vec<_> = n.statements.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["BEGIN", "INSERT INTO t VALUES (?)", "COMMIT"]);
    assert_eq!(n.statement(1).kind, "insert");
    assert_eq!(n.statement(7).text, "COMMIT");
    assert_eq!(n.whole().text, "BEGIN; INSERT INTO t VALUES (?); COMMIT");
}

#[test]
fn kinds_and_classes() {
    let cases = [
        ("SELECT 1", "select", "READ"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "select", "READ"),
        ("WITH x AS (SELECT 1) DELETE FROM t", "delete", "WRITE"),
        ("INSERT INTO t VALUES (1)", "insert", "WRITE"),
        ("UPDATE t SET a = 1", "update", "WRITE"),
        ("DELETE FROM t", "delete", "WRITE"),
        ("TRUNCATE t", "ddl", "WRITE"),
        ("COPY t FROM STDIN", "copy", "WRITE"),
        ("COPY t TO STDOUT", "copy", "READ"),
        ("CREATE TABLE t (a int)", "ddl", "DDL"),
        ("CREATE ROLE r", "ddl", "ROLE"),
        ("GRANT SELECT ON t TO r", "ddl", "ROLE"),
        ("DO $$ BEGIN END $$", "other", "FUNCTION"),
        ("BEGIN", "transaction", "MISC"),
        ("SET search_path = public", "utility", "MISC"),
        ("frobnicate", "other", "MISC"),
    ];
    for (sql, kind, class) in cases {
        let s = one(sql);
        assert_eq!((s.kind, s.class), (kind, class), "{sql}");
    }
}

#[test]
fn tables_are_guessed_from_tokens() {
    let s = one("SELECT * FROM a, s.b AS x JOIN \"C\" ON true WHERE id IN (SELECT id FROM d)");
    assert_eq!(s.tables, vec!["a", "s.b", "C", "d"]);
    let s = one("SELECT * FROM generate_series(1, 3)");
    assert!(s.tables.is_empty());
    assert_eq!(one("INSERT INTO t (a) VALUES (1)").tables, vec!["t"]);
    assert_eq!(one("COPY t (a) FROM STDIN").tables, vec!["t"]);
    assert_eq!(one("UPDATE t SET a = 1").tables, vec!["t"]);
}

#[test]
fn text_in_another_encoding_is_not_shown() {
    let got = normalize_in("INSERT INTO t VALUES ('secret')", TextMode::OtherEncoding);
    assert_eq!(got.statements[0].text, OTHER_ENCODING);
    assert_eq!(got.statements[0].kind, "insert");
}

#[test]
fn cache_returns_the_same_normalisation() {
    let cache = NormalizeCache::default();
    let a = cache.get("SELECT 1");
    let b = cache.get("SELECT 1");
    assert!(Arc::ptr_eq(&a, &b));
}

/// With standard_conforming_strings off a backslash escapes inside '...', a reading
/// PostgreSQL's scanner (as libpg_query carries it) does not offer: a text whose plain strings
/// hold a backslash is not shown; any other reads the same either way and is shown.
#[test]
fn backslash_strings_are_not_shown_when_standard_strings_are_off() {
    let sql = r"SELECT 'it\'s secret', 'x' FROM t WHERE a = E'\'also secret'";
    let got = normalize_in(sql, TextMode::BackslashEscapes);
    assert_eq!(got.statements.len(), 1);
    assert_eq!(got.statements[0].text, BACKSLASH_STRINGS);
    assert_eq!(got.statements[0].kind, "select");
    // Read the standard way, the same text shows `secret` as a word: that reading is wrong
    // for this session, so it must not be used.
    let standard = normalize_in(sql, TextMode::Standard);
    assert!(standard.statements[0].text.contains("secret"));
    for sql in [
        r"SELECT 'plain', E'esc\'aped', $$dollar\$$ FROM t",
        "SELECT 1 FROM t /* \\ */ WHERE a = 'b'",
    ] {
        let got = normalize_in(sql, TextMode::BackslashEscapes);
        assert_eq!(got, normalize(sql), "{sql}");
        assert!(!got.statements[0].text.contains("plain"));
    }
    // `N'...'` is a plain string after a keyword; continuations stay plain.
    for sql in [r"SELECT N'a\', 'b'", "SELECT 'a'\n'\\', 'b'"] {
        let got = normalize_in(sql, TextMode::BackslashEscapes);
        assert_eq!(got.statements[0].text, BACKSLASH_STRINGS, "{sql}");
    }
}

/// PostgreSQL's lexical corners, each with what audit shows. The old reading (sqlparser's
/// tokenizer) showed what the comment after each case says.
#[test]
fn lexical_corners_read_as_the_server_reads_them() {
    let cases = [
        // old: `SELECT ?, ?o17, ?b101, ?, ?`, digits of the values shown.
        (
            "SELECT 0x1F, 0o17, 0b101, 1_000_000, 1.5e-3",
            "SELECT ?, ?, ?, ?, ?",
        ),
        // old: `SELECT ? ||/* token=abc */?`, the comment shown.
        ("SELECT 'a' ||/* token=abc */'b'", "SELECT ? || ?"),
        // old: `SELECT ? @-- password hunter2 , ?`: `--` ends an operator and starts a comment.
        ("SELECT 2 @-- password hunter2\n, 3", "SELECT ? @ , ?"),
        // old: `SELECT ? ?`: a string continued across a newline is one constant.
        ("SELECT 'sec'\n'ret'", "SELECT ?"),
        // old: not shown at all (`$1` then a dollar-quoted string).
        ("SELECT $1$q$secret$q$", "SELECT $1?"),
        // old: `"x"y"`, not what the client wrote.
        (
            "SELECT 'a'::text AS \"x\"\"y\"",
            "SELECT ?::text AS \"x\"\"y\"",
        ),
        ("SELECT /* outer /* inner */ 'secret' */ 1", "SELECT ?"),
        ("SELECT 1 */* 'secret' */ 2", "SELECT ? * ?"),
        ("SELECT 1 --- 'secret'\n, 2", "SELECT ? , ?"),
        (
            "SELECT $a$ it's $$ secret $a$, $_x$secret$_x$, $é$secret$é$",
            "SELECT ?, ?, ?",
        ),
        ("SELECT x$a$, $a$secret$a$", "SELECT x$a$, ?"),
        ("SELECT E'\\'' , 'secret'", "SELECT ? , ?"),
        ("SELECT E'\\\\', col FROM t", "SELECT ?, col FROM t"),
        ("SELECT U&'!0073ecret' UESCAPE '!'", "SELECT ? UESCAPE ?"),
        (
            "SELECT U&\"!0061b\" UESCAPE '!' FROM t",
            "SELECT U&\"!0061b\" UESCAPE ? FROM t",
        ),
        ("SELECT b'1', x'1F', n'secret'", "SELECT ?, ?, n?"),
        ("SELECT 1 != 2, 3 <> 4", "SELECT ? != ?, ? <> ?"),
    ];
    for (sql, want) in cases {
        let got = one(sql);
        assert_eq!(got.text, want, "{sql}");
        for secret in ["secret", "hunter2", "token", "17", "101", "1F", "ret"] {
            assert!(!got.text.contains(secret), "{sql} leaked {secret}");
        }
    }
    // Text PostgreSQL's scanner rejects (trailing junk after a number, since PostgreSQL 15)
    // is not shown; the old reading showed `?abc`.
    assert_eq!(one("SELECT 100abc").text, UNREADABLE);
    assert_eq!(one("SELECT /* unterminated").text, UNREADABLE);
    assert_eq!(one("SELECT \"unterminated").text, UNREADABLE);
}

/// A `BEGIN ATOMIC` body's `;` do not end the statement (the old reading made four
/// statements of this text, so later statements were audited with the wrong text).
#[test]
fn sql_standard_bodies_are_one_statement() {
    let n = normalize(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 'secret'; END; SELECT 2",
    );
    let texts: Vec<_> = n.statements.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT ? SELECT ? END",
            "SELECT ?"
        ]
    );
    assert_eq!(n.statement(1).kind, "select");
}

/// The fingerprint is the one audit has always computed (the README's example), equal for
/// `!=` and `<>`, which the server reads as one operator.
#[test]
fn fingerprints_are_stable() {
    assert_eq!(
        one("SELECT email FROM customers WHERE email = $1").fingerprint,
        "9ff813f0a83e4fac"
    );
    assert_eq!(
        one("SELECT 1 WHERE a != 2").fingerprint,
        one("SELECT 1 WHERE a <> 2").fingerprint
    );
}

#[test]
fn tables_past_only_and_quoted_names_are_found() {
    let s = one("SELECT * FROM ONLY parent p, \"select\" s JOIN public.\"My\"\"T\" USING (id)");
    assert_eq!(s.tables, vec!["parent", "select", "public.My\"T"]);
    let s = one("SELECT * FROM t AS x, u AS \"Y\", v w");
    assert_eq!(s.tables, vec!["t", "u", "v"]);
}
