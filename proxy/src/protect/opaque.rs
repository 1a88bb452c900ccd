//! Paths the analysis cannot see into, closed to roles they would let past their rights:
//! server functions that run SQL text or dump tables (`query_to_xml`, `dblink`, `EXECUTE` of a
//! built string in `DO` or a created function), FunctionCall messages (a function run by OID),
//! and catalog views that hand out stored values or other sessions' statement texts
//! (`pg_stats`, `pg_stat_activity`, `pg_stat_statements`). What such a path reads reaches the
//! client as raw stored bytes, and what it runs may change a protected table: a role that may
//! not receive some protected column's stored values, or may not write some protected column,
//! may not use them.

use super::policy::{Policy, RoleRefusal, INSUFFICIENT_PRIVILEGE};
use crate::analyze::exposing;
use crate::analyze::sql_text::{self, SqlText};
use crate::analyze::ProtectedSchema;
use crate::protocol::error::PgError;

type Refused = (RoleRefusal, PgError);

impl Policy {
    /// Whether some protected column's stored ciphertext must not reach this role.
    pub fn withholds_stored_values(&self) -> bool {
        !self.withheld().is_empty()
    }

    /// Whether the paths of this module are closed to the role: it may not receive some
    /// column's stored values, or may not write some protected column.
    fn closes_opaque_paths(&self) -> bool {
        self.withholds_stored_values() || !self.unwritable().is_empty()
    }

    /// Whether the proxy must read `sql` for [`Policy::check_sql_text`] and
    /// [`Policy::check_exposing`].
    pub fn reads_sql_text(&self, sql: &str) -> bool {
        self.closes_opaque_paths()
            && (sql_text::may_run_sql_text(sql)
                || self.withholds_stored_values() && exposing::may_name_exposing_objects(sql))
    }

    /// Refuses a text that hands SQL or a table name to a server function that runs it
    /// (`query_to_xml`, `table_to_xml`, `dblink`, `EXECUTE` in plpgsql, ...) when what it can
    /// reach includes a protected column this role may not receive as stored (such results
    /// are raw stored bytes, whatever the role's action) or may not write (an SQL text can
    /// hold a data-modifying WITH; plpgsql can run anything). A text the proxy cannot read
    /// is refused.
    pub fn check_sql_text(&self, sql: &str, schema: &ProtectedSchema) -> Result<(), Refused> {
        self.check_exposing(sql)?;
        if !self.closes_opaque_paths() || !sql_text::may_run_sql_text(sql) {
            return Ok(());
        }
        let (column, what) = match sql_text::sql_text_calls(sql) {
            SqlText::None => return Ok(()),
            SqlText::Unreadable(what) => (self.first_closed_column(), what),
            SqlText::Literals(texts) => {
                let hit = texts.iter().find_map(|text| {
                    if !schema.mentions_protected_table(text) {
                        return None;
                    }
                    // A view or another spelling of a protected table: any of them.
                    let named = schema.tables_named_in(text);
                    self.withheld()
                        .iter()
                        .chain(self.unwritable())
                        .find(|(s, t, _)| {
                            named.is_empty() || named.iter().any(|(ns, nt)| ns == s && nt == t)
                        })
                        .map(|(_, _, q)| q.as_str())
                });
                match hit {
                    Some(column) => (
                        column,
                        "a server function given SQL text or a table name that reads it".to_owned(),
                    ),
                    None => return Ok(()),
                }
            }
        };
        Err((
            RoleRefusal::ColumnDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied for protected column {column}: role {} may not receive its stored values or may not change it, and {what} could do either unseen",
                    self.role().name
                ),
            )
            .with_hint("Query or change the table directly, so pgshroud can apply the role's rights to each column."),
        ))
    }

    /// Refuses a text naming a catalog view or function that hands out stored values or
    /// other sessions' statement texts (`pg_stats`, `pg_stat_activity`, ...) when the role
    /// may not receive some protected column's stored values.
    fn check_exposing(&self, sql: &str) -> Result<(), Refused> {
        if !self.withholds_stored_values() {
            return Ok(());
        }
        let what = match exposing::exposing_object(sql) {
            Ok(None) => return Ok(()),
            Ok(Some(name)) => name,
            Err(_) => "a catalog view pgshroud cannot read in this text".to_owned(),
        };
        Err((
            RoleRefusal::ColumnDenied,
            PgError::error(
                INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied for {what}: role {} may not receive the stored values of protected column {}, and {what} shows stored values or other sessions' statements unchanged",
                    self.role().name,
                    self.first_closed_column()
                ),
            )
            .with_hint("Ask for a role that may read every protected column as stored (or in plaintext) to look at statistics and activity."),
        ))
    }

    /// Whether the role may send FunctionCall messages (a function run by OID, outside any
    /// text the proxy could read): as its `statements` list says, and for a role these
    /// paths are closed to only when the list names `function_call`.
    pub fn allows_function_call(&self) -> bool {
        match &self.role().statements {
            Some(_) => self.role().allows_statement("function_call"),
            None => !self.closes_opaque_paths(),
        }
    }

    fn first_closed_column(&self) -> &str {
        self.withheld()
            .iter()
            .chain(self.unwritable())
            .map(|(_, _, q)| q.as_str())
            .next()
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protect::policy::tests::policy;

    fn schema() -> ProtectedSchema {
        let mut schema = ProtectedSchema::new();
        schema.protect("public", "customers", "email", "email");
        schema
    }

    #[test]
    fn function_calls_need_a_listing_unless_the_role_may_read_and_write_everything() {
        assert!(policy("app").allows_function_call());
        assert!(
            !policy("dba").allows_function_call(),
            "may not write: a function run by OID could"
        );
        assert!(
            !policy("sales").allows_function_call(),
            "withholds customers.email"
        );
        assert!(policy("caller").allows_function_call(), "listed explicitly");
    }

    #[test]
    fn plpgsql_running_built_strings_is_refused_to_roles_without_the_write_right() {
        let sql = "DO $$ BEGIN EXECUTE 'DELETE FROM cust' || 'omers'; END $$";
        assert!(policy("dba").reads_sql_text(sql));
        let (why, e) = policy("dba").check_sql_text(sql, &schema()).unwrap_err();
        assert_eq!(why, RoleRefusal::ColumnDenied);
        assert_eq!(e.code, INSUFFICIENT_PRIVILEGE);
        assert!(policy("app").check_sql_text(sql, &schema()).is_ok());
        let dump = "SELECT query_to_xml('WITH d AS (DELETE FROM customers RETURNING 1) SELECT * FROM d', true, false, '')";
        assert!(policy("dba").check_sql_text(dump, &schema()).is_err());
        assert!(policy("app").check_sql_text(dump, &schema()).is_ok());
    }

    #[test]
    fn statistics_and_activity_are_closed_to_roles_that_may_not_read_stored_values() {
        for sql in [
            "SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers'",
            "SELECT query FROM pg_catalog.pg_stat_activity",
            "SELECT * FROM U&\"pg\\005fstats\"",
        ] {
            assert!(policy("sales").reads_sql_text(sql), "{sql}");
            let (_, e) = policy("sales").check_sql_text(sql, &schema()).unwrap_err();
            assert!(e.message.contains("pg_stat"), "{}", e.message);
            assert!(
                policy("dba").check_sql_text(sql, &schema()).is_ok(),
                "{sql}"
            );
            assert!(
                policy("app").check_sql_text(sql, &schema()).is_ok(),
                "{sql}"
            );
        }
        assert!(!policy("sales").reads_sql_text("SELECT 1"));
    }
}
