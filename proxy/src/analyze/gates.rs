//! The statement path's cheap word gates asked at once: whether a text shows any word or form
//! after which one of them would read it with PostgreSQL's grammar (identity settings,
//! settings pgshroud follows, server functions running SQL text, catalog views exposing
//! stored values). For the session's memory of harmless shapes, which asks it of a text
//! before remembering its shape and of each new literal of a text that matches the shape: a
//! text whose every gate is silent is read by the gates alone, and a literal cannot make a
//! gate speak unless its own bytes do (see `protect/session/harmless.rs`).

use super::{exposing, identity_settings, settings, sql_text};

/// Whether one of the gates fires on `sql`. `false` is certain: each gate's `false` is.
pub fn any_gate(sql: &str) -> bool {
    identity_settings::may_touch(sql)
        || settings::may_change_settings(sql)
        || sql_text::may_run_sql_text(sql)
        || exposing::may_name_exposing_objects(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gate_is_asked() {
        for sql in [
            "select set_config('a', 'b', false)",
            "SET search_path = x",
            "select 1; set role r",
            "reset all",
            "discard all",
            "do $$ begin end $$",
            "select query_to_xml('select 1', true, true, '')",
            "select * from pg_stats",
            "select * from pg_stat_activity",
            "select * from U&\"t\"",
            "select 'pgshroud'",
            "select 'a'\n'b'",
        ] {
            assert!(any_gate(sql), "{sql}");
        }
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "UPDATE t SET a = 1",
            "'x'",
            "12345",
            "0.5",
        ] {
            assert!(!any_gate(sql), "{sql}");
        }
    }

    /// Digits, with a point, are no word of any gate: a number literal never opens one (the
    /// session's memory asks only the pre-filter's table names of numbers).
    #[test]
    fn numbers_open_no_gate() {
        for n in ["0", "7", "42", "2147483647", "1.5", "0.0", "99999999999.25"] {
            assert!(!any_gate(n), "{n}");
        }
    }
}
