//! The light Bind path of issue 25 (a Bind of a statement with nothing to seal, read in place
//! and forwarded) attacked end to end as a non-superuser: a statement whose meaning changed
//! between its Parse and its Bind (a reload, a temporary view), wrong counts and malformed
//! lengths. It must answer as the full path would: sealed or refused, the protocol in step.

mod prefilter;

use prefilter::*;

/// A statement prepared (plain) while `notes` was the table, bound after a temporary view
/// shadows it: PostgreSQL plans it again over the view, so its parameter must not go up in
/// plaintext on the light Bind path.
#[tokio::test]
async fn a_plain_statement_bound_after_a_temp_view_shadows_its_table() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    // public.notes holds the secret's bytes under id 5: a row 5 means PostgreSQL still read
    // the plain table, no row means the plaintext was compared with the view's envelopes.
    exchange(
        &mut c,
        &[build::query(&format!(
            "INSERT INTO notes VALUES (5, '{SECRET}')"
        ))],
    )
    .await;
    let msgs = exchange(&mut c, &[build::parse("ps", LOOKUP), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    exchange(
        &mut c,
        &[build::query(
            "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers",
        )],
    )
    .await;
    let msgs = exchange(
        &mut c,
        &[
            build::bind("", "ps", &[SECRET]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    let codes = error_codes(&msgs);
    let found = data_rows(&msgs);
    assert!(
        !codes.is_empty()
            || found == vec![vec![Some("1".to_owned())]]
            || found == vec![vec![Some("5".to_owned())]],
        "bound over the view with a plaintext parameter: {msgs:?}"
    );
}

/// A reload between a plain statement's Parse and its Bind that protects its table: the Bind
/// leaves the light path, the statement is parsed again under the new rules and the
/// parameter sealed (the guard would refuse plaintext), never forwarded as it came.
#[tokio::test]
async fn a_reload_between_parse_and_bind_stops_the_light_path() {
    let (db, dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let insert = "insert into notes (id, body) values ($1, $2)";
    // Remembered, and a named statement prepared from the remembered path.
    exchange(&mut c, &run(insert, &["1", "plain"])).await;
    let msgs = exchange(&mut c, &[build::parse("ins", insert), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let more = format!(
        "{RULES}\n[[tables]]\nname = \"public.notes\"\n  [[tables.columns]]\n  name = \"body\"\n  type = \"text\"\n"
    );
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute("DELETE FROM notes")
        .await
        .unwrap();
    install_guards(&db, &more).await;
    std::fs::write(dir.path().join("rules.toml"), &more).unwrap();
    proxy.reload().unwrap();
    let msgs = exchange(
        &mut c,
        &[
            build::bind("", "ins", &["2", SECRET]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    // The remembered text itself is planned now: sealed.
    let msgs = exchange(&mut c, &run(insert, &["3", SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_sealed(&db, "SELECT body FROM notes").await;
    assert_eq!(stored(&db, "SELECT body FROM notes").await.len(), 2);
}

/// A Bind's body: portal, statement, format codes, parameters (raw length + bytes), results.
fn raw_bind(statement: &str, formats: &[i16], params: &[(i32, &[u8])], results: &[i16]) -> Vec<u8> {
    let mut body = format!("\0{statement}\0").into_bytes();
    body.extend_from_slice(&(formats.len() as u16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for (len, bytes) in params {
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(bytes);
    }
    body.extend_from_slice(&(results.len() as u16).to_be_bytes());
    for f in results {
        body.extend_from_slice(&f.to_be_bytes());
    }
    message(b'B', &body)
}

/// Binds a plain statement (the light path's) with the wrong number of parameters or format
/// codes: PostgreSQL's error, the session in step after it.
#[tokio::test]
async fn wrong_counts_on_the_light_path_get_the_server_s_error_and_stay_in_step() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let sql = "select id from notes where id = $1";
    exchange(&mut c, &[build::parse("s", sql), build::sync()]).await;
    for bind in [
        raw_bind("s", &[], &[], &[]),
        raw_bind("s", &[], &[(1, b"1"), (1, b"2")], &[]),
        raw_bind("s", &[0, 0, 0], &[(1, b"1")], &[]),
        raw_bind("s", &[7], &[(1, b"1")], &[]),
        raw_bind("s", &[], &[(1, b"1")], &[0, 0, 0]),
        raw_bind("s", &[1], &[(1, b"1")], &[]),
        // A length below -1: forwarded as sent, PostgreSQL refuses it (08P01, not fatal).
        raw_bind("s", &[], &[(-2, b"")], &[]),
    ] {
        let msgs = exchange(&mut c, &[bind.clone(), build::execute(""), build::sync()]).await;
        // PostgreSQL's own error (08P01, 22023, 22P03), once.
        assert_eq!(error_codes(&msgs).len(), 1, "{bind:?}: {msgs:?}");
        let msgs = exchange(&mut c, &run(sql, &["1"])).await;
        assert!(
            error_codes(&msgs).is_empty(),
            "out of step after {bind:?}: {msgs:?}"
        );
    }
}

/// Malformed lengths in a Bind of a plain statement: the session ends with 08P01, as the full
/// path ends it; nothing is forwarded.
#[tokio::test]
async fn malformed_binds_on_the_light_path_end_the_session() {
    let (db, _dir, proxy) = setup().await;
    let sql = "select id from notes where id = $1";
    for bind in [raw_bind("s", &[], &[(100, b"1")], &[]), {
        let mut b = raw_bind("s", &[], &[(1, b"1")], &[]);
        b.push(0);
        let len = (b.len() - 1) as u32;
        b[1..5].copy_from_slice(&len.to_be_bytes());
        b
    }] {
        let mut c = login(&proxy, &db).await;
        exchange(&mut c, &[build::parse("s", sql), build::sync()]).await;
        c.send(&build::pipeline(&[bind.clone(), build::sync()]))
            .await;
        let msgs = tokio::time::timeout(Duration::from_secs(20), c.recv_until_ready())
            .await
            .expect("no hang");
        assert_eq!(
            error_codes(&msgs),
            vec!["08P01".to_owned()],
            "{bind:?}: {msgs:?}"
        );
        let closed = tokio::time::timeout(Duration::from_secs(10), c.is_closed()).await;
        assert_eq!(closed, Ok(true), "not closed after {bind:?}: {msgs:?}");
    }
}
