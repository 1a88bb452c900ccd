//! The shape path's own check, for tests and the `shape_cache` fuzz target: the plan a text
//! gets through the caches (a template of its shape, when one is held) must be the plan a
//! full analysis gives it, byte for byte, or a refusal in both. And a text a held pattern
//! matches (`shape_match.rs`) must be read by the pattern exactly as `shape::scan` reads it,
//! into the template held for the scanner's shape.

use std::sync::Arc;

use super::lookup::{shape_scope, PlanSource};
use super::plan::{Plan, PlanAction};
use super::shape::{self, Scanned};
use super::{Layout, Protection};
use crate::protect::catalog::Catalog;

impl Protection {
    /// Plans `sql` through the caches (leaving a template of its shape when it has none) and
    /// in full, and says where the cached plan came from, or which part differs (no value
    /// of the text is quoted).
    pub fn check_shape_agreement(
        &self,
        sql: &str,
        layout: &Layout,
        catalog: &Catalog,
    ) -> Result<PlanSource, String> {
        self.check_shape_agreement_for(sql, layout, catalog, None)
    }

    /// [`Self::check_shape_agreement`] for a session of `tenant`.
    pub fn check_shape_agreement_for(
        &self,
        sql: &str,
        layout: &Layout,
        catalog: &Catalog,
        tenant: Option<&str>,
    ) -> Result<PlanSource, String> {
        let tenant_scope = tenant.filter(|_| self.has_per_tenant());
        self.check_pattern_reading(sql, shape_scope(layout.fingerprint, tenant_scope))?;
        let (cached, source) = self.plan_from(sql, layout, catalog, tenant);
        let (full, _) = self.build(sql, layout, catalog, tenant);
        same_plan(&cached, &full).map(|()| source)
    }

    /// When a held pattern matches `sql`, its reading must be the scanner's (tokens, literal
    /// places and values) and its template the one held for the scanner's shape key.
    fn check_pattern_reading(&self, sql: &str, scope: u64) -> Result<(), String> {
        let Some((template, read)) = self.shapes.matched(scope, sql) else {
            return Ok(());
        };
        let scanned =
            shape::scan(sql).ok_or("a pattern matched a text the scanner gives no shape")?;
        let literals = |s: &Scanned| {
            s.literals
                .iter()
                .map(|l| (l.token, l.value.clone()))
                .collect::<Vec<_>>()
        };
        if read.tokens != scanned.tokens {
            return Err("a pattern read other tokens than the scanner".into());
        }
        if literals(&read) != literals(&scanned) {
            return Err("a pattern read other literals than the scanner".into());
        }
        match self.shapes.get(scope, &scanned.key) {
            Some(Some(held)) if !Arc::ptr_eq(&held, &template) => {
                Err("a pattern gave another template than the scanner's shape".into())
            }
            Some(None) => Err("a pattern matched a shape known to need the full path".into()),
            // Held, or the cache was cleared since (patterns and shapes go together).
            _ => Ok(()),
        }
    }

    /// Shapes held (tests and benches).
    pub fn shapes_held(&self) -> usize {
        self.shapes.len()
    }
}

fn same_plan(a: &Plan, b: &Plan) -> Result<(), String> {
    match (&a.action, &b.action) {
        (PlanAction::Forward, PlanAction::Forward) => {}
        (PlanAction::Rewrite(x), PlanAction::Rewrite(y)) if x == y => {}
        (PlanAction::Refused(x), PlanAction::Refused(y)) => {
            return if x.code == y.code && x.message == y.message {
                Ok(())
            } else {
                Err(format!("refused differently: {} / {}", x.code, y.code))
            };
        }
        (x, y) => {
            let name = |p: &PlanAction| match p {
                PlanAction::Forward => "forward",
                PlanAction::Rewrite(_) => "rewrite",
                PlanAction::Refused(_) => "refused",
            };
            return Err(format!(
                "actions differ: {} / {} (or the rewritten texts)",
                name(x),
                name(y)
            ));
        }
    }
    let debug = |p: &Plan| {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            p.params, p.columns, p.table_writes, p.links, p.computed, p.refreshes_catalog
        )
    };
    if debug(a) != debug(b) {
        return Err("parameters, columns, links or writes differ".into());
    }
    if a.statements != b.statements {
        return Err("statement analyses differ (kinds, sites, spans or outputs)".into());
    }
    Ok(())
}
