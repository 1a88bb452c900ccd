//! A statement's plan: from the exact-text cache, else a template of its shape (see
//! `template.rs`), else a full analysis (which may leave a template for its shape).

use std::sync::Arc;

use super::plan::Plan;
use super::shape;
use super::template::Template;
use super::{Layout, PlanKey, Protection};
use crate::protect::catalog::Catalog;

/// Where a plan came from (counted in `pgshroud_plan_cache_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSource {
    /// The exact text was planned before.
    Exact,
    /// A text of the same shape was: its template was filled with this text's literals.
    Shape,
    /// Analysed in full now.
    Built,
}

impl Protection {
    /// The plan for a statement of a session without a tenant, from the cache or built now.
    pub fn plan(&self, sql: &str, layout: &Layout, catalog: &Catalog) -> Arc<Plan> {
        self.plan_from(sql, layout, catalog, None).0
    }

    /// The plan for a statement of a session of `tenant` (literals of per-tenant columns are
    /// sealed with its key), from the cache or built now.
    pub fn plan_for(
        &self,
        sql: &str,
        layout: &Layout,
        catalog: &Catalog,
        tenant: Option<&str>,
    ) -> Arc<Plan> {
        self.plan_from(sql, layout, catalog, tenant).0
    }

    /// The plan for a statement of a session of `tenant` and where it came from: the
    /// exact-text cache, a template of its shape (see `template.rs`), or a full analysis
    /// (which may leave a template).
    ///
    /// Both caches are scoped by tenant when per-tenant columns exist: an exact plan holds
    /// literals sealed with the tenant's key, and a template's compared sites and parameter
    /// texts follow how many versions the tenant's key has.
    ///
    /// Called only for text in the Standard text mode (UTF-8, standard_conforming_strings
    /// on): the session refuses to analyse any other before it gets here.
    pub fn plan_from(
        &self,
        sql: &str,
        layout: &Layout,
        catalog: &Catalog,
        tenant: Option<&str>,
    ) -> (Arc<Plan>, PlanSource) {
        let tenant = tenant.filter(|_| self.has_per_tenant());
        let key = (layout.fingerprint, tenant.map(Arc::from), sql.to_owned());
        if let Some(plan) = self.cache.lock().ok().and_then(|c| c.get(&key)) {
            return (plan, PlanSource::Exact);
        }
        let scope = shape_scope(layout.fingerprint, tenant);
        // A text that differs from one the scanner read only in its plain literals needs no
        // scan (`shape_match.rs`); any other goes through `shape::scan`.
        if let Some((template, scanned)) = self.shapes.matched(scope, sql) {
            let plan = Arc::new(template.instantiate(self, sql, &scanned, tenant));
            return (plan, PlanSource::Shape);
        }
        let scanned = shape::scan(sql);
        let entry = scanned
            .as_ref()
            .and_then(|s| self.shapes.get(scope, &s.key));
        match (&entry, &scanned) {
            (Some(Some(template)), Some(scanned)) => {
                self.shapes
                    .remember(scope, sql, scanned, Arc::clone(template));
                let plan = Arc::new(template.instantiate(self, sql, scanned, tenant));
                (plan, PlanSource::Shape)
            }
            _ => {
                let (plan, recipe) = self.build(sql, layout, catalog, tenant);
                // A shape seen before and found unusable is not derived again.
                if let (None, Some(scanned), Some(recipe)) = (&entry, &scanned, &recipe) {
                    let template = Template::derive(sql, scanned, &plan, recipe).map(Arc::new);
                    self.shapes
                        .insert(scope, scanned.key.clone(), template.clone());
                    if let Some(template) = template {
                        self.shapes.remember(scope, sql, scanned, template);
                    }
                }
                let plan = Arc::new(plan);
                self.keep_exact(key, plan.clone());
                (plan, PlanSource::Built)
            }
        }
    }

    /// Keeps a fully built plan in the exact-text cache. Plans filled from a template are not
    /// kept: filling one again costs little more than the look-up, and a stream of new
    /// literals (each text seen once) would fill the cache and clear it every
    /// few thousand statements, dropping the plans the full path built with it.
    fn keep_exact(&self, key: PlanKey, plan: Arc<Plan>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, plan);
        }
    }

    /// Plans in the exact-text cache and the bytes counted for them (tests and benches).
    pub fn exact_cache_usage(&self) -> (usize, usize) {
        self.cache.lock().map_or((0, 0), |c| c.usage())
    }
}

/// The shape cache's scope: the layout, and the tenant when per-tenant columns exist.
pub(super) fn shape_scope(fingerprint: u64, tenant: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    match tenant {
        None => fingerprint,
        Some(tenant) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (fingerprint, tenant).hash(&mut hasher);
            hasher.finish()
        }
    }
}
