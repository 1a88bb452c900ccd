//! A real syslog collector for the audit tests: `rsyslogd` (Debian's `rsyslog`, with
//! `rsyslog-gnutls` for TLS) in the foreground with a private config and work directory,
//! receiving RFC 5424 over TCP or TLS on a loopback port, writing each message's MSG part to
//! `received.log` and its header fields to `meta.log`. It can be stopped and started again on
//! the same port, as a collector restart.
//!
//! Fixture code: panics with a message when rsyslogd cannot run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::TestCa;

/// How the collector listens.
pub enum Listen<'a> {
    Tcp,
    /// TLS with a server certificate from `ca`; clients must present a certificate from `ca`.
    TlsWithClientCert(&'a TestCa),
}

pub struct Rsyslog {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// Writes the config into `dir` and starts rsyslogd on a free loopback port.
    pub fn start(dir: &Path, listen: Listen<'_>) -> Rsyslog {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("rsyslog work dir");
        let d = dir.display();
        let (global_tls, driver) = match listen {
            Listen::Tcp => (String::new(), String::new()),
            Listen::TlsWithClientCert(ca) => {
                let ca_file = ca.write_ca(dir);
                let (cert, key) = ca
                    .issue(&["127.0.0.1", "localhost"])
                    .write_to(dir, "collector");
                (
                    format!(
                        "DefaultNetstreamDriver=\"gtls\"\n  DefaultNetstreamDriverCAFile=\"{}\"\n  DefaultNetstreamDriverCertFile=\"{}\"\n  DefaultNetstreamDriverKeyFile=\"{}\"",
                        ca_file.display(),
                        cert.display(),
                        key.display()
                    ),
                    "StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"x509/certvalid\"".to_owned(),
                )
            }
        };
        let config = format!(
            r#"global(
  workDirectory="{d}/work"
  maxMessageSize="256k"
  {global_tls}
)
module(load="imtcp" {driver})
template(name="msg_only" type="string" string="%msg%\n")
template(name="meta" type="string" string="%pri% %app-name% %msgid% %structured-data%\n")
ruleset(name="audit") {{
  action(type="omfile" file="{d}/received.log" template="msg_only")
  action(type="omfile" file="{d}/meta.log" template="meta")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="audit")
"#
        );
        std::fs::write(dir.join("rsyslog.conf"), config).expect("rsyslog config");
        let mut r = Rsyslog {
            dir: dir.to_owned(),
            port,
            child: None,
        };
        r.restart();
        r
    }

    /// Starts rsyslogd (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let rsyslogd = which("rsyslogd").expect(
            "rsyslogd not found: run scripts/install-test-deps.sh (Debian packages rsyslog, rsyslog-gnutls)",
        );
        let child = Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.err")).expect("stderr file"))
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "rsyslogd exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("rsyslogd.err")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd does not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd with SIGTERM (it closes its connections and writes what it received).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The MSG part of every message received so far, one per line.
    pub fn received(&self) -> Vec<String> {
        read_lines(&self.dir.join("received.log"))
    }

    /// `PRI APP-NAME MSGID [SD]` of every message received so far.
    pub fn meta(&self) -> Vec<String> {
        read_lines(&self.dir.join("meta.log"))
    }

    pub fn received_path(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    /// Waits (at most a minute) until the received messages satisfy `done`.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if Instant::now() > deadline {
                panic!(
                    "rsyslog did not receive {what}; it has:\n{}\nrsyslogd said:\n{}",
                    received.join("\n"),
                    std::fs::read_to_string(self.dir.join("rsyslogd.err")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
