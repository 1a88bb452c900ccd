//! Properties every logical type shares: both input formats meet in one canonical form,
//! output round-trips, and errors never quote the value.

use pgshroud_rules::LogicalType;

use super::*;

/// One value per type: (type, text input, PostgreSQL's text output).
const SAMPLES: [(LogicalType, &str, &str); 13] = [
    (LogicalType::Text, "Grüße 🎉", "Grüße 🎉"),
    (LogicalType::Varchar, "", ""),
    (LogicalType::Int2, " -007", "-7"),
    (LogicalType::Int4, "2147483647", "2147483647"),
    (
        LogicalType::Int8,
        "-9223372036854775808",
        "-9223372036854775808",
    ),
    (LogicalType::Bool, "yes", "t"),
    (LogicalType::Numeric, "-0001.2300e2", "-123"),
    (LogicalType::Date, "2024-02-29", "2024-02-29"),
    (
        LogicalType::Timestamp,
        "1999-12-31T23:59:59.5",
        "1999-12-31 23:59:59.5",
    ),
    (
        LogicalType::Timestamptz,
        "2024-01-02 03:04:05-01",
        "2024-01-02 04:04:05+00",
    ),
    (
        LogicalType::Uuid,
        "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ),
    (LogicalType::Bytea, "\\001\\\\", "\\x015c"),
    (
        LogicalType::Jsonb,
        r#"{"b":[1.50],"a":"é"}"#,
        r#"{"a": "é", "b": [1.5]}"#,
    ),
];

#[test]
fn every_type_round_trips_through_text_and_binary() {
    assert!(LogicalType::ALL
        .iter()
        .all(|t| SAMPLES.iter().any(|s| s.0 == *t)));
    for (t, input, output) in SAMPLES {
        let canonical = canonical_from_text(t, input).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(text_from_canonical(t, &canonical).unwrap(), output, "{t}");
        assert_eq!(
            canonical_from_text(t, output).unwrap(),
            canonical,
            "{t}: output re-read"
        );
        let binary = binary_from_canonical(t, &canonical).unwrap();
        assert_eq!(
            canonical_from_binary(t, &binary).unwrap(),
            canonical,
            "{t}: binary"
        );
        if t.type_len() > 0 {
            assert_eq!(binary.len(), t.type_len() as usize, "{t}: fixed size");
        }
    }
}

#[test]
fn text_and_binary_forms_of_one_value_meet_in_one_canonical() {
    let seven = canonical_from_text(LogicalType::Int8, "007").unwrap();
    assert_eq!(canonical_from_text(LogicalType::Int8, "7").unwrap(), seven);
    assert_eq!(
        canonical_from_binary(LogicalType::Int8, &7i64.to_be_bytes()).unwrap(),
        seven
    );

    let text = canonical_from_text(LogicalType::Numeric, "1.50").unwrap();
    let binary = canonical_from_binary(
        LogicalType::Numeric,
        &hex::decode("000200000000000200011388").unwrap(),
    );
    assert_eq!(text, b"1.5");
    assert_eq!(binary.unwrap(), text);

    let stamp = canonical_from_text(LogicalType::Timestamptz, "2024-01-02 05:04:05+02").unwrap();
    let binary_stamp = binary_from_canonical(LogicalType::Timestamptz, &stamp).unwrap();
    assert_eq!(
        canonical_from_binary(LogicalType::Timestamptz, &binary_stamp).unwrap(),
        stamp
    );
    assert_eq!(
        canonical_from_text(LogicalType::Timestamptz, "2024-01-02T03:04:05Z").unwrap(),
        stamp
    );

    let json = canonical_from_text(LogicalType::Jsonb, r#"{"b":1,"a":2}"#).unwrap();
    let json_binary = [b"\x01".as_slice(), br#"{ "a" : 2.0, "b" : 1 }"#].concat();
    assert_eq!(
        canonical_from_binary(LogicalType::Jsonb, &json_binary).unwrap(),
        json
    );
}

#[test]
fn stored_bytes_of_the_wrong_type_are_refused_not_misread() {
    let int4 = canonical_from_text(LogicalType::Int4, "7").unwrap();
    assert!(text_from_canonical(LogicalType::Int8, &int4).is_err());
    assert!(text_from_canonical(LogicalType::Uuid, &int4).is_err());
    assert!(text_from_canonical(LogicalType::Bool, &int4).is_err());
    assert!(text_from_canonical(LogicalType::Timestamp, &int4).is_err());
    assert!(binary_from_canonical(LogicalType::Numeric, &int4).is_err());
    assert!(binary_from_canonical(LogicalType::Jsonb, &[0xff]).is_err());
    assert!(text_from_canonical(LogicalType::Text, &[0xff]).is_err());
}

#[test]
fn errors_name_the_type_but_never_quote_the_value() {
    let secret = "s3cr3t";
    for t in LogicalType::ALL {
        let inputs = [
            secret.to_owned(),
            format!("{{\"{secret}\": }}"),
            format!("1{secret}"),
            format!("2024-01-02 {secret}"),
            format!("\\x{secret}"),
        ];
        for input in &inputs {
            if let Err(error) = canonical_from_text(t, input) {
                let shown = format!("{error} {error:?}");
                assert!(!shown.contains(secret), "{t}: {shown}");
                assert!(error.to_string().contains(t.name()), "{t}: {error}");
            }
            if let Err(error) = canonical_from_binary(t, input.as_bytes()) {
                assert!(
                    !format!("{error} {error:?}").contains(secret),
                    "{t}: {error:?}"
                );
            }
        }
    }
}

#[test]
fn owned_output_is_the_borrowed_output_in_both_formats() {
    for (t, input, _) in SAMPLES {
        let canonical = canonical_from_text(t, input).unwrap();
        let text = text_with_modifier(t, None, &canonical)
            .unwrap()
            .into_bytes();
        let binary = binary_with_modifier(t, None, &canonical).unwrap();
        assert_eq!(
            output_with_modifier(t, None, canonical.clone(), false).unwrap(),
            text
        );
        assert_eq!(
            output_with_modifier(t, None, canonical, true).unwrap(),
            binary
        );
    }
    // Canonical text that is not UTF-8 is refused in both formats, as before.
    for binary in [false, true] {
        assert!(output_with_modifier(LogicalType::Text, None, vec![0xff], binary).is_err());
    }
}
