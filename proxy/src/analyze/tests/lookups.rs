//! Django's text lookups on a protected column are refused by what they mean, with the fix.

use super::*;

fn refused_as(sql: &str, operation: &str) {
    let r = refused(sql);
    assert_eq!(r.sqlstate, "0A000", "{sql}: {}", r.message);
    assert!(r.message.starts_with(operation), "{sql}: {}", r.message);
    assert!(
        r.message.contains(
            " on protected column public.customers.email is not possible on deterministic \
             ciphertext; "
        ),
        "{sql}: {}",
        r.message
    );
    assert!(!r.message.contains("secret"), "{}", r.message);
}

const SELECT: &str = "SELECT \"customers\".\"id\" FROM \"customers\" WHERE";

#[test]
fn django_iexact_is_named_a_case_insensitive_comparison() {
    for condition in [
        "UPPER(\"customers\".\"email\"::text) = UPPER($1)",
        "UPPER(\"customers\".\"email\"::text) = UPPER('secret')",
        "lower(email) <> 'secret'",
    ] {
        refused_as(
            &format!("{SELECT} {condition}"),
            "case-insensitive comparison (UPPER/LOWER",
        );
    }
    let r = refused(&format!(
        "{SELECT} UPPER(\"customers\".\"email\"::text) = UPPER($1)"
    ));
    assert!(
        r.message.contains("store a normalised copy"),
        "{}",
        r.message
    );
}

#[test]
fn django_contains_startswith_endswith_are_named_pattern_matching() {
    for pattern in ["$1", "'%secret'", "'secret%'", "'%secret%'"] {
        refused_as(
            &format!("{SELECT} \"customers\".\"email\"::text LIKE {pattern}"),
            "pattern matching (LIKE, as Django's contains, startswith and endswith",
        );
        refused_as(
            &format!("{SELECT} UPPER(\"customers\".\"email\"::text) LIKE UPPER({pattern})"),
            "case-insensitive pattern matching",
        );
    }
    refused_as(
        &format!("{SELECT} email::varchar ILIKE 'secret%'"),
        "case-insensitive pattern matching",
    );
}

#[test]
fn a_cast_that_is_no_text_lookup_keeps_its_refusal() {
    refused_on(
        "SELECT 1 FROM customers WHERE email::int4 = 5",
        "public.customers.email",
        "a cast",
    );
}
