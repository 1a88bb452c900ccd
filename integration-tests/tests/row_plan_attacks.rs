//! Attacks on the row plans a session keeps (`protect/session/described.rs`): a description
//! answered again must give what a freshly worked-out one gives. Each test makes the server
//! send byte-identical RowDescriptions (or the same statement text) while something the plan
//! depends on changes in between, on live connections of non-superuser roles against a real
//! PostgreSQL, and checks the bytes the client receives. Attacks that found nothing stay as
//! tests: they fail if a later change opens the hole.

use pgshroud_integration_tests::protected::{
    code, hex, proxy_with_rules, rows, Fixture, MASTER_KEY, RULES as RULES_TYPED,
};
use pgshroud_integration_tests::raw::{build, message, Msg, RawClient};
use pgshroud_integration_tests::roles::{RolesFixture, RULES, SCHEMA};
use pgshroud_integration_tests::{cluster, users};

/// The columns of `typed` (fixture `protected::RULES`), and a plain twin table of the same
/// logical types: PostgreSQL's own answer for the same values is the oracle.
const COLUMNS: &str = "v_text, v_varchar, v_int2, v_int4, v_int8, v_bool, v_numeric, v_date, \
                       v_timestamp, v_timestamptz, v_uuid, v_bytea, v_jsonb";
const TWIN: &str = "CREATE TABLE twin (id serial PRIMARY KEY, v_text text, v_varchar varchar, \
    v_int2 int2, v_int4 int4, v_int8 int8, v_bool bool, v_numeric numeric, v_date date, \
    v_timestamp timestamp, v_timestamptz timestamptz, v_uuid uuid, v_bytea bytea, v_jsonb jsonb); \
    GRANT ALL ON twin TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;";
const VALUES: &str = "('héllo wörld ✓', 'abc  ', -7, 42, 9000000000, true, 85000.5, \
    '2024-02-29', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', \
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', '{\"a\": [1, \"x\"]}'), \
    ('', '', 0, -2147483648, -1, false, -0.001, '1999-12-31', '2000-01-01 00:00:00', \
    '2000-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000', '\\x', '[]')";

/// Bind of `statement` into the unnamed portal with these result format codes.
fn bind_formats(statement: &str, formats: &[u16]) -> Vec<u8> {
    let mut body = format!("\0{statement}\0").into_bytes();
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&(formats.len() as u16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    message(b'B', &body)
}

/// A RowDescription's fields without their origin: (name, type, length, modifier, format).
type Field = (Vec<u8>, u32, i16, i32, i16);

fn fields(body: &[u8]) -> Vec<Field> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..n {
        let end = at + body[at..].iter().position(|&b| b == 0).expect("name");
        let name = body[at..end].to_vec();
        let f = &body[end + 1..end + 19];
        let int = |i: usize| i32::from_be_bytes([f[i], f[i + 1], f[i + 2], f[i + 3]]);
        out.push((
            name,
            int(6) as u32,
            i16::from_be_bytes([f[10], f[11]]),
            int(12),
            i16::from_be_bytes([f[16], f[17]]),
        ));
        at = end + 19;
    }
    out
}

/// The description and the DataRows' bytes of one answer (panics on an error).
fn answer(msgs: &[Msg]) -> (Vec<Field>, Vec<Vec<u8>>) {
    if let Some(e) = msgs.iter().find(|m| m.kind == b'E') {
        panic!("error: {:?} {:?}", e.field(b'C'), e.field(b'M'));
    }
    let described = msgs
        .iter()
        .find(|m| m.kind == b'T')
        .map(|m| fields(&m.body))
        .expect("a RowDescription");
    let data = msgs
        .iter()
        .filter(|m| m.kind == b'D')
        .map(|m| m.body.clone())
        .collect();
    (described, data)
}

async fn run(raw: &mut RawClient, bytes: &[Vec<u8>]) -> Vec<Msg> {
    raw.send(&build::pipeline(bytes)).await;
    raw.recv_until_ready().await
}

/// One `PQexecPrepared`-style execution of `statement` with these result formats.
async fn execute(raw: &mut RawClient, statement: &str, formats: &[u16]) -> Vec<Msg> {
    let describe = message(b'D', b"P\0");
    run(
        raw,
        &[
            bind_formats(statement, formats),
            describe,
            build::execute(""),
            build::sync(),
        ],
    )
    .await
}

#[tokio::test]
async fn every_result_format_of_one_prepared_statement_gets_postgresql_s_own_bytes() {
    let f = Fixture::new().await;
    twin_answers_alike(
        f.proxy.port(),
        &f.db,
        &twin("numeric", "varchar", "timestamp"),
    )
    .await;
}

/// The same with type modifiers (`numeric(12, 2)`: display scale and rounding, `varchar(5)`,
/// `timestamp(3)`): typmods in the description and values in both formats as PostgreSQL's.
#[tokio::test]
async fn type_modifiers_in_every_result_format_get_postgresql_s_own_bytes() {
    let f = Fixture::new().await;
    let with = |rules: String, column: &str, from: &str, to: &str| {
        let old = format!("name = \"{column}\"\n  type = \"{from}\"");
        assert!(rules.contains(&old), "{old}");
        rules.replace(&old, &format!("name = \"{column}\"\n  type = \"{to}\""))
    };
    let rules = with(
        RULES_TYPED.to_owned(),
        "v_numeric",
        "numeric",
        "numeric(12, 2)",
    );
    let rules = with(rules, "v_varchar", "varchar", "varchar(5)");
    let rules = with(rules, "v_timestamp", "timestamp", "timestamp(3)");
    let (_dir, proxy) = proxy_with_rules(&rules, MASTER_KEY).await;
    let twin = twin("numeric(12, 2)", "varchar(5)", "timestamp(3)");
    twin_answers_alike(proxy.port(), &f.db, &twin).await;
}

/// The twin table's DDL with these types for v_numeric, v_varchar and v_timestamp.
fn twin(numeric: &str, varchar: &str, timestamp: &str) -> String {
    TWIN.replace("v_numeric numeric", &format!("v_numeric {numeric}"))
        .replace("v_varchar varchar", &format!("v_varchar {varchar}"))
        .replace("v_timestamp timestamp", &format!("v_timestamp {timestamp}"))
}

/// Writes [`VALUES`] to `typed` and to the plain twin through the proxy, then reads both
/// with one prepared statement each in every result format (each twice in a row: the second
/// described from what the session kept) and in the simple protocol: the protected table's
/// answers must be byte for byte the plain table's (but for the columns' origin).
async fn twin_answers_alike(port: u16, db: &str, twin_ddl: &str) {
    cluster()
        .admin_client_for(db)
        .await
        .batch_execute(twin_ddl)
        .await
        .expect("twin table");
    let mut raw = RawClient::login_trust(port, users::TRUST, db).await;
    for (table, stmt) in [("typed", "t"), ("twin", "w")] {
        let insert = format!("INSERT INTO {table} ({COLUMNS}) VALUES {VALUES}");
        answer_ok(&run(&mut raw, &[build::query(&insert)]).await);
        let select = format!("SELECT {COLUMNS} FROM {table} ORDER BY id");
        answer_ok(&run(&mut raw, &[build::parse(stmt, &select), build::sync()]).await);
    }
    let (text, binary) = (vec![0u16; 13], vec![1u16; 13]);
    let alternating: Vec<u16> = (0..13).map(|i| i % 2).collect();
    let other: Vec<u16> = (0..13).map(|i| 1 - i % 2).collect();
    let rounds = [
        &text[..],
        &text,
        &binary,
        &binary,
        &alternating,
        &text,
        &other,
        &alternating,
        &[1],
        &[0],
        &[1],
        &[],
        &binary,
    ];
    for formats in rounds {
        let protected = answer(&execute(&mut raw, "t", formats).await);
        let plain = answer(&execute(&mut raw, "w", formats).await);
        assert_eq!(protected, plain, "result formats {formats:?}");
    }
    for _ in 0..2 {
        let read =
            |table: &str| build::query(&format!("SELECT {COLUMNS} FROM {table} ORDER BY id"));
        let protected = answer(&run(&mut raw, &[read("typed")]).await);
        let plain = answer(&run(&mut raw, &[read("twin")]).await);
        assert_eq!(protected, plain, "simple protocol");
    }
}

fn answer_ok(msgs: &[Msg]) {
    if let Some(e) = msgs.iter().find(|m| m.kind == b'E') {
        panic!("error: {:?} {:?}", e.field(b'C'), e.field(b'M'));
    }
}

/// `E'\\x..'::bytea` literals sealed by `push_bytea_literal` must be the envelope's every
/// byte: values written through parameters (sealed elsewhere) are found again by a
/// simple-protocol literal, over envelopes holding every byte value 0x00..=0xff.
#[tokio::test]
async fn sealed_literals_find_envelopes_holding_every_byte_value() {
    let f = Fixture::new().await;
    let app = f.app().await;
    let emails: Vec<String> = (0..200).map(|i| format!("user{i}@example.com")).collect();
    let insert = app
        .prepare("INSERT INTO customers (email) VALUES ($1)")
        .await
        .expect("prepare");
    for e in &emails {
        app.execute(&insert, &[e]).await.expect("insert");
    }
    let stored = f.stored("SELECT email FROM customers").await;
    let mut seen = [false; 256];
    for b in stored.iter().flatten().flatten() {
        seen[usize::from(*b)] = true;
    }
    assert!(
        seen.iter().all(|s| *s),
        "the envelopes do not hold every byte value"
    );
    for e in &emails {
        let sql = format!("SELECT email FROM customers WHERE email = '{e}'");
        let got = rows(&app.simple_query(&sql).await.expect("select"));
        assert_eq!(got, [vec![Some(e.clone())]], "{sql}");
    }
    // A protected bytea written as a literal with every byte value reads back as it was.
    let all: Vec<u8> = (0..=255).collect();
    app.simple_query(&format!(
        "INSERT INTO typed (id, v_bytea) VALUES (7, '\\x{}')",
        hex(&all)
    ))
    .await
    .expect("insert bytea");
    for _ in 0..2 {
        let simple = rows(
            &app.simple_query("SELECT v_bytea FROM typed WHERE id = 7")
                .await
                .expect("simple"),
        );
        assert_eq!(simple, [vec![Some(format!("\\x{}", hex(&all)))]]);
        let prepared: Vec<u8> = app
            .query_one("SELECT v_bytea FROM typed WHERE id = 7", &[])
            .await
            .expect("prepared")
            .get(0);
        assert_eq!(prepared, all);
    }
}

async fn read(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    match c.simple_query(sql).await {
        Ok(r) => Ok(rows(&r)),
        Err(e) => Err(code(&e)),
    }
}

/// Roles fixture with two rows.
async fn roles_fixture() -> RolesFixture {
    let f = RolesFixture::with_rules(RULES, SCHEMA, Default::default()).await;
    let app = f.connect("app").await;
    app.simple_query(
        "INSERT INTO customers (id, email, age, name) VALUES \
         (1, 'alice@example.com', '42', 'Alice'), (2, 'bob@example.com', '7', 'Bob')",
    )
    .await
    .expect("app writes");
    f
}

/// A view replaced in another session keeps its OID, column numbers and types: the
/// RowDescription is byte-identical before and after, only what the column holds changed.
/// The same statement text on the same connection must follow the new definition; so must
/// a cursor's FETCH, whose text is not analysed (the catalog's fingerprint tells the plans
/// apart: without it in the key, this test fails).
#[tokio::test]
async fn a_view_replaced_by_another_session_is_not_answered_with_the_old_plan() {
    let f = roles_fixture().await;
    f.direct()
        .await
        .batch_execute(&format!(
            "GRANT CREATE ON SCHEMA public TO {}",
            f.user("app")
        ))
        .await
        .expect("grant");
    let app = f.connect("app").await;
    app.batch_execute(
        "CREATE VIEW v_swap AS SELECT id, age AS x FROM customers; GRANT SELECT ON v_swap TO PUBLIC",
    )
    .await
    .expect("create view");
    let support = f.connect("support").await;
    let reader = f.connect("app").await;
    let sql = "SELECT x FROM v_swap ORDER BY id";
    let ages = vec![vec![None], vec![None]];
    let masks = vec![
        vec![Some("a****@example.com".to_owned())],
        vec![Some("b****@example.com".to_owned())],
    ];
    let plain_ages = vec![vec![Some("42".to_owned())], vec![Some("7".to_owned())]];
    let plain_emails = vec![
        vec![Some("alice@example.com".to_owned())],
        vec![Some("bob@example.com".to_owned())],
    ];
    for (column, support_sees, app_sees) in [
        ("age", &ages, &plain_ages),
        ("email", &masks, &plain_emails),
        ("age", &ages, &plain_ages),
        ("email", &masks, &plain_emails),
    ] {
        app.batch_execute(&format!(
            "CREATE OR REPLACE VIEW v_swap AS SELECT id, {column} AS x FROM customers"
        ))
        .await
        .expect("replace view");
        for _ in 0..3 {
            assert_eq!(
                read(&support, sql).await.as_ref(),
                Ok(support_sees),
                "support, {column}"
            );
            assert_eq!(
                read(&reader, sql).await.as_ref(),
                Ok(app_sees),
                "app, {column}"
            );
            // A FETCH is not analysed: its plan rests on the view's OID and column number
            // alone, which the replacement kept. Only the catalog tells the columns apart.
            read(
                &support,
                "BEGIN; DECLARE c CURSOR FOR SELECT x FROM v_swap ORDER BY id",
            )
            .await
            .expect("declare");
            let fetched = read(&support, "FETCH ALL c").await;
            read(&support, "COMMIT").await.expect("commit");
            assert_eq!(
                fetched.as_ref(),
                Ok(support_sees),
                "support FETCH, {column}"
            );
            // The extended protocol too (the mask is text; age's NULL is an int4 NULL).
            if column == "email" {
                let prepared: Vec<Option<String>> = support
                    .query(sql, &[])
                    .await
                    .map(|r| r.iter().map(|r| r.get(0)).collect())
                    .unwrap_or_else(|e| panic!("support prepared, {column}: {e}"));
                let want: Vec<Option<String>> = support_sees.iter().map(|r| r[0].clone()).collect();
                assert_eq!(prepared, want, "support prepared, {column}");
            }
        }
    }
}

/// A view made straight in PostgreSQL (around pgshroud) after the session looked the catalog
/// up, turning a protected column into text: the catalog does not know the relation and the
/// column is not bytea, so its plan is worked out (and kept) as a plain column's. A role that
/// may not read the column must not get its envelope as text.
#[tokio::test]
#[ignore = "hole: a text column of a relation the catalog does not know (a view made around \
            pgshroud after the session's look-up: encode(email, 'hex'), email::text) passes to \
            every role, so support receives customers.email's envelopes as text; only bytea \
            columns of unknown relations go through the read backstop and ask for a look-up \
            (results.rs note_unknown_origins, described.rs reusable). Not specific to kept \
            plans: a freshly worked-out plan passes it too"]
async fn a_view_made_around_pgshroud_does_not_hand_envelopes_as_text_to_a_masked_role() {
    let f = roles_fixture().await;
    let support = f.connect("support").await;
    read(&support, "SELECT 1").await.expect("session open");
    f.direct()
        .await
        .batch_execute(
            "CREATE VIEW v_around AS SELECT id, encode(email, 'hex') AS h, email::text AS t \
             FROM customers; GRANT SELECT ON v_around TO PUBLIC",
        )
        .await
        .expect("view made around pgshroud");
    let stored = f
        .direct()
        .await
        .query("SELECT encode(email, 'hex') FROM customers", &[])
        .await
        .expect("stored")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>();
    for sql in [
        "SELECT h FROM v_around ORDER BY id",
        "SELECT t FROM v_around ORDER BY id",
    ] {
        for round in 0..3 {
            let got = read(&support, sql).await;
            let leaked = got.as_ref().is_ok_and(|rows| {
                rows.iter()
                    .flatten()
                    .flatten()
                    .any(|v| stored.iter().any(|s| v.contains(s.as_str())))
            });
            assert!(
                !leaked,
                "{sql} (round {round}) gave support the envelopes: {got:?}"
            );
        }
    }
}

/// A cursor FETCHed in the simple protocol: its columns have no origin when computed, so
/// the same `FETCH` text gives byte-identical RowDescriptions for cursors over different
/// expressions. A cursor over an expression of a column support may not read is refused
/// (or its values withheld); values of plain expressions pass, however the plan was found.
#[tokio::test]
async fn the_same_fetch_over_cursors_of_other_expressions_withholds_what_it_must() {
    let f = roles_fixture().await;
    let support = f.connect("support").await;
    let plain = vec![vec![Some("\\x416c696365".to_owned())]];
    for _ in 0..2 {
        for (expression, want) in [
            ("email || ''::bytea", vec![vec![None]]),
            ("convert_to(name, 'UTF8')", plain.clone()),
        ] {
            let declare = format!(
                "BEGIN; DECLARE c CURSOR FOR SELECT {expression} AS x FROM customers WHERE id = 1"
            );
            match read(&support, &declare).await {
                Ok(_) => {}
                // Refusing the cursor is as good.
                Err(code) => {
                    assert!(
                        ["0A000", "42501"].contains(&code.as_str()),
                        "{expression}: {code}"
                    );
                    read(&support, "ROLLBACK").await.expect("rollback");
                    continue;
                }
            }
            let got = read(&support, "FETCH ALL c").await;
            read(&support, "COMMIT").await.expect("commit");
            assert_eq!(got, Ok(want), "{expression}");
        }
    }
}

/// Two statements of one simple query whose RowDescriptions are byte-identical (a column
/// named `email`, no origin, bytea): one a set operation over the protected column (its
/// output known only from the analysis), the other plain bytes. Each gets its own plan, in
/// either order and again from what the session kept.
#[tokio::test]
async fn identical_descriptions_of_other_analyses_get_their_own_plans() {
    let f = roles_fixture().await;
    let union = "SELECT email FROM customers WHERE id = 1 \
                 UNION ALL SELECT email FROM customers WHERE id = 2";
    let plain = "SELECT convert_to(name, 'UTF8') AS email FROM customers ORDER BY id";
    let masks = [Some("a****@example.com"), Some("b****@example.com")];
    let names = [Some("\\x416c696365"), Some("\\x426f62")];
    let (support, app) = (f.connect("support").await, f.connect("app").await);
    let plaintext = [Some("alice@example.com"), Some("bob@example.com")];
    for _ in 0..2 {
        for (first, second, want_first, want_second) in
            [(union, plain, masks, names), (plain, union, names, masks)]
        {
            let got = read(&support, &format!("{first}; {second}")).await;
            let want: Vec<Vec<Option<String>>> = want_first
                .iter()
                .chain(&want_second)
                .map(|v| vec![v.map(str::to_owned)])
                .collect();
            assert_eq!(got, Ok(want), "support: {first}; {second}");
        }
        let got = read(&app, &format!("{union}; {plain}")).await;
        let want: Vec<Vec<Option<String>>> = plaintext
            .iter()
            .chain(&names)
            .map(|v| vec![v.map(str::to_owned)])
            .collect();
        assert_eq!(got, Ok(want), "app");
    }
}

/// Per-tenant `shared.email`, the pooled role choosing its tenant (as in `tenant_attacks.rs`).
const TENANT_RULES: &str = r#"
default_role = "pooled"

[[tables]]
name = "public.shared"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true

[[roles]]
name = "pooled"
template = "app"
users = ["*_app", "*_dba"]
choose_tenant = true
"#;

/// A session that kept the plan of a per-tenant column's read, a tenant forgotten (keys
/// destroyed, rules reloaded) in between: on the same connection, the same simple statement
/// and the same prepared statement give the forgotten tenant's values as NULL and the other
/// tenant's as before, whichever tenant the session chose.
#[tokio::test]
async fn a_tenant_forgotten_between_two_reads_of_a_kept_plan_reads_as_null() {
    use pgshroud::cli::args::ForgetArgs;
    use pgshroud::crypto::tenant_keys;
    use pgshroud::crypto::{KeyRing, MasterKey};

    let store = tempfile::tempdir().unwrap();
    let ring = KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap());
    for tenant in ["acme", "globex"] {
        tenant_keys::add_tenant(store.path(), tenant, &ring).unwrap();
    }
    let layer = pgshroud::config::ConfigLayer {
        tenant_keys_dir: Some(store.path().to_owned()),
        ..Default::default()
    };
    let schema = "CREATE TABLE shared (id serial PRIMARY KEY, tenant_id text, email bytea);";
    let f = RolesFixture::with_rules(TENANT_RULES, schema, layer).await;
    let c = f.connect("app").await;
    for tenant in ["acme", "globex"] {
        c.batch_execute(&format!("SET pgshroud.tenant = '{tenant}'"))
            .await
            .expect("switch");
        c.batch_execute(&format!(
            "INSERT INTO shared (tenant_id, email) VALUES ('{tenant}', '{tenant}@x')"
        ))
        .await
        .expect("insert");
    }
    let sql = "SELECT tenant_id, email FROM shared ORDER BY id";
    let prepared = c.prepare(sql).await.expect("prepare");
    let both = |acme: Option<&str>| {
        vec![
            vec![Some("acme".to_owned()), acme.map(str::to_owned)],
            vec![Some("globex".to_owned()), Some("globex@x".to_owned())],
        ]
    };
    let tenants = ["globex", "acme", "globex"];
    check_reads(&c, &prepared, &tenants, &both(Some("acme@x"))).await;
    pgshroud::cli::forget::forget(
        &ForgetArgs {
            tenant: "acme".into(),
            tenant_keys_dir: store.path().to_owned(),
            yes: true,
            ..ForgetArgs::default()
        },
        &mut "".as_bytes(),
    )
    .unwrap();
    f.proxy.reload().unwrap();
    // Switching to the forgotten tenant may be refused: then globex's reads are checked.
    let switched = c.batch_execute("SET pgshroud.tenant = 'acme'").await;
    let tenants: &[&str] = match switched {
        Ok(()) => &tenants,
        Err(_) => &["globex"],
    };
    check_reads(&c, &prepared, tenants, &both(None)).await;
}

/// Under each of `tenants` in turn, twice: `SELECT tenant_id, email FROM shared ORDER BY id`
/// as a simple query and as `prepared` gives `want`.
async fn check_reads(
    c: &tokio_postgres::Client,
    prepared: &tokio_postgres::Statement,
    tenants: &[&str],
    want: &[Vec<Option<String>>],
) {
    for tenant in tenants {
        c.batch_execute(&format!("SET pgshroud.tenant = '{tenant}'"))
            .await
            .expect("switch");
        for _ in 0..2 {
            let simple = read(c, "SELECT tenant_id, email FROM shared ORDER BY id").await;
            assert_eq!(simple.as_deref(), Ok(want), "simple, {tenant}");
            let got: Vec<Vec<Option<String>>> = c
                .query(prepared, &[])
                .await
                .expect("prepared")
                .iter()
                .map(|r| vec![r.get(0), r.get(1)])
                .collect();
            assert_eq!(got, want, "prepared, {tenant}");
        }
    }
}
