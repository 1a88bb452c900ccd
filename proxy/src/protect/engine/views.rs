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
            found.push((*attnum, ViewColumn::Plain { id: protected(id), merged }));
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
