//! The shape pattern match (`proxy/src/protect/engine/shape_match.rs`) attacked as a hostile
//! client would, against the real PostgreSQL, as a role that is not a superuser: a text that
//! equals a primed pattern byte for byte outside its literals, but that PostgreSQL may read
//! otherwise, must be sealed, answered or refused exactly as a fresh proxy (one whose caches
//! never saw the primer) handles it. Nothing here may store plaintext or find a row the
//! fresh proxy does not find.
//!
//! Every case runs on its own pair of proxies (the caches live in a proxy and are shared by
//! its sessions): the primed one sees the primer and then the variant; the fresh one sees only
//! the variant. The metrics of the primed proxy show the shortcut was really taken where a
//! case says it must be.

use pgshroud_integration_tests::protected::{code, rows, Fixture, MASTER_KEY};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::{cluster, users};

/// What a simple Query gave: its rows as text, or the SQLSTATE it was refused with.
type Outcome = Result<Vec<Vec<Option<String>>>, String>;

async fn client(proxy: &TestProxy, db: &str) -> tokio_postgres::Client {
    proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, db)
        .await
        .expect("login through the proxy")
}

async fn run(c: &tokio_postgres::Client, sql: &str) -> Outcome {
    c.simple_query(sql)
        .await
        .map(|m| rows(&m))
        .map_err(|e| code(&e))
}

async fn fresh_proxy() -> TestProxy {
    Fixture::proxy_for(MASTER_KEY).await.1
}

/// How many plans of `proxy` were filled from a shape (the pattern match or a scanned shape).
fn shape_hits(proxy: &TestProxy) -> u64 {
    let text = proxy.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix("pgshroud_plan_cache_lookups_total{result=\"shape_hit\"} "))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Stored emails and ages that are not envelopes (plaintext), read directly.
async fn plaintext_rows(db: &str) -> i64 {
    let admin = cluster().admin_client_for(db).await;
    admin
        .query_one(
            "SELECT count(*) FILTER (WHERE (email IS NOT NULL AND get_byte(email, 0) <> 2) \
             OR (age IS NOT NULL AND get_byte(age, 0) <> 2)) FROM driver_check",
            &[],
        )
        .await
        .expect("direct count")
        .get(0)
}

/// PostgreSQL's own reading of a string literal, asked directly (standard settings).
async fn postgres_reads(db: &str, literal: &str) -> Result<String, String> {
    let admin = cluster().admin_client_for(db).await;
    admin
        .simple_query(&format!("SELECT ({literal})::text"))
        .await
        .map_err(|e| code(&e))
        .map(|m| rows(&m)[0][0].clone().unwrap_or_default())
}

/// An insert whose email literal is written as `email` (PostgreSQL syntax, raw).
fn insert(email: &str, age: &str, tag: &str) -> String {
    format!("INSERT INTO driver_check (email, age, note) VALUES ({email}, {age}, '{tag}')")
}

struct Case {
    /// The text that leaves the pattern (run through the primed proxy only).
    primer: String,
    /// The attacking text (run through both proxies).
    variant: String,
    /// Whether the primed proxy must have filled the variant's plan from a shape.
    shortcut: bool,
}

/// Runs `case` as `tag` (rows it writes carry names starting with the tag) and checks the
/// primed proxy answers as the fresh one does, stores no plaintext, and that rows it
/// wrote decrypt alike.
#[must_use = "the outcome tells whether rows were written"]
async fn same_as_fresh(f: &Fixture, tag: &str, case: &Case) -> Outcome {
    let primed = fresh_proxy().await;
    let c = client(&primed, &f.db).await;
    run(&c, &case.primer)
        .await
        .unwrap_or_else(|e| panic!("primer {:?}: {e}", case.primer));
    let hits = shape_hits(&primed);
    let got = run(&c, &case.variant).await;
    let took_shortcut = shape_hits(&primed) > hits;
    if case.shortcut {
        assert!(
            took_shortcut,
            "{tag}: {:?} did not take the shortcut",
            case.variant
        );
    }
    let fresh = fresh_proxy().await;
    let fc = client(&fresh, &f.db).await;
    let expected = run(&fc, &case.variant).await;
    match (&got, &expected) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{tag}: {:?}", case.variant),
        (Err(a), Err(b)) => assert_eq!(a, b, "{tag}: {:?}", case.variant),
        _ => panic!(
            "{tag}: {:?}: primed {got:?}, fresh {expected:?} (shortcut: {took_shortcut})",
            case.variant
        ),
    }
    assert_eq!(plaintext_rows(&f.db).await, 0, "{tag}: plaintext stored");
    fc.simple_query("SELECT 1")
        .await
        .expect("fresh session lives on");
    c.simple_query("SELECT 1")
        .await
        .expect("primed session lives on");
    expected
}

/// Both proxies wrote the variant's row (same name); their decrypted emails and ages must be
/// equal, and the email must be PostgreSQL's own reading of `literal` (when it has one).
async fn rows_agree(f: &Fixture, name: &str, literal: &str, outcome: &Outcome) {
    let reader = fresh_proxy().await;
    let c = client(&reader, &f.db).await;
    let got = run(
        &c,
        &format!("SELECT email, age FROM driver_check WHERE note = '{name}' ORDER BY id"),
    )
    .await
    .expect("read back");
    let admin = cluster().admin_client_for(&f.db).await;
    let stored: Vec<Option<Vec<u8>>> = admin
        .query(
            "SELECT email FROM driver_check WHERE note = $1 ORDER BY id",
            &[&name],
        )
        .await
        .expect("direct read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    if outcome.is_err() {
        // Both proxies refused it (with the same SQLSTATE: `same_as_fresh`).
        assert!(got.is_empty(), "{name}: refused, yet written: {got:?}");
        return;
    }
    match postgres_reads(&f.db, literal).await {
        Ok(value) => {
            assert_eq!(got.len(), 2, "{name}: both proxies wrote a row: {got:?}");
            assert_eq!(got[0], got[1], "{name}: primed and fresh rows differ");
            assert_eq!(
                got[0][0].as_deref(),
                Some(value.as_str()),
                "{name}: {literal}"
            );
            // Equality columns are sealed deterministically: the same bytes either way.
            assert_eq!(stored[0], stored[1], "{name}: stored envelopes differ");
            let plain = value.as_bytes();
            assert!(
                !stored[0]
                    .as_deref()
                    .unwrap_or_default()
                    .windows(plain.len().max(1))
                    .any(|w| w == plain)
                    || plain.is_empty(),
                "{name}: the value is in the stored bytes"
            );
        }
        Err(_) => assert!(
            got.is_empty(),
            "{name}: a row PostgreSQL cannot read: {got:?}"
        ),
    }
}

/// Email literals an attacker writes where the pattern has a plain `'...'`, each checked
/// against the fresh proxy and PostgreSQL's own reading.
const EMAIL_LITERALS: &[(&str, bool)] = &[
    // Plain values: the shortcut must take them.
    ("'it''s@x'", true),
    ("''''", true),
    ("''", true),
    ("'a */ b -- c $$ d /* e'", true),
    ("'ü@ẍ.org ; \"q\"'", true),
    ("'x'' OR ''1''=''1'", true),
    ("'2147483648'", true),
    // Not plain: prefixes, escapes, continuations, line breaks, names of pgshroud.
    ("E'a\\'b'", false),
    ("E'\\x41'", false),
    ("U&'\\0041'", false),
    ("N'nat'", false),
    ("B'101'", false),
    ("X'1F'", false),
    ("'a\\'", false),
    ("'a'\n'b'", false),
    ("'a' -- c\n'b'", false),
    ("'line\nbreak'", false),
    ("'cr\rret'", false),
    ("'pgshroud_guard_customers'", false),
    ("'PGSHROUD'", false),
    ("$$dollar$$", false),
    ("$q$'q'$q$", false),
    ("'a' || 'b'", false),
    ("'a'::text", false),
    // Typed literals whose type changes the value PostgreSQL stores (bpchar drops trailing
    // blanks on the way to text, varchar(n) truncates). `N'...'`: see national_strings_are_sealed_as_postgresql_reads_them below.
    ("N'nat'", false),
    ("NATIONAL CHARACTER 'x  '", false),
    ("bpchar 'ab  '", false),
    ("char(3) 'abcdef'", false),
    ("varchar(2) 'abc'", false),
    ("text 'a  '", false),
];

#[tokio::test]
async fn string_literals_of_a_primed_insert_are_sealed_as_a_fresh_proxy_seals_them() {
    let f = Fixture::new().await;
    for (i, (literal, shortcut)) in EMAIL_LITERALS.iter().enumerate() {
        let tag = format!("s{i}");
        let case = Case {
            primer: insert("'primer@x'", "30", &format!("p{i}")),
            variant: insert(literal, "31", &tag),
            shortcut: *shortcut,
        };
        let outcome = same_as_fresh(&f, &tag, &case).await;
        rows_agree(&f, &tag, literal, &outcome).await;
    }
}

/// `N'...'` is `'...'::bpchar` to PostgreSQL (the scanner returns a NATIONAL keyword and a
/// plain string): stored into a text column it loses its trailing blanks, and compared with
/// one it is compared without them. pgshroud's analysis takes it as the plain string
/// (`analyze::walk::literal_text` read `Value::NationalStringLiteral` as its text), so both
/// the full path and the shortcut sealed `'nat  '` where PostgreSQL would store `'nat'`, and a
/// look-up by `N'a  '` missed the row `'a'` (found by this round's attack pass). `N'...'` is
/// no longer read as a plain literal: at a protected column it is refused.
#[tokio::test]
async fn national_strings_are_sealed_as_postgresql_reads_them() {
    let f = Fixture::new().await;
    let proxy = fresh_proxy().await;
    let c = client(&proxy, &f.db).await;
    let got = run(&c, &insert("N'nat  '", "1", "nat")).await;
    // Refusing it would be as right as sealing PostgreSQL's reading.
    if got.is_ok() {
        let read = run(&c, "SELECT email FROM driver_check WHERE note = 'nat'").await;
        assert_eq!(read, Ok(vec![vec![Some("nat".to_owned())]]));
    }
    run(&c, &insert("'a'", "2", "a"))
        .await
        .expect("plain insert");
    let found = run(&c, "SELECT note FROM driver_check WHERE email = N'a  '").await;
    if let Ok(found) = found {
        assert_eq!(
            found,
            vec![vec![Some("a".to_owned())]],
            "PostgreSQL finds 'a'"
        );
    }
}

/// Integer literals at and beyond int4, with leading zeros, fractions, exponents, signs,
/// underscores, hexadecimal, and numbers followed by names.
const AGE_LITERALS: &[(&str, bool)] = &[
    ("0", true),
    ("2147483647", true),
    ("2147483648", false),
    ("99999999999999999999", false),
    ("007", false),
    ("1.", false),
    (".5", false),
    ("1e5", false),
    ("1.5", false),
    ("-5", false),
    ("- 5", false),
    ("1_000", false),
    ("0x1F", false),
    ("0o17", false),
    ("5::int8", false),
    ("5 + 1", false),
];

#[tokio::test]
async fn integer_literals_of_a_primed_insert_are_sealed_as_a_fresh_proxy_seals_them() {
    let f = Fixture::new().await;
    ages_sealed_as_fresh(&f, "30", AGE_LITERALS).await;
}

/// Strings where the pattern has a string for an int4 column: PostgreSQL's int4 input reads
/// blanks, signs, leading zeros, underscores and hexadecimal; the shortcut takes every one.
const AGE_STRINGS: &[(&str, bool)] = &[
    ("'5'", true),
    ("' 5'", true),
    ("'5 '", true),
    ("'+5'", true),
    ("'-0'", true),
    ("'05'", true),
    ("'5_0'", true),
    ("'0x10'", true),
    ("'0b11'", true),
    ("'2147483648'", true),
    ("'1e2'", true),
    ("'1.0'", true),
    ("''", true),
    ("'five'", true),
];

#[tokio::test]
async fn strings_for_an_int4_column_of_a_primed_insert_are_sealed_as_postgresql_reads_them() {
    let f = Fixture::new().await;
    ages_sealed_as_fresh(&f, "'30'", AGE_STRINGS).await;
}

/// Each age literal after a primer whose age is `primer`: the primed and fresh proxies agree
/// and the decrypted age is PostgreSQL's own int4 reading of the literal.
async fn ages_sealed_as_fresh(f: &Fixture, primer: &str, literals: &[(&str, bool)]) {
    for (i, (literal, shortcut)) in literals.iter().enumerate() {
        let tag = format!("n{i}");
        let case = Case {
            primer: insert("'primer@x'", primer, &format!("p{i}")),
            variant: insert(&format!("'n{i}@x'"), literal, &tag),
            shortcut: *shortcut,
        };
        let outcome = same_as_fresh(f, &tag, &case).await;
        let reading = fresh_proxy().await;
        let reader = client(&reading, &f.db).await;
        let got = run(
            &reader,
            &format!("SELECT age FROM driver_check WHERE note = '{tag}' ORDER BY id"),
        )
        .await
        .expect("read back");
        let admin = cluster().admin_client_for(&f.db).await;
        let direct = admin
            .simple_query(&format!("SELECT ({literal})::int4::text"))
            .await
            .map(|m| rows(&m)[0][0].clone());
        match direct {
            _ if outcome.is_err() => assert!(got.is_empty(), "{tag}: refused, yet written"),
            Ok(v) => assert_eq!(got, vec![vec![v.clone()], vec![v]], "{tag}: {literal}"),
            Err(_) => assert!(got.is_empty(), "{tag}: {literal}: {got:?}"),
        }
        // The table is shared by the cases: a later case reads only its own tag.
    }
}

/// Look-ups by a protected column whose value is written in the attacking forms: the primed
/// proxy finds exactly the rows the fresh proxy finds.
#[tokio::test]
async fn look_ups_of_a_primed_select_find_what_a_fresh_proxy_finds() {
    let f = Fixture::new().await;
    let seeder = fresh_proxy().await;
    let seed = client(&seeder, &f.db).await;
    seed.simple_query(
        "INSERT INTO driver_check (email, age, note) VALUES ('a', 1, 'A'), ('b', 2, 'B'), \
         ('a''b', 3, 'Q'), ('ab', 4, 'AB'), ('a\\', 5, 'BS'), ('a\nb', 6, 'NL')",
    )
    .await
    .expect("seed");
    let select = |email: &str, age: &str| {
        format!("SELECT note FROM driver_check WHERE email = {email} OR age = {age} ORDER BY note")
    };
    let variants = [
        (select("'a'", "2"), true),
        (select("'a''b'", "0"), true),
        (select("'a\\'", "0"), false),
        (select("E'a\\\\'", "0"), false),
        (select("'a'\n'b'", "0"), false),
        (select("'a' -- x\n'b'", "0"), false),
        (select("'a\nb'", "0"), false),
        (select("U&'\\0061'", "0"), false),
        (select("'a'", "0x2"), false),
        (select("'a'", "02"), false),
        (select("'a'", "2147483648"), false),
        (select("'zz'", "4"), true),
        // The fixed text changed after, between or inside the literals' neighbours.
        (
            select("'a'", "2") + "; SELECT note FROM driver_check WHERE email = 'b'",
            false,
        ),
        (select("'a'", "2") + " ", false),
        (select("'a'", "2") + " -- 'b'", false),
        (select("'a'", "2").replace(" OR ", " /* ' */ OR "), false),
        (
            select("'a'", "2").replace(" OR ", " OR email = 'b' OR "),
            false,
        ),
        (select("'a'", "2").replace("= '", "= E'"), false),
        (select("'a'", "2").replace("= '", "=U&'"), false),
        (
            select("'a'", "2").replace("ORDER BY note", "ORDER BY note LIMIT 1"),
            false,
        ),
    ];
    for (i, (variant, shortcut)) in variants.iter().enumerate() {
        let case = Case {
            primer: select("'primer'", "99"),
            variant: variant.clone(),
            shortcut: *shortcut,
        };
        let _ = same_as_fresh(&f, &format!("q{i}"), &case).await;
    }
}

/// A primed pattern is shared by every session of the proxy; a session whose settings make
/// PostgreSQL read the same bytes otherwise must still be refused, before any pattern is
/// consulted, and the pattern must keep working for a standard session afterwards.
#[tokio::test]
async fn sessions_with_other_settings_are_refused_even_when_the_pattern_matches() {
    let f = Fixture::new().await;
    let proxy = fresh_proxy().await;
    let std = client(&proxy, &f.db).await;
    run(&std, &insert("'primer@x'", "30", "p"))
        .await
        .expect("primer");
    let other = client(&proxy, &f.db).await;
    run(&other, "SET standard_conforming_strings = off")
        .await
        .expect("set");
    for literal in ["'x@y'", "'a\\'", "'a\\'' OR 1=1 --'"] {
        let got = run(&other, &insert(literal, "31", "scs")).await;
        assert_eq!(got, Err("0A000".to_owned()), "{literal}");
    }
    // Changed in the same Query as the statement: PostgreSQL parses the whole Query before
    // running its SET, so the INSERT is still read with standard strings (`a\` sealed).
    for (i, change) in [
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
    ]
    .iter()
    .enumerate()
    {
        let sql = format!("{change}; {}", insert("'a\\'", "31", &format!("scs{i}")));
        let got = run(&std, &sql).await;
        assert!(got.is_ok(), "{sql}: {got:?}");
        // The session now has backslash escapes: the pattern must not serve it.
        let got = run(&std, &insert("'x@y'", "31", "scs")).await;
        assert_eq!(got, Err("0A000".to_owned()), "after {change}");
        run(&std, "SET standard_conforming_strings = on")
            .await
            .expect("back to standard strings");
        let read = run(
            &std,
            &format!("SELECT email FROM driver_check WHERE note = 'scs{i}'"),
        )
        .await;
        assert_eq!(read, Ok(vec![vec![Some("a\\".to_owned())]]), "{change}");
    }
    for encoding in ["SJIS", "BIG5", "GBK", "LATIN1"] {
        let c = client(&proxy, &f.db).await;
        run(&c, &format!("SET client_encoding = {encoding}"))
            .await
            .expect("set");
        // ASCII bytes match the pattern exactly; the session must still be refused.
        let got = run(&c, &insert("'x@y'", "31", "enc")).await;
        assert_eq!(got, Err("22021".to_owned()), "{encoding}");
    }
    let hits = shape_hits(&proxy);
    run(&std, &insert("'after@x'", "32", "after"))
        .await
        .expect("standard session");
    assert!(shape_hits(&proxy) > hits, "the pattern still serves");
    assert_eq!(plaintext_rows(&f.db).await, 0);
    let names = cluster()
        .admin_client_for(&f.db)
        .await
        .simple_query("SELECT note FROM driver_check ORDER BY id")
        .await
        .map(|m| rows(&m))
        .expect("direct");
    assert_eq!(
        names,
        [&["p"][..], &["scs0"], &["scs1"], &["after"]]
            .iter()
            .map(|r| vec![Some(r[0].to_owned())])
            .collect::<Vec<_>>(),
        "only the standard session's rows were written"
    );
}
