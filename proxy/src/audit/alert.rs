//! Per-role alerts on bulk reads and unexpected sources: `max_rows` per statement,
//! `max_protected_values_per_minute` per session, and the role's `networks`. Each raises an
//! `alert` event and `pgshroud_alerts_total{kind}`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pgshroud_rules::Role;

use crate::ops::metrics::AlertKind;

const WINDOW: Duration = Duration::from_secs(60);

/// A limit that was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub kind: AlertKind,
    pub limit: u64,
    pub observed: u64,
}

/// A session's alert state: the protected values read in the current minute.
#[derive(Debug, Default)]
pub struct Alerts {
    window_start: Option<Instant>,
    values: u64,
    raised_in_window: bool,
}

/// A connection from outside the role's networks.
pub fn network(role: Option<&Role>, ip: IpAddr) -> Option<Raised> {
    let role = role?;
    (!role.allows_network(ip)).then_some(Raised {
        kind: AlertKind::Network,
        limit: role.networks.len() as u64,
        observed: 0,
    })
}

impl Alerts {
    /// A statement returned `rows` rows carrying `values` protected values.
    pub fn statement(
        &mut self,
        role: Option<&Role>,
        rows: u64,
        values: u64,
        now: Instant,
    ) -> Vec<Raised> {
        let Some(role) = role else {
            return Vec::new();
        };
        let mut raised = Vec::new();
        if let Some(max) = role.max_rows {
            if rows > max {
                raised.push(Raised {
                    kind: AlertKind::MaxRows,
                    limit: max,
                    observed: rows,
                });
            }
        }
        if let Some(max) = role.max_protected_values_per_minute {
            if self
                .window_start
                .is_none_or(|start| now.duration_since(start) >= WINDOW)
            {
                self.window_start = Some(now);
                self.values = 0;
                self.raised_in_window = false;
            }
            self.values += values;
            if self.values > max && !self.raised_in_window {
                self.raised_in_window = true;
                raised.push(Raised {
                    kind: AlertKind::MaxProtectedValuesPerMinute,
                    limit: max,
                    observed: self.values,
                });
            }
        }
        raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgshroud_rules::Template;

    fn limited() -> Role {
        let mut role = Role::from_template("app", Template::App);
        role.max_rows = Some(10);
        role.max_protected_values_per_minute = Some(100);
        role
    }

    #[test]
    fn more_rows_than_max_rows_alert() {
        let role = limited();
        let mut alerts = Alerts::default();
        let now = Instant::now();
        assert!(alerts.statement(Some(&role), 10, 0, now).is_empty());
        let raised = alerts.statement(Some(&role), 11, 0, now);
        assert_eq!(raised[0].kind, AlertKind::MaxRows);
        assert_eq!((raised[0].limit, raised[0].observed), (10, 11));
    }

    #[test]
    fn protected_values_per_minute_alert_once_per_window() {
        let role = limited();
        let mut alerts = Alerts::default();
        let t0 = Instant::now();
        assert!(alerts.statement(Some(&role), 1, 60, t0).is_empty());
        let raised = alerts.statement(Some(&role), 1, 60, t0);
        assert_eq!(raised[0].kind, AlertKind::MaxProtectedValuesPerMinute);
        assert_eq!(raised[0].observed, 120);
        assert!(alerts.statement(Some(&role), 1, 60, t0).is_empty());
        // A new minute starts counting again.
        let later = t0 + WINDOW;
        assert!(alerts.statement(Some(&role), 1, 60, later).is_empty());
    }

    #[test]
    fn no_role_no_alerts() {
        let mut alerts = Alerts::default();
        assert!(alerts
            .statement(None, 1_000_000, 1_000_000, Instant::now())
            .is_empty());
        assert!(network(None, "10.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn connections_from_outside_the_networks_alert() {
        let mut role = limited();
        assert!(network(Some(&role), "10.0.0.1".parse().unwrap()).is_none());
        role.networks = vec![pgshroud_rules::Network::parse("192.168.0.0/16").unwrap()];
        assert!(network(Some(&role), "192.168.1.1".parse().unwrap()).is_none());
        let raised = network(Some(&role), "10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(raised.kind, AlertKind::Network);
    }
}
