//! The ORM matrix scenario for sqlx 0.8 (PgConnection, binary format, `$n` parameters): the
//! same operations and rows as the Python scenarios (`integration-tests/orm/matrix_common.py`).

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::postgres::{PgArguments, PgConnection, PgDatabaseError, PgRow};
use sqlx::query::Query;
use sqlx::types::{Decimal, JsonValue, Uuid};
use sqlx::{Connection, Postgres, QueryBuilder, Row};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// One row of `orm_items` as the application sees it.
#[derive(Debug, Clone, PartialEq)]
struct Values {
    label: String,
    v_text: String,
    v_varchar: String,
    v_int2: i16,
    v_int4: i32,
    v_int8: i64,
    v_bool: bool,
    v_numeric: Decimal,
    v_date: Date,
    v_timestamp: PrimitiveDateTime,
    v_timestamptz: OffsetDateTime,
    v_uuid: Uuid,
    v_bytea: Vec<u8>,
    v_jsonb: JsonValue,
}

const COLUMNS: &str = "label, v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_numeric, \
                       v_date, v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb";

/// Row `n`, the same values as matrix_common.row(n).
fn row(n: i64) -> Values {
    let date = Date::from_calendar_date(2024, Month::February, 29).unwrap();
    let at = |h, m, s, us| Time::from_hms_micro(h, m, s, us).unwrap();
    Values {
        label: format!("row-{n}"),
        v_text: format!("user{n}@example.com"),
        v_varchar: format!("Zoë ✓ {n}"),
        v_int2: -32768 + n as i16,
        v_int4: 2147483647 - n as i32,
        v_int8: i64::MIN + n,
        v_bool: n % 2 == 0,
        v_numeric: format!("{n}12.50").parse().unwrap(),
        v_date: date + time::Duration::days(n),
        v_timestamp: PrimitiveDateTime::new(date, at(13, 45, 30, 123456))
            + time::Duration::hours(n),
        v_timestamptz: PrimitiveDateTime::new(date, at(13, 45, 30, 654321)).assume_utc()
            + time::Duration::minutes(n),
        v_uuid: Uuid::from_u128(0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321 + n as u128),
        v_bytea: vec![0, 1, 254, 255, n as u8],
        v_jsonb: json!({"n": n, "list": [1, "two", null, 1.5], "nested": {"ü": true}}),
    }
}

const SINGLE_ROWS: [i64; 4] = [0, 4, 5, 6];
const BULK_ROWS: [i64; 3] = [1, 2, 3];

fn bind_row<'q>(
    q: Query<'q, Postgres, PgArguments>,
    v: &Values,
) -> Query<'q, Postgres, PgArguments> {
    q.bind(v.label.clone())
        .bind(v.v_text.clone())
        .bind(v.v_varchar.clone())
        .bind(v.v_int2)
        .bind(v.v_int4)
        .bind(v.v_int8)
        .bind(v.v_bool)
        .bind(v.v_numeric)
        .bind(v.v_date)
        .bind(v.v_timestamp)
        .bind(v.v_timestamptz)
        .bind(v.v_uuid)
        .bind(v.v_bytea.clone())
        .bind(v.v_jsonb.clone())
}

/// Binds the value of column `col` of `v`.
fn bind_column<'q>(
    q: Query<'q, Postgres, PgArguments>,
    col: &str,
    v: &Values,
) -> Query<'q, Postgres, PgArguments> {
    match col {
        "v_text" => q.bind(v.v_text.clone()),
        "v_varchar" => q.bind(v.v_varchar.clone()),
        "v_int2" => q.bind(v.v_int2),
        "v_int4" => q.bind(v.v_int4),
        "v_int8" => q.bind(v.v_int8),
        "v_bool" => q.bind(v.v_bool),
        "v_numeric" => q.bind(v.v_numeric),
        "v_date" => q.bind(v.v_date),
        "v_timestamp" => q.bind(v.v_timestamp),
        "v_timestamptz" => q.bind(v.v_timestamptz),
        "v_uuid" => q.bind(v.v_uuid),
        "v_bytea" => q.bind(v.v_bytea.clone()),
        "v_jsonb" => q.bind(v.v_jsonb.clone()),
        other => panic!("no column {other}"),
    }
}

const PROTECTED: [&str; 13] = [
    "v_text",
    "v_varchar",
    "v_int2",
    "v_int4",
    "v_int8",
    "v_bool",
    "v_numeric",
    "v_date",
    "v_timestamp",
    "v_timestamptz",
    "v_uuid",
    "v_bytea",
    "v_jsonb",
];

fn from_row(r: &PgRow) -> Result<Values, sqlx::Error> {
    Ok(Values {
        label: r.try_get("label")?,
        v_text: r.try_get("v_text")?,
        v_varchar: r.try_get("v_varchar")?,
        v_int2: r.try_get("v_int2")?,
        v_int4: r.try_get("v_int4")?,
        v_int8: r.try_get("v_int8")?,
        v_bool: r.try_get("v_bool")?,
        v_numeric: r.try_get("v_numeric")?,
        v_date: r.try_get("v_date")?,
        v_timestamp: r.try_get("v_timestamp")?,
        v_timestamptz: r.try_get("v_timestamptz")?,
        v_uuid: r.try_get("v_uuid")?,
        v_bytea: r.try_get("v_bytea")?,
        v_jsonb: r.try_get("v_jsonb")?,
    })
}

type OpResult = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> OpResult {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn err(e: sqlx::Error) -> String {
    match &e {
        sqlx::Error::Database(db) => format!("{}: {}", db.code().unwrap_or_default(), db.message()),
        _ => e.to_string(),
    }
}

/// Scenario state: the connection, which id each single row got, and row 0 as it is now.
struct Scenario {
    conn: PgConnection,
    ids: BTreeMap<i64, i32>,
    a: Values,
}

impl Scenario {
    async fn read(&mut self, id: i32) -> Result<Values, String> {
        let sql = format!("SELECT {COLUMNS} FROM orm_items WHERE id = $1");
        let r = sqlx::query(&sql)
            .bind(id)
            .fetch_one(&mut self.conn)
            .await
            .map_err(err)?;
        from_row(&r).map_err(err)
    }

    async fn read_labels(&mut self, rows: &[i64]) -> OpResult {
        let labels: Vec<String> = rows.iter().map(|n| format!("row-{n}")).collect();
        let sql = format!("SELECT {COLUMNS} FROM orm_items WHERE label = ANY($1) ORDER BY id");
        let got = sqlx::query(&sql)
            .bind(&labels)
            .fetch_all(&mut self.conn)
            .await
            .map_err(err)?;
        check(got.len() == rows.len(), || format!("{} rows", got.len()))?;
        for (n, r) in rows.iter().zip(&got) {
            let have = from_row(r).map_err(err)?;
            check(have == row(*n), || {
                format!("wrote {:?}, read {have:?}", row(*n))
            })?;
        }
        Ok(())
    }

    /// The ids of the rows where protected column `col` equals row `v`'s value.
    async fn ids_where_eq(&mut self, col: &str, v: &Values) -> Result<Vec<i32>, String> {
        let sql = format!("SELECT id FROM orm_items WHERE {col} = $1 ORDER BY id");
        let rows = bind_column(sqlx::query(&sql), col, v)
            .fetch_all(&mut self.conn)
            .await
            .map_err(err)?;
        Ok(rows.iter().map(|r| r.get::<i32, _>(0)).collect())
    }

    async fn single_insert(&mut self) -> OpResult {
        let sql = format!(
            "INSERT INTO orm_items ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id"
        );
        for n in SINGLE_ROWS {
            let r = bind_row(sqlx::query(&sql), &row(n))
                .fetch_one(&mut self.conn)
                .await
                .map_err(err)?;
            self.ids.insert(n, r.get(0));
        }
        Ok(())
    }

    async fn read_by_key(&mut self) -> OpResult {
        for n in SINGLE_ROWS {
            let have = self.read(self.ids[&n]).await?;
            check(have == row(n), || {
                format!("wrote {:?}, read {have:?}", row(n))
            })?;
        }
        Ok(())
    }

    /// sqlx's QueryBuilder::push_values: one multi-row INSERT ... VALUES ($1, ...), (...).
    async fn bulk_insert(&mut self) -> OpResult {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("INSERT INTO orm_items ({COLUMNS}) "));
        qb.push_values(BULK_ROWS.map(row), |mut b, v| {
            b.push_bind(v.label)
                .push_bind(v.v_text)
                .push_bind(v.v_varchar)
                .push_bind(v.v_int2)
                .push_bind(v.v_int4)
                .push_bind(v.v_int8)
                .push_bind(v.v_bool)
                .push_bind(v.v_numeric)
                .push_bind(v.v_date)
                .push_bind(v.v_timestamp)
                .push_bind(v.v_timestamptz)
                .push_bind(v.v_uuid)
                .push_bind(v.v_bytea)
                .push_bind(v.v_jsonb);
        });
        qb.build().execute(&mut self.conn).await.map_err(err)?;
        self.read_labels(&BULK_ROWS).await
    }

    /// The bulk insert sqlx's FAQ recommends: one array per column, INSERT ... SELECT * FROM
    /// UNNEST($1::text[], ...).
    async fn bulk_insert_unnest(&mut self) -> OpResult {
        let rows: Vec<Values> = [20, 21].map(row).into();
        sqlx::query(&format!(
            "INSERT INTO orm_items ({COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], \
             $3::varchar[], $4::int2[], $5::int4[], $6::int8[], $7::bool[], $8::numeric[], \
             $9::date[], $10::timestamp[], $11::timestamptz[], $12::uuid[], $13::bytea[], \
             $14::jsonb[])"
        ))
        .bind(rows.iter().map(|v| v.label.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_text.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_varchar.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_int2).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_int4).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_int8).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_bool).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_numeric).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_date).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_timestamp).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_timestamptz).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_uuid).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_bytea.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|v| v.v_jsonb.clone()).collect::<Vec<_>>())
        .execute(&mut self.conn)
        .await
        .map_err(err)?;
        self.read_labels(&[20, 21]).await
    }

    async fn filter_eq(&mut self) -> OpResult {
        let a = self.a.clone();
        let found = self.ids_where_eq("v_text", &a).await?;
        check(found == [self.ids[&0]], || {
            format!("v_text = found {found:?}")
        })?;
        for col in PROTECTED {
            let found = self.ids_where_eq(col, &row(5)).await?;
            check(found.contains(&self.ids[&5]), || {
                format!("{col} = found {found:?}")
            })?;
        }
        Ok(())
    }

    async fn filter_bool(&mut self) -> OpResult {
        for flag in [true, false] {
            let found: Vec<i32> = sqlx::query_scalar("SELECT id FROM orm_items WHERE v_bool = $1")
                .bind(flag)
                .fetch_all(&mut self.conn)
                .await
                .map_err(err)?;
            for n in SINGLE_ROWS.into_iter().filter(|n| row(*n).v_bool == flag) {
                check(found.contains(&self.ids[&n]), || {
                    format!("v_bool = {flag} found {found:?}")
                })?;
            }
        }
        Ok(())
    }

    /// sqlx has no IN-list expansion: `= ANY($1)` with an array is its idiom.
    async fn filter_in(&mut self) -> OpResult {
        let wanted = vec![
            row(4).v_text,
            row(6).v_text,
            "nobody@example.com".to_owned(),
        ];
        let labels: Vec<String> =
            sqlx::query_scalar("SELECT label FROM orm_items WHERE v_text = ANY($1) ORDER BY id")
                .bind(wanted)
                .fetch_all(&mut self.conn)
                .await
                .map_err(err)?;
        check(labels == ["row-4", "row-6"], || {
            format!("v_text = ANY found {labels:?}")
        })?;
        let labels: Vec<String> =
            sqlx::query_scalar("SELECT label FROM orm_items WHERE v_int4 IN ($1, $2) ORDER BY id")
                .bind(row(5).v_int4)
                .bind(row(6).v_int4)
                .fetch_all(&mut self.conn)
                .await
                .map_err(err)?;
        check(labels == ["row-5", "row-6"], || {
            format!("v_int4 IN found {labels:?}")
        })
    }

    async fn update(&mut self) -> OpResult {
        self.a.v_text = "changed@example.com".into();
        self.a.v_int4 = 7;
        self.a.v_jsonb = json!({"changed": [1]});
        sqlx::query("UPDATE orm_items SET v_text = $1, v_int4 = $2, v_jsonb = $3 WHERE id = $4")
            .bind(&self.a.v_text)
            .bind(self.a.v_int4)
            .bind(&self.a.v_jsonb)
            .bind(self.ids[&0])
            .execute(&mut self.conn)
            .await
            .map_err(err)?;
        let have = self.read(self.ids[&0]).await?;
        check(have == self.a, || {
            format!("wrote {:?}, read {have:?}", self.a)
        })
    }

    async fn unique_violation(&mut self) -> OpResult {
        let duplicate = Values {
            v_text: self.a.v_text.clone(),
            ..row(9)
        };
        let sql = format!(
            "INSERT INTO orm_items ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let e = match bind_row(sqlx::query(&sql), &duplicate)
            .execute(&mut self.conn)
            .await
        {
            Ok(_) => return Err("the duplicate was accepted".into()),
            Err(e) => e,
        };
        let sqlx::Error::Database(db) = &e else {
            return Err(format!("not a server error: {e}"));
        };
        let pg = db.downcast_ref::<PgDatabaseError>();
        check(pg.code() == "23505", || {
            format!("{}: {}", pg.code(), pg.message())
        })?;
        let detail = pg.detail().unwrap_or_default();
        for text in [pg.message(), detail] {
            check(!looks_like_ciphertext(text), || {
                format!("ciphertext in the error: {text}")
            })?;
        }
        let a = self.a.clone();
        let found = self.ids_where_eq("v_text", &a).await?;
        check(found.len() == 1, || format!("after the error: {found:?}"))
    }

    async fn delete(&mut self) -> OpResult {
        sqlx::query("DELETE FROM orm_items WHERE v_text = $1")
            .bind(row(5).v_text)
            .execute(&mut self.conn)
            .await
            .map_err(err)?;
        sqlx::query("DELETE FROM orm_items WHERE v_int8 = $1")
            .bind(row(6).v_int8)
            .execute(&mut self.conn)
            .await
            .map_err(err)?;
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orm_items WHERE label IN ('row-5', 'row-6')")
                .fetch_one(&mut self.conn)
                .await
                .map_err(err)?;
        check(left == 0, || format!("{left} rows still there"))
    }

    async fn rollback(&mut self) -> OpResult {
        let sql = format!(
            "INSERT INTO orm_items ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let mut tx = self.conn.begin().await.map_err(err)?;
        bind_row(sqlx::query(&sql), &row(7))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let found = self.ids_where_eq("v_text", &row(7)).await?;
        check(found.is_empty(), || "the rolled back row is there".into())
    }

    /// numeric(12,2) as PostgreSQL would return it: 12.50, scale 2.
    async fn numeric_scale(&mut self) -> OpResult {
        let have = self.read(self.ids[&0]).await?.v_numeric;
        check(have.to_string() == "12.50", || {
            format!("wrote 12.50, read {have}")
        })
    }

    async fn next_statement(&mut self) -> OpResult {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut self.conn)
            .await
            .map_err(err)?;
        check(one == 1, || "SELECT 1".into())
    }
}

/// The hex of a pgshroud envelope, or any long run of hex digits.
fn looks_like_ciphertext(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("\\x02") || lower.contains("\\x01") || {
        let mut run = 0;
        lower.chars().any(|c| {
            run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
            run >= 40
        })
    }
}

/// Runs every operation on one connection to `url` and returns its outcome by name.
pub async fn run(url: &str) -> BTreeMap<String, OpResult> {
    let conn = PgConnection::connect(url)
        .await
        .expect("sqlx connects through the proxy");
    let mut s = Scenario {
        conn,
        ids: BTreeMap::new(),
        a: row(0),
    };
    let mut results = BTreeMap::new();
    macro_rules! op {
        ($name:literal, $method:ident) => {
            results.insert($name.to_owned(), s.$method().await);
        };
    }
    op!("single_insert", single_insert);
    op!("read_by_key", read_by_key);
    op!("bulk_insert", bulk_insert);
    op!("bulk_insert_unnest", bulk_insert_unnest);
    op!("filter_eq", filter_eq);
    op!("filter_bool", filter_bool);
    op!("filter_in", filter_in);
    op!("update", update);
    op!("unique_violation", unique_violation);
    op!("delete", delete);
    op!("rollback", rollback);
    op!("numeric_scale", numeric_scale);
    op!("next_statement", next_statement);
    results
}
