//! Result descriptions seen before. libpq's `PQexecPrepared` (pgbench `-M prepared`, most
//! drivers' prepared path) sends Bind, Describe (portal), Execute, Sync on every execution, and
//! a simple-protocol statement of one shape (`WHERE email = 'u1@x'`, then `'u2@x'`) gets the
//! same RowDescription every time: the server describes the same result columns again and
//! again. Their row plan (which column is protected, what the role sees of it) and the
//! RowDescription the client gets are worked out once and answered again while nothing they
//! depend on changed.
//!
//! A row plan is a function of the server's RowDescription, the analysis of the statement
//! answering (its result columns and links), the rules served, the caller's policy, the
//! catalog (by its fingerprint) and whether the catalog is behind; an entry is found only
//! when all of them are what it was worked out under. A reload, a migrating column's swap and
//! a role matched again give another rules or policy object, a look-up another fingerprint.
//! The tenant is not among them: it chooses only the key a value is opened with, per value.

use std::sync::Arc;

use bytes::BytesMut;
use pgshroud_rules::BYTEA_OID;

use super::{ProtectedSession, RowPlan};
use crate::analyze::{ColumnId, ColumnLink};
use crate::protect::engine::{Plan, Protection};
use crate::protect::policy::Policy;
use crate::protect::wire;

/// Descriptions kept per session: a session runs few statements that return rows at a time;
/// beyond this the oldest is worked out again when it comes back.
const LIMIT: usize = 8;

/// The descriptions a session answered, most recent last.
#[derive(Default)]
pub(super) struct Descriptions {
    entries: Vec<Entry>,
}

/// What the analysis of the statement answering tells the row plan: its result columns
/// (protected ones by id, for expressions without an origin) and its links (columns merged
/// by a set operation). Empty for a statement that was not analysed.
#[derive(Clone, Copy, Default)]
pub(super) struct Analysis<'a> {
    outputs: &'a [Option<ColumnId>],
    links: &'a [ColumnLink],
}

impl<'a> Analysis<'a> {
    /// Statement `index` of `plan`.
    pub(super) fn of(plan: Option<(&'a Plan, usize)>) -> Analysis<'a> {
        let Some((plan, index)) = plan else {
            return Analysis::default();
        };
        Analysis {
            outputs: plan.outputs(index).unwrap_or_default(),
            links: plan
                .statements
                .get(index)
                .map(|s| s.links.as_slice())
                .unwrap_or_default(),
        }
    }

    pub(super) fn outputs(&self) -> &'a [Option<ColumnId>] {
        self.outputs
    }

    pub(super) fn links(&self) -> &'a [ColumnLink] {
        self.links
    }
}

/// One description and what it was worked out under. The `Arc`s are held (not only their
/// addresses), so an address is never another object's.
struct Entry {
    outputs: Vec<Option<ColumnId>>,
    links: Vec<ColumnLink>,
    shared: Arc<Protection>,
    policy: Arc<Policy>,
    catalog: u64,
    catalog_behind: bool,
    /// The RowDescription as the server sent it.
    frame: Vec<u8>,
    rows: RowPlan,
    /// What the client gets instead (`None`: the server's message as it is).
    reply: Option<BytesMut>,
}

/// A description answered again: the row plan and the client's message.
pub(super) struct Hit {
    pub rows: RowPlan,
    pub reply: Option<BytesMut>,
}

impl Descriptions {
    /// The description of the server's `frame` for a statement of `analysis`, when it was
    /// worked out before under what the session serves now.
    pub(super) fn get(
        &self,
        session: &ProtectedSession,
        analysis: Analysis<'_>,
        frame: &[u8],
    ) -> Option<Hit> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.frame == frame && e.same_context(session, analysis))
            .map(|e| Hit {
                rows: e.rows.clone(),
                reply: e.reply.clone(),
            })
    }

    /// Keeps a description worked out now (its entries of another context go).
    pub(super) fn insert(
        &mut self,
        session: &ProtectedSession,
        analysis: Analysis<'_>,
        frame: &[u8],
        rows: RowPlan,
        reply: Option<BytesMut>,
    ) {
        // Entries of old rules, policy or catalog would only hold them in memory.
        self.entries.retain(|e| e.same_session_state(session));
        if self.entries.len() >= LIMIT {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            outputs: analysis.outputs.to_vec(),
            links: analysis.links.to_vec(),
            shared: session.shared.clone(),
            policy: session.policy.clone(),
            catalog: session.layout.fingerprint,
            catalog_behind: session.catalog_behind,
            frame: frame.to_vec(),
            rows,
            reply,
        });
    }
}

impl Entry {
    fn same_session_state(&self, session: &ProtectedSession) -> bool {
        Arc::ptr_eq(&self.shared, &session.shared)
            && Arc::ptr_eq(&self.policy, &session.policy)
            && self.catalog == session.layout.fingerprint
            && self.catalog_behind == session.catalog_behind
    }

    fn same_context(&self, session: &ProtectedSession, analysis: Analysis<'_>) -> bool {
        self.outputs == analysis.outputs
            && self.links == analysis.links
            && self.same_session_state(session)
    }
}

/// Whether a description of these fields may be answered again: working it out again would
/// change no state. A `bytea` column of a relation the catalog does not know asks for a
/// catalog look-up (see `note_unknown_origins`); every other column's plan depends only on
/// what an entry is keyed by.
pub(super) fn reusable(session: &ProtectedSession, fields: &[wire::Field]) -> bool {
    fields.iter().all(|f| {
        f.table_oid == 0
            || f.type_oid != BYTEA_OID
            || session.catalog.table_by_oid(f.table_oid).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::tracker::Held;
    use crate::protocol::verdict::Verdict;

    /// One `PQexecPrepared` of statement `q` (Bind, Describe portal, Execute, Sync): what the
    /// client gets for the server's RowDescription and for one DataRow of `stored`.
    fn run_prepared(s: &mut ProtectedSession, stored: &str, first: bool) -> (Verdict, Verdict) {
        s.client_message(&bind("", "q"));
        s.client_message(&message(b'D', b"P\0"));
        s.client_message(&execute(""));
        s.client_message(&sync());
        if first {
            // ParseComplete and our own Describe of the statement (dropped).
            answer(s, &["1", "t\0\0"]);
            let ours = s.server_message(&row_description(b"email", CUSTOMERS_OID, 2));
            assert_eq!(ours, Verdict::Drop);
        }
        answer(s, &["2"]);
        let described = s.server_message(&row_description(b"email", CUSTOMERS_OID, 2));
        let row = s.server_message(&data_row(&[Some(stored)]));
        answer(s, &["CSELECT 1\0", "ZI"]);
        (described, row)
    }

    #[test]
    fn a_portal_described_again_gets_the_same_answer_and_rows_without_working_it_out() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&parse("q", "select email from customers"));
        let (described, row) = run_prepared(&mut s, &stored, true);
        let described = replaced(described);
        assert_eq!(
            wire::read_row_description(&described).unwrap()[0].type_oid,
            25
        );
        let row = replaced(row);
        let shown = wire::read_data_row(&row).unwrap();
        assert_eq!(shown[0].as_deref(), Some(&b"alice@example.com"[..]));
        assert_eq!(s.described.entries.len(), 1);
        for _ in 0..3 {
            let (again, row_again) = run_prepared(&mut s, &stored, false);
            assert_eq!(again, Verdict::Replace(described.clone()));
            assert_eq!(row_again, Verdict::Replace(row.clone()));
        }
        assert_eq!(s.described.entries.len(), 1);
    }

    #[test]
    fn a_description_is_not_reused_under_another_catalog_or_for_other_columns() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&parse("q", "select email from customers"));
        run_prepared(&mut s, &stored, true);
        let statement = match s.names.statement("q") {
            Some(Held::Known(info)) => info.clone(),
            _ => panic!("q is prepared"),
        };
        let plan = statement.plan.clone().expect("q is planned");
        let analysis = Analysis::of(Some((&plan, 0)));
        let frame = row_description(b"email", CUSTOMERS_OID, 2);
        assert!(s.described.get(&s, analysis, &frame).is_some());
        // Another column of the same statement's table: not the frame seen.
        let name = row_description(b"name", CUSTOMERS_OID, 3);
        assert!(s.described.get(&s, analysis, &name).is_none());
        // Another analysis (no protected output by id): not the statement seen.
        assert!(s.described.get(&s, Analysis::default(), &frame).is_none());
        // The catalog changed (a look-up gave other tables): worked out again.
        s.layout.fingerprint ^= 1;
        assert!(s.described.get(&s, analysis, &frame).is_none());
        s.layout.fingerprint ^= 1;
        // The catalog fell behind another session's DDL: worked out again.
        s.catalog_behind = true;
        assert!(s.described.get(&s, analysis, &frame).is_none());
        s.catalog_behind = false;
        // Another policy (the caller's role matched again after a reload): worked out again.
        s.policy = Arc::new((*s.policy).clone());
        assert!(s.described.get(&s, analysis, &frame).is_none());
        // Other rules (a reload, a migrating column's swap): worked out again.
        s.policy = Arc::new((*s.policy).clone());
        run_prepared(&mut s, &stored, false);
        assert!(s.described.get(&s, analysis, &frame).is_some());
        s.shared = Arc::new(Protection::new(
            (*s.shared.rules).clone(),
            s.shared.keys.clone(),
            crate::protect::engine::GuardPolicy::NotRequired,
        ));
        assert!(s.described.get(&s, analysis, &frame).is_none());
    }

    #[test]
    fn a_bytea_column_of_a_relation_the_catalog_does_not_know_is_not_kept() {
        let s = catalog_session("app");
        let unknown = wire::read_row_description(&row_description(b"x", 99_999, 1)).unwrap();
        assert!(!reusable(&s, &unknown));
        // Another type of an unknown relation asks for no look-up: kept.
        let mut other = unknown.clone();
        other[0].type_oid = 23;
        assert!(reusable(&s, &other));
        let known = wire::read_row_description(&row_description(b"email", CUSTOMERS_OID, 2));
        assert!(reusable(&s, &known.unwrap()));
        let computed = wire::read_row_description(&row_description(b"n", 0, 0)).unwrap();
        assert!(reusable(&s, &computed));
    }

    /// One simple query of `select email from customers` answered with `stored`: what the
    /// client gets for the RowDescription and the DataRow.
    fn run_simple(s: &mut ProtectedSession, stored: &str) -> (Verdict, Verdict) {
        s.client_message(&query("select email from customers where email = 'a'"));
        let described = s.server_message(&row_description(b"email", CUSTOMERS_OID, 2));
        let row = s.server_message(&data_row(&[Some(stored)]));
        answer(s, &["CSELECT 1\0", "ZI"]);
        (described, row)
    }

    #[test]
    fn a_simple_query_described_again_gets_the_same_bytes() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        let (described, row) = run_simple(&mut s, &stored);
        let (described, row) = (replaced(described), replaced(row));
        assert_eq!(s.described.entries.len(), 1);
        let shown = wire::read_data_row(&row).unwrap();
        assert_eq!(shown[0].as_deref(), Some(&b"alice@example.com"[..]));
        for _ in 0..3 {
            let (again, row_again) = run_simple(&mut s, &stored);
            assert_eq!(again, Verdict::Replace(described.clone()));
            assert_eq!(row_again, Verdict::Replace(row.clone()));
        }
        assert_eq!(s.described.entries.len(), 1);
    }

    #[test]
    fn another_role_s_policy_is_not_answered_with_the_plan_of_the_first() {
        let mut s = catalog_session("app");
        let stored = stored_email(&mut s, "alice@example.com");
        s.client_message(&parse("q", "select email from customers"));
        let (_, first) = run_prepared(&mut s, &stored, true);
        let (_, simple) = run_simple(&mut s, &stored);
        for row in [first, simple] {
            let shown = wire::read_data_row(&replaced(row)).unwrap();
            assert_eq!(shown[0].as_deref(), Some(&b"alice@example.com"[..]));
        }
        // The caller's role matched again (a reload gave it support's rights): the same
        // simple statement's description is worked out again, masked. (A prepared statement
        // is checked again at its next Bind after a reload, its own description with it:
        // `row_plans.rs` runs that against PostgreSQL.)
        s.policy = catalog_session("support").policy.clone();
        let (_, simple) = run_simple(&mut s, &stored);
        let shown = wire::read_data_row(&replaced(simple)).unwrap();
        assert_eq!(shown[0].as_deref(), Some(&b"a****@example.com"[..]));
    }
}
