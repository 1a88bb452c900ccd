//! The pre-filter's memory of harmless texts (issue 25), attacked as a hostile client would,
//! end to end against PostgreSQL as a non-superuser: a text remembered as harmless is made
//! harmful by what the session does next (a temporary view shadowing its table, a rule, a
//! search_path change, names reused, an error mid-pipeline, settings changed), and the proxy
//! must answer as its full path would: protected values sealed, refusals where it cannot be
//! sure, the protocol in step, no hang. The light Bind path: prefilter_binds.rs.

mod prefilter;

use prefilter::*;

/// The text is remembered as harmless while `notes` is the plain table; then a temporary view
/// named `notes` over customers shadows it (pg_temp comes first). The same bytes now compare
/// a protected column: the parameter must be sealed (alice found), never sent in plaintext
/// (compared with the envelope, no row).
#[tokio::test]
async fn a_temp_view_shadowing_a_remembered_table_gets_its_parameter_sealed() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    for _ in 0..2 {
        let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
        assert!(data_rows(&msgs).is_empty());
    }
    let msgs = exchange(
        &mut c,
        &[build::query(
            "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers",
        )],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let msgs = exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
    // And a write through the view the remembered insert now means is sealed (the guard
    // would refuse plaintext).
    let insert = "insert into notes (id, body) values ($1, $2)";
    exchange(&mut c, &[build::query("DROP VIEW notes")]).await;
    let msgs = exchange(&mut c, &run(insert, &["7", "plain"])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    exchange(
        &mut c,
        &[build::query(
            "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers",
        )],
    )
    .await;
    let msgs = exchange(&mut c, &run(insert, &["8", SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    all_sealed(&db, "SELECT email FROM customers").await;
}

/// The same, with the view made in the very pipeline that then sends the remembered text:
/// no Sync (so no catalog look-up) between them.
#[tokio::test]
async fn a_temp_view_made_in_the_same_pipeline_as_the_remembered_text() {
    temp_view_in_the_pipeline(true).await;
}

/// The same attack with a text never seen before: the full path answers as the memory does.
#[tokio::test]
async fn a_temp_view_made_in_the_same_pipeline_as_a_fresh_text() {
    temp_view_in_the_pipeline(false).await;
}

async fn temp_view_in_the_pipeline(remembered: bool) {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    if remembered {
        for _ in 0..2 {
            exchange(&mut c, &run(LOOKUP, &[SECRET])).await;
        }
    }
    let mut pipeline = vec![
        build::parse(
            "",
            "CREATE TEMP VIEW notes AS SELECT id, email AS body FROM customers",
        ),
        build::bind("", "", &[]),
        build::execute(""),
    ];
    pipeline.extend(run(LOOKUP, &[SECRET]));
    let msgs = exchange(&mut c, &pipeline).await;
    // Sealed (alice found) or refused: never compared in plaintext.
    let codes = error_codes(&msgs);
    assert!(
        !codes.is_empty() || data_rows(&msgs) == vec![vec![Some("1".to_owned())]],
        "the text ran over the new view with a plaintext parameter: {msgs:?}"
    );
    all_sealed(&db, "SELECT email FROM customers").await;
}

/// A name shared by a plain and a protected table is never remembered as harmless: under
/// every path (set, SET LOCAL then COMMIT, changed then rolled back to a savepoint) it is
/// sealed or refused (0A000, qualify the name), and crm.leads holds only envelopes.
#[tokio::test]
async fn a_name_shared_with_a_protected_table_is_sealed_or_refused_under_every_path() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let insert = "insert into leads (id, email) values ($1, $2)";
    let steps: [&[&str]; 5] = [
        &[],
        &["SET search_path = crm, public"],
        &["BEGIN", "SET LOCAL search_path = public"],
        &["COMMIT"],
        &[
            "BEGIN",
            "SAVEPOINT a",
            "SET search_path = public",
            "ROLLBACK TO SAVEPOINT a",
        ],
    ];
    let mut id = 0;
    for step in steps {
        for sql in step {
            let msgs = exchange(&mut c, &run(sql, &[])).await;
            assert!(error_codes(&msgs).is_empty(), "{sql}: {msgs:?}");
        }
        for _ in 0..2 {
            id += 1;
            let msgs = exchange(&mut c, &run(insert, &[&id.to_string(), SECRET])).await;
            let codes = error_codes(&msgs);
            assert!(
                codes.iter().all(|c| c == "0A000"),
                "after {step:?}: {msgs:?}"
            );
            if !codes.is_empty() && step.first() == Some(&"BEGIN") {
                exchange(&mut c, &[build::query("ROLLBACK")]).await;
                break;
            }
        }
    }
    exchange(&mut c, &[build::query("COMMIT")]).await;
    all_sealed(&db, "SELECT email FROM crm.leads").await;
    assert!(stored(&db, "SELECT email FROM public.leads")
        .await
        .is_empty());
}

/// Names reused: a remembered text prepared under a name, the name dropped by DEALLOCATE,
/// DISCARD ALL or Close (in the same pipeline), then prepared again and bound.
#[tokio::test]
async fn names_reused_after_deallocate_discard_and_close_stay_in_step() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let sql = "select id from notes where id = $1";
    let prepared = |extra: &[Vec<u8>]| {
        let mut p = extra.to_vec();
        p.extend([
            build::parse("s1", sql),
            build::bind("", "s1", &["1"]),
            build::execute(""),
            build::sync(),
        ]);
        p
    };
    let msgs = exchange(&mut c, &prepared(&[])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    for drop in [
        build::query("DEALLOCATE s1"),
        build::query("DISCARD ALL"),
        build::close_statement("s1"),
    ] {
        let msgs = exchange(&mut c, &prepared(std::slice::from_ref(&drop))).await;
        assert!(error_codes(&msgs).is_empty(), "{drop:?}: {msgs:?}");
        // The name is in use again: a second Parse is refused, the first still binds.
        let msgs = exchange(&mut c, &prepared(&[])).await;
        assert_eq!(error_codes(&msgs), vec!["42P05".to_owned()], "{msgs:?}");
        let msgs = exchange(
            &mut c,
            &[
                build::bind("", "s1", &["1"]),
                build::execute(""),
                build::sync(),
            ],
        )
        .await;
        assert!(error_codes(&msgs).is_empty(), "{drop:?}: {msgs:?}");
    }
}

/// An error mid-pipeline: the server skips to Sync, so a remembered text parsed after the
/// error was never prepared; its Bind in the next pipeline must be refused, not forwarded to
/// a statement the proxy wrongly believes in (or to one of the same name it does not know).
#[tokio::test]
async fn a_remembered_text_parsed_after_an_error_is_not_believed_prepared() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let sql = "select id from notes where id = $1";
    exchange(&mut c, &run(sql, &["1"])).await;
    let msgs = exchange(
        &mut c,
        &[
            build::parse("", "selec 1"),
            build::parse("s2", sql),
            build::bind("p", "s2", &["1"]),
            build::execute("p"),
            build::sync(),
        ],
    )
    .await;
    assert_eq!(error_codes(&msgs), vec!["42601".to_owned()], "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &[
            build::bind("", "s2", &["1"]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    assert_eq!(error_codes(&msgs), vec!["26000".to_owned()], "{msgs:?}");
    // And the name is free: prepared now, bound.
    let msgs = exchange(
        &mut c,
        &[
            build::parse("s2", sql),
            build::bind("", "s2", &["1"]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
}

/// A text remembered under UTF8 and standard strings, then the settings changed in the same
/// pipeline: the remembered ASCII text still runs (its reading cannot change), while texts
/// the proxy must read wait for the server's answer or are refused under the new settings.
#[tokio::test]
async fn settings_changed_behind_a_remembered_text() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let plain = "select id from notes where id = $1";
    let protected = "select id from customers where email = $1";
    for _ in 0..2 {
        let msgs = exchange(&mut c, &run(plain, &["1"])).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    }
    for (set, refused) in [
        ("SET client_encoding = 'LATIN1'", "22021"),
        ("SET standard_conforming_strings = off", "0A000"),
    ] {
        let mut pipeline = run(set, &[]);
        pipeline.extend(run(plain, &["1"]));
        pipeline.extend(run(protected, &[SECRET]));
        let msgs = exchange(&mut c, &pipeline).await;
        // The remembered text ran; the protected one waited for the answer (0A000) or met
        // the new setting's refusal.
        let codes = error_codes(&msgs);
        assert!(codes == ["0A000"] || codes == [refused], "{set}: {msgs:?}");
        assert_eq!(
            msgs.iter().filter(|m| m.kind == b'C').count(),
            2,
            "{msgs:?}"
        );
        let msgs = exchange(&mut c, &run(protected, &[SECRET])).await;
        assert_eq!(
            error_codes(&msgs),
            vec![refused.to_owned()],
            "{set}: {msgs:?}"
        );
        exchange(&mut c, &[build::query("RESET ALL")]).await;
        let msgs = exchange(&mut c, &run(protected, &[SECRET])).await;
        assert!(error_codes(&msgs).is_empty(), "{set}: {msgs:?}");
        assert_eq!(data_rows(&msgs), vec![vec![Some("1".to_owned())]]);
    }
}

/// A rule on a temporary table named like the remembered one would redirect its inserts into
/// the protected column: the proxy refuses the rule, so the remembered insert lands in the
/// temporary table; no plaintext is carried into customers or echoed in an error.
#[tokio::test]
async fn a_rule_redirecting_a_remembered_insert_into_a_protected_column() {
    let (db, _dir, proxy) = setup().await;
    let mut c = session(&proxy, &db).await;
    let insert = "insert into notes (id, body) values ($1, $2)";
    for id in ["1", "2"] {
        let msgs = exchange(&mut c, &run(insert, &[id, "plain"])).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    }
    let msgs = exchange(
        &mut c,
        &[
            build::query("CREATE TEMP TABLE notes (id int, body bytea)"),
            build::query(
                "CREATE RULE redirect AS ON INSERT TO notes DO INSTEAD \
                 INSERT INTO customers (id, email) VALUES (NEW.id, NEW.body)",
            ),
        ],
    )
    .await;
    // The rule names the protected table in a statement the analysis cannot read: refused.
    assert_eq!(error_codes(&msgs), vec!["42601".to_owned()], "{msgs:?}");
    let rules = cluster()
        .admin_client_for(&db)
        .await
        .query("SELECT 1 FROM pg_rules WHERE rulename = 'redirect'", &[])
        .await
        .unwrap();
    assert!(rules.is_empty(), "the rule was made");
    let msgs = exchange(&mut c, &run(insert, &["9", SECRET])).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    for m in msgs.iter().filter(|m| m.kind == b'E') {
        let text = String::from_utf8_lossy(&m.body).into_owned();
        assert!(!text.contains("secret"), "plaintext echoed: {text}");
        let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex), "plaintext echoed as bytea: {text}");
    }
    all_sealed(&db, "SELECT email FROM customers").await;
}

/// A reload that limits the caller's role to SELECT: a text remembered as harmless under the
/// old policy (an insert), and a statement prepared from it, are refused from then on (42501):
/// the role's verdict is never taken from the memory of another policy.
#[tokio::test]
async fn a_reload_that_limits_the_role_forgets_what_the_old_policy_allowed() {
    let role = |statements: &str| {
        format!(
            "default_role = \"app\"\n{RULES}\n[[roles]]\nname = \"app\"\ntemplate = \"app\"\nusers = [\"{}\"]\n{statements}\n",
            users::TRUST
        )
    };
    let db = cluster().fresh_database().await;
    cluster()
        .admin_client_for(&db)
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    install_guards(&db, RULES).await;
    let (dir, proxy) = proxy_with(&role("")).await;
    let mut c = login(&proxy, &db).await;
    let insert = "insert into notes (id, body) values ($1, $2)";
    for id in ["1", "2"] {
        let msgs = exchange(&mut c, &run(insert, &[id, "plain"])).await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    }
    let msgs = exchange(&mut c, &[build::parse("ins", insert), build::sync()]).await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    std::fs::write(
        dir.path().join("rules.toml"),
        role("statements = [\"select\"]"),
    )
    .unwrap();
    proxy.reload().unwrap();
    let msgs = exchange(&mut c, &run(insert, &["3", "plain"])).await;
    assert_eq!(error_codes(&msgs), vec!["42501".to_owned()], "{msgs:?}");
    let msgs = exchange(
        &mut c,
        &[
            build::bind("", "ins", &["4", "plain"]),
            build::execute(""),
            build::sync(),
        ],
    )
    .await;
    assert_eq!(error_codes(&msgs), vec!["42501".to_owned()], "{msgs:?}");
    assert_eq!(stored(&db, "SELECT body FROM notes").await.len(), 2);
}
