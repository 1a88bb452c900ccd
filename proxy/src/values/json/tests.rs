//! Expected outputs below were produced by PostgreSQL 15's `jsonb_out` and `jsonb_send`.

use super::*;
use crate::values::{
    binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
};

fn canonical(text: &str) -> String {
    let bytes = canonical_from_text(TY, text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    String::from_utf8(bytes).unwrap()
}

fn postgres_text(text: &str) -> String {
    text_from_canonical(TY, canonical(text).as_bytes()).unwrap()
}

#[test]
fn key_order_whitespace_and_number_scale_do_not_change_the_canonical() {
    let expected = r#"{"a":[1,2.5,{"y":true,"zz":null}],"aa":"x","b":1}"#;
    for input in [
        r#"{"b": 1, "a": [1, 2.50, {"zz": null, "y": true}], "aa": "x"}"#,
        r#"{"aa":"x","b":1e0,"a":[1.0,25e-1,{"y":true,"zz":null}]}"#,
        "\n{ \"a\" : [ 1 , 2.5 , { \"y\" : true , \"zz\" : null } ] ,\t\"aa\":\"x\", \"b\":1}\r\n",
        r#"{"b": 0, "a": [1, 2.5, {"y": true, "zz": null}], "aa": "x", "b": 1}"#,
    ] {
        assert_eq!(canonical(input), expected, "{input:?}");
    }
}

#[test]
fn output_matches_jsonb_out() {
    for (input, expected) in [
        (
            r#"{"b": 1, "a": [1, 2.5, {"zz": null, "y": true}], "aa": "x\"y\\z\n\u0001\u00e9"}"#,
            r#"{"a": [1, 2.5, {"y": true, "zz": null}], "b": 1, "aa": "x\"y\\z\n\u0001é"}"#,
        ),
        (r#"{"a":1,"a":2}"#, r#"{"a": 2}"#),
        (r#"  "str"  "#, r#""str""#),
        ("-0", "0"),
        ("1e3", "1000"),
        ("1.0E+2", "100"),
        ("[]", "[]"),
        ("{}", "{}"),
        (
            r#"{"":1,"b":2,"a":3,"ab":4}"#,
            r#"{"": 1, "a": 3, "b": 2, "ab": 4}"#,
        ),
        (r#""\ud83d\ude00""#, "\"😀\""),
        (r#""a\/b""#, r#""a/b""#),
        (r#""\u007f""#, "\"\u{7f}\""),
        ("[[], {}, [null]]", "[[], {}, [null]]"),
        ("true", "true"),
    ] {
        assert_eq!(postgres_text(input), expected, "{input:?}");
    }
}

#[test]
fn binary_is_version_one_then_the_output_text() {
    let canonical = canonical_from_text(TY, r#"{"a":1,"a":2}"#).unwrap();
    let binary = binary_from_canonical(TY, &canonical).unwrap();
    assert_eq!(hex::encode(&binary), "017b2261223a20327d");
    assert_eq!(canonical_from_binary(TY, &binary).unwrap(), canonical);
    assert!(canonical_from_binary(TY, b"\x02{}").is_err());
    assert!(canonical_from_binary(TY, b"").is_err());
    assert!(canonical_from_binary(TY, b"\x01{\xff}").is_err());
}

#[test]
fn invalid_json_is_refused() {
    for input in [
        "",
        "01",
        "1.",
        ".5",
        "+1",
        "1e",
        "-",
        r#"{"a" 1}"#,
        "[1,]",
        "[1 2]",
        r#"{"a":1,}"#,
        "{1:2}",
        "tru",
        "truex",
        "nul",
        "[1]]",
        r#""\u0000""#,
        r#""\ud83d""#,
        r#""\ude00""#,
        r#""\ud83dx""#,
        r#""\x41""#,
        r#""\u12g4""#,
        "\"tab\there\"",
        "\"unterminated",
        "'single'",
        "NaN",
    ] {
        assert!(canonical_from_text(TY, input).is_err(), "{input:?}");
    }
}

#[test]
fn nesting_is_limited() {
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(canonical_from_text(TY, &ok).is_ok());
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert!(canonical_from_text(TY, &deep).is_err());
    let hostile = "[{\"a\":".repeat(100_000);
    assert!(canonical_from_text(TY, &hostile).is_err());
}

#[test]
fn big_and_unicode_values_survive_exactly() {
    let input = r#"{"n": 123456789012345678901234567890.000100, "s": "Grüße 世界 🎉"}"#;
    assert_eq!(
        postgres_text(input),
        r#"{"n": 123456789012345678901234567890.0001, "s": "Grüße 世界 🎉"}"#
    );
}
