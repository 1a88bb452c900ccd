//! Catalog views and functions that hand out what other statements stored or sent, outside
//! any table the analysis maps: the planner's statistics (`pg_stats` most-common values and
//! histograms are stored values), other sessions' statement texts (`pg_stat_activity.query`,
//! `pg_stat_statements`, which show the ciphertext pgshroud wrote into them). What they return
//! reaches the client as raw stored bytes, so a role that may not receive some protected
//! column's stored values must not read them: the caller refuses what is found here. So is
//! `CREATE TABLE ... AS EXECUTE name`, which stores a prepared statement's rows (the name says
//! nothing of which tables they came from) in a table whose reads the proxy does not map.

use std::sync::LazyLock;

use super::pg_reading;
use super::spelling;

/// Relations whose rows carry stored values or other sessions' statement texts.
const RELATIONS: [&str; 8] = [
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_stat_statements_info",
];

/// Functions behind those views, callable on their own.
const FUNCTIONS: [&str; 4] = [
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
    "pg_stat_statements",
    "pg_mcv_list_items",
];

/// Whether `sql` may name one of them (a cheap scan; `false` is certain): every name starts
/// with `pg_stat` or `pg_mcv` (or it is `EXECUTE`), or the text uses a form PostgreSQL decodes
/// into words its bytes do not show.
pub fn may_name_exposing_objects(sql: &str) -> bool {
    static WORDS: LazyLock<spelling::Words> =
        LazyLock::new(|| spelling::Words::new(&["pg_stat", "pg_mcv", "execute"]));
    WORDS.in_text(sql) || spelling::may_hide_text(sql)
}

/// The first such view or function `sql` names, as PostgreSQL reads it (any schema: a table
/// of the same name elsewhere is refused too, which costs nothing real). `Err` when the text
/// cannot be read with PostgreSQL's grammar (then it cannot be known not to name one).
pub fn exposing_object(sql: &str) -> Result<Option<String>, String> {
    if !may_name_exposing_objects(sql) {
        return Ok(None);
    }
    let reading = pg_reading::read(sql)?;
    for statement in &reading.statements {
        if statement.stores_executed_rows {
            return Ok(Some("CREATE TABLE AS EXECUTE".to_owned()));
        }
        let relation = statement
            .relations
            .iter()
            .filter(|r| !r.cte)
            .map(|r| r.name.as_str())
            .find(|n| RELATIONS.contains(&n.to_ascii_lowercase().as_str()));
        if let Some(name) = relation {
            return Ok(Some(name.to_owned()));
        }
        let function = statement
            .functions
            .iter()
            .find(|f| FUNCTIONS.contains(&f.to_ascii_lowercase().as_str()));
        if let Some(name) = function {
            return Ok(Some(format!("{name}()")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(sql: &str) -> Option<String> {
        exposing_object(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn every_spelling_of_the_statistics_views_is_found() {
        for sql in [
            "SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers'",
            "select * from PG_CATALOG.PG_STATS",
            "SELECT * FROM \"pg_stats\"",
            "SELECT * FROM U&\"pg\\005fstats\"",
            "SELECT * FROM pg_catalog.pg_stats_ext",
            "SELECT query FROM pg_stat_activity",
            "WITH a AS (SELECT * FROM pg_stat_statements) SELECT * FROM a",
            "SELECT (SELECT count(*) FROM pg_statistic)",
            "SELECT * FROM pg_mcv_list_items(NULL)",
            "SELECT pg_stat_get_backend_activity(1)",
            "SELECT * FROM pg_catalog.pg_stat_get_activity(NULL)",
            "SELECT 1; SELECT * FROM pg_stats",
            "CREATE TABLE copied AS EXECUTE p",
            "create temp table copied as execute p(1)",
        ] {
            assert!(found(sql).is_some(), "{sql}");
        }
    }

    #[test]
    fn other_texts_are_not_refused() {
        for sql in [
            "SELECT email FROM customers",
            "SELECT 'pg_stats'",
            "SELECT * FROM pg_stat_user_tables",
            "SELECT * FROM pg_stat_database",
            "WITH pg_stats AS (SELECT 1) SELECT * FROM pg_stats",
            "EXECUTE p",
            "CREATE TABLE copied AS SELECT 1",
        ] {
            assert_eq!(found(sql), None, "{sql}");
        }
        assert!(!may_name_exposing_objects("SELECT email FROM customers"));
    }

    #[test]
    fn a_text_postgresql_cannot_read_is_not_known_to_be_safe() {
        assert!(exposing_object("SELECT * FROM pg_stats WHERE").is_err());
    }
}
