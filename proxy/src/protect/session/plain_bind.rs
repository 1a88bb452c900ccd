//! The Bind of a statement with nothing protected to seal: the portal recorded (the tracker
//! must know it exactly) and the message forwarded as it came, read in place without a copy
//! of its names or parameters. Everything else (protected parameters, a statement planned
//! under other rules or another tenant, identity settings, a message to refuse) takes the
//! full path in `bind`, which decides as before.

use std::sync::{Arc, OnceLock};

use super::{Expect, PortalInfo, ProtectedSession};
use crate::analyze::identity_settings::IdentityTouch;
use crate::protect::wire::BindView;
use crate::protocol::tracker::{Effect, Held};
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// `Some(Forward)` once the portal is recorded; `None`: the full path reads the Bind.
    pub(super) fn bind_plain(&mut self, frame: &[u8]) -> Option<Verdict> {
        let view = BindView::read(frame).ok()?;
        self.follow_rules();
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        let info = match self.names.statement(view.statement)? {
            Held::Known(info) => info.clone(),
            Held::Foreign => return None,
        };
        let plain = self.planned_now(&info)
            && info.identity == IdentityTouch::None
            && !info.plan.as_ref().is_some_and(|p| p.refreshes_catalog)
            && !self.bound_may_undo_schema_changes(&info)
            && !info.executes
            && info.params().iter().all(Option::is_none);
        if !plain
            || (!view.portal.is_empty() && self.names.portal(view.portal).is_some())
            || self.no_switch_in_flight().is_err()
        {
            return None;
        }
        let portal = Arc::new(PortalInfo {
            statement: info,
            result_formats: view.result_formats(),
            described: OnceLock::new(),
        });
        let ticket = self
            .names
            .sent(Effect::Bind(view.portal.to_owned(), portal));
        self.pending.push_back(Expect::BindComplete {
            ours: false,
            ticket,
        });
        Some(Verdict::Forward)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_plain_bind_is_forwarded_and_its_portal_known() {
        let mut s = catalog_session("app");
        s.client_message(&parse("s", "select name from orders where id = $1"));
        let bind = bind_params("p", "s", &["42"]);
        assert_eq!(s.bind_plain(&bind), Some(Verdict::Forward));
        assert!(s.names.portal("p").is_some());
        // The same portal name again: the full path refuses it (42P03).
        assert_eq!(s.bind_plain(&bind), None);
        assert_eq!(
            refusal_code(&s.client_message(&bind)).as_deref(),
            Some("42P03")
        );
    }

    #[test]
    fn what_must_be_read_takes_the_full_path() {
        let mut s = catalog_session("app");
        // Protected parameters: sealed by the full path.
        s.client_message(&parse("ins", "insert into customers (email) values ($1)"));
        assert_eq!(s.bind_plain(&bind_params("", "ins", &["a@x"])), None);
        // Unknown, SQL-prepared, malformed: the full path's refusals.
        assert_eq!(s.bind_plain(&bind("", "nope")), None);
        s.client_message(&query("PREPARE q AS SELECT 1"));
        answer(&mut s, &["CPREPARE\0", "ZI"]);
        assert_eq!(s.bind_plain(&bind("", "q")), None);
        assert_eq!(s.bind_plain(&message(b'B', b"\0s\0\0\x01")), None);
        // Planned before the rules changed: checked again by the full path.
        s.client_message(&parse("old", "select 1"));
        s.plans_epoch += 1;
        assert_eq!(s.bind_plain(&bind("", "old")), None);
    }
}
