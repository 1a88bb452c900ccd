//! Expected binary forms below were produced by PostgreSQL 15's `numeric_send`.

use super::*;
use crate::values::{
    binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
};

fn canonical(text: &str) -> String {
    let bytes = canonical_from_text(TY, text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    String::from_utf8(bytes).unwrap()
}

fn binary(text: &str) -> String {
    hex::encode(binary_from_canonical(TY, canonical(text).as_bytes()).unwrap())
}

#[test]
fn equal_values_have_one_canonical_text() {
    for (input, expected) in [
        ("0", "0"),
        ("-0", "0"),
        ("-0.000", "0"),
        ("007", "7"),
        ("1.50", "1.5"),
        ("  -12.3400  ", "-12.34"),
        ("1e3", "1000"),
        ("1.5E-3", "0.0015"),
        (".5", "0.5"),
        ("5.", "5"),
        ("+5", "5"),
        ("0e99", "0"),
        ("1e-20", "0.00000000000000000001"),
        (
            "123456789012345678901234567890.000100",
            "123456789012345678901234567890.0001",
        ),
        ("NaN", "NaN"),
        ("nan", "NaN"),
        ("Infinity", "Infinity"),
        ("+inf", "Infinity"),
        ("-inf", "-Infinity"),
        ("-INFINITY", "-Infinity"),
    ] {
        assert_eq!(canonical(input), expected, "{input:?}");
    }
}

#[test]
fn binary_matches_numeric_send_when_the_scale_is_already_minimal() {
    for (input, expected) in [
        ("0", "0000000000000000"),
        ("7", "00010000000000000007"),
        ("-12.34", "0002000040000002000c0d48"),
        ("1000", "000100000000000003e8"),
        ("0.0015", "0001ffff00000004000f"),
        ("0.5", "0001ffff000000011388"),
        ("10000", "00010001000000000001"),
        ("-0.00012345", "0002ffff4000000800010929"),
        ("99999999", "0002000100000000270f270f"),
        ("1e-20", "0001fffb000000140001"),
        ("NaN", "00000000c0000000"),
        ("Infinity", "00000000d0000020"),
        ("-Infinity", "00000000f0000020"),
    ] {
        assert_eq!(binary(input), expected, "{input:?}");
    }
}

#[test]
fn postgres_binary_with_any_scale_reads_back_to_the_canonical_text() {
    for (hex_binary, expected) in [
        // 1.50 with dscale 2, -12.3400 with dscale 4, as PostgreSQL sends them.
        ("000200000000000200011388", "1.5"),
        ("0002000040000004000c0d48", "-12.34"),
        (
            "0009000700000006000c0d801ed204d2162e23340d801ed20001",
            "123456789012345678901234567890.0001",
        ),
        ("0000000000000000", "0"),
        ("00000000d0000020", "Infinity"),
        ("00000000c0000000", "NaN"),
        // dscale 1 hides the last digits of 1.2345: numeric_recv truncates them.
        ("000200000000000100010929", "1.2"),
    ] {
        let bytes = hex::decode(hex_binary).unwrap();
        let canonical = canonical_from_binary(TY, &bytes).unwrap();
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            expected,
            "{hex_binary}"
        );
    }
}

#[test]
fn text_and_binary_round_trip_through_canonical() {
    for input in [
        "0",
        "-1",
        "123456789012345678901234567890.0001",
        "0.000000001",
        "-99990000.00010001",
        "NaN",
    ] {
        let canonical = canonical_from_text(TY, input).unwrap();
        assert_eq!(text_from_canonical(TY, &canonical).unwrap(), input);
        let binary = binary_from_canonical(TY, &canonical).unwrap();
        assert_eq!(
            canonical_from_binary(TY, &binary).unwrap(),
            canonical,
            "{input}"
        );
    }
}

#[test]
fn malformed_numerics_are_refused() {
    for input in [
        "", ".", "-", "1.2.3", "1e", "1e+", "e5", "1 2", "0x10", "1,5", "--1", "NaNa", "-NaN",
        "1_000",
    ] {
        assert!(
            matches!(
                canonical_from_text(TY, input),
                Err(ValueError::Syntax { .. })
            ),
            "{input:?}"
        );
    }
    for input in ["1e131072", "1e-16384", "1e2000000000"] {
        assert!(
            matches!(
                canonical_from_text(TY, input),
                Err(ValueError::OutOfRange { .. })
            ),
            "{input:?}"
        );
    }
    assert!(canonical_from_text(TY, "1e131071").is_ok());
    assert!(canonical_from_text(TY, "1e-16383").is_ok());
}

#[test]
fn malformed_binary_is_refused() {
    for hex_binary in [
        "",
        "00010000000000",
        "00010000000000002710",     // digit 10000
        "0001000012340000000a",     // bad sign
        "000100000000400000010001", // dscale beyond 0x3FFF
        "0001000000000000",         // one digit announced, none sent
        "00000000000000000000",     // trailing bytes
    ] {
        let bytes = hex::decode(hex_binary).unwrap();
        assert!(canonical_from_binary(TY, &bytes).is_err(), "{hex_binary}");
    }
}

#[test]
fn non_canonical_stored_text_is_refused() {
    for stored in ["1.50", "+1", "007", "-0", "1e3", "nan", " 1"] {
        assert!(
            text_from_canonical(TY, stored.as_bytes()).is_err(),
            "{stored:?}"
        );
    }
}
