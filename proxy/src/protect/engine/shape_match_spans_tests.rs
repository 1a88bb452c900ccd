//! [`TextShape::literal_spans`] against [`Pattern::read`] (which `shape_match_tests.rs` holds
//! to PostgreSQL's scanner): the same texts match, with the literal tokens at the same places.

use super::shape::{self, Scanned};
use super::{Pattern, TextShape};

/// Both readings of `sql` by the pattern of `source`: they must agree.
fn agree(source: &str, sql: &str) -> bool {
    let scanned = shape::scan(source).expect("a shape");
    let pattern = Pattern::of(source, &scanned).expect("a pattern");
    let read: Option<Scanned> = pattern.read(sql);
    let shape = TextShape::of(source).expect("a pattern");
    // Holding a stale span: the match must clear it.
    let mut spans = Vec::new();
    spans.push(7..9);
    let matched = shape.literal_spans(sql, &mut spans);
    assert_eq!(matched, read.is_some(), "{source} / {sql}");
    if let Some(read) = read {
        let expected: Vec<_> = read
            .literals
            .iter()
            .map(|l| read.tokens[l.token].clone())
            .collect();
        assert_eq!(spans, expected, "{source} / {sql}");
        assert_eq!(shape.literal_count(), expected.len());
    }
    matched
}

#[test]
fn spans_agree_with_the_pattern_s_reading() {
    let source = "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5";
    for (sql, matches) in [
        (source, true),
        (
            "SELECT id FROM t WHERE email = 'it''s' AND age = 2147483647 AND amount < 0.25",
            true,
        ),
        (
            "SELECT id FROM t WHERE email = '' AND age = 0 AND amount < 10.0",
            true,
        ),
        (
            "SELECT id FROM t WHERE email = 'a' AND age = 2147483648 AND amount < 1.5",
            false,
        ),
        (
            "SELECT id FROM t WHERE email = 'a' AND age = 05 AND amount < 1.5",
            false,
        ),
        (
            "SELECT id FROM t WHERE email = 'a\\' AND age = 5 AND amount < 1.5",
            false,
        ),
        (
            "SELECT id FROM t WHERE email = 'PGShroud_x' AND age = 5 AND amount < 1.5",
            false,
        ),
        (
            "SELECT id FROM t WHERE email = 'a\0' AND age = 5 AND amount < 1.5",
            false,
        ),
        (
            "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 15",
            false,
        ),
        (
            "SELECT id FROM t WHERE email = 'a' AND age = 5 AND amount < 1.5 ",
            false,
        ),
        ("SELECT id FROM t WHERE email = 'a", false),
        ("", false),
    ] {
        assert_eq!(agree(source, sql), matches, "{sql}");
    }
    assert!(agree("SELECT 1", "SELECT 7"));
    assert!(agree("BEGIN", "BEGIN"));
    assert!(!agree("BEGIN", "BEGIN;"));
}

#[test]
fn random_values_agree() {
    let sources = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
        "SELECT x FROM t WHERE a IN ({},{}) /* ' */ LIMIT {}",
        "UPDATE t SET email={} WHERE id={}",
    ];
    let pieces = [
        "'a'",
        "''",
        "'it''s'",
        "''''",
        "'x'''",
        "'--'",
        "'/*'",
        "'$$'",
        "'pgshroud'",
        "'\n'",
        "'a\\'",
        "0",
        "1",
        "42",
        "2147483647",
        "2147483648",
        "007",
        "1.5",
        "0.0",
        "1.",
        ".5",
        "1e5",
        "$1",
        "'ü'",
    ];
    let mut seed: u64 = 0x5a4e_5eed;
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
    for _ in 0..3000 {
        let template = sources[next(sources.len())];
        let source = fill(template, &mut next);
        if TextShape::of(&source).is_none() {
            continue;
        }
        let sql = fill(template, &mut next);
        tried += 1;
        matched += usize::from(agree(&source, &sql));
    }
    assert!(matched > 100 && tried > 500, "matched {matched} of {tried}");
}

#[test]
fn numbers_stand_apart_only_between_separators() {
    let apart = |sql: &str| TextShape::of(sql).expect("a pattern").numbers_stand_apart();
    assert!(apart(
        "SELECT abalance FROM pgbench_accounts WHERE aid = 123;"
    ));
    assert!(apart("SELECT f(1,2.5) + 3"));
    assert!(apart("SELECT 'a''1'"));
    assert!(apart("SELECT 1"));
    // PostgreSQL 15 reads `1abc` as the number 1 and the name abc (libpg_query's scanner
    // refuses it: no pattern at all).
    assert!(TextShape::of("SELECT 1abc").is_none_or(|s| !s.numbers_stand_apart()));
    assert!(TextShape::of("SELECT $$x$$1").is_none_or(|s| !s.numbers_stand_apart()));
    assert!(!apart("SELECT \"a\"1"));
    // Next to another literal: a word straddling both would hold its quote.
    assert!(apart("SELECT 1 FROM t WHERE x = 'a'1"));
}
