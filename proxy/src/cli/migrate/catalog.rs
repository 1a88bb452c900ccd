//! What the database holds around a column to migrate: its type, NOT NULL, default, the
//! shadow column of an earlier run, and every index, constraint and view that uses it. Read
//! with `search_path = pg_catalog` (set by the caller), parameters for every name.

use tokio_postgres::Client;

use crate::cli::setup::connect;

/// A column as `pg_attribute` has it.
pub struct Attribute {
    pub table_oid: u32,
    pub relkind: String,
    pub attnum: i16,
    pub type_oid: u32,
    pub typmod: i32,
    /// `format_type`: `character varying(100)`, `numeric(12,2)`.
    pub type_name: String,
    pub not_null: bool,
    /// The default expression, when there is one.
    pub default: Option<String>,
    /// Identity or generated.
    pub special: bool,
}

/// The column `schema.table.column`, or `None` when the table or column does not exist.
pub async fn attribute(
    client: &Client,
    schema: &str,
    table: &str,
    column: &str,
) -> Result<Option<Attribute>, String> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text, a.attnum, a.atttypid, a.atttypmod, \
                    format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid), (a.attidentity <> '' OR a.attgenerated <> '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0 \
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3",
            &[&schema, &table, &column],
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(row.map(|r| Attribute {
        table_oid: r.get(0),
        relkind: r.get(1),
        attnum: r.get(2),
        type_oid: r.get(3),
        typmod: r.get(4),
        type_name: r.get(5),
        not_null: r.get(6),
        default: r.get(7),
        special: r.get(8),
    }))
}

/// An index that uses the column.
pub struct Index {
    pub oid: u32,
    pub name: String,
    pub unique: bool,
    /// `p` or `u` when the index backs that constraint (its name in `constraint`).
    pub constraint: Option<(String, String)>,
    /// Only plain columns as keys, no predicate, an access method and operator classes that
    /// work the same on any type with equality (btree, hash; default classes), no exclusion.
    pub portable: bool,
    pub method: String,
    /// Key columns, then INCLUDE columns, by name.
    pub keys: Vec<String>,
    pub include: Vec<String>,
    pub definition: String,
}

pub async fn indexes(client: &Client, table: u32, attnum: i16) -> Result<Vec<Index>, String> {
    let rows = client
        .query(
            "SELECT i.indexrelid, ic.relname::text, i.indisunique, con.contype::text, con.conname::text, \
                    (i.indexprs IS NULL AND i.indpred IS NULL AND am.amname IN ('btree', 'hash') \
                     AND coalesce(con.contype, 'u') <> 'x' \
                     AND (SELECT bool_and(oc.opcdefault) FROM unnest(i.indclass::oid[]) AS u(o) \
                          JOIN pg_opclass oc ON oc.oid = u.o)), \
                    am.amname::text, i.indnkeyatts, \
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, ord) \
                          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n \
                          ORDER BY k.ord), \
                    pg_get_indexdef(i.indexrelid) \
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = ic.relam \
             LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid \
               AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') \
             WHERE i.indrelid = $1 AND ($2::int2 = ANY(i.indkey::int2[]) OR EXISTS ( \
               SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                 AND d.objid = i.indexrelid AND d.refobjid = i.indrelid AND d.refobjsubid = $2::int2)) \
             ORDER BY ic.relname",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let contype: Option<String> = r.get(3);
            let conname: Option<String> = r.get(4);
            let key_count = usize::try_from(r.get::<_, i16>(7)).unwrap_or(0);
            let names: Vec<Option<String>> = r.get(8);
            // An expression key has attnum 0 and no name: such an index is not portable.
            let names: Vec<String> = names.into_iter().map(Option::unwrap_or_default).collect();
            let (keys, include) = names.split_at(key_count.min(names.len()));
            Index {
                oid: r.get(0),
                name: r.get(1),
                unique: r.get(2),
                constraint: contype.zip(conname),
                portable: r.get::<_, Option<bool>>(5).unwrap_or(false)
                    && names.iter().all(|n| !n.is_empty()),
                method: r.get(6),
                keys: keys.to_vec(),
                include: include.to_vec(),
                definition: r.get(9),
            }
        })
        .collect())
}

/// A constraint that uses the column and is not an index's: CHECK or FOREIGN KEY.
pub struct Constraint {
    pub name: String,
    /// `c` or `f`.
    pub kind: String,
    /// `schema.table` the constraint is on (quoted for SQL).
    pub table_sql: String,
    pub definition: String,
    pub validated: bool,
    /// For a one-column foreign key: (referencing, referenced) as `schema.table.column`.
    pub link: Option<(String, String)>,
}

pub async fn constraints(
    client: &Client,
    table: u32,
    attnum: i16,
) -> Result<Vec<Constraint>, String> {
    let rows = client
        .query(
            "SELECT con.conname::text, con.contype::text, \
                    '\"' || replace(cn.nspname, '\"', '\"\"') || '\".\"' || replace(cc.relname, '\"', '\"\"') || '\"', \
                    pg_get_constraintdef(con.oid), \
                    CASE WHEN con.contype = 'f' AND cardinality(con.conkey) = 1 THEN \
                      ARRAY[cn.nspname || '.' || cc.relname || '.' || ca.attname, \
                            fn.nspname || '.' || fc.relname || '.' || fa.attname] END, \
                    con.convalidated \
             FROM pg_constraint con \
             JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
             LEFT JOIN pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = con.conkey[1] \
             LEFT JOIN pg_class fc ON fc.oid = con.confrelid \
             LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
             LEFT JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = con.confkey[1] \
             WHERE (con.contype = 'c' AND con.conrelid = $1 AND $2 = ANY(con.conkey)) \
                OR (con.contype = 'f' AND ((con.conrelid = $1 AND $2 = ANY(con.conkey)) \
                                        OR (con.confrelid = $1 AND $2 = ANY(con.confkey)))) \
             ORDER BY con.conname",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let link: Option<Vec<String>> = r.get(4);
            Constraint {
                name: r.get(0),
                kind: r.get(1),
                table_sql: r.get(2),
                definition: r.get(3),
                validated: r.get(5),
                link: link.map(|l| (l[0].clone(), l[1].clone())),
            }
        })
        .collect())
}

/// Views (and rules) that read the column: `DROP COLUMN` cannot go past them.
pub async fn views(client: &Client, table: u32, attnum: i16) -> Result<Vec<String>, String> {
    let rows = client
        .query(
            "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d \
             JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class \
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 \
               AND d.refobjsubid = $2 AND v.oid <> $1 ORDER BY 1",
            &[&table, &i32::from(attnum)],
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Rows of the table that match `filter`.
pub async fn rows_to_fill(client: &Client, table_sql: &str, filter: &str) -> Result<u64, String> {
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM {table_sql} WHERE {filter}"),
            &[],
        )
        .await
        .map_err(|e| connect::reason(&e))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}
