//! Views and materialized views over protected tables, as the catalog look-up finds them: every
//! relation whose `_RETURN` rule depends (`pg_depend` on `pg_rewrite`) on a protected table,
//! a partition or child of one, or another such view, at any depth, with its columns and its
//! definition as the server prints it (`pg_get_viewdef`, names qualified where the session's
//! search path would not find them). The mapping of their columns is `engine/views.rs`.

use std::collections::HashMap;

/// One view or materialized view that reads a protected table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatalogView {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub materialized: bool,
    /// (attnum, name) of each output column, in order.
    pub columns: Vec<(i16, String)>,
    /// `pg_get_viewdef`: the query, as the server prints it for this session.
    pub definition: String,
}

/// The views (by OID) reading any relation of the look-up's `family` (protected tables and
/// their descendants), and the views reading those, at any depth. Part of the look-up's
/// `WITH RECURSIVE` list; every operator and type `pg_catalog`-qualified.
pub const VIEWS_CTE: &str = "views(oid) AS ( \
       SELECT w.ev_class FROM pg_catalog.pg_depend d \
       JOIN pg_catalog.pg_rewrite w ON w.oid OPERATOR(pg_catalog.=) d.objid \
       WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
         AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
         AND d.refobjid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT f.oid FROM family f)) \
         AND w.ev_class OPERATOR(pg_catalog.<>) d.refobjid \
       UNION \
       SELECT w.ev_class FROM views v \
       JOIN pg_catalog.pg_depend d ON d.refobjid OPERATOR(pg_catalog.=) v.oid \
       JOIN pg_catalog.pg_rewrite w ON w.oid OPERATOR(pg_catalog.=) d.objid \
       WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
         AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
         AND w.ev_class OPERATOR(pg_catalog.<>) v.oid)";

/// One row per column of each view (its definition on the first column's row), shaped like
/// the look-up's table rows.
pub const VIEW_ROWS: &str = "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, \
       t.typname, NULL::pg_catalog.text, NULL::pg_catalog.oid, c.relkind::pg_catalog.text, \
       CASE WHEN a.attnum OPERATOR(pg_catalog.=) 1::pg_catalog.int2 \
         THEN pg_catalog.pg_get_viewdef(c.oid) END \
     FROM (SELECT DISTINCT v.oid FROM views v) v \
     JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) v.oid \
       AND c.relkind::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ARRAY['v', 'm']) \
     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid \
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped \
     JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid";

/// `relkind` of a view (`v`) or a materialized view (`m`).
pub fn is_view_kind(relkind: &str) -> bool {
    matches!(relkind, "v" | "m")
}

/// Adds one look-up row of a view (see [`VIEW_ROWS`]).
pub fn add_row(
    views: &mut HashMap<u32, CatalogView>,
    oid: u32,
    attnum: i16,
    row: &[Option<String>],
) {
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let view = views.entry(oid).or_insert_with(|| CatalogView {
        oid,
        schema: get(1),
        name: get(2),
        materialized: get(8) == "m",
        columns: Vec::new(),
        definition: String::new(),
    });
    view.columns.push((attnum, get(4)));
    if let Some(Some(definition)) = row.get(9) {
        view.definition = definition.clone();
    }
}

#[cfg(test)]
mod tests {
    use crate::protect::catalog::{lookup_query, Catalog};

    #[test]
    fn view_rows_build_views_apart_from_tables() {
        let row = |attnum: &str, name: &str, def: Option<&str>| {
            let mut r: Vec<Option<String>> = ["77", "public", "v", attnum, name, "bytea"]
                .map(|v| Some(v.to_owned()))
                .into();
            r.extend([None, None, Some("v".to_owned()), def.map(str::to_owned)]);
            r
        };
        let c = Catalog::from_rows(vec![
            row(
                "1",
                "id",
                Some(" SELECT customers.id, customers.email FROM customers;"),
            ),
            row("2", "email", None),
        ]);
        assert_eq!(c.tables().count(), 0);
        let views = c.views();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].columns, [(1, "id".into()), (2, "email".into())]);
        assert!(views[0].definition.contains("customers.email"));
        assert!(!views[0].materialized);
    }

    #[test]
    fn the_lookup_reads_views_through_the_rewrite_rules_they_depend_on() {
        let q = lookup_query(&[("public".into(), "customers".into())]);
        assert!(q.contains("pg_catalog.pg_get_viewdef(c.oid)"), "{q}");
        assert!(q.contains("pg_catalog.pg_rewrite"), "{q}");
        assert!(!q.contains(" <> "), "{q}");
    }
}
