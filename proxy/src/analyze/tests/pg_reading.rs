use super::*;

#[test]
fn grammar_version_is_the_one_documented() {
    let parsed = pg_query::parse("SELECT 1").unwrap();
    assert_eq!(parsed.protobuf.version / 10_000, GRAMMAR_VERSION as i32);
}
