//! Expected outputs below were produced by PostgreSQL 15 (`DateStyle = ISO`, `TimeZone = UTC`).

use super::*;
use crate::values::{
    binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
};
use LogicalType::{Date, Timestamp, Timestamptz};

/// Text in, PostgreSQL's text out.
fn round(ty: LogicalType, text: &str) -> String {
    let canonical = canonical_from_text(ty, text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    text_from_canonical(ty, &canonical).unwrap()
}

fn micros(ty: LogicalType, text: &str) -> i64 {
    let canonical = canonical_from_text(ty, text).unwrap();
    i64::from_be_bytes(canonical.try_into().unwrap())
}

#[test]
fn dates_print_as_postgres_does() {
    for (input, expected) in [
        ("2024-01-02", "2024-01-02"),
        ("20240102", "2024-01-02"),
        ("2024-1-2", "2024-01-02"),
        (" 2024-01-02 ", "2024-01-02"),
        ("2024-02-29", "2024-02-29"),
        ("1999-12-31", "1999-12-31"),
        ("0044-03-15 BC", "0044-03-15 BC"),
        ("4714-11-24 BC", "4714-11-24 BC"),
        ("5874897-12-31", "5874897-12-31"),
        ("2024-01-02 03:04:05+02", "2024-01-02"),
        ("2024-01-02T10:00", "2024-01-02"),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
        ("epoch", "1970-01-01"),
    ] {
        assert_eq!(round(Date, input), expected, "{input:?}");
    }
}

#[test]
fn date_canonical_is_days_since_2000_big_endian() {
    assert_eq!(
        canonical_from_text(Date, "2000-01-01").unwrap(),
        0i32.to_be_bytes()
    );
    assert_eq!(
        canonical_from_text(Date, "1999-12-31").unwrap(),
        (-1i32).to_be_bytes()
    );
    assert_eq!(
        canonical_from_text(Date, "infinity").unwrap(),
        i32::MAX.to_be_bytes()
    );
    assert_eq!(
        canonical_from_text(Date, "-infinity").unwrap(),
        i32::MIN.to_be_bytes()
    );
    let binary = binary_from_canonical(Date, &(-1i32).to_be_bytes()).unwrap();
    assert_eq!(binary, [0xff, 0xff, 0xff, 0xff]);
    assert_eq!(canonical_from_binary(Date, &binary).unwrap(), binary);
}

#[test]
fn impossible_dates_are_refused() {
    for input in [
        "0000-01-01",
        "2023-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-04-31",
        "5874898-01-01",
        "4714-11-23 BC",
    ] {
        assert!(
            matches!(
                canonical_from_text(Date, input),
                Err(ValueError::OutOfRange { .. })
            ),
            "{input:?}"
        );
    }
    for input in [
        "",
        "2024",
        "24-01-02",
        "2024/01/02",
        "2024-01-02x",
        "2024-01-02 03",
        "Jan 2 2024",
    ] {
        assert!(canonical_from_text(Date, input).is_err(), "{input:?}");
    }
    assert!(matches!(
        canonical_from_text(Date, "today"),
        Err(ValueError::Unsupported { .. })
    ));
    assert!(canonical_from_binary(Date, &DATE_END.to_be_bytes()[4..]).is_err());
    assert!(canonical_from_binary(Date, &[0, 0, 1]).is_err());
}

#[test]
fn timestamps_print_as_postgres_does() {
    for (input, expected) in [
        ("2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123456"),
        ("2024-01-02T03:04:05.1234565", "2024-01-02 03:04:05.123456"),
        ("2024-01-02 03:04:05.1234575", "2024-01-02 03:04:05.123458"),
        ("1999-12-31 23:59:59.9999995", "2000-01-01 00:00:00"),
        ("2024-01-02 03:04:05.500", "2024-01-02 03:04:05.5"),
        ("2024-01-02 24:00:00", "2024-01-03 00:00:00"),
        ("2024-12-31 23:59:60", "2025-01-01 00:00:00"),
        ("0044-03-15 12:00:00 BC", "0044-03-15 12:00:00 BC"),
        ("2024-01-02 03:04:05.5 BC", "2024-01-02 03:04:05.5 BC"),
        ("2024-01-02 03:04:05+02", "2024-01-02 03:04:05"),
        ("2024-01-02 03:04", "2024-01-02 03:04:00"),
        ("20240102", "2024-01-02 00:00:00"),
        ("2024-1-2 3:4:5", "2024-01-02 03:04:05"),
        ("2024-01-02t03:04:05", "2024-01-02 03:04:05"),
        (
            "294276-12-31 23:59:59.999999",
            "294276-12-31 23:59:59.999999",
        ),
        ("4714-11-24 00:00:00 BC", "4714-11-24 00:00:00 BC"),
        (" 2024-01-02 ", "2024-01-02 00:00:00"),
        ("2024-02-29 12:00:00", "2024-02-29 12:00:00"),
        ("1999-12-31 23:59:59.999999", "1999-12-31 23:59:59.999999"),
        ("Infinity", "infinity"),
        ("-infinity", "-infinity"),
        ("epoch", "1970-01-01 00:00:00"),
    ] {
        assert_eq!(round(Timestamp, input), expected, "{input:?}");
    }
}

#[test]
fn timestamptz_is_stored_in_utc_and_printed_with_plus_00() {
    for (input, expected) in [
        ("2024-01-02 03:04:05+02", "2024-01-02 01:04:05+00"),
        ("2024-01-02 03:04:05 +02:30", "2024-01-02 00:34:05+00"),
        ("2024-01-02 03:04:05-0230", "2024-01-02 05:34:05+00"),
        ("2024-01-02 03:04:05Z", "2024-01-02 03:04:05+00"),
        ("2024-01-02 03:04:05 UTC", "2024-01-02 03:04:05+00"),
        ("2024-01-02 03:04:05 gmt", "2024-01-02 03:04:05+00"),
        ("2024-01-02T03:04:05.5z", "2024-01-02 03:04:05.5+00"),
        ("0044-03-15 12:00:00+01 BC", "0044-03-15 11:00:00+00 BC"),
        ("2024-01-02 03:04:05+15:59", "2024-01-01 11:05:05+00"),
        ("2024-01-02 03:04:05+02:30:15", "2024-01-02 00:33:50+00"),
        ("2024-01-02 03:04:05+15", "2024-01-01 12:04:05+00"),
        ("2024-01-02+02", "2024-01-01 22:00:00+00"),
        ("epoch", "1970-01-01 00:00:00+00"),
        ("-infinity", "-infinity"),
    ] {
        assert_eq!(round(Timestamptz, input), expected, "{input:?}");
    }
}

#[test]
fn timestamptz_without_offset_is_read_as_utc() {
    assert_eq!(
        micros(Timestamptz, "2024-01-02 03:04:05"),
        micros(Timestamptz, "2024-01-02 03:04:05+00")
    );
    assert_eq!(
        micros(Timestamptz, "2024-01-02 05:04:05+02"),
        micros(Timestamptz, "2024-01-02T03:04:05Z")
    );
}

#[test]
fn timestamp_canonical_is_microseconds_since_2000() {
    assert_eq!(micros(Timestamp, "2000-01-01 00:00:00"), 0);
    assert_eq!(micros(Timestamp, "1999-12-31 23:59:59.999999"), -1);
    assert_eq!(micros(Timestamp, "2000-01-01 00:00:01.5"), 1_500_000);
    assert_eq!(micros(Timestamp, "infinity"), i64::MAX);
    assert_eq!(micros(Timestamp, "4714-11-24 00:00:00 BC"), TIMESTAMP_MIN);
    let canonical = (-1i64).to_be_bytes();
    let binary = binary_from_canonical(Timestamp, &canonical).unwrap();
    assert_eq!(binary, [0xff; 8]);
    assert_eq!(
        canonical_from_binary(Timestamptz, &binary).unwrap(),
        canonical
    );
}

#[test]
fn impossible_timestamps_are_refused() {
    for input in [
        "2024-01-02 24:00:01",
        "2024-01-02 25:00:00",
        "2024-01-02 03:60:00",
        "2024-01-02 03:04:61",
        "294277-01-01 00:00:00",
        "2024-01-02 03:04:05+16",
        "2024-01-02 03:04:05+02:60",
        "292277026-01-01 00:00:00",
        "294277-01-09 04:00:54-15",
        "999999999-12-31 23:59:59",
    ] {
        assert!(
            matches!(
                canonical_from_text(Timestamptz, input),
                Err(ValueError::OutOfRange { .. })
            ),
            "{input:?}"
        );
    }
    for input in [
        "2024-01-02 03:04:05.",
        "2024-01-02 03",
        "2024-01-02 03:04:05 05:00",
        "2024-01-02 03:04:05+02+03",
        "2024-01-02 03:04:05 BC BC",
        "2024-01-02 123:04:05",
        "2024-01-02 03:04:05+123",
    ] {
        assert!(
            matches!(
                canonical_from_text(Timestamptz, input),
                Err(ValueError::Syntax { .. })
            ),
            "{input:?}"
        );
    }
    assert!(matches!(
        canonical_from_text(Timestamptz, "2024-01-02 03:04:05 Europe/Paris"),
        Err(ValueError::Unsupported { .. })
    ));
    assert!(canonical_from_binary(Timestamp, &TIMESTAMP_END.to_be_bytes()).is_err());
    assert!(canonical_from_binary(Timestamp, &[0; 4]).is_err());
    assert!(text_from_canonical(Timestamp, &(TIMESTAMP_MIN - 1).to_be_bytes()).is_err());
}

#[test]
fn errors_do_not_quote_the_value() {
    let secret = "2024-99-99 12:34:56";
    let error = canonical_from_text(Timestamp, secret).unwrap_err();
    assert!(!error.to_string().contains("2024"), "{error}");
    assert!(!format!("{error:?}").contains("2024"), "{error:?}");
}
