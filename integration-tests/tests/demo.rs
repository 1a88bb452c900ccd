//! `pgshroud demo` (the README's first command) runs to its table, shows each role's view,
//! and removes everything on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pgshroud_integration_tests::proxy::pgshroud_bin;

#[test]
fn demo_prints_who_sees_what_and_cleans_up_on_ctrl_c() {
    let mut child = Command::new(pgshroud_bin())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgshroud demo starts");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    loop {
        match received.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line == "Ready." => break,
            Ok(line) => shown.push(line),
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "demo did not get ready ({e}):\n{}\n{}",
                    shown.join("\n"),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    let alice = shown
        .iter()
        .find(|l| l.starts_with("Alice") && l.contains('@'))
        .unwrap_or_else(|| panic!("no email row for Alice in\n{}", shown.join("\n")));
    let cells: Vec<&str> = alice.split_whitespace().collect();
    assert_eq!(cells[1], "alice@example.com", "app: {alice}");
    assert_eq!(cells[2], "a****@example.com", "support: {alice}");
    assert!(cells[3].starts_with("\\x02"), "dba: {alice}");
    assert_eq!(cells[3], cells[4], "dba sees what is stored: {alice}");
    assert!(
        shown
            .iter()
            .any(|l| l.starts_with("auditor: ") && l.contains("permission denied")),
        "{}",
        shown.join("\n")
    );
    let data_dir = std::env::temp_dir().join(format!("pgshroud-demo-{pid}"));
    assert!(
        data_dir.exists(),
        "the throwaway cluster lives in {}",
        data_dir.display()
    );
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exits cleanly on Ctrl-C: {status}");
    assert!(!data_dir.exists(), "the throwaway cluster is removed");
}
