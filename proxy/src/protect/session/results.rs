//! Result rows, server to client: Row/ParameterDescription rewritten to the logical types, each
//! DataRow's protected values revealed as the caller's role may see them, and max_rows.

use std::sync::Arc;

use bytes::BytesMut;
use pgshroud_rules::{Action, LogicalType, BYTEA_OID};

use super::described::{self, Analysis};
use super::{
    server_broke_protocol, Described, Expect, PreparedInfo, ProtectedSession, RowPlan, Shape,
};

use crate::analyze;
use crate::ops::metrics::RefusalReason;
use crate::protect::backstop::Backstop;
use crate::protect::engine::{Plan, ViewColumn};
use crate::protect::reveal::Output;
use crate::protect::wire::{self, Format};
use crate::protocol::error::{sqlstate, PgError, Severity};
use crate::protocol::tracker::Held;
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// The plan of the statement whose answers arrive now.
    pub(super) fn current_plan(&self) -> Option<(Arc<Plan>, usize)> {
        match self.pending.front()? {
            Expect::Query {
                plan, statement, ..
            } => Some((plan.clone()?, *statement)),
            Expect::Execute { portal, .. } => {
                let portal = self.names.confirmed_portal(portal)?;
                Some((portal.statement.plan.clone()?, 0))
            }
            _ => None,
        }
    }

    /// The statement the server holds under `name` now, when the proxy knows it.
    fn confirmed_statement(&self, name: &str) -> Option<&Arc<PreparedInfo>> {
        match self.names.confirmed_statement(name)? {
            Held::Known(info) => Some(info),
            Held::Foreign => None,
        }
    }

    pub(super) fn parameter_description(&mut self, frame: &[u8]) -> Verdict {
        let Some(Expect::DescribeStatement { name, ours }) = self.pending.front() else {
            return Verdict::Forward;
        };
        if *ours {
            return Verdict::Drop;
        }
        let Some(info) = self.confirmed_statement(name) else {
            return Verdict::Forward;
        };
        if info.params().iter().all(Option::is_none) {
            return Verdict::Forward;
        }
        let Ok(mut types) = wire::read_parameter_description(frame) else {
            return server_broke_protocol("malformed ParameterDescription");
        };
        for (i, (t, param)) in types.iter_mut().zip(info.params()).enumerate() {
            let Some(param) = param else { continue };
            // PostgreSQL echoes a type the client declared (pgjdbc insists on it: varchar for
            // setString); only undeclared parameters get the column's logical type.
            *t = match info.declared.get(i).copied().unwrap_or(0) {
                0 if param.array => param.spec.logical.array_oid(),
                0 => param.spec.logical.oid(),
                declared => declared,
            };
        }
        Verdict::Replace(wire::write_parameter_description(&types))
    }

    /// The protected column behind each field: by table OID and attribute number, or for
    /// expressions and set operations (no origin) by the analysis of the statement.
    pub(super) fn row_plan(&self, fields: &[wire::Field], plan: Option<(&Plan, usize)>) -> RowPlan {
        let analysis = Analysis::of(plan);
        let (outputs, links) = (analysis.outputs(), analysis.links());
        let specs = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let known = if f.table_oid != 0 {
                    if let Some(view) = self.layout.view_column(f.table_oid, f.attnum) {
                        return self.view_output(view, f.type_oid);
                    }
                    self.shared.spec_for(&self.catalog, f.table_oid, f.attnum)
                } else {
                    outputs
                        .get(i)
                        .copied()
                        .flatten()
                        .and_then(|id| self.shared.spec_by_id(id).cloned())
                };
                let Some(spec) = known else {
                    let unknown =
                        f.table_oid != 0 && self.catalog.table_by_oid(f.table_oid).is_none();
                    if unknown && self.catalog_behind && self.policy.backstop().is_active() {
                        return Some(Output::unmapped(Arc::new(Backstop::everything())));
                    }
                    return (f.type_oid == BYTEA_OID && self.policy.backstop().is_active())
                        .then(|| Output::unmapped(self.policy.backstop().clone()));
                };
                // Columns merged with this one by a set operation can reach it too.
                let sources: Vec<_> = self
                    .shared
                    .id_of(&spec)
                    .map(|id| analyze::merged_with(id, links))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|id| self.shared.spec_by_id(id).cloned())
                    .collect();
                Some(self.policy.merged_output(spec, &sources, &self.shared.keys))
            })
            .collect();
        Arc::new(specs)
    }

    /// A bytea result column of a relation the catalog does not know (made around pgshroud
    /// since the last look-up: a view, a child) was shaped by the backstop; the next
    /// statement looks the catalog up again, once per such relation.
    fn note_unknown_origins(&mut self, fields: &[wire::Field]) {
        for f in fields {
            let unknown = f.table_oid != 0
                && f.type_oid == BYTEA_OID
                && self.catalog.table_by_oid(f.table_oid).is_none()
                && self.layout.view_column(f.table_oid, f.attnum).is_none()
                && !self.plain_origins.contains(&f.table_oid);
            if unknown && self.unknown_origins.insert(f.table_oid) {
                self.catalog_stale = true;
            }
        }
    }

    /// A view's column: a plain one as its protected column (with those merged into it); a
    /// computed one passes (under the backstop) to a role that may receive every protected
    /// column it may come from as stored or in plaintext, and is NULL for any other role.
    fn view_output(&self, view: &ViewColumn, type_oid: u32) -> Option<Output> {
        let spec_of = |id: &usize| self.shared.spec_by_id(*id).cloned();
        match view {
            ViewColumn::Plain { id, merged } => {
                let spec = spec_of(id)?;
                let sources: Vec<_> = merged.iter().filter_map(spec_of).collect();
                Some(self.policy.merged_output(spec, &sources, &self.shared.keys))
            }
            ViewColumn::Computed(sources) => {
                let readable = sources.iter().filter_map(spec_of).all(|s| {
                    matches!(self.policy.action(&s), Action::Decrypt | Action::Ciphertext)
                });
                if !readable {
                    return Some(Output::unmapped(Arc::new(Backstop::everything())));
                }
                (type_oid == BYTEA_OID && self.policy.backstop().is_active())
                    .then(|| Output::unmapped(self.policy.backstop().clone()))
            }
        }
    }

    pub(super) fn row_description(&mut self, frame: &[u8]) -> Verdict {
        let (statement, ours) = match self.pending.front() {
            Some(Expect::DescribeStatement { name, ours }) => {
                (self.confirmed_statement(name).cloned(), *ours)
            }
            Some(Expect::DescribePortal { name, ours }) => (
                self.names
                    .confirmed_portal(name)
                    .map(|p| p.statement.clone()),
                *ours,
            ),
            _ => (None, false),
        };
        let describes_statement =
            matches!(self.pending.front(), Some(Expect::DescribeStatement { .. }));
        let plan = match (&statement, self.pending.front()) {
            (_, Some(Expect::DescribeStatement { .. } | Expect::DescribePortal { .. })) => {
                statement
                    .as_ref()
                    .and_then(|s| s.plan.clone())
                    .map(|p| (p, 0))
            }
            _ => self.current_plan(),
        };
        let analysis = Analysis::of(plan.as_ref().map(|(p, i)| (&**p, *i)));
        // A statement's own description comes once per Parse; a FETCH's columns are the
        // cursor's, kept per portal. Every other description may have been seen before.
        let remembered = !describes_statement && statement.as_ref().is_none_or(|s| !s.fetches);
        if remembered {
            if let Some(hit) = self.described.get(self, analysis, frame) {
                return self.described_as(hit.rows, hit.reply, ours);
            }
        }
        let Ok(mut fields) = wire::read_row_description(frame) else {
            return server_broke_protocol("malformed RowDescription");
        };
        let rows = self.row_plan(&fields, plan.as_ref().map(|(p, i)| (&**p, *i)));
        self.note_unknown_origins(&fields);
        let mut changed = false;
        for (field, output) in fields.iter_mut().zip(rows.iter()) {
            if let Some(output) = output.as_ref().filter(|o| o.changes_type()) {
                field.type_oid = output.type_oid();
                field.type_len = output.type_len();
                field.type_mod = output.type_mod();
                changed = true;
            }
        }
        let reply = changed.then(|| wire::write_row_description(&fields));
        if describes_statement {
            if let Some(info) = &statement {
                let _ = info.described.set(Described { fields, rows });
            }
            self.pending.pop_front();
            return drop_or(ours, reply);
        }
        if remembered && described::reusable(self, &fields) {
            let mut cache = std::mem::take(&mut self.described);
            cache.insert(self, analysis, frame, rows.clone(), reply.clone());
            self.described = cache;
        }
        self.described_as(rows, reply, ours)
    }

    /// The description of a portal or a simple query's result, worked out now or before:
    /// kept for the rows that follow, and the client's message.
    fn described_as(&mut self, rows: RowPlan, reply: Option<BytesMut>, ours: bool) -> Verdict {
        match self.pending.front() {
            Some(Expect::DescribePortal { name, .. }) => {
                if let Some(portal) = self.names.confirmed_portal(name) {
                    let _ = portal.described.set(rows);
                }
                self.pending.pop_front();
            }
            _ => {
                // A simple query's result (always text format) follows right away.
                self.shape = Some(Shape {
                    plan: rows,
                    formats: Vec::new(),
                });
            }
        }
        drop_or(ours, reply)
    }

    /// Sets `self.shape` for the rows arriving now, when they have one: the simple query's
    /// RowDescription set it, or the portal's description (once per Execute, not per row).
    fn ensure_shape(&mut self) -> bool {
        if self.shape.is_some() {
            return true;
        }
        let Some(Expect::Execute { portal, .. }) = self.pending.front() else {
            return false;
        };
        let Some(portal) = self.names.confirmed_portal(portal) else {
            return false;
        };
        // A FETCH's columns are the cursor's at the time it runs, which its portal's
        // description (asked for right before the Execute) tells.
        let plan = if portal.statement.fetches {
            portal.described.get().cloned()
        } else {
            portal.statement.described.get().map(|d| d.rows.clone())
        };
        let Some(plan) = plan else {
            return false;
        };
        self.shape = Some(Shape {
            plan,
            formats: portal.result_formats.clone(),
        });
        true
    }

    pub(super) fn data_row(&mut self, frame: &[u8]) -> Verdict {
        if !self.ensure_shape() {
            return Verdict::Forward;
        }
        // Taken out for the row (no clone per row) and put back for the next one.
        let Some(shape) = self.shape.take() else {
            return Verdict::Forward;
        };
        let verdict = self.reveal_row(&shape, frame);
        self.shape = Some(shape);
        verdict
    }

    /// One DataRow of `shape`: protected values revealed, the rest copied as they came.
    fn reveal_row(&mut self, shape: &Shape, frame: &[u8]) -> Verdict {
        if shape.plan.iter().flatten().all(Output::passes_stored) {
            return Verdict::Forward;
        }
        let Ok(values) = wire::data_row_values(frame) else {
            return server_broke_protocol("malformed DataRow");
        };
        // Plaintext is shorter than its envelope's hex: the frame's length is room enough.
        let mut row = wire::DataRowWriter::new(values.len(), frame.len());
        for (i, value) in values.into_iter().enumerate() {
            let (Some(Some(output)), Some(stored)) = (shape.plan.get(i), value) else {
                row.value(value);
                continue;
            };
            let format = wire::format_of(&shape.formats, i);
            if let Some(backstop) = &output.backstop {
                if backstop.withholds(stored, format) {
                    row.value(None);
                    self.revealed.count(Action::Null);
                } else {
                    row.value(Some(stored));
                }
                continue;
            }
            let cipher = self.ciphers.get(&output.spec.context);
            match output.reveal(cipher, stored, format) {
                Ok(shown) => {
                    if let Some(error) = self.untranslatable(shown.as_deref(), format, output) {
                        return self.fail_results(error);
                    }
                    row.value(shown.as_deref());
                }
                Err(error) => return self.fail_results(error),
            }
            self.revealed.count(output.action);
        }
        Verdict::Replace(row.finish())
    }

    /// Revealed values are UTF-8 (plaintext as it was written, masks); a client that reads
    /// another encoding (a statement analysed before `SET client_encoding`, a cursor FETCHed
    /// after it) would read non-ASCII characters as other ones. pgshroud does not convert
    /// them: such a value is an error (PostgreSQL's 22P05 for an untranslatable character).
    /// SQL_ASCII clients get the server's bytes unconverted from PostgreSQL too.
    fn untranslatable(
        &self,
        shown: Option<&[u8]>,
        format: Format,
        output: &Output,
    ) -> Option<PgError> {
        let encoding = self.settings.client_encoding.as_str();
        if matches!(encoding, "UTF8" | "SQL_ASCII") || shown.is_none_or(|v| v.is_ascii()) {
            return None;
        }
        // Other types' binary forms are not text.
        let textual = format == Format::Text
            || matches!(
                output.spec.logical,
                LogicalType::Text | LogicalType::Varchar | LogicalType::Jsonb
            )
            || matches!(output.action, Action::Mask(_));
        textual.then(|| {
            PgError::error(
                sqlstate::UNTRANSLATABLE_CHARACTER,
                format!(
                    "pgshroud cannot send a value of protected column {} in client_encoding {encoding}: it holds characters outside ASCII and pgshroud sends protected values in UTF8; set client_encoding to UTF8",
                    output.spec.qualified
                ),
            )
        })
    }

    /// Counts a result row against the role's `max_rows`. With `enforce = true`, the row past
    /// the limit ends the session: stopping only the statement would leave the client believing
    /// it failed while the server ran it (and the rest of a pipeline) to the end.
    pub(super) fn enforce_row_limit(&mut self) -> Option<Verdict> {
        self.statement_rows += 1;
        let role = self.policy.role();
        let max = role.max_rows.filter(|_| role.enforce)?;
        if self.statement_rows <= max {
            return None;
        }
        self.metrics.refusal(RefusalReason::RowLimit);
        Some(Verdict::End(PgError::fatal(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "role {} may read at most {max} rows in one statement: pgshroud stopped the statement and closed the connection (max_rows with enforce = true)",
                role.name
            ),
        )))
    }

    /// A stored value did not decrypt: the session ends (as `max_rows` enforcement does).
    /// Stopping only the result would leave the client believing the statement failed while
    /// the server ran it, and the rest of its pipeline, to the end.
    pub(super) fn fail_results(&mut self, error: PgError) -> Verdict {
        self.copy = None;
        self.copy_out = None;
        Verdict::End(PgError {
            severity: Severity::Fatal,
            ..error
        })
    }
}

/// The client's RowDescription: none (ours), the rewritten one, or the server's as it is.
fn drop_or(ours: bool, reply: Option<BytesMut>) -> Verdict {
    match (ours, reply) {
        (true, _) => Verdict::Drop,
        (false, Some(reply)) => Verdict::Replace(reply),
        (false, None) => Verdict::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_protected_column_with_a_name_in_another_encoding_is_still_mapped() {
        let mut s = test_session("app");
        let row = |attnum: &str, name: &str, ty: &str| {
            ["42", "public", "customers", attnum, name, ty]
                .map(|v| Some(v.to_owned()))
                .into_iter()
                .chain([None])
                .collect()
        };
        s.catalog = Catalog::from_rows(vec![row("1", "id", "int4"), row("2", "email", "bytea")]);
        s.server_message(&message(b'S', b"client_encoding\0LATIN9\0"));
        s.client_message(&message(b'Q', b"FETCH ALL c\0"));
        let Verdict::Replace(mapped) = s.server_message(&row_description(b"\xa4", 42, 2)) else {
            panic!("a protected column's RowDescription must be mapped");
        };
        let fields = wire::read_row_description(&mapped).unwrap();
        assert_eq!(fields[0].name, b"\xa4");
        assert_eq!(fields[0].type_oid, 25);
        // The unprotected column of the same table passes as the server sent it.
        s.client_message(&message(b'Q', b"FETCH ALL c\0"));
        answer(&mut s, &["CFETCH 0\0", "ZI"]);
        assert_eq!(
            s.server_message(&row_description(b"\xa4", 42, 1)),
            Verdict::Forward
        );
    }

    #[test]
    fn a_partition_s_column_is_read_as_the_protected_table_s() {
        let mut s = catalog_session("support");
        let stored = stored_email(&mut s, "alice@example.com");
        let row = |oid: &str, table: &str, attnum: &str, name: &str, root: &str| {
            let mut r: Vec<Option<String>> = [oid, "public", table, attnum, name, "bytea"]
                .map(|v| Some(v.to_owned()))
                .into();
            r.extend([None, Some(root.to_owned())]);
            r
        };
        s.catalog = Catalog::from_rows(vec![
            row(&CUSTOMERS_OID.to_string(), "customers", "2", "email", "0"),
            row(
                "50000",
                "customers_p1",
                "7",
                "email",
                &CUSTOMERS_OID.to_string(),
            ),
        ]);
        s.layout = s.shared.layout(&s.catalog);
        // The partition's name is protected too: the pre-filter and analysis see it.
        assert!(s
            .layout
            .mentions_protected("select email from customers_p1"));
        s.client_message(&query("select email from customers_p1"));
        let described = s.server_message(&row_description(b"email", 50000, 7));
        assert!(matches!(described, Verdict::Replace(_)), "{described:?}");
        let shown = replaced(s.server_message(&data_row(&[Some(&stored)])));
        let values = wire::read_data_row(&shown).unwrap();
        assert_eq!(values[0].as_deref(), Some(&b"a****@example.com"[..]));
        // support has no write right: not through the partition either.
        let refused = replaced(s.client_message(&query("delete from customers_p1")));
        assert!(refused.windows(7).any(|w| w == b"'42501'"), "{refused:?}");
    }

    #[test]
    fn a_value_that_does_not_decrypt_ends_the_session() {
        let mut s = test_session("app");
        match s.fail_results(PgError::error("39000", "could not decrypt")) {
            Verdict::End(e) => assert_eq!(e.severity, Severity::Fatal),
            other => panic!("{other:?}"),
        }
    }

    /// What `user` receives for one stored email in a simple query's result.
    fn email_row_for(user: &str) -> (wire::Field, Option<Vec<u8>>) {
        let mut s = catalog_session(user);
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&query("select email from customers"));
        let described = s.server_message(&row_description(b"email", CUSTOMERS_OID, 2));
        let field = wire::read_row_description(&replaced(described)).unwrap()[0].clone();
        let row = replaced(s.server_message(&data_row(&[Some(&stored)])));
        (field, wire::read_data_row(&row).unwrap()[0].clone())
    }

    #[test]
    fn app_sees_a_protected_column_decrypted_as_its_logical_type() {
        let (field, value) = email_row_for("app");
        assert_eq!(field.type_oid, 25);
        assert_eq!(value.as_deref(), Some(&b"alice@example.com"[..]));
    }

    #[test]
    fn support_sees_a_protected_column_masked() {
        let (field, value) = email_row_for("support");
        assert_eq!(field.type_oid, 25);
        assert_eq!(value.as_deref(), Some(&b"a****@example.com"[..]));
    }

    #[test]
    fn an_unprotected_column_of_a_protected_table_passes_untouched() {
        let mut s = catalog_session("app");
        s.client_message(&query("select name from customers"));
        let described = s.server_message(&row_description(b"name", CUSTOMERS_OID, 3));
        assert_eq!(described, Verdict::Forward);
        assert_eq!(
            s.server_message(&data_row(&[Some("Alice")])),
            Verdict::Forward
        );
    }

    #[test]
    fn an_extended_execute_is_decrypted_with_the_described_shape() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&parse("q", "select email from customers"));
        s.client_message(&bind("", "q"));
        s.client_message(&execute(""));
        s.client_message(&sync());
        // ParseComplete, then our Describe's answers (dropped), BindComplete, the rows.
        answer(&mut s, &["1", "t\0\0"]);
        let described = s.server_message(&row_description(b"email", CUSTOMERS_OID, 2));
        assert_eq!(described, Verdict::Drop);
        answer(&mut s, &["2"]);
        let row = replaced(s.server_message(&data_row(&[Some(&stored)])));
        let values = wire::read_data_row(&row).unwrap();
        assert_eq!(values[0].as_deref(), Some(&b"alice@example.com"[..]));
    }

    #[test]
    fn a_protected_parameter_is_described_with_its_logical_type() {
        let mut s = catalog_session("app");
        s.client_message(&parse("ins", "insert into customers (email) values ($1)"));
        assert_eq!(
            s.client_message(&message(b'D', b"Sins\0")),
            Verdict::Forward
        );
        s.client_message(&sync());
        answer(&mut s, &["1"]);
        let bytea = wire::write_parameter_description(&[17]);
        assert_eq!(s.server_message(&bytea), Verdict::Drop);
        assert_eq!(s.server_message(&message(b'n', b"")), Verdict::Drop);
        let client = replaced(s.server_message(&bytea));
        assert_eq!(wire::read_parameter_description(&client).unwrap(), [25]);
    }

    #[test]
    fn the_row_past_an_enforced_max_rows_ends_the_session_with_54000() {
        let mut s = catalog_session("support");
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&query("select email from customers"));
        s.server_message(&row_description(b"email", CUSTOMERS_OID, 2));
        for _ in 0..2 {
            replaced(s.server_message(&data_row(&[Some(&stored)])));
        }
        let third = s.server_message(&data_row(&[Some(&stored)]));
        assert_eq!(end_code(third), "54000");
    }
}
