//! Type modifiers in the rules file (`numeric(12,2)`, `varchar(5)`, `timestamp(3)`): protected
//! columns behave like the typed columns would — values rounded, too-long or too-large values
//! refused with PostgreSQL's SQLSTATE, numeric read back with its scale, typmod reported.

use pgshroud_integration_tests::protected::{
    code, proxy_with_rules, rows, Fixture, MASTER_KEY, RULES,
};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{build, error_codes, RawClient};
use pgshroud_integration_tests::users;

/// The fixture's rules with modifiers on typed.v_numeric, v_varchar and v_timestamp (same key
/// contexts, so the guards `Fixture::new` installed still fit).
fn rules() -> String {
    let with = |rules: String, column: &str, from: &str, to: &str| {
        let old = format!("name = \"{column}\"\n  type = \"{from}\"");
        assert!(rules.contains(&old), "{old}");
        rules.replace(&old, &format!("name = \"{column}\"\n  type = \"{to}\""))
    };
    let r = with(RULES.to_owned(), "v_numeric", "numeric", "numeric(12, 2)");
    let r = with(r, "v_varchar", "varchar", "varchar(5)");
    with(r, "v_timestamp", "timestamp", "timestamp(3)")
}

async fn app(proxy: &TestProxy, f: &Fixture) -> tokio_postgres::Client {
    proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &f.db)
        .await
        .unwrap()
}

/// (type OID, typmod) of each field of the RowDescription `sql` answers with.
async fn described(proxy: &TestProxy, f: &Fixture, sql: &str) -> Vec<(u32, i32)> {
    let mut raw = RawClient::login_trust(proxy.port(), users::TRUST, &f.db).await;
    raw.send(&build::query(sql)).await;
    let msgs = raw.recv_until_ready().await;
    let t = msgs
        .iter()
        .find(|m| m.kind == b'T')
        .expect("RowDescription");
    let body = &t.body;
    let count = u16::from_be_bytes([body[0], body[1]]);
    let mut at = 2;
    let mut fields = Vec::new();
    for _ in 0..count {
        at += body[at..].iter().position(|&b| b == 0).unwrap() + 1;
        let int = |at: usize| i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        fields.push((int(at + 6) as u32, int(at + 12)));
        at += 18;
    }
    fields
}

#[tokio::test]
async fn numeric_keeps_its_scale_and_reports_its_typmod() {
    let f = Fixture::new().await;
    let (_dir, proxy) = proxy_with_rules(&rules(), MASTER_KEY).await;
    let c = app(&proxy, &f).await;
    c.simple_query("INSERT INTO typed (v_numeric, v_varchar) VALUES (85000.50, 'a'), (85000.5, 'b'), (1.005, 'c')")
        .await
        .unwrap();
    // A text-format parameter, through the extended protocol.
    let mut raw = RawClient::login_trust(proxy.port(), users::TRUST, &f.db).await;
    raw.send(&build::pipeline(&[
        build::parse(
            "",
            "INSERT INTO typed (v_numeric, v_varchar) VALUES ($1::numeric, 'd')",
        ),
        build::bind("", "", &["7"]),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    assert!(error_codes(&raw.recv_until_ready().await).is_empty());
    let got = rows(
        &c.simple_query("SELECT v_numeric FROM typed ORDER BY id")
            .await
            .unwrap(),
    );
    let want = ["85000.50", "85000.50", "1.01", "7.00"];
    assert_eq!(got, want.map(|v| vec![Some(v.to_owned())]).to_vec());
    // Equal values encrypt alike whatever their spelling.
    let found = c
        .simple_query("SELECT v_varchar FROM typed WHERE v_numeric = 85000.500")
        .await
        .unwrap();
    assert_eq!(rows(&found).len(), 2);
    for stored in f.stored("SELECT v_numeric FROM typed").await {
        assert_eq!(stored.unwrap()[0], 2, "envelope format 2");
    }
    // numeric(12,2): typmod (12 << 16 | 2) + 4; varchar(5): 9; timestamp(3): 3.
    assert_eq!(
        described(
            &proxy,
            &f,
            "SELECT v_numeric, v_varchar, v_timestamp, v_text FROM typed"
        )
        .await,
        vec![(1700, 786_438), (1043, 9), (1114, 3), (25, -1)]
    );
    c.simple_query("SELECT 1").await.unwrap();
    app(&proxy, &f)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn too_long_varchar_and_numeric_overflow_are_refused_like_postgres() {
    let f = Fixture::new().await;
    let (_dir, proxy) = proxy_with_rules(&rules(), MASTER_KEY).await;
    let c = app(&proxy, &f).await;
    let err = c
        .simple_query("INSERT INTO typed (v_varchar) VALUES ('abcdef')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22001");
    let db = err.as_db_error().unwrap();
    assert_eq!(db.message(), "value too long for type character varying(5)");
    let err = c
        .execute("INSERT INTO typed (v_varchar) VALUES ($1)", &[&"abcdef"])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22001");
    // Trailing spaces past the length are cut, as PostgreSQL does.
    c.simple_query("INSERT INTO typed (v_varchar) VALUES ('abcde   ')")
        .await
        .unwrap();
    let err = c
        .simple_query("INSERT INTO typed (v_numeric) VALUES (12345678901)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22003");
    let db = err.as_db_error().unwrap();
    assert_eq!(db.message(), "numeric field overflow");
    assert_eq!(
        db.detail(),
        Some("A field with precision 12, scale 2 must round to an absolute value less than 10^10.")
    );
    let got = rows(&c.simple_query("SELECT v_varchar FROM typed").await.unwrap());
    assert_eq!(got, vec![vec![Some("abcde".to_owned())]]);
    app(&proxy, &f)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn timestamps_are_rounded_to_their_precision() {
    let f = Fixture::new().await;
    let (_dir, proxy) = proxy_with_rules(&rules(), MASTER_KEY).await;
    let c = app(&proxy, &f).await;
    c.simple_query("INSERT INTO typed (v_timestamp) VALUES ('2024-01-02 03:04:05.123456')")
        .await
        .unwrap();
    let got = rows(
        &c.simple_query(
            "SELECT v_timestamp FROM typed WHERE v_timestamp = '2024-01-02 03:04:05.123'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(got, vec![vec![Some("2024-01-02 03:04:05.123".to_owned())]]);
}

/// Inputs whose display scale PostgreSQL keeps (or computes: `1.50e1` is `15.0`).
const SCALED: [&str; 9] = [
    "85000.50",
    "85000.5",
    "1.50e1",
    "0.000",
    "-0.00",
    "NaN",
    "15e-3",
    "-123456789.000000001",
    "7",
];

/// Every DataRow's first value, as sent (text or binary), for `sql` with results in `format`.
async fn first_values(port: u16, db: &str, sql: &str, format: u16) -> Vec<Vec<u8>> {
    let mut raw = RawClient::login_trust(port, users::TRUST, db).await;
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&format.to_be_bytes());
    raw.send(&build::pipeline(&[
        build::parse("", sql),
        pgshroud_integration_tests::raw::message(b'B', &bind),
        build::execute(""),
        build::sync(),
    ]))
    .await;
    let msgs = raw.recv_until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{sql}");
    msgs.iter()
        .filter(|m| m.kind == b'D')
        .map(|m| {
            let len = i32::from_be_bytes(m.body[2..6].try_into().unwrap());
            m.body[6..6 + len as usize].to_vec()
        })
        .collect()
}

async fn copied_out(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    use futures_util::StreamExt;
    let stream = c.copy_out(sql).await.expect("copy out");
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("copy data"));
    }
    out
}

#[tokio::test]
async fn keep_scale_numeric_reads_back_exactly_as_postgres_would() {
    let f = Fixture::new().await;
    let keep = RULES.replace(
        "name = \"v_numeric\"\n  type = \"numeric\"",
        "name = \"v_numeric\"\n  type = \"numeric\"\n  keep_scale = true",
    );
    assert_ne!(keep, RULES);
    let (_dir, proxy) = proxy_with_rules(&keep, MASTER_KEY).await;
    // The oracle: PostgreSQL's own numeric column, given the same inputs.
    let admin = pgshroud_integration_tests::cluster::cluster()
        .admin_client_for(&f.db)
        .await;
    admin
        .batch_execute(
            "CREATE TABLE oracle (id serial PRIMARY KEY, v numeric); GRANT ALL ON oracle TO PUBLIC",
        )
        .await
        .unwrap();
    let c = app(&proxy, &f).await;
    for (i, input) in SCALED.iter().enumerate() {
        admin
            .execute(
                "INSERT INTO oracle (v) VALUES ($1::text::numeric)",
                &[input],
            )
            .await
            .unwrap();
        // Alternate: a literal in simple mode, a text parameter in extended mode.
        if i % 2 == 0 {
            c.simple_query(&format!("INSERT INTO typed (v_numeric) VALUES ('{input}')"))
                .await
                .unwrap();
        } else {
            let mut raw = RawClient::login_trust(proxy.port(), users::TRUST, &f.db).await;
            raw.send(&build::pipeline(&[
                build::parse("", "INSERT INTO typed (v_numeric) VALUES ($1)"),
                build::bind("", "", &[input]),
                build::execute(""),
                build::sync(),
            ]))
            .await;
            assert!(error_codes(&raw.recv_until_ready().await).is_empty());
        }
    }
    // COPY FROM keeps the scale too.
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY typed (v_numeric) FROM STDIN")
        .await
        .unwrap();
    {
        use futures_util::SinkExt;
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes::Bytes::from_static(b"1.500\n"))
            .await
            .unwrap();
        sink.finish().await.unwrap();
    }
    admin
        .execute("INSERT INTO oracle (v) VALUES ('1.500')", &[])
        .await
        .unwrap();
    for format in [0u16, 1] {
        let want = first_values(
            pgshroud_integration_tests::cluster::cluster().port(),
            &f.db,
            "SELECT v FROM oracle ORDER BY id",
            format,
        )
        .await;
        let got = first_values(
            proxy.port(),
            &f.db,
            "SELECT v_numeric FROM typed ORDER BY id",
            format,
        )
        .await;
        assert_eq!(got, want, "result format {format}");
    }
    let want = copied_out(&admin, "COPY (SELECT v FROM oracle ORDER BY id) TO STDOUT").await;
    let got = copied_out(
        &c,
        "COPY (SELECT v_numeric FROM typed ORDER BY id) TO STDOUT",
    )
    .await;
    assert_eq!(String::from_utf8(got), String::from_utf8(want));
    // The price, as documented: equality tells the scales apart.
    let found = c
        .simple_query("SELECT id FROM typed WHERE v_numeric = 85000.50")
        .await
        .unwrap();
    assert_eq!(rows(&found).len(), 1);
    // Reported as unconstrained numeric.
    assert_eq!(
        described(&proxy, &f, "SELECT v_numeric FROM typed").await,
        vec![(1700, -1)]
    );
}
