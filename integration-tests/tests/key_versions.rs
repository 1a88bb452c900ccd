//! Key versions through the proxy, as a non-owner application role: a reload adds a version
//! while a session is open, writes seal with the active version, reads follow each
//! envelope's version, and equality finds rows under every live version (simple and extended
//! protocol, `=`, `<>`, `IN`, `= ANY`, joins, UPDATE/DELETE filters, bulk inserts); the guard
//! accepts envelopes of any version.

use pgshroud_integration_tests::keys::{write_keys, Keys};
use pgshroud_integration_tests::protected::{code, rows, MASTER_KEY, OTHER_KEY};

fn names(c: &[tokio_postgres::Row]) -> Vec<String> {
    let mut names: Vec<String> = c.iter().map(|r| r.get("name")).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_reload_adds_a_version_and_equality_finds_rows_under_both() {
    let k = Keys::new().await;
    let c = k.app().await;
    c.execute(
        "INSERT INTO customers (email, age, name) VALUES ($1, $2, $3)",
        &[&"alice@example.com", &42i32, &"Alice"],
    )
    .await
    .unwrap();
    c.simple_query("INSERT INTO customers (email, age, name) VALUES ('bob@example.com', 7, 'Bob')")
        .await
        .unwrap();
    let prepared_before = c
        .prepare("SELECT name FROM customers WHERE email = $1")
        .await
        .unwrap();

    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().expect("the new keys file loads");

    // The open session writes under version 2 now; the guard takes it.
    c.execute(
        "INSERT INTO customers (email, age, name) VALUES ($1, $2, $3)",
        &[&"carol@example.com", &30i32, &"Carol"],
    )
    .await
    .unwrap();
    c.simple_query(
        "INSERT INTO customers (email, age, name) SELECT * FROM UNNEST(ARRAY['dan@example.com', 'eve@example.com'], ARRAY[1, 2], ARRAY['Dan', 'Eve'])",
    )
    .await
    .unwrap();
    let versions: Vec<u32> = k.stored_versions().await.iter().map(|v| v.1).collect();
    assert_eq!(versions, [1, 1, 2, 2, 2]);

    // Reads follow each envelope's version.
    let all = c
        .query("SELECT email, age, name FROM customers ORDER BY id", &[])
        .await
        .unwrap();
    let emails: Vec<String> = all.iter().map(|r| r.get("email")).collect();
    assert_eq!(emails[0], "alice@example.com");
    assert_eq!(emails[2], "carol@example.com");

    // Equality, simple protocol: literals match under both versions.
    let found = rows(
        &c.simple_query(
            "SELECT name FROM customers WHERE email = 'alice@example.com' OR email IN ('carol@example.com', 'nobody@example.com') ORDER BY name",
        )
        .await
        .unwrap(),
    );
    assert_eq!(found, [[Some("Alice".into())], [Some("Carol".into())]]);

    // Extended protocol: =, IN with a parameter, = ANY, <> ALL, a join on a supplied value.
    for email in ["alice@example.com", "carol@example.com"] {
        let r = c
            .query("SELECT name FROM customers WHERE email = $1", &[&email])
            .await
            .unwrap();
        assert_eq!(r.len(), 1, "{email} is found whichever key it is under");
    }
    let r = c
        .query(
            "SELECT name FROM customers WHERE email IN ($1, 'bob@example.com')",
            &[&"dan@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(names(&r), ["Bob", "Dan"]);
    let wanted = vec!["alice@example.com", "eve@example.com"];
    let r = c
        .query(
            "SELECT name FROM customers WHERE email = ANY($1)",
            &[&wanted],
        )
        .await
        .unwrap();
    assert_eq!(names(&r), ["Alice", "Eve"]);
    let r = c
        .query(
            "SELECT name FROM customers WHERE email <> $1",
            &[&"bob@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(names(&r), ["Alice", "Carol", "Dan", "Eve"]);
    let r = c
        .query(
            "SELECT c.name FROM customers c JOIN customers d ON d.id = c.id AND d.email = $1",
            &[&"bob@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(names(&r), ["Bob"]);

    // UPDATE and DELETE find old-version rows; the written value is under the active version.
    let updated = c
        .execute(
            "UPDATE customers SET email = $1 WHERE email = $2",
            &[&"alice@example.org", &"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let deleted = c
        .execute(
            "DELETE FROM customers WHERE email = $1",
            &[&"bob@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        k.stored_versions().await,
        [(1, 2), (3, 2), (4, 2), (5, 2)],
        "alice was rewritten under version 2, bob (version 1) is gone"
    );

    // A statement prepared while one version was live compared one envelope only: pgshroud
    // parses it again from its text before its Bind (it used to refuse it, 0A000), so it
    // now finds rows under every live version instead of silently missing some.
    let found = c
        .query(&prepared_before, &[&"carol@example.com"])
        .await
        .expect("prepared again under both versions");
    assert_eq!(names(&found), ["Carol"]);
}

#[tokio::test]
async fn uniqueness_holds_per_version_while_two_are_live() {
    let k = Keys::new().await;
    let c = k.app().await;
    c.simple_query("INSERT INTO customers (email, name) VALUES ('alice@example.com', 'Alice')")
        .await
        .unwrap();
    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();
    // The unique index compares ciphertext: the same address under version 2 is another
    // value to it. This is what the README says; `pgshroud rotate` reports such pairs.
    c.simple_query(
        "INSERT INTO customers (email, name) VALUES ('alice@example.com', 'Alice 2') ON CONFLICT (email) DO NOTHING",
    )
    .await
    .unwrap();
    let r = c
        .query(
            "SELECT name FROM customers WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(names(&r), ["Alice", "Alice 2"]);
    // Under one version the index holds as always.
    let err = c
        .simple_query("INSERT INTO customers (email, name) VALUES ('alice@example.com', 'Alice 3')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505");
}

#[tokio::test]
async fn a_keys_file_that_does_not_load_keeps_the_old_keys() {
    let k = Keys::new().await;
    let c = k.app().await;
    c.simple_query("INSERT INTO customers (email, name) VALUES ('alice@example.com', 'Alice')")
        .await
        .unwrap();
    let keys = k.dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        "active = 2\n[[keys]]\nversion = 2\nfile = \"/nonexistent/v2.key\"\nactivated_at = 2026-12-02T00:00:00Z\n",
    )
    .unwrap();
    let err = k.proxy.reload().unwrap_err();
    assert!(err.contains("key version 2"), "{err}");
    let r = c
        .query(
            "SELECT name FROM customers WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(names(&r), ["Alice"]);
    c.simple_query("INSERT INTO customers (email, name) VALUES ('bob@example.com', 'Bob')")
        .await
        .unwrap();
    assert_eq!(
        k.stored_versions()
            .await
            .iter()
            .map(|v| v.1)
            .collect::<Vec<_>>(),
        [1, 1]
    );
}

#[tokio::test]
async fn a_value_on_the_left_of_a_comparison_is_refused_while_two_versions_are_live() {
    let k = Keys::new().await;
    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();
    let c = k.app().await;
    let err = c
        .query(
            "SELECT name FROM customers WHERE 'alice@example.com' = email",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("several key versions"),
        "{err}"
    );
    // The session goes on.
    c.simple_query("SELECT 1").await.unwrap();
}

/// The value of an unlabelled metric in the proxy's metrics text.
fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_active_key_version_its_age_and_the_policy_are_metrics() {
    let k = Keys::new().await;
    let text = k.proxy.metrics_text();
    assert_eq!(metric(&text, "pgshroud_key_active_version"), Some(1));
    assert_eq!(
        metric(&text, "pgshroud_key_rotate_after_seconds"),
        Some(90 * 86_400)
    );
    // Version 1 became active on 2026-12-01 (see write_keys).
    let activated = 1_796_083_200;
    let age = metric(&text, "pgshroud_key_active_age_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        age >= now - activated - 5 && age <= now - activated,
        "{age}"
    );
    write_keys(k.dir.path(), &[(1, MASTER_KEY), (2, OTHER_KEY)], 2);
    k.proxy.reload().unwrap();
    let text = k.proxy.metrics_text();
    assert_eq!(metric(&text, "pgshroud_key_active_version"), Some(2));
    let age = metric(&text, "pgshroud_key_active_age_seconds").unwrap();
    assert!(
        age <= now - (activated + 86_400) + 5,
        "version 2's age: {age}"
    );
}
