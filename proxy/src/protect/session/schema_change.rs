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
use crate::analyze::pg_reading::PgStatement;
use crate::analyze::{self, StatementKind};
use crate::protect::engine::Plan;
use crate::protect::wire::{Bind, Parse};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::tracker::Held;
use crate::protocol::types::frontend;
use crate::protocol::verdict::Verdict;
use crate::sql_limits::pg::Unparsed;

impl ProtectedSession {
    /// An extended-protocol statement just read (Parse) or bound (Bind) changes the schema of
    /// a protected table: the catalog is looked up after the Sync, and until then nothing
    /// behind it is planned.
    pub(super) fn schema_changes(&mut self) {
        self.refresh_at_sync = true;
        self.ddl_in_txn = true;
        self.schema_changed_in_pipeline = true;
    }

    /// A Parse of a rollback while the open transaction has changed the schema: the changes
    /// the catalog was read after may be undone (a dropped view over a protected table back),
    /// so what follows in the pipeline waits for the look-up after its Sync, as behind a
    /// schema change.
    pub(super) fn parse_may_undo_schema_changes(&mut self, sql: &[u8]) {
        if self.ddl_in_txn && ends_transaction(sql) {
            self.schema_changes();
        }
    }

    /// A statement prepared earlier, bound now, may undo the open transaction's schema
    /// changes (see [`Self::parse_may_undo_schema_changes`]).
    pub(super) fn bound_may_undo_schema_changes(&self, info: &super::PreparedInfo) -> bool {
        info.rolls_back
            && self.ddl_in_txn
            && info
                .query
                .as_deref()
                .is_none_or(|sql| ends_transaction(sql.as_bytes()))
    }

    /// A statement prepared earlier holding EXECUTE, bound now: its EXECUTE runs the
    /// statement that holds the name now (a Close and a Parse of the name since its own Parse
    /// may have made it one whose `$n` only a Bind seals), so it is checked again.
    pub(super) fn check_bound_execute(
        &mut self,
        info: &super::PreparedInfo,
    ) -> Result<(), PgError> {
        match (&info.query, info.executes) {
            (_, false) => Ok(()),
            (Some(sql), true) => self.check_sql_execute(sql),
            // Not UTF-8: refused at its Parse already; never run unread.
            (None, true) => Err(unread_execute()),
        }
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
                // Read as the Parse's own path reads it (an unreadable one is refused here).
                let parse = Parse::read(frame).ok();
                let text = parse
                    .as_ref()
                    .and_then(|p| std::str::from_utf8(&p.query).ok());
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
        match values_behind(sql, StatementKind::Ddl) {
            true => Err(not_planned_in_text()),
            false => Ok(()),
        }
    }
}

impl ProtectedSession {
    /// What a statement text (a simple Query's or a Parse's) may hold that depends on a
    /// catalog pgshroud has not read yet: `EXECUTE` of a statement prepared under another
    /// layout, values behind a rollback of the transaction's schema changes.
    pub(super) fn check_catalog_dependent(&mut self, sql: &str) -> Result<(), PgError> {
        let mode = self.settings.mode();
        if !crate::protocol::tracker::reads_as_server(sql, mode) {
            return self.check_catalog_dependent_unread(sql.as_bytes());
        }
        self.check_behind_rollback(sql)?;
        self.check_sql_execute(sql)
    }

    /// [`Self::check_catalog_dependent`] of a text PostgreSQL's grammar, as pgshroud runs
    /// it, does not read as the server will: not UTF-8 (forwarded unread), or read under
    /// another client_encoding or with backslash escapes (a name converted from LATIN1 is
    /// another name; `'\'` opens a string for the server and closes one here, so an EXECUTE
    /// may hide in what the grammar reads as a string or a syntax error). Neither an EXECUTE
    /// (its arguments are sealed by nothing) nor statements behind an end of a transaction
    /// that changed the schema can be told apart there: a text that may hold one is refused.
    pub(super) fn check_catalog_dependent_unread(&self, text: &[u8]) -> Result<(), PgError> {
        let ends = self.ddl_in_txn && may_end_rolling_back(text);
        if !has_word_start_bytes(text, b"execute") && !ends {
            return Ok(());
        }
        let error = self.settings.check_analysable().err().unwrap_or_else(|| {
            PgError::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "pgshroud cannot read this text as the server will",
            )
        });
        Err(PgError::error(
            error.code,
            format!(
                "pgshroud cannot read an EXECUTE, or a statement behind the end of a transaction that changed the schema, in this text: {}",
                error.message
            ),
        ))
    }

    /// A rollback in a transaction that changed the schema may undo what the catalog was read
    /// after (a dropped view over a protected table is back); statements behind it in the
    /// same query string were planned against the catalog before it: refused when they may
    /// carry a value, as behind a schema change.
    fn check_behind_rollback(&self, sql: &str) -> Result<(), PgError> {
        if !self.ddl_in_txn || !may_end_rolling_back(sql.as_bytes()) {
            return Ok(());
        }
        match values_behind(sql, StatementKind::Transaction) {
            true => Err(not_planned_in_text()),
            false => Ok(()),
        }
    }

    /// SQL-level `EXECUTE` with arguments in `sql`. Its arguments are literals the server
    /// binds to the statement's parameters with no Bind pgshroud could seal, so it runs only
    /// a statement pgshroud read as a SQL `PREPARE` (a `$n` compared with or written to a
    /// protected column is refused there) and the server confirmed, under the current layout
    /// and rules: the server analyses a prepared statement again whenever the catalog changes
    /// (after `CREATE TEMP VIEW notes` over a protected table, `EXECUTE p('value')` of a
    /// `PREPARE p AS ... WHERE body = $1` made while `notes` was plain would send the value
    /// unsealed). A statement prepared by Parse (the same namespace: its `$n` is sealed at
    /// Bind, and EXECUTE binds none), a name the session does not hold as SQL-prepared, or one
    /// whose PREPARE the server refused (the old statement stands) is refused too. A PREPARE
    /// earlier in the same query string counts: had it failed, the rest would not run.
    fn check_sql_execute(&mut self, sql: &str) -> Result<(), PgError> {
        use pg_query::NodeEnum;
        // Keywords cannot be spelled with escapes: a text without the word has none.
        if !has_word_start(sql, b"execute") {
            return Ok(());
        }
        let parsed = match crate::sql_limits::pg::parse(sql) {
            Ok(parsed) => parsed,
            // pgshroud's grammar is PostgreSQL 17's: a newer server may run what it rejects
            // (`... GENERATED ALWAYS AS (a) VIRTUAL` on 18), EXECUTE included.
            Err(Unparsed::Rejected) => return Err(unread_execute()),
            // The server may run it: its EXECUTE cannot be told apart.
            Err(Unparsed::TooDeep) => return Err(too_deep_to_read()),
        };
        let mut prepared_here = Vec::new();
        for raw in &parsed.protobuf.stmts {
            let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
                continue;
            };
            match innermost(node) {
                Some(NodeEnum::PrepareStmt(s)) => prepared_here.push(s.name.as_str()),
                Some(NodeEnum::ExecuteStmt(s))
                    if !s.params.is_empty() && !prepared_here.contains(&s.name.as_str()) =>
                {
                    self.check_execute_of(&s.name)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An EXECUTE with arguments of `name` outside the text that prepared it.
    fn check_execute_of(&self, name: &str) -> Result<(), PgError> {
        // As the server will hold the name when the EXECUTE arrives: made by a SQL PREPARE
        // (the tracker's `Foreign`), not by Parse, not closed since.
        if !matches!(self.names.statement(name), Some(Held::Foreign)) {
            return Err(not_prepared_in_sql(name));
        }
        match self.sql_prepared.get(name) {
            Some(&epoch) if epoch == self.plans_epoch => Ok(()),
            Some(_) => Err(prepared_before_a_change(name)),
            None => Err(not_prepared_in_sql(name)),
        }
    }

    /// Records a SQL `PREPARE` of `name` the server has just confirmed, under the current
    /// epoch (a look-up that changes it waits for the Sync after the PREPARE's answer). When
    /// the record is full it is forgotten: EXECUTE with arguments of a forgotten name is
    /// refused until it is prepared again.
    pub(super) fn sql_prepare_done(&mut self, name: &str) {
        if self.sql_prepared.len() >= SQL_PREPARED_KEPT && !self.sql_prepared.contains_key(name) {
            self.sql_prepared.clear();
        }
        self.sql_prepared.insert(name.to_owned(), self.plans_epoch);
    }
}

/// The statement an EXPLAIN or CREATE TABLE AS runs, through every level: EXECUTE stands
/// alone, in EXPLAIN, in CREATE TABLE AS, and in an EXPLAIN of CREATE TABLE AS (PostgreSQL's
/// grammar explains `CREATE TABLE ... AS EXECUTE`, and `EXPLAIN ANALYZE` runs it).
fn innermost(mut node: &pg_query::NodeEnum) -> Option<&pg_query::NodeEnum> {
    use pg_query::NodeEnum;
    loop {
        let query = match node {
            NodeEnum::ExplainStmt(s) => s.query.as_ref(),
            NodeEnum::CreateTableAsStmt(s) => s.query.as_ref(),
            other => return Some(other),
        };
        node = query.and_then(|q| q.node.as_ref())?;
    }
}

/// SQL-prepared statement names whose epoch is kept.
const SQL_PREPARED_KEPT: usize = 1024;

fn not_prepared_in_sql(name: &str) -> PgError {
    PgError::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "pgshroud runs EXECUTE with arguments only of a statement prepared with PREPARE in this session since the catalog or rules last changed, and \"{name}\" is not one: PREPARE it (again), or send its parameters in a Bind"
        ),
    )
    .with_detail("EXECUTE's arguments reach the server without a Bind, so pgshroud cannot seal them for a protected column; a PREPARE it has read cannot compare or write a protected column with a parameter.")
}

fn prepared_before_a_change(name: &str) -> PgError {
    PgError::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "pgshroud cannot run EXECUTE with arguments of the statement \"{name}\" prepared in SQL before the catalog or rules changed: DEALLOCATE it and PREPARE it again"
        ),
    )
    .with_detail(
        "PostgreSQL analyses a prepared statement again after a schema change; a new view or \
         search_path may give its parameters a protected column pgshroud did not see at \
         PREPARE, and the arguments would reach the server unsealed.",
    )
}

/// Whether `sql` holds a constant or a parameter anywhere, as PostgreSQL's grammar reads it
/// (a text it cannot read counts as holding one).
fn carries_values(sql: &str) -> bool {
    analyze::reading_within_limits(sql)
        .is_none_or(|reading| reading.statements.iter().any(holds_values))
}

/// Whether a statement after the first of kind `first` in `sql` holds a constant or a
/// parameter (a text PostgreSQL's grammar does not read counts as holding one).
fn values_behind(sql: &str, first: StatementKind) -> bool {
    analyze::reading_within_limits(sql).is_none_or(|reading| {
        reading
            .statements
            .iter()
            .skip_while(|s| s.kind != first)
            .skip(1)
            .any(holds_values)
    })
}

fn holds_values(statement: &PgStatement) -> bool {
    !statement.constants.is_empty() || !statement.params.is_empty()
}

/// Whether `text` holds `word` anywhere, in any case.
/// Whether a statement text may hold a SQL `EXECUTE` (keywords have no escaped spellings).
pub(super) fn may_execute(text: &[u8]) -> bool {
    has_word_start_bytes(text, b"execute")
}

fn has_word_start(text: &str, word: &[u8]) -> bool {
    has_word_start_bytes(text.as_bytes(), word)
}

fn has_word_start_bytes(text: &[u8], word: &[u8]) -> bool {
    text.windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether a statement text may end the open transaction rolling it back: a rollback, and
/// also `COMMIT`, `END` or `PREPARE TRANSACTION`, which roll back a failed block (answered
/// `ROLLBACK`, no error, and the rest of a query string runs). pgshroud may not know yet
/// that the block failed (an earlier statement's answer still on its way), so in a
/// transaction that changed the schema each of them counts. A gate only: what follows is read
/// with PostgreSQL's grammar (`values_behind`).
/// [`may_end_rolling_back`], confirmed by PostgreSQL's grammar: a transaction-control
/// statement (so `CASE ... END` or a column named `commit_id` is not one). A text it does not
/// read counts.
fn ends_transaction(sql: &[u8]) -> bool {
    may_end_rolling_back(sql)
        && std::str::from_utf8(sql)
            .ok()
            .and_then(analyze::reading_within_limits)
            .is_none_or(|reading| {
                reading
                    .statements
                    .iter()
                    .any(|s| s.kind == StatementKind::Transaction)
            })
}

pub(super) fn may_end_rolling_back(sql: &[u8]) -> bool {
    crate::protocol::text_settings::may_roll_back(sql)
        || sql
            .split(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$' || *b >= 0x80))
            .any(|word| {
                [&b"commit"[..], b"end", b"prepare"]
                    .iter()
                    .any(|w| word.eq_ignore_ascii_case(w))
            })
}

/// Words after which `check_catalog_dependent` and `parse_may_undo_schema_changes` read a
/// text (SQL `EXECUTE`, a rollback that may undo schema changes): such a text is never
/// remembered as harmless, so those readings are never skipped. (`COMMIT`, `END` and
/// `PREPARE TRANSACTION` count only in a transaction that changed the schema, where the
/// memory of harmless texts is not used.)
pub(super) fn catalog_dependent_words(text: &str) -> bool {
    crate::protocol::text_settings::may_roll_back(text.as_bytes())
        || has_word_start(text, b"execute")
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

fn unread_execute() -> PgError {
    PgError::error(
        sqlstate::SYNTAX_ERROR,
        "pgshroud could not read this statement holding EXECUTE with PostgreSQL's grammar; it was not sent",
    )
}

fn too_deep_to_read() -> PgError {
    PgError::error(
        sqlstate::STATEMENT_TOO_COMPLEX,
        format!(
            "pgshroud cannot read a PREPARE or EXECUTE nested more than {} levels deep",
            crate::sql_limits::MAX_NESTING
        ),
    )
}

fn not_planned_in_text() -> PgError {
    PgError::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "pgshroud cannot plan statements with values that follow a schema change on a protected table (or a rollback of one) in the same query string: send them as a separate query",
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

    /// A SQL PREPARE the server answered, as a simple Query.
    fn prepared(s: &mut super::ProtectedSession, name: &str) {
        let sql = format!("prepare {name} as select $1::int");
        assert_eq!(refusal_code(&s.client_message(&query(&sql))), None);
        answer(s, &["CPREPARE\0", "ZI"]);
    }

    #[test]
    fn execute_with_arguments_runs_only_what_the_server_confirmed_as_sql_prepared_now() {
        let mut s = catalog_session("app");
        prepared(&mut s, "p");
        assert!(s.check_sql_execute("execute p(1)").is_ok());
        // Refused by the server (the name exists): the record keeps its epoch.
        s.plans_epoch += 1;
        let again = query("prepare p as select $1::int");
        assert_eq!(refusal_code(&s.client_message(&again)), None);
        answer(&mut s, &["E", "ZI"]);
        assert!(
            s.check_sql_execute("execute p(1)").is_err(),
            "before the change"
        );
        assert!(
            s.check_sql_execute("execute p").is_ok(),
            "no argument, no value"
        );
        // Prepared in the same text, or again after the change: runs.
        assert!(s
            .check_sql_execute("prepare q as select $1::int; execute q(1)")
            .is_ok());
        prepared(&mut s, "fresh");
        assert!(s.check_sql_execute("execute fresh(1)").is_ok());
        // A text pgshroud's grammar (17's) rejects may run on a newer server: refused.
        let newer =
            "execute fresh(1); create temp table z (a int, b int generated always as (a) virtual)";
        assert!(s.check_sql_execute(newer).is_err());
        // Unknown, or prepared by Parse (its `$n` is sealed only at Bind): refused.
        assert!(s.check_sql_execute("execute nobody(1)").is_err());
        s.client_message(&parse("by_parse", "select $1::int"));
        s.client_message(&sync());
        answer(&mut s, &["1", "ZI"]);
        assert!(s.check_sql_execute("execute by_parse(1)").is_err());
    }

    #[test]
    fn the_record_of_sql_prepared_statements_is_bounded_and_fails_closed() {
        let mut s = catalog_session("app");
        for i in 0..=super::SQL_PREPARED_KEPT {
            prepared(&mut s, &format!("p{i}"));
        }
        assert_eq!(s.sql_prepared.len(), 1, "forgotten when full");
        assert!(s.check_sql_execute("execute p0(1)").is_err(), "forgotten");
        let last = super::SQL_PREPARED_KEPT;
        assert!(s.check_sql_execute(&format!("execute p{last}(1)")).is_ok());
    }

    /// A text that may hold EXECUTE, read otherwise than the server (another client_encoding
    /// and non-ASCII, or not UTF-8 at all): refused with the setting's SQLSTATE.
    #[test]
    fn execute_in_a_text_read_otherwise_is_refused() {
        let mut s = catalog_session("app");
        prepared(&mut s, "p");
        s.server_message(&message(b'S', b"client_encoding\0LATIN1\0"));
        for text in [
            &b"execute p(1) -- caf\xc3\xa9"[..],
            b"execute p(1) -- caf\xe9",
        ] {
            let q = message(b'Q', &[text, b"\0"].concat());
            let code = refusal_code(&s.client_message(&q));
            assert_eq!(code.as_deref(), Some("22021"), "{text:?}");
            answer(&mut s, &["E", "ZI"]);
        }
        // ASCII reads the same in LATIN1: the usual check.
        assert_eq!(
            refusal_code(&s.client_message(&query("execute p(1)"))),
            None
        );
    }

    #[test]
    fn only_transaction_control_ends_a_transaction() {
        for ends in [
            "commit",
            "END",
            "prepare transaction 'x'",
            "rollback",
            "abort",
        ] {
            assert!(super::ends_transaction(ends.as_bytes()), "{ends}");
        }
        for not in [
            "select case when true then 1 end as commit_id",
            "prepare p as select 1",
            "select 1",
        ] {
            assert!(!super::ends_transaction(not.as_bytes()), "{not}");
        }
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
