//! Fail closed on the connection side, against the real cluster and as non-superuser roles:
//! replication connections are refused unless the user is listed in `replication_users`; a
//! known and an unknown user see the same authentication exchange in every `auth_method`; a
//! client without TLS is refused once pgshroud has a certificate, so a user PostgreSQL admits
//! only over TLS (`hostssl`) never logs in through pgshroud over plain TCP.

use std::path::Path;

use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::certs::TestCa;
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::raw::{build, startup_packet, Msg, RawClient};
use pgshroud_integration_tests::{cluster, protected, proxy_with, users};

// ---------------------------------------------------------------------------------------------
// Replication connections

/// Opens a connection to `port` as the replicator with `replication=value` and returns what the
/// server said up to ReadyForQuery or the end, and the connection.
async fn replication_login(port: u16, value: &str) -> (Vec<Msg>, RawClient) {
    let mut c = RawClient::connect(port).await;
    c.send(&startup_packet(
        3 << 16,
        &[
            ("user", users::REPLICATOR),
            ("database", "postgres"),
            ("replication", value),
        ],
    ))
    .await;
    let msgs = c.recv_until_ready().await;
    (msgs, c)
}

/// A proxy with the protected-column rules and key, letting `replicators` replicate.
async fn proxy_with_rules(replicators: &[&str]) -> (tempfile::TempDir, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, protected::RULES).unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, protected::MASTER_KEY).unwrap();
    let p = proxy_with(ConfigLayer {
        rules: Some(rules),
        master_key_file: Some(key),
        replication_users: Some(replicators.iter().map(|u| u.to_string()).collect()),
        ..ConfigLayer::default()
    })
    .await;
    (dir, p)
}

fn ready(msgs: &[Msg]) -> bool {
    msgs.last().is_some_and(|m| m.kind == b'Z')
}

/// `IDENTIFY_SYSTEM`, the first command of a base backup or a logical slot's stream: answered
/// with a row only on a walsender.
async fn identify_system(c: &mut RawClient) -> Vec<Msg> {
    c.send(&build::query("IDENTIFY_SYSTEM")).await;
    c.recv_until_ready().await
}

#[tokio::test]
async fn replication_connections_are_refused_in_every_spelling_postgresql_accepts() {
    // PostgreSQL itself lets the replicator stream: the refusal below is pgshroud's.
    let (msgs, mut direct) = replication_login(cluster().port(), "database").await;
    assert!(ready(&msgs), "{msgs:?}");
    let rows = identify_system(&mut direct).await;
    assert!(rows.iter().any(|m| m.kind == b'D'), "{rows:?}");

    let (_dir, p) = proxy_with_rules(&[]).await;
    for spelling in [
        "database", "true", "on", "1", "yes", "TRUE", "t", "Tr", "Y", "On", "maybe",
    ] {
        let (msgs, mut c) = replication_login(p.port(), spelling).await;
        let error = msgs.last().expect("an answer");
        assert_eq!(error.kind, b'E', "replication={spelling}: {msgs:?}");
        assert_eq!(error.field(b'C').as_deref(), Some("28000"), "{spelling}");
        assert_eq!(
            error.field(b'M').unwrap(),
            format!(
                "pgshroud does not relay replication connections for user \"{}\"",
                users::REPLICATOR
            )
        );
        assert!(c.is_closed().await, "{spelling}");
    }
    // What PostgreSQL reads as false is an ordinary session.
    for spelling in ["false", "off", "0", "no", "F"] {
        let (msgs, _c) = replication_login(p.port(), spelling).await;
        assert!(ready(&msgs), "replication={spelling}: {msgs:?}");
    }
}

#[tokio::test]
async fn a_user_listed_in_replication_users_may_replicate() {
    let (_dir, p) = proxy_with_rules(&[users::REPLICATOR]).await;
    for spelling in ["database", "on"] {
        let (msgs, mut c) = replication_login(p.port(), spelling).await;
        assert!(ready(&msgs), "replication={spelling}: {msgs:?}");
        let rows = identify_system(&mut c).await;
        assert!(rows.iter().any(|m| m.kind == b'D'), "{rows:?}");
    }
    // Listing one user lets no other replicate.
    let mut c = RawClient::connect(p.port()).await;
    c.send(&startup_packet(
        3 << 16,
        &[("user", users::TRUST), ("replication", "database")],
    ))
    .await;
    let msgs = c.recv_until_ready().await;
    assert_eq!(
        msgs.last().and_then(|m| m.field(b'C')).as_deref(),
        Some("28000")
    );
}

// ---------------------------------------------------------------------------------------------
// The same authentication exchange for known and unknown users

const UNKNOWN: &str = "no_such_user";
/// 32 zero bytes: a well-formed SCRAM proof that matches no verifier.
const WRONG_PROOF: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";

async fn verifier_of(role: &str) -> String {
    cluster()
        .admin_client()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("read verifier")
        .get(0)
}

/// A proxy that checks passwords itself with `auth_method`, against an auth_file holding the
/// SCRAM verifier of scram_user and the md5 secret of md5_user.
async fn proxy_side_auth(dir: &Path, method: &str) -> TestProxy {
    let file = dir.join(format!("userlist-{method}.txt"));
    let mut text = String::new();
    for role in [users::SCRAM, users::MD5] {
        text.push_str(&format!("\"{role}\" \"{}\"\n", verifier_of(role).await));
    }
    std::fs::write(&file, text).unwrap();
    TestProxy::start(
        cluster().url(),
        ConfigLayer {
            auth_file: Some(file),
            auth_method: Some(method.into()),
            ..ConfigLayer::default()
        },
    )
    .await
}

fn password_message(body: &[u8]) -> Vec<u8> {
    pgshroud_integration_tests::raw::message(b'p', body)
}

/// Logs in as `user` with a wrong password, answering whatever the proxy asks, and returns
/// every message the client saw, reduced to what may not differ between users: message types,
/// authentication codes and mechanisms, salt lengths (base64) and iteration counts, error fields (the
/// user's name replaced by `<user>`).
async fn failed_login(port: u16, user: &str) -> Vec<String> {
    let mut c = RawClient::connect(port).await;
    c.send(&startup_packet(
        3 << 16,
        &[("user", user), ("database", "postgres")],
    ))
    .await;
    let mut seen = Vec::new();
    loop {
        let Some(m) = c.recv().await else {
            seen.push("closed".to_owned());
            return seen;
        };
        match m.kind {
            b'R' => {
                let code = i32::from_be_bytes(m.body[..4].try_into().unwrap());
                let data = &m.body[4..];
                match code {
                    10 => {
                        seen.push(format!("R10 {}", String::from_utf8_lossy(data)));
                        let first = format!("n,,n=,r={CLIENT_NONCE}");
                        let mut body = b"SCRAM-SHA-256\0".to_vec();
                        body.extend_from_slice(&(first.len() as i32).to_be_bytes());
                        body.extend_from_slice(first.as_bytes());
                        c.send(&password_message(&body)).await;
                    }
                    11 => {
                        let text = String::from_utf8_lossy(data).into_owned();
                        let field = |name: &str| {
                            text.split(',')
                                .find_map(|f| f.strip_prefix(name))
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let nonce = field("r=");
                        assert!(nonce.starts_with(CLIENT_NONCE), "{text}");
                        let salt = field("s=");
                        seen.push(format!("R11 salt={} i={}", salt.len(), field("i=")));
                        let last = format!("c=biws,r={nonce},p={WRONG_PROOF}");
                        c.send(&password_message(last.as_bytes())).await;
                    }
                    5 => {
                        seen.push(format!("R5 salt={}", data.len()));
                        let answer = format!("md5{}\0", "0".repeat(32));
                        c.send(&password_message(answer.as_bytes())).await;
                    }
                    3 => {
                        seen.push("R3".to_owned());
                        c.send(&password_message(b"wrong-password\0")).await;
                    }
                    other => seen.push(format!("R{other}")),
                }
            }
            b'E' => {
                for field in [b'S', b'V', b'C', b'M', b'D', b'H'] {
                    if let Some(value) = m.field(field) {
                        let value = value.replace(&format!("\"{user}\""), "\"<user>\"");
                        seen.push(format!("E{} {value}", field as char));
                    }
                }
            }
            other => seen.push(format!("{}", other as char)),
        }
    }
}

#[tokio::test]
async fn known_and_unknown_users_see_the_same_exchange_in_every_auth_method() {
    let dir = tempfile::tempdir().unwrap();
    for method in ["scram-sha-256", "md5", "password"] {
        let p = proxy_side_auth(dir.path(), method).await;
        let unknown = failed_login(p.port(), UNKNOWN).await;
        assert!(
            unknown.contains(&"EC 28P01".to_owned()),
            "{method}: {unknown:?}"
        );
        assert_eq!(unknown.last().map(String::as_str), Some("closed"));
        for known in [users::SCRAM, users::MD5] {
            assert_eq!(
                failed_login(p.port(), known).await,
                unknown,
                "auth_method = {method}: {known} (known) and {UNKNOWN} (unknown) are told apart"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plaintext clients when pgshroud has a certificate

/// A fresh role pg_hba admits over TLS only.
async fn tls_only_role(password: &str) -> String {
    cluster().tls_only_role("hostssl_role", password).await
}

/// A relaying proxy with a certificate, verify-full towards the cluster.
async fn proxy_with_certificate(dir: &Path, sslmode: Option<&str>) -> (TestProxy, TestCa) {
    let ca = TestCa::new();
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write_to(dir, &format!("proxy-{}", sslmode.unwrap_or("default")));
    let layer = ConfigLayer {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_sslmode: sslmode.map(String::from),
        ..ConfigLayer::default()
    };
    (
        TestProxy::start(cluster().tls_url("verify-full"), layer).await,
        ca,
    )
}

async fn connect_tls(
    p: &TestProxy,
    ca: &TestCa,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn = format!(
        "host=localhost port={} user={user} password='{password}' dbname={db} sslmode=require",
        p.port()
    );
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(ca.client_config());
    let (client, connection) = tokio_postgres::connect(&conn, tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn a_hostssl_user_without_tls_is_refused_by_a_proxy_with_a_certificate() {
    let db = cluster().fresh_database().await;
    let role = tls_only_role("hostssl-secret").await;
    // PostgreSQL admits the role over TLS only.
    assert!(cluster()
        .connect(&role, "hostssl-secret", &db)
        .await
        .is_err());
    cluster()
        .connect_tls(&role, "hostssl-secret", &db)
        .await
        .expect("the role logs in to PostgreSQL over TLS");

    let dir = tempfile::tempdir().unwrap();
    let (p, ca) = proxy_with_certificate(dir.path(), None).await;
    let e = p.connect(&role, "hostssl-secret", &db).await.unwrap_err();
    let db_error = e.as_db_error().expect("refused by pgshroud");
    assert_eq!(db_error.code().code(), "28000");
    assert!(
        db_error
            .message()
            .starts_with("pgshroud accepts only TLS connections"),
        "{}",
        db_error.message()
    );
    // Plain TCP is refused for every user, not only for hostssl ones.
    let e = p
        .connect(users::TRUST, "", &db)
        .await
        .expect_err("trust_user without TLS");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28000"));
    // Over TLS the role logs in, and the upstream session is TLS.
    let c = connect_tls(&p, &ca, &role, "hostssl-secret", &db)
        .await
        .expect("the role logs in through pgshroud over TLS");
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn tls_client_sslmode_prefer_accepts_plaintext_clients_as_the_operator_chose() {
    let db = cluster().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (p, ca) = proxy_with_certificate(dir.path(), Some("prefer")).await;
    let c = p
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .expect("plain TCP accepted with tls_client_sslmode = prefer");
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    connect_tls(&p, &ca, users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .expect("and TLS clients too");
}
