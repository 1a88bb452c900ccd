//! Portal descriptions seen before. libpq's `PQexecPrepared` (pgbench `-M prepared`, most
//! drivers' prepared path) sends Bind, Describe (portal), Execute, Sync on every execution, so
//! the server describes the same result columns every time. Their row plan (which column is
//! protected, what the role sees of it) and the RowDescription the client gets are worked out
//! once and answered again while nothing they depend on changed: the statement (a reload
//! re-checks it into a new one), the rules served, the caller's policy, the catalog (by its
//! fingerprint) and whether the catalog is behind. Any other case is worked out as before.

use std::sync::Arc;

use bytes::BytesMut;

use super::{PreparedInfo, ProtectedSession, RowPlan};
use crate::protect::engine::Protection;
use crate::protect::policy::Policy;
use crate::protect::wire;

/// Descriptions kept per session: a session runs few prepared statements that return rows
/// at a time; beyond this the oldest is worked out again when it comes back.
const LIMIT: usize = 8;

/// The descriptions a session answered, most recent last.
#[derive(Default)]
pub(super) struct DescribedPortals {
    entries: Vec<Entry>,
}

/// One description and what it was worked out under. The `Arc`s are held (not only their
/// addresses), so an address is never another object's.
struct Entry {
    statement: Arc<PreparedInfo>,
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

impl DescribedPortals {
    /// The description of `statement`'s portal when the server's `frame` is the one seen
    /// before under what the session serves now.
    pub(super) fn get(
        &self,
        session: &ProtectedSession,
        statement: &Arc<PreparedInfo>,
        frame: &[u8],
    ) -> Option<Hit> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.same_context(session, statement) && e.frame == frame)
            .map(|e| Hit {
                rows: e.rows.clone(),
                reply: e.reply.clone(),
            })
    }

    /// Keeps a description worked out now (its entries of another context go).
    pub(super) fn insert(
        &mut self,
        session: &ProtectedSession,
        statement: Arc<PreparedInfo>,
        frame: &[u8],
        rows: RowPlan,
        reply: Option<BytesMut>,
    ) {
        // Entries of old rules or an old catalog would only hold them in memory.
        self.entries
            .retain(|e| e.same_session_state(session) && Arc::strong_count(&e.statement) > 1);
        if self.entries.len() >= LIMIT {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            statement,
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

    fn same_context(&self, session: &ProtectedSession, statement: &Arc<PreparedInfo>) -> bool {
        Arc::ptr_eq(&self.statement, statement) && self.same_session_state(session)
    }
}

/// Whether a description of these fields may be answered again: every column's origin is a
/// table the catalog knows (or none), so working it out again would change no state (an
/// unknown origin asks for a catalog look-up) and give the same plan.
pub(super) fn reusable(session: &ProtectedSession, fields: &[wire::Field]) -> bool {
    fields
        .iter()
        .all(|f| f.table_oid == 0 || session.catalog.table_by_oid(f.table_oid).is_some())
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
        let frame = row_description(b"email", CUSTOMERS_OID, 2);
        assert!(s.described.get(&s, &statement, &frame).is_some());
        // Another column of the same statement's table: not the frame seen.
        let name = row_description(b"name", CUSTOMERS_OID, 3);
        assert!(s.described.get(&s, &statement, &name).is_none());
        // The catalog changed (a look-up gave other tables): worked out again.
        s.layout.fingerprint ^= 1;
        assert!(s.described.get(&s, &statement, &frame).is_none());
        s.layout.fingerprint ^= 1;
        // Another policy (the caller's role matched again after a reload): worked out again.
        s.policy = Arc::new((*s.policy).clone());
        assert!(s.described.get(&s, &statement, &frame).is_none());
    }

    #[test]
    fn a_column_of_a_relation_the_catalog_does_not_know_is_not_kept() {
        let s = catalog_session("app");
        let unknown = wire::read_row_description(&row_description(b"x", 99_999, 1)).unwrap();
        assert!(!reusable(&s, &unknown));
        let known = wire::read_row_description(&row_description(b"email", CUSTOMERS_OID, 2));
        assert!(reusable(&s, &known.unwrap()));
        let computed = wire::read_row_description(&row_description(b"n", 0, 0)).unwrap();
        assert!(reusable(&s, &computed));
    }
}
