//! What the server's catalog says about the protected tables: their OIDs (to recognise
//! protected result columns in `RowDescription` by table OID and attribute number), their
//! columns in order, each column's storage type (protected ones must be `bytea`) and its
//! guard constraints (`protect::guard`). Partitions and inheritance children of a protected
//! table, at any depth, are read too: their columns are the protected table's (by name).
//!
//! The look-up runs on the session's own upstream connection, right after login, so pgshroud
//! needs no credentials of its own.

use std::collections::HashMap;

use tokio::io::AsyncWriteExt;

use super::guard::FoundGuard;
use super::views::{self, CatalogView};
use crate::net::stream::Stream;
use crate::protocol::fields;
use crate::protocol::frame::{message, FrameBuffer, FrameError};
use crate::protocol::types::backend;

/// One column of a protected table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub attnum: i16,
    pub name: String,
    /// `typname` of the storage type, e.g. `bytea`.
    pub type_name: String,
    /// CHECK constraints on this column alone whose name starts with the guard prefix.
    pub guards: Vec<FoundGuard>,
}

/// One protected table as it exists in the database, or a partition or inheritance child of
/// one (`parent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<CatalogColumn>,
    /// For a partition or child (at any depth) of a protected table: that table's OID. Its
    /// columns hold the protected table's values under the same names (attribute numbers may
    /// differ), so they are protected the same way.
    pub parent: Option<u32>,
}

impl CatalogTable {
    pub fn column(&self, attnum: i16) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.attnum == attnum)
    }
}

/// The protected tables found in the session's database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    by_oid: HashMap<u32, CatalogTable>,
    /// Views and materialized views that read a protected table (or a partition or child of
    /// one, or another such view), by OID.
    views: HashMap<u32, CatalogView>,
    /// The session's effective search path when looked up, if the look-up read it.
    pub search_path: Option<SessionPath>,
}

/// The session's effective search path (`current_schemas(true)`, its temporary schema first
/// once it has one) and every relation on it named like a protected table: what PostgreSQL
/// will find first for an unqualified name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SessionPath {
    pub schemas: Vec<String>,
    pub relations: std::collections::BTreeSet<(String, String)>,
}

/// The look-up's marker rows (table OID 0) carry the search path and the relations on it.
const PATH_ROW: &str = "path";
const RELATION_ROW: &str = "relation";

impl Catalog {
    pub fn table_by_oid(&self, oid: u32) -> Option<&CatalogTable> {
        self.by_oid.get(&oid)
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&CatalogTable> {
        self.by_oid
            .values()
            .find(|t| t.schema == schema && t.name == name)
    }

    pub fn tables(&self) -> impl Iterator<Item = &CatalogTable> {
        self.by_oid.values()
    }

    /// The views over protected tables, in OID order (a view is usually made after those it
    /// reads).
    pub fn views(&self) -> Vec<&CatalogView> {
        let mut views: Vec<&CatalogView> = self.views.values().collect();
        views.sort_by_key(|v| v.oid);
        views
    }

    /// The protected table whose values this table holds: itself, or for a partition or
    /// child, the protected table it descends from.
    pub fn protected_owner<'a>(&'a self, table: &'a CatalogTable) -> Option<&'a CatalogTable> {
        match table.parent {
            None => Some(table),
            Some(parent) => self.table_by_oid(parent),
        }
    }

    /// Equal for equal catalogs: plans built for one database's layout are reused only for
    /// the same layout.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut tables: Vec<&CatalogTable> = self.by_oid.values().collect();
        tables.sort_by_key(|t| t.oid);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for t in tables {
            (t.oid, &t.schema, &t.name, t.parent).hash(&mut h);
            for c in &t.columns {
                (c.attnum, &c.name, &c.type_name, &c.guards).hash(&mut h);
            }
        }
        for view in self.views() {
            view.hash(&mut h);
        }
        self.search_path.hash(&mut h);
        h.finish()
    }

    /// Builds the catalog from the look-up query's text-format rows (public for the fuzz
    /// targets, which build a session's catalog without a database).
    pub fn from_rows(rows: Vec<Vec<Option<String>>>) -> Catalog {
        let mut by_oid: HashMap<u32, CatalogTable> = HashMap::new();
        let mut views: HashMap<u32, CatalogView> = HashMap::new();
        let mut path: Option<SessionPath> = None;
        for row in rows {
            let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let (Ok(oid), Ok(attnum)) = (get(0).parse::<u32>(), get(3).parse::<i16>()) else {
                continue;
            };
            if oid == 0 {
                // Marker rows come ordered by attnum (the path's order).
                let path = path.get_or_insert_with(SessionPath::default);
                match get(6).as_str() {
                    PATH_ROW => path.schemas.push(get(1)),
                    RELATION_ROW => {
                        path.relations.insert((get(1), get(2)));
                    }
                    _ => {}
                }
                continue;
            }
            // View rows carry no root; a view the rules list by name comes (also) through
            // the relations branch, with root 0, and is read as the table the rules name.
            let view_row = row.get(7).is_none_or(|root| root.is_none());
            if views::is_view_kind(&get(8)) && view_row {
                views::add_row(&mut views, oid, attnum, &row);
                continue;
            }
            let parent = get(7).parse::<u32>().ok().filter(|&p| p != 0);
            let table = by_oid.entry(oid).or_insert_with(|| CatalogTable {
                oid,
                schema: get(1),
                name: get(2),
                columns: Vec::new(),
                parent,
            });
            table.columns.push(CatalogColumn {
                attnum,
                name: get(4),
                type_name: get(5),
                guards: guards_of(&get(6)),
            });
        }
        Catalog {
            by_oid,
            views,
            search_path: path,
        }
    }
}

/// Separates guards in the look-up's guard column (a constraint definition has no newline).
const GUARD_SEPARATOR: char = '\n';

/// The look-up query for these (schema, table) pairs. It runs on the client's session, so it
/// is written to mean the same whatever that session did: every function, operator and type
/// is `pg_catalog`-qualified (a user-defined `=` or `length` earlier in the search_path cannot
/// change the answer).
pub fn lookup_query(tables: &[(String, String)]) -> String {
    lookup_query_locking(tables, &[])
}

/// [`lookup_query`] that first takes `ACCESS SHARE` on each of `locking` (tables with a
/// migrating column): a look-up sent while `pgshroud migrate` swaps such a table (under
/// `ACCESS EXCLUSIVE`) waits for the swap to commit, then reads the new form, instead of
/// reading the old one and letting the statement behind it meet the new.
pub fn lookup_query_locking(tables: &[(String, String)], locking: &[(String, String)]) -> String {
    let locks: String = locking
        .iter()
        .map(|(schema, table)| {
            format!(
                " AND NOT EXISTS (SELECT FROM ONLY {}.{} WHERE false)",
                super::guard::quote_ident(schema),
                super::guard::quote_ident(table)
            )
        })
        .collect();
    let eq = "OPERATOR(pg_catalog.=)";
    let wanted: Vec<String> = tables
        .iter()
        .map(|(s, t)| {
            format!(
                "(n.nspname::pg_catalog.text {eq} {} AND c.relname::pg_catalog.text {eq} {})",
                literal(s),
                literal(t)
            )
        })
        .collect();
    let guards = format!(
        "(SELECT pg_catalog.string_agg(\
           (CASE WHEN k.convalidated THEN 'v' ELSE 'n' END) OPERATOR(pg_catalog.||) \
           k.conname::pg_catalog.text OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) \
           pg_catalog.pg_get_constraintdef(k.oid), E'\\n') \
         FROM pg_catalog.pg_constraint k \
         WHERE k.conrelid {eq} c.oid AND k.contype {eq} 'c' AND NOT k.connoinherit \
           AND k.conkey {eq} ARRAY[a.attnum]::pg_catalog.int2[] \
           AND pg_catalog.starts_with(k.conname::pg_catalog.text, {prefix}))",
        prefix = literal(super::guard::NAME_PREFIX),
    );
    let mut names: Vec<String> = tables.iter().map(|(_, t)| literal(t)).collect();
    names.sort();
    names.dedup();
    let names = if names.is_empty() {
        "NULL".to_owned()
    } else {
        names.join(", ")
    };
    let wanted = if wanted.is_empty() {
        "false".to_owned()
    } else {
        wanted.join(" OR ")
    };
    // The protected tables (root 0) and their partitions and inheritance children at any
    // depth, each with the protected table it descends from; one row per relation (a table
    // both protected and a child is read as protected).
    let views_cte = views::VIEWS_CTE;
    let family = format!(
        "WITH RECURSIVE family(oid, root) AS ( \
           SELECT c.oid, 0::pg_catalog.oid FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid {eq} c.relnamespace WHERE {wanted} \
           UNION \
           SELECT i.inhrelid, CASE WHEN f.root {eq} 0::pg_catalog.oid THEN f.oid ELSE f.root END \
           FROM pg_catalog.pg_inherits i JOIN family f ON i.inhparent {eq} f.oid), \
         relations AS (SELECT DISTINCT ON (f.oid) f.oid, f.root FROM family f ORDER BY f.oid, f.root), \
         {views_cte}"
    );
    // Types are the same in every branch of the UNION: oid, name x2, int2, name x2, text, oid,
    // text x2 (relkind, a view's definition).
    format!(
        "{family} \
         SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, t.typname, {guards}, r.root, \
           c.relkind::pg_catalog.text, NULL::pg_catalog.text \
         FROM relations r \
         JOIN pg_catalog.pg_class c ON c.oid {eq} r.oid \
         JOIN pg_catalog.pg_namespace n ON n.oid {eq} c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid {eq} c.oid \
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped \
         JOIN pg_catalog.pg_type t ON t.oid {eq} a.atttypid \
         UNION ALL {view_rows} \
         UNION ALL \
         SELECT 0::pg_catalog.oid, p.schema, NULL::pg_catalog.name, p.n::pg_catalog.int2, \
           NULL::pg_catalog.name, NULL::pg_catalog.name, '{PATH_ROW}'::pg_catalog.text, \
           NULL::pg_catalog.oid, NULL::pg_catalog.text, NULL::pg_catalog.text \
         FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS p(schema, n) \
         WHERE true{locks} \
         UNION ALL \
         SELECT 0::pg_catalog.oid, n.nspname, c.relname, 0::pg_catalog.int2, \
           NULL::pg_catalog.name, NULL::pg_catalog.name, '{RELATION_ROW}'::pg_catalog.text, \
           NULL::pg_catalog.oid, NULL::pg_catalog.text, NULL::pg_catalog.text \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid {eq} c.relnamespace \
         WHERE n.nspname {eq} ANY (pg_catalog.current_schemas(true)) \
           AND (c.relname::pg_catalog.text {eq} ANY (ARRAY[{names}]::pg_catalog.text[]) \
             OR c.relname {eq} ANY (ARRAY(SELECT k.relname FROM relations r \
               JOIN pg_catalog.pg_class k ON k.oid {eq} r.oid)) \
             OR c.relname {eq} ANY (ARRAY(SELECT k.relname FROM views v \
               JOIN pg_catalog.pg_class k ON k.oid {eq} v.oid))) \
         ORDER BY 1, 4",
        view_rows = views::VIEW_ROWS,
    )
}

/// Guards from the look-up's guard column: one per line, `v`/`n` (validated or not), the
/// name, a space, the definition.
fn guards_of(column: &str) -> Vec<FoundGuard> {
    column
        .split(GUARD_SEPARATOR)
        .filter_map(|line| {
            let (validated, rest) = match line.split_at_checked(1)? {
                ("v", rest) => (true, rest),
                ("n", rest) => (false, rest),
                _ => return None,
            };
            let (name, definition) = rest.split_once(' ')?;
            Some(FoundGuard {
                name: name.to_owned(),
                definition: definition.to_owned(),
                validated,
            })
        })
        .collect()
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog look-up failed: {0}")]
    Server(String),
    #[error("upstream: {0}")]
    Frame(#[from] FrameError),
    #[error("upstream closed the connection during the catalog look-up")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the look-up on an idle upstream connection (after its ReadyForQuery).
pub async fn fetch(
    server: &mut Stream,
    buf: &mut FrameBuffer,
    tables: &[(String, String)],
) -> Result<Catalog, CatalogError> {
    let rows = query_rows(server, buf, &lookup_query(tables)).await?;
    Ok(Catalog::from_rows(rows))
}

/// The PostgreSQL roles the session's user is a member of (directly or not), for rules
/// that match callers by `pg_roles`.
pub async fn fetch_pg_roles(
    server: &mut Stream,
    buf: &mut FrameBuffer,
) -> Result<Vec<String>, CatalogError> {
    let rows = query_rows(server, buf, PG_ROLES_QUERY).await?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .collect())
}

const PG_ROLES_QUERY: &str = "SELECT r.rolname FROM pg_catalog.pg_roles r \
     WHERE r.rolname <> current_user AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')";

/// Runs one simple query of the proxy's own on the session's connection, before the client
/// may send anything, and returns its rows in text format.
pub(crate) async fn query_rows(
    server: &mut Stream,
    buf: &mut FrameBuffer,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, CatalogError> {
    let mut sql = sql.as_bytes().to_vec();
    sql.push(0);
    server.write_all(&message(b'Q', &sql)).await?;
    server.flush().await?;
    let mut rows = Vec::new();
    let mut failure = None;
    loop {
        let frame = buf.read_frame(server).await?.ok_or(CatalogError::Closed)?;
        match frame[0] {
            backend::DATA_ROW => rows.push(data_row_text(&frame)),
            backend::ERROR_RESPONSE => {
                failure = Some(
                    fields::field(&frame, b'M')
                        .unwrap_or("unknown error")
                        .to_owned(),
                )
            }
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match failure {
        Some(message) => Err(CatalogError::Server(message)),
        None => Ok(rows),
    }
}

/// Fields of a text-format DataRow.
pub fn data_row_text(frame: &[u8]) -> Vec<Option<String>> {
    let Some((count, mut rest)) = frame
        .get(5..)
        .and_then(|body| body.split_first_chunk::<2>())
    else {
        return Vec::new();
    };
    let count = u16::from_be_bytes(*count) as usize;
    let mut out = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        if rest.len() < 4 {
            break;
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = (len as usize).min(rest.len());
        out.push(Some(String::from_utf8_lossy(&rest[..len]).into_owned()));
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_query_quotes_names() {
        let q = lookup_query(&[("public".into(), "o'brien".into())]);
        assert!(q.contains("OPERATOR(pg_catalog.=) 'public'"), "{q}");
        assert!(q.contains("OPERATOR(pg_catalog.=) 'o''brien'"), "{q}");
    }

    #[test]
    fn a_locking_lookup_names_the_tables_it_waits_for() {
        let tables = [("public".to_owned(), "people".to_owned())];
        assert!(!lookup_query(&tables).contains("FROM ONLY"));
        let q = lookup_query_locking(&tables, &tables);
        assert!(
            q.contains(r#"NOT EXISTS (SELECT FROM ONLY "public"."people" WHERE false)"#),
            "{q}"
        );
    }

    #[test]
    fn lookup_query_uses_no_unqualified_operator() {
        let q = lookup_query(&[("public".into(), "customers".into())]);
        for op in [" = ", " > ", " IN ", " LIKE ", " || "] {
            assert!(!q.contains(op), "unqualified {op:?} in {q}");
        }
    }

    #[test]
    fn guard_column_splits_into_guards() {
        let g = guards_of("vpgshroud_guard_email CHECK (x)\nnpgshroud_guard_e2 CHECK (y)");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "pgshroud_guard_email");
        assert_eq!(g[0].definition, "CHECK (x)");
        assert!(g[0].validated);
        assert!(!g[1].validated);
        assert!(guards_of("").is_empty());
    }

    #[test]
    fn short_or_lying_data_rows_do_not_panic() {
        for frame in [
            &b""[..],
            b"D",
            b"D\0\0\0\x04",
            b"D\0\0\0\x05\0",
            b"D\0\0\0\x06\xff\xff",
            b"D\0\0\0\x0a\0\x01\x7f\xff\xff\xff",
        ] {
            let row = data_row_text(frame);
            assert!(row.len() <= 1, "{frame:?}");
        }
        let ok = data_row_text(b"D\0\0\0\x0b\0\x01\0\0\0\x01x");
        assert_eq!(ok, vec![Some("x".to_owned())]);
    }

    #[test]
    fn marker_rows_carry_the_search_path_and_relations() {
        let marker = |kind: &str, schema: &str, rel: Option<&str>, n: &str| {
            vec![
                Some("0".to_owned()),
                Some(schema.to_owned()),
                rel.map(str::to_owned),
                Some(n.to_owned()),
                None,
                None,
                Some(kind.to_owned()),
            ]
        };
        let c = Catalog::from_rows(vec![
            marker(PATH_ROW, "pg_temp_3", None, "1"),
            marker(PATH_ROW, "pg_catalog", None, "2"),
            marker(PATH_ROW, "public", None, "3"),
            marker(RELATION_ROW, "pg_temp_3", Some("customers"), "0"),
            marker(RELATION_ROW, "public", Some("customers"), "0"),
        ]);
        let path = c.search_path.as_ref().unwrap();
        assert_eq!(path.schemas, ["pg_temp_3", "pg_catalog", "public"]);
        assert!(path
            .relations
            .contains(&("pg_temp_3".to_owned(), "customers".to_owned())));
        assert_eq!(c.tables().count(), 0);
        assert_ne!(c.fingerprint(), Catalog::default().fingerprint());
    }

    #[test]
    fn partitions_and_children_name_the_protected_table_they_descend_from() {
        let row = |oid: &str, table: &str, attnum: &str, name: &str, root: Option<&str>| {
            let mut r: Vec<Option<String>> = [oid, "public", table, attnum, name, "bytea"]
                .map(|v| Some(v.to_owned()))
                .into();
            r.extend([None, root.map(str::to_owned)]);
            r
        };
        let c = Catalog::from_rows(vec![
            row("42", "customers", "2", "email", Some("0")),
            // A partition's attribute numbers may differ: columns map by name.
            row("43", "customers_p1", "5", "email", Some("42")),
        ]);
        let part = c.table_by_oid(43).unwrap();
        assert_eq!(part.parent, Some(42));
        assert_eq!(c.protected_owner(part).unwrap().name, "customers");
        let root = c.table_by_oid(42).unwrap();
        assert_eq!(root.parent, None);
        assert_eq!(c.protected_owner(root).unwrap().oid, 42);
        let q = lookup_query(&[("public".into(), "customers".into())]);
        assert!(q.contains("pg_catalog.pg_inherits"), "{q}");
    }

    #[test]
    fn rows_group_into_tables() {
        let row = |oid: &str, attnum: &str, name: &str, ty: &str| {
            vec![
                Some(oid.to_owned()),
                Some("public".to_owned()),
                Some("customers".to_owned()),
                Some(attnum.to_owned()),
                Some(name.to_owned()),
                Some(ty.to_owned()),
                None,
            ]
        };
        let c = Catalog::from_rows(vec![
            row("42", "1", "id", "int4"),
            row("42", "2", "email", "bytea"),
        ]);
        let t = c.table_by_oid(42).unwrap();
        assert_eq!(t.columns.len(), 2);
        assert_eq!(t.column(2).unwrap().name, "email");
        assert_eq!(c.table("public", "customers").unwrap().oid, 42);
    }

    #[test]
    fn a_view_the_rules_list_is_a_table_and_views_found_by_dependency_are_views() {
        let row = |oid: &str, name: &str, root: Option<&str>, definition: Option<&str>| {
            let mut r: Vec<Option<String>> = [oid, "public", name, "1", "email", "bytea"]
                .map(|v| Some(v.to_owned()))
                .into();
            r.extend([
                None,
                root.map(str::to_owned),
                Some("v".to_owned()),
                definition.map(str::to_owned),
            ]);
            r
        };
        let c = Catalog::from_rows(vec![
            // Listed in the rules (relations branch, root 0) and depending on customers.
            row("50", "customer_emails", Some("0"), None),
            row(
                "50",
                "customer_emails",
                None,
                Some(" SELECT email FROM customers;"),
            ),
            // Found only by its dependency.
            row(
                "51",
                "raw_emails",
                None,
                Some(" SELECT email FROM customers;"),
            ),
        ]);
        assert_eq!(c.table("public", "customer_emails").unwrap().oid, 50);
        assert!(c.table("public", "raw_emails").is_none());
        let views: Vec<u32> = c.views().iter().map(|v| v.oid).collect();
        assert_eq!(views, [50, 51]);
    }
}
