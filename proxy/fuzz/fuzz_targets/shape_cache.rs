//! Plans by statement shape against full plans: a statement (the input up to its first NUL
//! byte), then variants of it whose literals are replaced by values drawn from the rest of the
//! input. Each text is planned through the caches, where the earlier texts of its shape left a
//! template, and in full: the two plans must agree byte for byte (rewritten text, parameters,
//! result columns, sites), or both refuse with the same error; and where a held pattern
//! matched the text without the scanner, its reading is the scanner's
//! (`check_shape_agreement`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshroud_fuzz::{catalog, protection};

/// Literals that keep a shape, change its token kind, or must keep a text off the shape path.
const STRINGS: &[&str] = &[
    "''",
    "'a'",
    "'it''s'",
    "'1.5'",
    "'12'",
    "'-4'",
    "'true'",
    "'2000-02-29'",
    "'{\"a\": 1}'",
    "'ü'",
    "'00000000-0000-0000-0000-000000000000'",
    "'pgshroud_guard_x'",
    "'a\\b'",
    "E'a\\nb'",
    "$$a$$",
    "NULL",
    "'abc'",
    "'2147483648'",
    // Forms that match a pattern's fixed text but are no plain literal (shape_match.rs).
    "N'a  '",
    "U&'\\0061'",
    "B'101'",
    "X'1F'",
    "'a'\n'b'",
    "'a' -- c\n'b'",
    "'a\nb'",
    "'*/ -- $$'",
    "'PgShRoUd'",
];
const NUMBERS: &[&str] = &[
    "0", "1", "42", "2147483647", "2147483648", "1.5", "12.50", "0.001", "-3", "1e5", "007",
    "00", "1.", ".5", "1_000", "0x1F", "0o17", "0b1", "9999999999", "1.5e3", "5abc", "1..2",
];

fuzz_target!(|data: &[u8]| {
    let (text, mut entropy) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(sql) = std::str::from_utf8(text) else {
        return;
    };
    if sql.len() > 4096 {
        return;
    }
    let p = protection();
    let catalog = catalog();
    let layout = p.layout(&catalog);
    let check = |sql: &str| {
        if let Err(e) = p.check_shape_agreement(sql, &layout, &catalog) {
            panic!("shape and full plans differ ({e}) for {sql:?}");
        }
    };
    check(sql);
    let literals = literals(sql);
    if literals.is_empty() {
        return;
    }
    for _ in 0..4 {
        let mut variant = String::with_capacity(sql.len() + 16);
        let mut at = 0;
        for (span, is_string) in &literals {
            variant.push_str(&sql[at..span.start]);
            variant.push_str(&replacement(&mut entropy, *is_string, &sql[span.clone()]));
            at = span.end;
        }
        variant.push_str(&sql[at..]);
        check(&variant);
    }
});

/// A literal's replacement: itself, one of the pool, or a string or number from raw bytes.
fn replacement(entropy: &mut &[u8], is_string: bool, itself: &str) -> String {
    let Some((&choice, rest)) = entropy.split_first() else {
        return itself.to_owned();
    };
    *entropy = rest;
    match choice % 4 {
        0 => itself.to_owned(),
        1 if is_string => STRINGS[usize::from(choice / 4) % STRINGS.len()].to_owned(),
        1 => NUMBERS[usize::from(choice / 4) % NUMBERS.len()].to_owned(),
        _ => {
            let len = usize::from(choice / 4) % 12;
            let (raw, rest) = entropy.split_at(len.min(entropy.len()));
            *entropy = rest;
            if is_string {
                let text = String::from_utf8_lossy(raw).replace('\0', "").replace('\'', "''");
                format!("'{text}'")
            } else {
                let digits: String = raw.iter().map(|b| char::from(b'0' + b % 10)).collect();
                if digits.is_empty() {
                    "0".into()
                } else {
                    digits
                }
            }
        }
    }
}

/// `'...'` strings and runs of digits (not part of a name or `$n`), found roughly: the
/// variants only need to be texts; both paths read them as PostgreSQL does.
fn literals(sql: &str) -> Vec<(std::ops::Range<usize>, bool)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\'' {
            let mut j = i + 1;
            while j < bytes.len() {
                if bytes[j] == b'\'' {
                    if bytes.get(j + 1) == Some(&b'\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            if j >= bytes.len() {
                break;
            }
            out.push((i..j + 1, true));
            i = j + 1;
        } else if b.is_ascii_digit() {
            let before = i.checked_sub(1).map(|k| bytes[k]);
            let word = before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$');
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                j += 1;
            }
            if !word {
                out.push((i..j, false));
            }
            i = j;
        } else if b == b'"' {
            // A quoted name: skip it whole.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}
