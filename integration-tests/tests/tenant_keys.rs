//! Per-tenant keys through the proxy, against a real PostgreSQL, as non-owner roles: two
//! tenants share a table (`*_app` users are tenant acme, `*_support` users tenant globex,
//! `*_dba` users have no tenant). Equality, the unique index and joins work within each
//! tenant; the same email under both tenants is two different ciphertexts, so the unique
//! index does not stop it (cross-tenant equality is impossible by construction). Forgetting
//! acme makes its values unreadable through pgshroud (NULL, or refused), in a pg_dump taken
//! before and restored after, and for the Python decryptor, while globex reads as before.

use std::path::{Path, PathBuf};

use pgshroud::cli::args::ForgetArgs;
use pgshroud::config::ConfigLayer;
use pgshroud::crypto::tenant_keys;
use pgshroud::crypto::{KeyRing, MasterKey};
use pgshroud_integration_tests::protected::{code, hex, owner_url, rows, MASTER_KEY};
use pgshroud_integration_tests::roles::RolesFixture;
use pgshroud_integration_tests::{client_program, cluster, proxy_with};

const RULES: &str = r#"
[[tables]]
name = "public.notes"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true
  key_context = "tenant-email"
  [[tables.columns]]
  name = "body"
  type = "text"
  per_tenant = true

[[tables]]
name = "public.orders"
  [[tables.columns]]
  name = "email"
  type = "text"
  per_tenant = true
  key_context = "tenant-email"

[[tenants]]
id = "acme"
users = ["*_app"]

[[tenants]]
id = "globex"
users = ["*_support"]
"#;

const SCHEMA: &str = "
CREATE TABLE notes (id serial PRIMARY KEY, tenant text NOT NULL, email bytea UNIQUE, body bytea);
CREATE TABLE orders (id serial PRIMARY KEY, email bytea, total int);
";

fn ring() -> KeyRing {
    KeyRing::single(MasterKey::from_base64(MASTER_KEY).unwrap())
}

/// The fixture with acme and globex given keys in a fresh tenant key store.
async fn fixture(extra: ConfigLayer) -> (RolesFixture, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    for tenant in ["acme", "globex"] {
        tenant_keys::add_tenant(store.path(), tenant, &ring()).unwrap();
    }
    let layer = ConfigLayer {
        tenant_keys_dir: Some(store.path().to_owned()),
        ..Default::default()
    };
    let f = RolesFixture::with_rules(RULES, SCHEMA, layer.over(extra)).await;
    (f, store)
}

async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt as _;
    let sink = c.copy_in(sql).await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::copy_from_slice(data.as_bytes()))
        .await?;
    sink.finish().await
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

fn texts(r: &[tokio_postgres::Row], column: &str) -> Vec<Option<String>> {
    r.iter().map(|r| r.get(column)).collect()
}

fn decrypt_py(store: &Path, context: &str, stored: &[u8]) -> std::process::Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pgshroud_decrypt.py");
    std::process::Command::new("python3")
        .arg(script)
        .arg("--tenant-keys-dir")
        .arg(store)
        .args([context, &hex(stored)])
        .env("PGSHROUD_MASTER_KEY", MASTER_KEY)
        .output()
        .expect("python3 runs")
}

async fn write_both_tenants(f: &RolesFixture) {
    let acme = f.connect("app").await;
    let globex = f.connect("support").await;
    acme.execute(
        "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, $2)",
        &[&"alice@example.com", &"acme's note"],
    )
    .await
    .unwrap();
    acme.simple_query(
        "INSERT INTO notes (tenant, email, body) VALUES ('acme', 'bob@example.com', 'second')",
    )
    .await
    .unwrap();
    acme.execute(
        "INSERT INTO orders (email, total) VALUES ($1, 10)",
        &[&"alice@example.com"],
    )
    .await
    .unwrap();
    // The same email under globex: another ciphertext, so the unique index lets it in.
    globex
        .execute(
            "INSERT INTO notes (tenant, email, body) VALUES ('globex', $1, $2)",
            &[&"alice@example.com", &"globex's note"],
        )
        .await
        .unwrap();
    globex
        .execute(
            "INSERT INTO orders (email, total) VALUES ($1, 99)",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn two_tenants_share_a_table_with_equality_unique_and_joins_within_each() {
    let (f, _store) = fixture(ConfigLayer::default()).await;
    write_both_tenants(&f).await;
    let acme = f.connect("app").await;
    let globex = f.connect("support").await;

    // Within a tenant the unique index holds.
    let err = acme
        .execute(
            "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, 'dup')",
            &[&"alice@example.com"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505", "{err}");

    // Equality finds the tenant's own row only (parameters and literals).
    let r = acme
        .query(
            "SELECT body FROM notes WHERE email = $1",
            &[&"alice@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(texts(&r, "body"), [Some("acme's note".to_owned())]);
    let r = rows(
        &globex
            .simple_query("SELECT body FROM notes WHERE email = 'alice@example.com'")
            .await
            .unwrap(),
    );
    assert_eq!(r, [[Some("globex's note".to_owned())]]);

    // Joins on the shared per-tenant context match within the tenant.
    let r = acme
        .query(
            "SELECT n.body, o.total FROM notes n JOIN orders o ON o.email = n.email ORDER BY o.total",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 2, "each tenant's order joins its own note only");
    let pairs: Vec<(String, i32)> = r.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        pairs,
        [
            ("acme's note".to_owned(), 10),
            ("globex's note".to_owned(), 99)
        ]
    );

    // Reads take the tenant from the envelope: a reader sees every tenant's rows it may read
    // (confining rows is PostgreSQL's RLS's job), and a session with no tenant reads too.
    let dba = f.connect("dba").await;
    let r = dba
        .query("SELECT tenant, email FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(
        texts(&r, "email"),
        [
            Some("alice@example.com".to_owned()),
            Some("bob@example.com".to_owned()),
            Some("alice@example.com".to_owned())
        ]
    );

    // But it cannot write or compare a per-tenant column.
    let err = dba
        .execute(
            "INSERT INTO notes (tenant, email) VALUES ('x', $1)",
            &[&"carol@example.com"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501", "{err}");
    assert!(message(&err).contains("public.notes.email"), "{err:?}");
    let err = dba
        .simple_query("SELECT id FROM notes WHERE body = 'second'")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501", "{err}");
    // COPY FROM is aborted (CopyFail): the server reports 57014 with pgshroud's reason.
    let err = copy_in(&dba, "COPY notes (tenant, body) FROM STDIN", "x\tcopied\n")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "57014", "{err}");
    assert!(message(&err).contains("public.notes.body"), "{err:?}");
    assert!(message(&err).contains("no tenant"), "{err:?}");
    // COPY FROM seals for the session's tenant.
    let n = copy_in(
        &acme,
        "COPY notes (tenant, body) FROM STDIN",
        "acme\tcopied\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let r = acme
        .query("SELECT tenant FROM notes WHERE body = $1", &[&"copied"])
        .await
        .unwrap();
    assert_eq!(texts(&r, "tenant"), [Some("acme".to_owned())]);

    // What PostgreSQL holds: format 3, the tenant's tag at substr(col, 10, 8).
    let direct = f.direct().await;
    let stored = direct
        .query(
            "SELECT tenant, email FROM notes WHERE email IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    for row in &stored {
        let tenant: String = row.get(0);
        let email: Vec<u8> = row.get(1);
        assert_eq!(email[0], 3);
        assert_eq!(
            &email[9..17],
            &pgshroud::crypto::envelope::tenant_tag(&tenant)
        );
    }
    let a: Vec<u8> = stored[0].get(1);
    let g: Vec<u8> = stored[2].get(1);
    assert_ne!(a, g, "the same email under two tenants is two ciphertexts");

    // The guard: a shared-key (format 2) value, or another column's format-3 value, is
    // refused by PostgreSQL itself.
    let shared = ring()
        .cipher_for(&pgshroud::crypto::KeyContext::new("tenant-email"))
        .seal(b"mallory@example.com");
    let err = direct
        .execute("UPDATE notes SET email = $1 WHERE id = 1", &[&shared])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23514", "{err}");
    let body: Vec<u8> = direct
        .query_one("SELECT body FROM notes WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let err = direct
        .execute("UPDATE notes SET email = $1 WHERE id = 1", &[&body])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23514", "{err}");
}

#[tokio::test]
async fn forgetting_a_tenant_makes_its_values_unreadable_everywhere() {
    let (f, store) = fixture(ConfigLayer::default()).await;
    write_both_tenants(&f).await;
    let direct = f.direct().await;
    let acme_body: Vec<u8> = direct
        .query_one(
            "SELECT body FROM notes WHERE tenant = 'acme' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let out = decrypt_py(store.path(), "public.notes.body", &acme_body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "acme's note");

    // A backup taken before the forget.
    let dump = tempfile::tempdir().unwrap();
    let dump_file = dump.path().join("before.dump");
    client_program(
        "pg_dump",
        &owner_url(&f.db),
        &["-Fc", "-f", dump_file.to_str().unwrap()],
    )
    .await
    .expect("pg_dump");

    let globex = f.connect("support").await;
    let before = globex
        .query("SELECT tenant, email, body FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(texts(&before, "body")[0].as_deref(), Some("acme's note"));

    let args = ForgetArgs {
        tenant: "acme".into(),
        tenant_keys_dir: store.path().to_owned(),
        yes: true,
        metrics_textfile: None,
        ..ForgetArgs::default()
    };
    let said = pgshroud::cli::tenants::forget(&args, &mut "".as_bytes()).unwrap();
    assert!(said.contains("forgotten"), "{said}");
    f.proxy.reload().expect("reload with the tombstone");
    let metrics = f.proxy.metrics_text();
    assert!(
        metrics.contains("pgshroud_tenants_forgotten 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pgshroud_tenant_keys_live 1"), "{metrics}");

    // Through the proxy: acme's values are NULL, globex's exactly as before, in the open
    // session and a new one.
    let expect = |r: &[tokio_postgres::Row]| {
        assert_eq!(
            texts(r, "body"),
            [None, None, Some("globex's note".to_owned())]
        );
        assert_eq!(
            texts(r, "email"),
            [None, None, Some("alice@example.com".to_owned())]
        );
    };
    let after = globex
        .query("SELECT tenant, email, body FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    expect(&after);
    expect(
        &f.connect("dba")
            .await
            .query("SELECT tenant, email, body FROM notes ORDER BY id", &[])
            .await
            .unwrap(),
    );
    // acme can write no more.
    let acme = f.connect("app").await;
    let err = acme
        .execute(
            "INSERT INTO notes (tenant, email) VALUES ('acme', $1)",
            &[&"new@example.com"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501", "{err}");
    assert!(message(&err).contains("forgotten"), "{err:?}");

    // keys status counts each tenant's values by tag.
    let report = pgshroud::cli::keys::status_with_tenants(
        &owner_url(&f.db),
        &f.rules_path(),
        None,
        Some(store.path()),
    )
    .await
    .unwrap();
    let line = |tenant: &str, state: &str, n: &str| {
        report.text.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w == ["public.notes.body", tenant, state, n]
        })
    };
    assert!(line("acme", "forgotten", "2"), "{}", report.text);
    assert!(line("globex", "keys", "1"), "{}", report.text);

    // The Python decryptor fails cleanly.
    let out = decrypt_py(store.path(), "public.notes.body", &acme_body);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forgotten") && !err.contains("Traceback"),
        "{err}"
    );

    // The backup taken before, restored now: acme's rows are NULL there too.
    let restored = cluster().fresh_database().await;
    client_program(
        "pg_restore",
        &owner_url(&restored),
        &["--no-owner", dump_file.to_str().unwrap()],
    )
    .await
    .expect("pg_restore");
    let globex_restored = f
        .proxy
        .connect(
            &f.user("support"),
            pgshroud_integration_tests::roles::PASSWORD,
            &restored,
        )
        .await
        .unwrap();
    expect(
        &globex_restored
            .query("SELECT tenant, email, body FROM notes ORDER BY id", &[])
            .await
            .unwrap(),
    );

    // With forgotten_tenant_values = "refuse", reading such a value is an error.
    let refusing = proxy_with(ConfigLayer {
        rules: Some(f.rules_path()),
        master_key_file: Some(f.dir.path().join("master.key")),
        tenant_keys_dir: Some(store.path().to_owned()),
        forgotten_tenant_values: Some("refuse".into()),
        ..Default::default()
    })
    .await;
    let c = refusing
        .connect(
            &f.user("support"),
            pgshroud_integration_tests::roles::PASSWORD,
            &f.db,
        )
        .await
        .unwrap();
    let err = c
        .query("SELECT body FROM notes ORDER BY id", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "55000", "{err}");
    assert!(message(&err).contains("forgotten tenant"), "{err:?}");
    // A value that cannot be shown ends the session (as an undecryptable one does); a new
    // session reads the other tenant's rows.
    let c = refusing
        .connect(
            &f.user("support"),
            pgshroud_integration_tests::roles::PASSWORD,
            &f.db,
        )
        .await
        .unwrap();
    let r = c
        .query("SELECT body FROM notes WHERE tenant = 'globex'", &[])
        .await
        .unwrap();
    assert_eq!(texts(&r, "body"), [Some("globex's note".to_owned())]);
}

#[tokio::test]
async fn a_rotated_tenant_key_seals_new_values_and_equality_finds_both_versions() {
    let (f, store) = fixture(ConfigLayer::default()).await;
    let acme = f.connect("app").await;
    acme.execute(
        "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, 'v1')",
        &[&"old@example.com"],
    )
    .await
    .unwrap();
    pgshroud::cli::tenants::rotate(
        &pgshroud::cli::args::TenantKeysArgs {
            tenant_keys_dir: store.path().to_owned(),
            keys_file: None,
            master_key_file: Some(f.dir.path().join("master.key")),
            master_key_command: None,
        },
        "acme",
    )
    .unwrap();
    f.proxy.reload().unwrap();
    let acme = f.connect("app").await;
    acme.execute(
        "INSERT INTO notes (tenant, email, body) VALUES ('acme', $1, 'v2')",
        &[&"new@example.com"],
    )
    .await
    .unwrap();
    let direct = f.direct().await;
    let versions: Vec<Vec<u8>> = direct
        .query("SELECT email FROM notes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Vec<u8>>(0)[..5].to_vec())
        .collect();
    assert_eq!(versions, [vec![3, 0, 0, 0, 1], vec![3, 0, 0, 0, 2]]);
    for (email, body) in [("old@example.com", "v1"), ("new@example.com", "v2")] {
        let r = acme
            .query("SELECT body FROM notes WHERE email = $1", &[&email])
            .await
            .unwrap();
        assert_eq!(texts(&r, "body"), [Some(body.to_owned())], "{email}");
        let r = rows(
            &acme
                .simple_query(&format!("SELECT body FROM notes WHERE email = '{email}'"))
                .await
                .unwrap(),
        );
        assert_eq!(r, [[Some(body.to_owned())]], "{email}");
    }
}
