//! Views over protected tables mapped like tables. Each view's definition (as the server
//! prints it) is analysed by the same analyser statements go through; an output that is a
//! plain reference to a protected column (through joins, sub-queries, CTEs, set operations and
//! other views) becomes a protected column of the view, with that column's key context, so
//! reads, comparisons with values and writes through the view are planned as on the table.
//! Any other output whose expression mentions a protected column's name or a whole row is
//! *computed*: it is not one envelope of one context, so it is withheld (NULL) from a role
//! that may not receive every protected column it may come from (see `Layout::view_column`).

use std::collections::{HashMap, HashSet};

use crate::analyze::view_targets::{view_targets, ViewTarget};
use crate::analyze::{self, Analysis, ColumnId, ProtectedSchema};
use crate::protect::views::CatalogView;

/// What one output column of a view can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewColumn {
    /// A protected column's values, unchanged (`id`, a rules id), and the protected columns
    /// merged into it by set operations (all of one key context).
    Plain { id: ColumnId, merged: Vec<ColumnId> },
    /// Values computed from (as far as names tell) these protected columns.
    Computed(Vec<ColumnId>),
}

/// The views' columns, by (view OID, attribute number), and the analyser ids given to their
/// plain columns (each mapped to its protected column in `children`).
#[derive(Debug, Clone, Default)]
pub struct ViewMap {
    pub columns: HashMap<(u32, i16), ViewColumn>,
    pub ids: HashSet<ColumnId>,
    /// A view with plain columns -> the protected table its first plain column comes from.
    pub tables: HashMap<(String, String), (String, String)>,
    /// A view column's name -> the protected columns views' columns of that name carry (for
    /// computed outputs over views that rename a column).
    by_name: HashMap<String, Vec<ColumnId>>,
    /// A view's name -> the protected columns its computed outputs come from. By name only
    /// (any schema): statements name views through a search path the analysis resolves only
    /// for protected tables, so every view of that name counts (errs on refusing).
    pub computed: HashMap<String, Vec<ColumnId>>,
}

impl ViewColumn {
    fn sources(&self) -> Vec<ColumnId> {
        match self {
            ViewColumn::Plain { id, merged } => {
                let mut all = merged.clone();
                all.push(*id);
                all
            }
            ViewColumn::Computed(sources) => sources.clone(),
        }
    }
}

/// Passes over all views are repeated until nothing changes, so a view over a view made
/// later (`CREATE OR REPLACE` can point an old view at a new one) is still mapped; bounded.
const MAX_PASSES: usize = 8;

/// Maps every view of the catalog, registering its plain columns in `schema`. `base` is the
/// number of rules ids (the ids below it are the protected columns themselves).
pub fn map_views(
    views: &[&CatalogView],
    schema: &mut ProtectedSchema,
    children: &mut HashMap<ColumnId, ColumnId>,
    base: usize,
) -> ViewMap {
    let mut map = ViewMap::default();
    for view in views {
        let names = view.columns.iter().map(|(_, n)| n.clone()).collect();
        schema.set_table_columns(&view.schema, &view.name, names);
    }
    let readings: Vec<Option<Vec<ViewTarget>>> =
        views.iter().map(|v| view_targets(&v.definition)).collect();
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for (view, targets) in views.iter().zip(&readings) {
            let found = map_view(view, targets.as_deref(), schema, children, &map, base);
            for (attnum, column) in found {
                if map.columns.get(&(view.oid, attnum)) == Some(&column) {
                    continue;
                }
                changed = true;
                if let ViewColumn::Plain { id, .. } = &column {
                    register(view, attnum, *id, schema, children, &mut map);
                }
                if let ViewColumn::Computed(sources) = &column {
                    let all = map.computed.entry(view.name.to_lowercase()).or_default();
                    all.extend(sources);
                    all.sort_unstable();
                    all.dedup();
                }
                if let Some((_, name)) = view.columns.iter().find(|(a, _)| *a == attnum) {
                    let named = map.by_name.entry(name.clone()).or_default();
                    named.extend(column.sources());
                    named.sort_unstable();
                    named.dedup();
                }
                map.columns.insert((view.oid, attnum), column);
            }
        }
        if !changed {
            break;
        }
    }
    // The pre-filter must send every text naming a mapped view to analysis.
    for view in views {
        if map.columns.keys().any(|(oid, _)| *oid == view.oid) {
            schema.add_needle(&view.name);
        }
    }
    map
}

/// A plain column of a view becomes a protected column of the analyser's schema.
fn register(
    view: &CatalogView,
    attnum: i16,
    id: ColumnId,
    schema: &mut ProtectedSchema,
    children: &mut HashMap<ColumnId, ColumnId>,
    map: &mut ViewMap,
) {
    let Some((_, name)) = view.columns.iter().find(|(a, _)| *a == attnum) else {
        return;
    };
    let context = schema.context(id).to_owned();
    let logical = schema.logical_type(id);
    let view_id = schema.protect(&view.schema, &view.name, name, &context);
    if let Some(logical) = logical {
        schema.set_logical_type(view_id, logical);
    }
    if view_id != id {
        children.insert(view_id, id);
        map.ids.insert(view_id);
    }
    let (table_schema, table, _, _) = schema.column(id);
    let table = (table_schema.to_owned(), table.to_owned());
    map.tables
        .entry((view.schema.clone(), view.name.clone()))
        .or_insert(table);
}

/// One view's columns that can carry protected values.
fn map_view(
    view: &CatalogView,
    targets: Option<&[ViewTarget]>,
    schema: &ProtectedSchema,
    children: &HashMap<ColumnId, ColumnId>,
    map: &ViewMap,
    base: usize,
) -> Vec<(i16, ViewColumn)> {
    let protected = |id: ColumnId| children.get(&id).copied().unwrap_or(id);
    let (outputs, links) = match analyze::analyze(&view.definition, schema) {
        Analysis::Protected { statements } if statements.len() == 1 => {
            let s = &statements[0];
            (Some(s.outputs.clone()), s.links.clone())
        }
        _ => (None, Vec::new()),
    };
    let outputs = outputs.filter(|o| o.len() == view.columns.len());
    let everything: Vec<ColumnId> = (0..base).collect();
    let mut found = Vec::new();
    for (i, (attnum, _)) in view.columns.iter().enumerate() {
        if let Some(Some(id)) = outputs.as_ref().map(|o| o[i]) {
            let mut merged: Vec<ColumnId> = analyze::merged_with(id, &links)
                .into_iter()
                .map(protected)
                .collect();
            merged.sort_unstable();
            merged.dedup();
            found.push((
                *attnum,
                ViewColumn::Plain {
                    id: protected(id),
                    merged,
                },
            ));
            continue;
        }
        let Some(target) = targets.and_then(|t| t.get(i)) else {
            // The definition was not read position by position: anything may reach.
            found.push((*attnum, ViewColumn::Computed(everything.clone())));
            continue;
        };
        let sources = if target.whole_row {
            everything.clone()
        } else {
            sources_named(&target.names, schema, map, base)
        };
        if !sources.is_empty() {
            found.push((*attnum, ViewColumn::Computed(sources)));
        }
    }
    found
}

/// The protected columns a computed output may carry, by the column names it mentions: the
/// protected columns of that name, and what views' columns of that name carry.
fn sources_named(
    names: &[String],
    schema: &ProtectedSchema,
    map: &ViewMap,
    base: usize,
) -> Vec<ColumnId> {
    let mut sources: Vec<ColumnId> = (0..base)
        .filter(|&id| names.iter().any(|n| schema.column(id).2 == n.as_str()))
        .collect();
    for name in names {
        sources.extend(map.by_name.get(name).into_iter().flatten());
    }
    sources.sort_unstable();
    sources.dedup();
    sources
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::ViewColumn;
    use crate::protect::catalog::Catalog;
    use crate::protect::engine::{GuardPolicy, Protection};

    const RULES: &str = r#"
default_role = "app"
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "phone"
  type = "text"
[[roles]]
name = "app"
template = "app"
"#;

    fn protection() -> Protection {
        let rules = pgshroud_rules::parse(RULES, "rules.toml").expect("rules");
        let key = crate::crypto::MasterKey::from_bytes(&[7; 32]).expect("key");
        let keys = Arc::new(crate::crypto::KeyRing::single(key));
        Protection::new(rules, keys, GuardPolicy::NotRequired)
    }

    fn cell(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    /// The look-up's rows for `customers` (OID 42) and views (OID, name, columns, definition).
    fn catalog(views: &[(u32, &str, &[&str], &str)]) -> Catalog {
        let mut rows = Vec::new();
        for (n, col) in ["id", "email", "phone", "name"].iter().enumerate() {
            let attnum = (n + 1).to_string();
            rows.push(vec![
                cell("42"),
                cell("public"),
                cell("customers"),
                cell(&attnum),
                cell(col),
                cell("bytea"),
                None,
                cell("0"),
                cell("r"),
                None,
            ]);
        }
        for (oid, name, columns, definition) in views {
            for (n, col) in columns.iter().enumerate() {
                rows.push(vec![
                    cell(&oid.to_string()),
                    cell("public"),
                    cell(name),
                    cell(&(n + 1).to_string()),
                    cell(col),
                    cell("bytea"),
                    None,
                    None,
                    cell("v"),
                    (n == 0).then(|| definition.to_string()),
                ]);
            }
        }
        for (n, schema) in ["pg_catalog", "public"].iter().enumerate() {
            let mut marker = vec![cell("0"), cell(schema), None, cell(&(n + 1).to_string())];
            marker.extend([None, None, cell("path"), None, None, None]);
            rows.push(marker);
        }
        let names = views.iter().map(|v| v.1);
        for name in std::iter::once("customers").chain(names) {
            let mut relation = vec![cell("0"), cell("public"), cell(name), cell("0")];
            relation.extend([None, None, cell("relation"), None, None, None]);
            rows.push(relation);
        }
        Catalog::from_rows(rows)
    }

    #[test]
    fn plain_nested_and_computed_view_columns_are_told_apart() {
        let c = catalog(&[
            (
                100,
                "v_plain",
                &["id", "email"],
                " SELECT id,\n    email\n   FROM customers;",
            ),
            (
                101,
                "v_nested",
                &["mail", "n"],
                " SELECT v_plain.email AS mail, length(v_plain.id::text) AS n FROM v_plain;",
            ),
            (
                102,
                "v_expr",
                &["id", "any"],
                " SELECT customers.id, COALESCE(customers.email, customers.phone) AS any FROM customers;",
            ),
        ]);
        let p = protection();
        let layout = p.layout(&c);
        let email = p.spec_by_name("public", "customers", "email").unwrap();
        let email = p.id_of(email).unwrap();
        let phone = p
            .id_of(p.spec_by_name("public", "customers", "phone").unwrap())
            .unwrap();
        let plain = ViewColumn::Plain {
            id: email,
            merged: vec![email],
        };
        assert_eq!(layout.view_column(100, 2), Some(&plain));
        assert_eq!(layout.view_column(100, 1), None);
        assert_eq!(layout.view_column(101, 1), Some(&plain));
        assert_eq!(layout.view_column(101, 2), None);
        assert_eq!(layout.view_column(102, 1), None);
        assert_eq!(
            layout.view_column(102, 2),
            Some(&ViewColumn::Computed(vec![email, phone]))
        );
        assert_eq!(layout.computed_sources("v_expr"), [email, phone]);
        assert!(layout.computed_sources("v_plain").is_empty());
        assert!(layout.mentions_protected("select * from v_nested"));
    }
}
