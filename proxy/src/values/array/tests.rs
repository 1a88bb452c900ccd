//! Expected forms below were produced by PostgreSQL 15's `array_in`, `array_out`, `array_send`.

use super::*;

fn strings(items: &[Option<&str>]) -> Vec<Option<String>> {
    items.iter().map(|i| i.map(str::to_owned)).collect()
}

#[test]
fn text_arrays_parse_as_array_in_does() {
    assert_eq!(
        parse_text(r#"{a,"b c",NULL,"x\"y"}"#).unwrap(),
        strings(&[Some("a"), Some("b c"), None, Some("x\"y")])
    );
    assert_eq!(
        parse_text(r#"{ a b , "NULL", null, \NULL, "" , " q " , a\ }"#).unwrap(),
        strings(&[
            Some("a b"),
            Some("NULL"),
            None,
            Some("NULL"),
            Some(""),
            Some(" q "),
            Some("a ")
        ])
    );
    assert_eq!(
        parse_text(r#"{"a,b", "{}"}"#).unwrap(),
        strings(&[Some("a,b"), Some("{}")])
    );
    assert_eq!(parse_text("{}").unwrap(), strings(&[]));
    assert_eq!(parse_text(" { } ").unwrap(), strings(&[]));
    assert_eq!(
        parse_text("{007,é}").unwrap(),
        strings(&[Some("007"), Some("é")])
    );
}

#[test]
fn malformed_or_multidimensional_text_arrays_are_refused() {
    for input in [
        "",
        "a,b",
        "{a,,b}",
        "{a,}",
        "{,a}",
        r#"{"a"b}"#,
        r#"{a"b"}"#,
        r#"{"a}"#,
        "{a\\}",
        "{{a},{b}}",
        "[1:2]={a,b}",
        "{a}}",
        "{a} x",
    ] {
        assert!(parse_text(input).is_err(), "{input:?}");
    }
}

#[test]
fn bytea_arrays_are_built_as_postgres_sends_and_prints_them() {
    let elements = vec![Some(vec![1, 2]), None];
    assert_eq!(
        hex::encode(bytea_array_binary(&elements)),
        "0000000100000001000000110000000200000001000000020102ffffffff"
    );
    assert_eq!(bytea_array_text(&elements), r#"{"\\x0102",NULL}"#);
    assert_eq!(
        hex::encode(bytea_array_binary(&[])),
        "000000000000000000000011"
    );
    assert_eq!(bytea_array_text(&[]), "{}");
    assert_eq!(bytea_array_text(&[Some(vec![])]), r#"{"\\x"}"#);
}

#[test]
fn binary_arrays_round_trip() {
    let elements = vec![Some(vec![1, 2]), None, Some(vec![])];
    let (oid, parsed) = parse_binary(&bytea_array_binary(&elements)).unwrap();
    assert_eq!((oid, parsed), (BYTEA_OID, elements));
    assert_eq!(
        parse_binary(&bytea_array_binary(&[])).unwrap(),
        (BYTEA_OID, vec![])
    );
    // int4[] {7, NULL} as array_send writes it, lower bound 1.
    let int4 =
        hex::decode("00000001000000010000001700000002000000010000000400000007ffffffff").unwrap();
    assert_eq!(
        parse_binary(&int4).unwrap(),
        (23, vec![Some(vec![0, 0, 0, 7]), None])
    );
}

#[test]
fn malformed_binary_arrays_are_refused() {
    for hex_array in [
        "",
        "00000001000000000000001700000002", // truncated dimensions
        "000000020000000000000017000000010000000100000001000000010000000400000007", // 2-D
        "ffffffff0000000000000017",         // negative ndim
        "000000000000000200000017",         // bad null flag
        "0000000100000000000000170000000100000001000000040000", // truncated element
        "00000001000000000000001700000001000000010000000400000007ff", // trailing byte
        "0000000100000000000000170000000100000001fffffffe", // negative length
        "0000000100000000000000177fffffff00000001", // absurd element count
    ] {
        let bytes = hex::decode(hex_array).unwrap();
        assert!(parse_binary(&bytes).is_err(), "{hex_array}");
    }
}
