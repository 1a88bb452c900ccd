//! A schema change on a protected table, and what is sent behind it before pgshroud can read
//! the catalog again.
//!
//! The catalog is looked up again at the Sync that follows such a change (or, for a simple
//! Query, before the next statement). Until then a name may already mean something the proxy
//! does not know: `CREATE TEMP VIEW notes AS SELECT email AS body FROM customers` shadows a
//! plain `notes`, and `WHERE body = $1` behind it in the same pipeline would carry its value
//! to the server unsealed. So what follows a schema change in the same pipeline (or in the
//! same query string) is refused rather than planned against the old catalog when it may carry
//! a value: a statement text holding a constant or a parameter (as PostgreSQL's grammar reads
//! it), a Bind with parameters, any simple Query. What carries none (`COMMIT`, another
//! `CREATE VIEW ... AS SELECT` of columns, `GRANT`), the Bind and Execute of the change itself,
//! and everything after the Sync go on. A result column of a relation the catalog does not know
//! yet is shaped by the read backstop, as for a view made around pgshroud.

use super::ProtectedSession;
use crate::analyze::{self, StatementKind};
use crate::protect::engine::Plan;
use crate::protect::wire::Bind;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::types::frontend;
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// An extended-protocol statement just read (Parse) or bound (Bind) changes the schema of
    /// a protected table: the catalog is looked up after the Sync, and until then nothing
    /// behind it is planned.
    pub(super) fn schema_changes(&mut self) {
        self.refresh_at_sync = true;
        self.ddl_in_txn = true;
        self.schema_changed_in_pipeline = true;
    }

    /// A client message behind a schema change in the same pipeline: `Some`, its refusal.
    pub(super) fn after_schema_change(&mut self, kind: u8, frame: &[u8]) -> Option<Verdict> {
        match kind {
            frontend::SYNC => {
                self.schema_changed_in_pipeline = false;
                None
            }
            frontend::QUERY => {
                self.push_query(None, false);
                Some(self.refuse_query(&not_planned()))
            }
            frontend::PARSE => {
                let text = frame.get(5..).and_then(|body| {
                    let name_end = body.iter().position(|&b| b == 0)?;
                    let rest = &body[name_end + 1..];
                    let text_end = rest.iter().position(|&b| b == 0)?;
                    std::str::from_utf8(&rest[..text_end]).ok()
                });
                match text.map(carries_values) {
                    Some(false) => None,
                    _ => Some(self.refuse_extended(&not_planned())),
                }
            }
            frontend::BIND => match Bind::read(frame) {
                Ok(bind) if !bind.params.is_empty() => Some(self.refuse_extended(&not_planned())),
                // No value to seal (the change's own Bind), or unreadable: the Bind's own path.
                _ => None,
            },
            _ => None,
        }
    }

    /// A simple Query's text changes the schema of a protected table and has statements
    /// behind the change that may carry a value: they were planned against the catalog before
    /// it, so the text is refused.
    pub(super) fn check_after_schema_change(&self, sql: &str, plan: &Plan) -> Result<(), PgError> {
        if !plan.refreshes_catalog {
            return Ok(());
        }
        let Some(reading) = analyze::reading_within_limits(sql) else {
            return Err(not_planned_in_text());
        };
        let behind = reading
            .statements
            .iter()
            .skip_while(|s| s.kind != StatementKind::Ddl)
            .skip(1)
            .any(|s| !s.constants.is_empty() || !s.params.is_empty());
        match behind {
            true => Err(not_planned_in_text()),
            false => Ok(()),
        }
    }
}

/// Whether `sql` holds a constant or a parameter anywhere, as PostgreSQL's grammar reads it
/// (a text it cannot read counts as holding one).
fn carries_values(sql: &str) -> bool {
    analyze::reading_within_limits(sql).is_none_or(|reading| {
        reading
            .statements
            .iter()
            .any(|s| !s.constants.is_empty() || !s.params.is_empty())
    })
}

const WHY: &str = "pgshroud reads the catalog again once a schema change on a protected table \
    has run; until then a new view or table may give a name a protected column pgshroud does \
    not know of, and a value compared with it or written to it would reach the server unsealed.";

fn not_planned() -> PgError {
    PgError::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "pgshroud cannot plan a statement with values sent after a schema change on a protected table in the same pipeline: send Sync after the schema change, then this statement",
    )
    .with_detail(WHY)
}

fn not_planned_in_text() -> PgError {
    PgError::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "pgshroud cannot plan statements with values that follow a schema change on a protected table in the same query string: send them as a separate query",
    )
    .with_detail(WHY)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::verdict::Verdict;

    const VIEW: &str = "create temp view notes as select id, email as body from customers";

    #[test]
    fn behind_a_schema_change_only_what_carries_no_value_goes_on_until_sync() {
        let mut s = catalog_session("app");
        assert_eq!(refusal_code(&s.client_message(&parse("", VIEW))), None);
        assert_eq!(s.client_message(&bind("", "")), Verdict::Forward);
        assert_eq!(s.client_message(&execute("")), Verdict::Forward);
        for refused in [
            parse("", "select id from notes where body = $1"),
            parse("", "select id from notes where body = 'a@b'"),
            parse("", "select id from notes limit 1"),
            bind_params("", "", &["a@b"]),
            query("select 1"),
        ] {
            let code = refusal_code(&s.client_message(&refused));
            assert_eq!(code.as_deref(), Some("0A000"), "{refused:?}");
        }
        for goes_on in [
            "commit",
            "create temp view n2 as select id, body from notes",
        ] {
            let code = refusal_code(&s.client_message(&parse("", goes_on)));
            assert_eq!(code, None, "{goes_on}");
        }
        s.client_message(&sync());
        let after = parse("", "select id from notes where body = $1");
        assert_eq!(refusal_code(&s.client_message(&after)), None);
    }

    #[test]
    fn a_query_string_with_values_behind_a_schema_change_is_refused_whole() {
        let mut s = catalog_session("app");
        let refused = query(&format!("{VIEW}; select id from notes where body = 'a@b'"));
        let code = refusal_code(&s.client_message(&refused));
        assert_eq!(code.as_deref(), Some("0A000"));
        let mut s = catalog_session("app");
        let fine = query(&format!("{VIEW}; grant select on notes to public; commit"));
        assert_eq!(refusal_code(&s.client_message(&fine)), None);
    }
}
