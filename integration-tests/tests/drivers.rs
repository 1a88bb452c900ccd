//! Real command-line clients through the proxy: psql (simple protocol, \copy, errors in a
//! script) and pgbench in all three query modes with 16 clients.

use pgshroud_integration_tests::protected::Fixture;
use pgshroud_integration_tests::{cluster, proxy, users};
use tokio::process::Command;

fn tool(name: &str) -> std::path::PathBuf {
    let bundled = cluster().bin_dir().join(name);
    if bundled.exists() {
        bundled
    } else {
        name.into()
    }
}

#[tokio::test]
async fn psql_runs_a_script_with_copy_and_an_error_in_the_middle() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        (1..=1000)
            .map(|i| format!("{i},name {i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE people (id int, name text);\n\
             \\copy people FROM '{}' WITH (FORMAT csv)\n\
             SELECT 1/0;\n\
             SELECT count(*), sum(id) FROM people;\n\
             \\copy (SELECT * FROM people WHERE id <= 3 ORDER BY id) TO STDOUT WITH (FORMAT csv)\n",
            csv.display()
        ),
    )
    .unwrap();
    let out = Command::new(tool("psql"))
        .args([
            &p.conn_string(users::SCRAM, users::SCRAM_PASSWORD, &db),
            "-X",
            "-A",
            "-t",
            "-f",
        ])
        .arg(&script)
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The error is reported and the script goes on, exactly as without a proxy.
    assert!(stderr.contains("division by zero"), "{stderr}");
    assert!(stdout.contains("1000|500500"), "{stdout}");
    assert!(stdout.contains("1,name 1\n2,name 2\n3,name 3"), "{stdout}");
}

#[tokio::test]
async fn psql_multi_statement_command_stops_at_the_first_error() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let out = Command::new(tool("psql"))
        .args([
            &p.conn_string(users::SCRAM, users::SCRAM_PASSWORD, &db),
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT 'first'; SELECT 1/0; SELECT 'never'",
        ])
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(String::from_utf8_lossy(&out.stderr).contains("division by zero"));
    assert!(!stdout.contains("never"), "{stdout}");
}

#[tokio::test]
async fn pgbench_runs_through_the_proxy_in_every_query_mode_without_failures() {
    let db = cluster().fresh_database().await;
    let p = proxy().await;
    let conn = [
        "-h",
        "127.0.0.1",
        "-p",
        &p.port().to_string(),
        "-U",
        users::SCRAM,
    ];
    let init = Command::new(tool("pgbench"))
        .args(conn)
        .args(["-i", "-s", "1", "-q", &db])
        .env("PGPASSWORD", users::SCRAM_PASSWORD)
        .output()
        .await
        .expect("pgbench runs");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        let run = Command::new(tool("pgbench"))
            .args(conn)
            .args(["-c", "16", "-j", "2", "-t", "50", "-M", mode, &db])
            .env("PGPASSWORD", users::SCRAM_PASSWORD)
            .output()
            .await
            .expect("pgbench runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{mode}: {stdout} {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.contains("number of transactions actually processed: 800/800"),
            "{mode}: {stdout}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0 (0.000%)"),
            "{mode}: {stdout}"
        );
    }
}

#[tokio::test]
async fn psql_reads_writes_and_copies_protected_columns() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("rows.tsv");
    std::fs::write(&tsv, "c1@psql.org\t10\tCee\nc2@psql.org\t20\tDee\n").unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "INSERT INTO customers (email, age, name) VALUES ('a@psql.org', 1, 'Ann');\n\
             \\copy customers (email, age, name) FROM '{}'\n\
             SELECT * FROM customers WHERE email LIKE 'a%';\n\
             SELECT name, age FROM customers WHERE email = 'c2@psql.org';\n\
             SELECT email, age FROM customers WHERE age IN (1, 10) ORDER BY name;\n\
             \\copy (SELECT 'marker') TO STDOUT\n\
             \\copy customers (email, name) TO STDOUT WITH (FORMAT csv)\n",
            tsv.display()
        ),
    )
    .unwrap();
    let out = Command::new(tool("psql"))
        .args([
            &f.proxy
                .conn_string(users::SCRAM, users::SCRAM_PASSWORD, &f.db),
            "-X",
            "-A",
            "-t",
            "-f",
        ])
        .arg(&script)
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LIKE is not supported"), "{stderr}");
    assert!(stdout.contains("Dee|20"), "{stdout}");
    assert!(stdout.contains("a@psql.org|1\nc1@psql.org|10"), "{stdout}");
    let after_marker = stdout.split("marker").nth(1).unwrap_or_default();
    for line in ["a@psql.org,Ann", "c1@psql.org,Cee", "c2@psql.org,Dee"] {
        assert!(after_marker.contains(line), "{stdout}");
    }
    for stored in f.stored("SELECT email FROM customers").await {
        assert!(!String::from_utf8_lossy(&stored.unwrap()).contains("psql.org"));
    }
}
