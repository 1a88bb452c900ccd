//! Every logical type round-trips through a protected column, in binary format (tokio-postgres)
//! and text format (simple protocol), and equal values in any spelling find each other.

use pgshroud_integration_tests::protected::{rows, Fixture};
use time::macros::{date, datetime};

#[tokio::test]
async fn every_logical_type_round_trips_in_binary_format() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let ts = datetime!(2024-02-29 13:14:15.123456);
    let tstz = ts.assume_utc();
    let day = date!(1999 - 12 - 31);
    let id = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let json = serde_json::json!({"b": [1, 2], "a": "x"});
    let bytes: Vec<u8> = vec![0, 1, 254, 255];
    c.execute(
        "INSERT INTO typed (v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[&"tëxt", &"varchar", &-2i16, &i32::MIN, &i64::MAX, &true, &day, &ts, &tstz, &id, &bytes, &json],
    )
    .await
    .unwrap();
    let row = c
        .query_one(
            "SELECT v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb
             FROM typed WHERE v_int8 = $1",
            &[&i64::MAX],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "tëxt");
    assert_eq!(row.get::<_, String>(1), "varchar");
    assert_eq!(row.get::<_, i16>(2), -2);
    assert_eq!(row.get::<_, i32>(3), i32::MIN);
    assert_eq!(row.get::<_, i64>(4), i64::MAX);
    assert!(row.get::<_, bool>(5));
    assert_eq!(row.get::<_, time::Date>(6), day);
    assert_eq!(row.get::<_, time::PrimitiveDateTime>(7), ts);
    assert_eq!(row.get::<_, time::OffsetDateTime>(8), tstz);
    assert_eq!(row.get::<_, uuid::Uuid>(9), id);
    assert_eq!(row.get::<_, Vec<u8>>(10), bytes);
    assert_eq!(row.get::<_, serde_json::Value>(11), json);

    // The same values written as text literals in other spellings compare equal.
    let found = c
        .simple_query(
            "SELECT id FROM typed WHERE v_int2 = '-002' AND v_int4 = -2147483648 AND v_bool = 'yes'
               AND v_date = '1999-12-31' AND v_uuid = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'
               AND v_jsonb = '{\"a\":\"x\",  \"b\": [1,2]}' AND v_timestamp = '2024-02-29T13:14:15.123456'",
        )
        .await
        .unwrap();
    assert_eq!(rows(&found).len(), 1);
}

#[tokio::test]
async fn every_logical_type_round_trips_in_text_format() {
    let f = Fixture::new().await;
    let c = f.app().await;
    c.simple_query(
        "INSERT INTO typed (v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_numeric, v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb)
         VALUES ('it''s', 'v', 7, '007', -9000000000, false, 12.50, '2000-01-01', '2024-01-02 03:04:05', '2024-01-02 03:04:05+02',
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', '{\"k\": [true, null]}')",
    )
    .await
    .unwrap();
    let got = rows(
        &c.simple_query(
            "SELECT v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_numeric, v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb
             FROM typed WHERE v_numeric = 12.5",
        )
        .await
        .unwrap(),
    );
    let expected: Vec<Option<String>> = [
        "it's",
        "v",
        "7",
        "7",
        "-9000000000",
        "f",
        "12.5",
        "2000-01-01",
        "2024-01-02 03:04:05",
        "2024-01-02 01:04:05+00",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "\\x00ff",
        "{\"k\": [true, null]}",
    ]
    .iter()
    .map(|s| Some((*s).to_owned()))
    .collect();
    assert_eq!(got, vec![expected]);
}

#[tokio::test]
async fn large_values_round_trip() {
    let f = Fixture::new().await;
    let c = f.app().await;
    // 4 MiB of text: well past pgwire's per-message caps and the proxy's buffers.
    let big: String = "0123456789abcdef".repeat(4 * 1024 * 1024 / 16);
    c.execute("INSERT INTO typed (v_text) VALUES ($1)", &[&big])
        .await
        .unwrap();
    let back: String = c
        .query_one("SELECT v_text FROM typed WHERE v_text = $1", &[&big])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back.len(), big.len());
    assert!(back == big);
}

#[tokio::test]
async fn a_value_not_valid_for_the_logical_type_is_refused_and_nothing_is_written() {
    let f = Fixture::new().await;
    let c = f.app().await;
    let err = c
        .simple_query("INSERT INTO typed (v_int4) VALUES ('forty-two')")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "22P02");
    assert!(
        db.message().contains("public.typed.v_int4"),
        "{}",
        db.message()
    );
    assert!(!db.message().contains("forty-two"));
    assert!(f.stored("SELECT v_int4 FROM typed").await.is_empty());
    let n: i64 = c
        .query_one("SELECT count(*) FROM typed", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
