//! Audit events to a real syslog collector (rsyslogd on loopback): over TCP and over TLS with
//! a client certificate, beside the file sink, through a collector restart; the messages the
//! collector stored are the file's lines and verify with `pgshroud audit verify`.

use std::path::Path;

use pgshroud::audit::chain::ChainKey;
use pgshroud::audit::verify;
use pgshroud::config::ConfigLayer;
use pgshroud_integration_tests::certs::TestCa;
use pgshroud_integration_tests::protected::{install_guards, MASTER_KEY, OTHER_KEY, RULES, SCHEMA};
use pgshroud_integration_tests::proxy::TestProxy;
use pgshroud_integration_tests::rsyslog::{Listen, Rsyslog};
use pgshroud_integration_tests::{cluster, proxy_with, users};

const AUDIT_KEY: &str = OTHER_KEY;

/// A database with the protected tables, and a proxy auditing to `dir/audit.log` and to
/// the syslog collector set in `syslog`.
async fn audited_proxy(dir: &Path, syslog: ConfigLayer) -> (String, TestProxy) {
    let db = cluster().fresh_database().await;
    let admin = cluster().admin_client_for(&db).await;
    admin.batch_execute(SCHEMA).await.expect("schema");
    install_guards(&db, RULES).await;
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let master = dir.join("master.key");
    std::fs::write(&master, MASTER_KEY).unwrap();
    let audit_key = dir.join("audit.key");
    std::fs::write(&audit_key, AUDIT_KEY).unwrap();
    let proxy = proxy_with(syslog.over(ConfigLayer {
        rules: Some(rules),
        master_key_file: Some(master),
        audit_file: Some(dir.join("audit.log").display().to_string()),
        audit_key_file: Some(audit_key),
        ..Default::default()
    }))
    .await;
    (db, proxy)
}

async fn run_statements(proxy: &TestProxy, db: &str, tag: &str) {
    let client = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, db)
        .await
        .expect("login through the proxy");
    client
        .simple_query(&format!(
            "INSERT INTO customers (email, age, name) VALUES ('{tag}@secret.example', 41, '{tag}')"
        ))
        .await
        .unwrap();
    client
        .simple_query(&format!(
            "SELECT name FROM customers WHERE email = '{tag}@secret.example'"
        ))
        .await
        .unwrap();
}

/// Waits (at most a minute) until the audit file's lines satisfy `done`.
fn wait_for_file(dir: &Path, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done(&file_lines(dir)) {
        assert!(
            std::time::Instant::now() < deadline,
            "waited in vain for {what}:\n{}",
            file_lines(dir).join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn file_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines without exact repeats (after a reconnection the sink sends its last messages
/// again; a collector may then store some twice, byte for byte the same).
fn without_repeats(lines: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    lines
        .iter()
        .filter(|l| seen.insert(l.as_str()))
        .cloned()
        .collect()
}

fn ends_chain(lines: &[String]) -> bool {
    lines
        .last()
        .is_some_and(|l| l.contains("\"event\":\"chain_end\""))
}

/// The collected messages, written to a file of their own, verify with the audit key.
fn verify_collected(collector: &Rsyslog, expected_events: usize) {
    let checked = verify::verify(
        &[collector.received_path()],
        &ChainKey::from_base64(AUDIT_KEY).unwrap(),
    )
    .unwrap_or_else(|b| panic!("the collected events do not verify: {b}"));
    assert_eq!(checked.events as usize, expected_events);
    assert!(checked.unterminated.is_empty(), "{checked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_rsyslog_over_tcp_as_rfc5424_with_the_file_lines_as_messages() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Rsyslog::start(&dir.path().join("rsyslog"), Listen::Tcp);
    let (db, proxy) = audited_proxy(
        dir.path(),
        ConfigLayer {
            audit_syslog: Some(format!("tcp://127.0.0.1:{}", collector.port)),
            audit_syslog_facility: Some("local3".into()),
            audit_syslog_app_name: Some("pgshroud-test".into()),
            ..Default::default()
        },
    )
    .await;
    run_statements(&proxy, &db, "tcp").await;
    let metrics = proxy.metrics_text();
    proxy.shutdown().await;

    let file = file_lines(dir.path());
    let received = collector.wait_for("the chain_end event", ends_chain);
    assert_eq!(
        received, file,
        "the collector holds exactly the file's lines"
    );
    for secret in ["secret.example", users::SCRAM_PASSWORD] {
        assert!(
            !received.iter().any(|l| l.contains(secret)),
            "{secret} reached the collector"
        );
    }
    verify_collected(&collector, file.len());

    // Header fields: local3 (19) * 8 + info (6) = 158 for statements; the chain value and
    // seq in structured data, the event type as MSGID.
    let meta = collector.meta();
    assert_eq!(meta.len(), file.len());
    for (line, meta) in file.iter().zip(&meta) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let sd = format!(
            "[pgshroud@32473 seq=\"{}\" chain=\"{}\"]",
            event["seq"],
            event["chain"].as_str().unwrap()
        );
        let kind = event["event"].as_str().unwrap();
        assert!(
            meta.ends_with(&format!("pgshroud-test {kind} {sd}")),
            "{meta}"
        );
        if kind == "statement" {
            assert!(meta.starts_with("158 "), "{meta}");
        }
    }
    assert!(
        metrics.contains("pgshroud_audit_syslog_connected 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_rsyslog_over_tls_and_survive_the_collector_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let mut collector = Rsyslog::start(&dir.path().join("rsyslog"), Listen::TlsWithClientCert(&ca));
    let ca_file = ca.write_ca(dir.path());
    let (cert, key) = ca
        .issue_client("pgshroud-audit")
        .write_to(dir.path(), "client");
    let (db, proxy) = audited_proxy(
        dir.path(),
        ConfigLayer {
            audit_syslog: Some(format!("tls://localhost:{}", collector.port)),
            audit_syslog_ca_file: Some(ca_file),
            audit_syslog_cert: Some(cert),
            audit_syslog_key: Some(key),
            ..Default::default()
        },
    )
    .await;
    run_statements(&proxy, &db, "before").await;
    let before = collector.wait_for("the first statements", |r| {
        r.iter()
            .filter(|l| l.contains("\"event\":\"statement\""))
            .count()
            == 2
    });

    // The collector goes away; statements go on and their events wait in the queue.
    collector.stop();
    run_statements(&proxy, &db, "during").await;
    wait_for_file(dir.path(), "the file sink to go on writing", |lines| {
        lines
            .iter()
            .filter(|l| l.contains("\"event\":\"statement\""))
            .count()
            == 4
    });
    collector.restart();
    run_statements(&proxy, &db, "after").await;
    proxy.shutdown().await;

    let file = file_lines(dir.path());
    let received = collector.wait_for("the chain_end event", ends_chain);
    assert!(received.len() > before.len());
    assert_eq!(
        without_repeats(&received),
        file,
        "nothing lost across the restart: the collector holds the file's lines"
    );
    verify_collected(&collector, file.len());
    // What `pgshroud audit verify --key-file audit.key received.log` runs and prints (called
    // in-process: the binary in the shared target directory may be another branch's build).
    let (report, code) = verify::run(
        &[collector.received_path()],
        Some(&dir.path().join("audit.key")),
    );
    assert_eq!(code, 0, "{report}");
    assert!(report.ends_with("every link holds"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cef_messages_carry_the_event_and_its_chain_value() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Rsyslog::start(&dir.path().join("rsyslog"), Listen::Tcp);
    let (db, proxy) = audited_proxy(
        dir.path(),
        ConfigLayer {
            audit_syslog: Some(format!("tcp://127.0.0.1:{}", collector.port)),
            audit_syslog_format: Some("cef".into()),
            ..Default::default()
        },
    )
    .await;
    run_statements(&proxy, &db, "cef").await;
    proxy.shutdown().await;
    let file = file_lines(dir.path());
    let received = collector.wait_for("the chain_end event", |r| {
        r.last().is_some_and(|l| l.contains("|chain_end|"))
    });
    assert_eq!(received.len(), file.len());
    for (cef, line) in received.iter().zip(&file) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(cef.starts_with("CEF:0|pgshroud|pgshroud|"), "{cef}");
        assert!(
            cef.ends_with(&format!(
                "cs6Label=chain cs6={}",
                event["chain"].as_str().unwrap()
            )),
            "{cef}"
        );
        assert!(!cef.contains("cef@secret.example"), "{cef}");
    }
    let insert = received
        .iter()
        .find(|l| l.contains("msg=INSERT INTO customers"))
        .expect("the INSERT's event");
    assert!(
        insert.contains("suser=") && insert.contains("act=ok"),
        "{insert}"
    );
}

/// Waits (at most a minute) until the proxy's metric `series` reaches `at_least`.
async fn wait_for_metric(proxy: &TestProxy, series: &str, at_least: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = proxy.metrics_text();
        let value = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        if value >= at_least {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} stayed below {at_least}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_block_statements_wait_for_an_absent_collector_and_no_event_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Rsyslog::start(&dir.path().join("rsyslog"), Listen::Tcp);
    let (db, proxy) = audited_proxy(
        dir.path(),
        ConfigLayer {
            audit_syslog: Some(format!("tcp://127.0.0.1:{}", collector.port)),
            audit_on_full: Some("block".into()),
            audit_queue_size: Some(2),
            ..Default::default()
        },
    )
    .await;
    let proxy = std::sync::Arc::new(proxy);
    run_statements(&proxy, &db, "first").await;
    collector.wait_for("the first statements", |r| {
        r.iter()
            .filter(|l| l.contains("\"event\":\"statement\""))
            .count()
            == 2
    });
    collector.stop();

    // Far more events than both queues (two each) hold: the statements cannot all finish
    // while the collector is away.
    let busy = {
        let (proxy, db) = (proxy.clone(), db.clone());
        tokio::spawn(async move {
            let client = proxy
                .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
                .await
                .unwrap();
            for i in 0..20 {
                client.simple_query(&format!("SELECT {i}")).await.unwrap();
            }
        })
    };
    wait_for_metric(&proxy, "pgshroud_audit_syslog_connect_failures_total", 1.0).await;
    assert!(
        !busy.is_finished(),
        "statements finished with the collector away"
    );
    collector.restart();
    tokio::time::timeout(std::time::Duration::from_secs(120), busy)
        .await
        .expect("statements go on once the collector is back")
        .unwrap();
    let metrics = proxy.metrics_text();
    std::sync::Arc::into_inner(proxy).unwrap().shutdown().await;

    let file = file_lines(dir.path());
    let received = collector.wait_for("the chain_end event", ends_chain);
    assert_eq!(without_repeats(&received), file, "nothing lost");
    assert!(received.iter().all(|l| !l.contains("\"dropped\"")));
    assert!(
        metrics.contains("pgshroud_audit_syslog_dropped_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgshroud_audit_dropped_total 0"),
        "{metrics}"
    );
    verify_collected(&collector, file.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_whose_certificate_is_not_from_the_configured_ca_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let collectors_ca = TestCa::new();
    let collector = Rsyslog::start(
        &dir.path().join("rsyslog"),
        Listen::TlsWithClientCert(&collectors_ca),
    );
    let (cert, key) = collectors_ca
        .issue_client("pgshroud-audit")
        .write_to(dir.path(), "client");
    let other_ca = TestCa::new().write_ca(&dir.path().join("rsyslog"));
    let (db, proxy) = audited_proxy(
        dir.path(),
        ConfigLayer {
            audit_syslog: Some(format!("tls://localhost:{}", collector.port)),
            audit_syslog_ca_file: Some(other_ca),
            audit_syslog_cert: Some(cert),
            audit_syslog_key: Some(key),
            ..Default::default()
        },
    )
    .await;
    run_statements(&proxy, &db, "mitm").await;
    wait_for_metric(&proxy, "pgshroud_audit_syslog_connect_failures_total", 1.0).await;
    assert!(
        collector.received().is_empty(),
        "{:?}",
        collector.received()
    );
    assert!(proxy
        .metrics_text()
        .contains("pgshroud_audit_syslog_connected 0"));
    proxy.shutdown().await;
    // The file sink is unaffected.
    assert!(ends_chain(&file_lines(dir.path())));
    assert!(collector.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_even_when_block_waits_for_a_collector_that_never_returns() {
    // The failure this test catches is a runtime whose workers are all stuck in the audit
    // queue, where no tokio timeout can fire: a plain thread ends the test process instead of
    // letting it hang CI.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = finished.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(300));
        if !watchdog.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("shutdown under `block` with the collector gone hung for 300 s");
            std::process::exit(101);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Rsyslog::start(&dir.path().join("rsyslog"), Listen::Tcp);
    let (db, proxy) = audited_proxy(
        dir.path(),
        ConfigLayer {
            audit_syslog: Some(format!("tcp://127.0.0.1:{}", collector.port)),
            audit_on_full: Some("block".into()),
            audit_queue_size: Some(2),
            ..Default::default()
        },
    )
    .await;
    let client = proxy
        .connect(users::SCRAM, users::SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    collector.stop();
    // Counts the statements the client saw succeed.
    let busy = tokio::spawn(async move {
        let mut ok = 0;
        for i in 0..20 {
            if client.simple_query(&format!("SELECT {i}")).await.is_err() {
                break;
            }
            ok += 1;
        }
        ok
    });
    wait_for_metric(&proxy, "pgshroud_audit_syslog_connect_failures_total", 1.0).await;
    assert!(
        !busy.is_finished(),
        "statements finished with the collector away"
    );
    // Shutdown gives the collector 10 s, then lets the blocked statements go.
    let stopping = tokio::spawn(proxy.shutdown());
    let succeeded = tokio::time::timeout(std::time::Duration::from_secs(120), busy)
        .await
        .expect("blocked statements end once shutdown gives up on the collector")
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(120), stopping)
        .await
        .expect("shutdown ends")
        .unwrap();
    let file = file_lines(dir.path());
    assert!(
        ends_chain(&file),
        "the file sink got every event and chain_end"
    );
    let audited = file
        .iter()
        .filter(|l| l.contains("\"event\":\"statement\""))
        .count();
    assert!(
        audited >= succeeded,
        "{succeeded} statements succeeded, {audited} audited in the file"
    );
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
}
