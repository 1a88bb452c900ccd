//! `pgshroud audit verify` as an operator runs it: the count on success, the broken line and
//! a non-zero status on tampering, status 3 for a log without its end marker.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use pgshroud::audit::chain::ChainKey;
use pgshroud::audit::sink::{OnFull, Sink, Target};
use pgshroud::audit::{Event, EventType};
use pgshroud::ops::metrics::Metrics;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn write_log(path: &Path, statements: usize) {
    let sink = Sink::start(
        Target::File {
            path: path.to_owned(),
            rotate_bytes: None,
        },
        16,
        OnFull::Block,
        ChainKey::from_base64(KEY).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    for i in 0..statements {
        let mut e = Event::new(EventType::Statement);
        e.statement = Some(format!("SELECT {i}"));
        sink.emit(e);
    }
    sink.close();
}

fn verify(dir: &Path, file: &Path) -> (i32, String) {
    let key = dir.join("audit.key");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgshroud"))
        .args(["audit", "verify", "--key-file"])
        .arg(&key)
        .arg(file)
        .env_remove("PGSHROUD_AUDIT_KEY")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgshroud-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn verify_counts_the_events_of_a_good_log() {
    let dir = temp_dir("good");
    let log = dir.join("audit.log");
    write_log(&log, 3);
    let (code, out) = verify(&dir, &log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 events checked"), "{out}");
}

#[test]
fn verify_names_the_edited_line_and_fails() {
    let dir = temp_dir("edited");
    let log = dir.join("audit.log");
    write_log(&log, 3);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replace("SELECT 1", "SELECT 9")).unwrap();
    let (code, out) = verify(&dir, &log);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit.log:3: broken chain"), "{out}");
}

#[test]
fn verify_tells_a_truncated_log_apart() {
    let dir = temp_dir("truncated");
    let log = dir.join("audit.log");
    write_log(&log, 3);
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, kept).unwrap();
    let (code, out) = verify(&dir, &log);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no chain_end"), "{out}");
}
