//! The shared, read-only side of protection: the protected columns from the rules file and
//! the key ring, built once per rules generation and shared by every session.
//!
//! `plan` turns a statement text into a plan (analysis plus deterministic literal encryption,
//! cached per text and database layout); `storage` checks what the database holds for each
//! protected column (bytea, its guard) before anything is written there.

mod compared_sites;
mod lookup;
mod plan;
mod plan_cache;
mod shape;
mod shape_cache;
mod shape_check;
mod shape_match;
#[cfg(test)]
mod shape_match_tests;
#[cfg(test)]
mod shape_tests;
mod storage;
mod template;
mod tenants;
mod versions;
mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgshroud_rules::Rules;

use super::catalog::Catalog;
use super::codec::{Ciphers, ColumnSpec, Spec};
use crate::analyze::{ColumnId, ProtectedSchema, SearchPath};
use crate::crypto::{KeyContext, KeyRing};
use crate::protocol::error::PgError;
pub use lookup::PlanSource;
pub use plan::{ParamSpec, Plan, PlanAction};
pub use shape_match::TextShape;
pub use storage::UNGUARDED;
pub use views::ViewColumn;

/// SQLSTATE of refusals for operations encryption cannot support.
pub use crate::protocol::error::sqlstate::FEATURE_NOT_SUPPORTED;

/// The analyser's view of one database: protected columns plus the catalog's column lists.
///
/// Partitions and inheritance children of a protected table are protected tables of the
/// analyser's schema too (their columns named like the protected table's protected columns,
/// with the same key context and type), under ids of their own past the rules' ids: each maps
/// to its protected column in `children`, and plans carry only the rules' ids.
#[derive(Debug, Clone)]
pub struct Layout {
    pub schema: ProtectedSchema,
    pub fingerprint: u64,
    /// A child's column id -> the protected column it holds values of.
    children: HashMap<ColumnId, ColumnId>,
    /// A child table (schema, table) -> the protected table it descends from.
    child_tables: HashMap<(String, String), (String, String)>,
    /// Views over protected tables: their columns by (OID, attnum), their analyser ids.
    views: views::ViewMap,
}

impl Layout {
    /// The pre-filter: `false` means the statement cannot touch a protected table (nor a
    /// partition or child of one that the catalog knows).
    pub fn mentions_protected(&self, sql: &str) -> bool {
        self.schema.mentions_protected_table(sql)
    }

    /// The protected column behind an analyser id: a child's column is its parent's.
    pub fn protected_id(&self, id: ColumnId) -> ColumnId {
        self.children.get(&id).copied().unwrap_or(id)
    }

    /// What a view's (or materialized view's) result column carries, if anything protected.
    pub fn view_column(&self, oid: u32, attnum: i16) -> Option<&ViewColumn> {
        self.views.columns.get(&(oid, attnum))
    }

    /// The protected columns a view of this name (folded, any schema) computes outputs from.
    pub fn computed_sources(&self, view: &str) -> &[ColumnId] {
        self.views
            .computed
            .get(view)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether an analyser id is a view's column (its writes land in the protected table,
    /// under that table's guard).
    pub fn is_view_column(&self, id: ColumnId) -> bool {
        self.views.ids.contains(&id)
    }

    /// The protected table behind a (schema, table): a child's is the table it descends from.
    pub fn protected_table(&self, table: &(String, String)) -> (String, String) {
        self.child_tables
            .get(table)
            .cloned()
            .unwrap_or_else(|| table.clone())
    }
}

/// A cached plan's key: layout fingerprint, tenant (see `cache`), statement text.
type PlanKey = (u64, Option<Arc<str>>, String);

pub struct Protection {
    pub keys: Arc<KeyRing>,
    pub rules: Arc<Rules>,
    /// Indexed by the analyser's `ColumnId`.
    specs: Vec<Spec>,
    /// By schema, table and column name, nested so a look-up by borrowed names allocates
    /// nothing (it runs for every field of every result's RowDescription).
    by_name: HashMap<String, HashMap<String, HashMap<String, ColumnId>>>,
    tables: Vec<(String, String)>,
    base: ProtectedSchema,
    /// Keyed by layout, tenant (when per-tenant columns exist: their literals are sealed
    /// with the tenant's key, so a plan built for one tenant never serves another) and text.
    cache: Mutex<plan_cache::PlanCache>,
    /// Templates by statement shape (see `template.rs`): no values, no ciphertext, so one
    /// serves every tenant; each filling seals with the session's tenant.
    shapes: shape_cache::ShapeCache,
    /// Ciphers used while planning (literal encryption), shared by all sessions.
    planning: Mutex<Ciphers>,
    /// Writes only to columns whose guard is in place (`require_guard`).
    guards: GuardPolicy,
    /// The tenant keys (per-tenant columns), and those columns' key contexts.
    tenants: Arc<crate::crypto::tenant_keys::TenantStore>,
    per_tenant: Arc<std::collections::HashSet<KeyContext>>,
}

/// Whether writes need the column's guard in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardPolicy {
    /// No write to a protected column without its guard (the default).
    #[default]
    Required,
    /// Writes go ahead without a guard (a migration window only; loudly warned about).
    NotRequired,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Protection {
    pub fn new(rules: Rules, keys: Arc<KeyRing>, guards: GuardPolicy) -> Protection {
        let mut base = ProtectedSchema::new();
        let mut specs = Vec::new();
        let mut by_name: HashMap<String, HashMap<String, HashMap<String, ColumnId>>> =
            HashMap::new();
        let mut tables = Vec::new();
        let mut per_tenant = std::collections::HashSet::new();
        for table in &rules.tables {
            let (schema, name) = (table.schema.to_lowercase(), table.name.to_lowercase());
            if !tables.contains(&(schema.clone(), name.clone())) {
                tables.push((schema.clone(), name.clone()));
            }
            for column in &table.columns {
                let column_name = column.name.to_lowercase();
                let context = table.context_of(column);
                if column.per_tenant {
                    per_tenant.insert(KeyContext::new(context.clone()));
                }
                let id = base.protect(&schema, &name, &column_name, &context);
                base.set_logical_type(id, column.logical);
                debug_assert_eq!(id, specs.len());
                specs.push(Arc::new(ColumnSpec {
                    qualified: format!("{schema}.{name}.{column_name}"),
                    logical: column.logical,
                    modifier: column.modifier,
                    context: KeyContext::new(context),
                }));
                by_name
                    .entry(schema.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_default()
                    .insert(column_name, id);
            }
        }
        Protection {
            planning: Mutex::new(Ciphers::new(keys.clone())),
            tenants: crate::crypto::tenant_keys::TenantStore::empty(keys.clone()),
            per_tenant: Arc::new(per_tenant),
            keys,
            rules: Arc::new(rules),
            specs,
            by_name,
            tables,
            base,
            cache: Mutex::default(),
            shapes: Default::default(),
            guards,
        }
    }

    pub fn guard_policy(&self) -> GuardPolicy {
        self.guards
    }

    /// The protected (schema, table) pairs.
    pub fn tables(&self) -> &[(String, String)] {
        &self.tables
    }

    /// The analyser's schema for a database with this catalog.
    pub fn layout(&self, catalog: &Catalog) -> Layout {
        let mut schema = self.base.clone();
        let mut children = HashMap::new();
        let mut child_tables = HashMap::new();
        for table in catalog.tables() {
            let columns = table.columns.iter().map(|c| c.name.clone()).collect();
            schema.set_table_columns(&table.schema, &table.name, columns);
        }
        // Sorted so that equal catalogs give equal ids.
        let mut descendants: Vec<_> = catalog.tables().filter(|t| t.parent.is_some()).collect();
        descendants.sort_by_key(|t| t.oid);
        for child in descendants {
            let Some(owner) = catalog.protected_owner(child) else {
                continue;
            };
            child_tables.insert(
                (child.schema.clone(), child.name.clone()),
                (owner.schema.clone(), owner.name.clone()),
            );
            for column in &child.columns {
                let Some(id) = self.column_id(&owner.schema, &owner.name, &column.name) else {
                    continue;
                };
                let context = schema.context(id).to_owned();
                let child_id = schema.protect(&child.schema, &child.name, &column.name, &context);
                if let Some(logical) = schema.logical_type(id) {
                    schema.set_logical_type(child_id, logical);
                }
                if child_id != id {
                    children.insert(child_id, id);
                }
            }
        }
        // Unqualified names resolve through the session's path as the look-up found it; a
        // catalog without one (no look-up yet) keeps the `public` default.
        if let Some(path) = &catalog.search_path {
            schema.set_search_path(SearchPath::Known {
                schemas: path.schemas.clone(),
                relations: path.relations.clone(),
            });
        }
        // Views last: their definitions name the tables, children and other views above.
        // A view the rules list as a table of its own (with its key contexts) is mapped by
        // the rules, as before views were mapped from their definitions.
        let unlisted: Vec<_> = catalog
            .views()
            .into_iter()
            .filter(|v| {
                self.base
                    .protected_columns_of(&v.schema, &v.name)
                    .is_empty()
            })
            .collect();
        let views = views::map_views(&unlisted, &mut schema, &mut children, self.specs.len());
        for (view, table) in &views.tables {
            child_tables.insert(view.clone(), table.clone());
        }
        Layout {
            schema,
            fingerprint: catalog.fingerprint(),
            children,
            child_tables,
            views,
        }
    }

    pub fn spec_by_id(&self, id: ColumnId) -> Option<&Spec> {
        self.specs.get(id)
    }

    /// The protected column `schema.table.column` (names as PostgreSQL reports them).
    pub fn spec_by_name(&self, schema: &str, table: &str, column: &str) -> Option<&Spec> {
        let id = self.column_id(schema, table, column)?;
        self.specs.get(id)
    }

    /// The protected column behind a result column, by table OID and attribute number (a
    /// partition's or child's column is its protected table's column of the same name).
    pub fn spec_for(&self, catalog: &Catalog, table_oid: u32, attnum: i16) -> Option<Spec> {
        if table_oid == 0 {
            return None;
        }
        let table = catalog.table_by_oid(table_oid)?;
        let column = table.column(attnum)?;
        let owner = catalog.protected_owner(table)?;
        let id = self.column_id(&owner.schema, &owner.name, &column.name)?;
        self.specs.get(id).cloned()
    }

    fn column_id(&self, schema: &str, table: &str, column: &str) -> Option<ColumnId> {
        self.by_name.get(schema)?.get(table)?.get(column).copied()
    }

    /// The analyser's id of a protected column.
    pub fn id_of(&self, spec: &ColumnSpec) -> Option<ColumnId> {
        // The specs handed out are this table's own: found by address without a look-up.
        if let Some(id) = self.specs.iter().position(|s| std::ptr::eq(&**s, spec)) {
            return Some(id);
        }
        let (schema, table, column) = split_qualified(&spec.qualified)?;
        self.column_id(schema, table, column)
    }

    fn spec(&self, id: ColumnId) -> Result<Spec, PgError> {
        self.specs.get(id).cloned().ok_or_else(|| {
            PgError::error(
                crate::protocol::error::sqlstate::INTERNAL_ERROR,
                "internal error: unknown protected column",
            )
        })
    }
}

fn split_qualified(qualified: &str) -> Option<(&str, &str, &str)> {
    let mut parts = qualified.splitn(3, '.');
    Some((parts.next()?, parts.next()?, parts.next()?))
}
