//! `shape_match` against PostgreSQL's scanner: every text a pattern reads must be read the
//! same way (tokens, literal places and values) by `shape::scan`, and texts whose literals
//! the scanner reads as another kind, or not as plain literals, must not match.

use super::shape::{self, Scanned};
use super::shape_match::{masked_hash, Pattern};

fn pattern(sql: &str) -> Pattern {
    let scanned = shape::scan(sql).unwrap_or_else(|| panic!("no shape: {sql}"));
    Pattern::of(sql, &scanned).unwrap_or_else(|| panic!("no pattern: {sql}"))
}

fn literals(s: &Scanned) -> Vec<(usize, String)> {
    s.literals
        .iter()
        .map(|l| (l.token, l.value.clone()))
        .collect()
}

/// The pattern of `source` reads `sql` exactly as the scanner does, or not at all.
fn agrees(source: &str, sql: &str) -> bool {
    let Some(read) = pattern(source).read(sql) else {
        return false;
    };
    let scanned =
        shape::scan(sql).unwrap_or_else(|| panic!("matched, scanner says no shape: {sql}"));
    assert_eq!(read.tokens, scanned.tokens, "{sql}");
    assert_eq!(literals(&read), literals(&scanned), "{sql}");
    true
}

#[test]
fn new_values_of_plain_literals_are_read_as_the_scanner_reads_them() {
    let source = "SELECT id, email FROM t WHERE email = 'u1@x' AND age = 5 AND amount < 1.5";
    for sql in [
        "SELECT id, email FROM t WHERE email = 'u1@x' AND age = 5 AND amount < 1.5",
        "SELECT id, email FROM t WHERE email = '' AND age = 0 AND amount < 0.0",
        "SELECT id, email FROM t WHERE email = 'it''s' AND age = 2147483647 AND amount < 12.345",
        "SELECT id, email FROM t WHERE email = '''' AND age = 10 AND amount < 99999999999.5",
        "SELECT id, email FROM t WHERE email = 'ünïcødé -- /* $$ \" ;' AND age = 7 AND amount < 1.0",
    ] {
        assert!(agrees(source, sql), "{sql}");
    }
}

#[test]
fn texts_the_scanner_reads_otherwise_do_not_match() {
    let source = "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5";
    for sql in [
        // Other whitespace or spelling: the scanner's path (a shape hit there).
        "SELECT id FROM t WHERE email = 'a' AND age =5 AND amount < 1.5",
        "select id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5",
        // An integer beyond int4 is an FCONST; leading zeros, fractions, exponents differ.
        "SELECT id FROM t WHERE email = 'a' AND age = 2147483648 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'a' AND age = 007 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'a' AND age = 5.5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 15",
        "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5e3",
        // Strings the shape path never takes, or that are not one token.
        "SELECT id FROM t WHERE email = 'a\\b' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'a\nb' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'pgshroud_guard_x' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'PgShroud' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'ü xPGSHROUDy' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = E'a' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = $$a$$ AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'a' 'b' AND age = 5 AND amount < 1.5",
        "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5 ",
        "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5; DROP TABLE t",
        "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < ",
        "SELECT id FROM t WHERE email = 'a",
    ] {
        assert!(!agrees(source, sql), "{sql}");
    }
}

#[test]
fn quotes_in_comments_identifiers_and_dollar_quotes_stay_fixed_text() {
    let cases = [
        (
            "SELECT /* it's /* nested ' */ still */ id FROM t WHERE email = 'a' -- don't\n",
            "SELECT /* it's /* nested ' */ still */ id FROM t WHERE email = 'bb''c' -- don't\n",
        ),
        (
            "SELECT \"o'k 1\", \"a\"\"'\" FROM t WHERE age = 5 -- it's 5\n",
            "SELECT \"o'k 1\", \"a\"\"'\" FROM t WHERE age = 61 -- it's 5\n",
        ),
        (
            "SELECT t1.id FROM t AS t1 WHERE t1.age = 5 LIMIT 10",
            "SELECT t1.id FROM t AS t1 WHERE t1.age = 6 LIMIT 200",
        ),
    ];
    for (source, sql) in cases {
        assert!(agrees(source, sql), "{sql}");
        // Texts of one pattern share the look-up key.
        assert_eq!(masked_hash(1, source), masked_hash(1, sql), "{sql}");
    }
    assert_ne!(
        masked_hash(1, "SELECT 1 FROM t WHERE age = 5"),
        masked_hash(2, "SELECT 1 FROM t WHERE age = 5"),
        "the scope is part of the key"
    );
}

/// Random values, tricky ones included, pasted into fixed texts: whatever the pattern reads,
/// the scanner reads alike.
#[test]
fn random_values_agree_with_the_scanner() {
    let sources = [
        "SELECT id, email FROM t WHERE email = {} AND age = {}",
        "INSERT INTO t (email, age, amount) VALUES ({}, {}, {})",
        "SELECT x FROM t WHERE a IN ({},{}) /* ' */ LIMIT {}",
        "UPDATE t SET email={} WHERE id={}",
    ];
    let pieces = [
        "'a'",
        "''",
        "'it''s'",
        "''''",
        "'x'''",
        "'a''b''c'",
        "'--'",
        "'/*'",
        "'$$'",
        "'\"'",
        "'1'",
        "0",
        "1",
        "42",
        "2147483647",
        "2147483648",
        "99999999999",
        "007",
        "1.5",
        "0.0",
        "12.3456",
        "1.",
        ".5",
        "1e5",
        "'a\\'",
        "'a'||'b'",
        "'ü'",
        "'pgshroud'",
        "$1",
        "'\n'",
    ];
    let mut seed: u64 = 0x5eed_5eed;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let fill = |template: &str, next: &mut dyn FnMut(usize) -> usize| {
        let mut sql = template.to_owned();
        while let Some(at) = sql.find("{}") {
            sql.replace_range(at..at + 2, pieces[next(pieces.len())]);
        }
        sql
    };
    let (mut matched, mut tried) = (0, 0);
    for _ in 0..8000 {
        let template = sources[next(sources.len())];
        let source = fill(template, &mut next);
        let Some(scanned) = shape::scan(&source) else {
            continue;
        };
        let Some(pattern) = Pattern::of(&source, &scanned) else {
            continue;
        };
        let sql = fill(template, &mut next);
        tried += 1;
        if let Some(read) = pattern.read(&sql) {
            matched += 1;
            let scanned = shape::scan(&sql).unwrap_or_else(|| panic!("{source} / {sql}"));
            assert_eq!(read.tokens, scanned.tokens, "{source} / {sql}");
            assert_eq!(literals(&read), literals(&scanned), "{source} / {sql}");
            assert_eq!(
                scanned.key,
                shape::scan(&source).expect("source").key,
                "{sql}"
            );
        }
    }
    assert!(
        matched > 100 && tried > 1000,
        "matched {matched} of {tried}"
    );
}
