//! `pgshroud demo` (the README's first command) runs to its table, shows each role's view,
//! installs PostgreSQL's server programs when they are missing, and leaves no process and no
//! folder behind however it is stopped: SIGINT, SIGTERM, SIGHUP, also during start-up.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pgshroud_integration_tests::proxy::pgshroud_bin;

/// A `pgshroud demo` process and the lines it printed so far.
struct DemoRun {
    child: Child,
    pid: u32,
    lines: mpsc::Receiver<String>,
    shown: Vec<String>,
}

impl DemoRun {
    fn start(env: &[(&str, String)]) -> DemoRun {
        let mut command = Command::new(pgshroud_bin());
        command
            .args(["demo", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("pgshroud demo starts");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        DemoRun {
            child,
            pid,
            lines,
            shown: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `wanted` (at most five minutes: an install may run).
    fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(300)) {
                Ok(line) => {
                    let done = wanted(&line);
                    self.shown.push(line);
                    if done {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let mut stderr = String::new();
                    if let Some(mut s) = self.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut s, &mut stderr);
                    }
                    panic!(
                        "demo did not print the line waited for ({e}):\n{}\n{stderr}",
                        self.shown.join("\n")
                    );
                }
            }
        }
    }

    fn wait_ready(&mut self) {
        self.wait_for(|l| l == "Ready.");
    }

    /// Sends `signal` and waits for the demo to exit; collects the rest of what it printed.
    fn stop_with(&mut self, signal: &str) -> ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.shown.push(line);
        }
        status
    }

    fn root(&self) -> PathBuf {
        std::env::temp_dir().join(format!("pgshroud-demo-{}", self.pid))
    }

    fn files_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("pgshroud-demo-files-{}", self.pid))
    }

    /// The postmaster's pid, from the running cluster's data directory.
    fn postmaster_pid(&self) -> u32 {
        let pidfile = std::fs::read_to_string(self.root().join("data/postmaster.pid"))
            .expect("the running cluster has a postmaster.pid");
        pidfile.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Folders and processes of this demo that still exist.
    fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = [self.root(), self.files_dir()]
            .into_iter()
            .filter(|d| d.exists())
            .map(|d| format!("folder {}", d.display()))
            .collect();
        let marker = format!("pgshroud-demo-{}/", self.pid);
        left.extend(processes_mentioning(&marker));
        left
    }

    fn assert_nothing_left(&self, how: &str) {
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "after {how} the demo left {left:?}; it printed:\n{}",
            self.shown.join("\n")
        );
    }
}

impl Drop for DemoRun {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-INT", &self.pid.to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Live (not zombie) processes whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !is_zombie(pid) {
            found.push(format!("process {pid}: {cmdline}"));
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) STATE ...: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn process_alive(pid: u32) -> bool {
    !is_zombie(pid)
}

#[test]
fn demo_prints_who_sees_what_and_cleans_up_on_ctrl_c() {
    let mut demo = DemoRun::start(&[]);
    demo.wait_ready();
    let shown = &demo.shown;
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
    assert!(
        demo.root().exists(),
        "the throwaway cluster lives in {}",
        demo.root().display()
    );
    let postmaster = demo.postmaster_pid();
    assert!(process_alive(postmaster));

    let status = demo.stop_with("INT");
    assert!(status.success(), "demo exits cleanly on Ctrl-C: {status}");
    assert!(!process_alive(postmaster), "PostgreSQL is stopped");
    demo.assert_nothing_left("SIGINT");
    assert!(
        demo.shown.iter().any(|l| l.starts_with("SIGINT: stopping")),
        "it says what it does:\n{}",
        demo.shown.join("\n")
    );
}

#[test]
fn sigterm_and_sighup_stop_the_demo_and_remove_everything_it_started() {
    for signal in ["TERM", "HUP"] {
        let mut demo = DemoRun::start(&[]);
        demo.wait_ready();
        let postmaster = demo.postmaster_pid();
        let status = demo.stop_with(signal);
        assert!(status.success(), "SIG{signal}: {status}");
        assert!(
            !process_alive(postmaster),
            "SIG{signal}: PostgreSQL is stopped"
        );
        demo.assert_nothing_left(&format!("SIG{signal}"));
        let said = format!("SIG{signal}: stopping pgshroud and the throwaway PostgreSQL");
        assert!(
            demo.shown.iter().any(|l| l.starts_with(&said)),
            "{}",
            demo.shown.join("\n")
        );
        assert!(
            demo.shown
                .iter()
                .any(|l| l.starts_with("Stopped; removed ")),
            "{}",
            demo.shown.join("\n")
        );
    }
}

#[test]
fn a_signal_during_start_up_still_stops_and_removes_everything() {
    let mut demo = DemoRun::start(&[]);
    demo.wait_for(|l| l.starts_with("Starting a throwaway PostgreSQL"));
    // initdb or pg_ctl is running now (or the cluster has just started).
    let status = demo.stop_with("TERM");
    assert!(status.success(), "{status}");
    demo.assert_nothing_left("SIGTERM during start-up");
    assert!(
        demo.shown
            .iter()
            .any(|l| l.starts_with("SIGTERM during start-up")),
        "{}",
        demo.shown.join("\n")
    );
}

/// A fake `apt-get` that logs its arguments and, on `install`, links the real PostgreSQL
/// programs into `bin_dir` (where `PGSHROUD_PG_BIN_DIR` points): a machine without PostgreSQL,
/// as far as the demo can tell, without uninstalling anything.
fn fake_apt_get(dir: &Path, bin_dir: &Path, real: &Path) -> PathBuf {
    let fake_bin = dir.join("fakebin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"apt-get $*\" >> {log}\ncase \"$1\" in install)\n  for p in initdb pg_ctl postgres psql; do ln -sf {real}/$p {bin}/$p; done;;\nesac\n",
        log = dir.join("apt.log").display(),
        real = real.display(),
        bin = bin_dir.display(),
    );
    let apt = fake_bin.join("apt-get");
    std::fs::write(&apt, script).unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake_bin
}

#[test]
fn a_machine_without_postgres_gets_it_installed_by_the_demo_which_says_so() {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    {
        eprintln!("skipped: needs root (as in CI), since without it the installer uses sudo");
        return;
    }
    let real = pgshroud_integration_tests::cluster::find_bin_dir().expect("PostgreSQL programs");
    let dir = tempfile::tempdir().unwrap();
    // The postgres user runs initdb through the links: let it in.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin_dir = dir.path().join("pgbin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let fake_bin = fake_apt_get(dir.path(), &bin_dir, &real);
    let path = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut demo = DemoRun::start(&[
        ("PATH", path),
        ("PGSHROUD_PG_BIN_DIR", bin_dir.display().to_string()),
    ]);
    demo.wait_ready();
    let said = demo.shown.join("\n");
    assert!(
        said.contains("PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed")
            && said.contains("the demo needs them")
            && said.contains("apt-get install postgresql postgresql-client"),
        "it says what it installs and why:\n{said}"
    );
    let apt = std::fs::read_to_string(dir.path().join("apt.log")).unwrap();
    assert!(apt.contains("apt-get update"), "{apt}");
    assert!(
        apt.lines().any(
            |l| l.starts_with("apt-get install") && l.contains(" postgresql postgresql-client")
        ),
        "{apt}"
    );
    assert!(
        demo.shown
            .iter()
            .any(|l| l.starts_with("Alice") && l.contains("alice@example.com")),
        "the demo went on to its table:\n{said}"
    );
    assert!(demo.stop_with("INT").success());
    demo.assert_nothing_left("SIGINT");
}
