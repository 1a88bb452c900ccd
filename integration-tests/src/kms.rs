//! A real KMS API server for the KMS tests: moto's server (`moto_server`, from
//! `pip install 'moto[server]'`, which scripts/install-test-deps.sh installs) on a free loopback
//! port, killed when dropped; keys are made and disabled through its API with boto3 (which
//! moto depends on). Its fake credentials go to the child processes only, never into this
//! process's environment.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

/// The fake credentials moto accepts, and the region, for a child process.
pub fn with_credentials(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// A child environment with nothing of AWS in it: no credentials, no profile files, no
/// instance metadata (so the chain never leaves the machine looking for it).
pub fn without_aws<'a>(command: &'a mut Command, home: &Path) -> &'a mut Command {
    command
        .env_clear()
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

pub struct Moto {
    pub endpoint: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto's server; fails the test (with how to install it) when it is missing.
    pub fn start() -> Moto {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("moto log file");
        let spawn = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log"))
                .stderr(log.reopen().expect("log"))
                .spawn()
        };
        let child = spawn("moto_server", &[])
            .or_else(|_| spawn("python3", &["-m", "moto.server"]))
            .unwrap_or_else(|e| panic!("{}", missing(&e.to_string())));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            addr,
            child: Some(child),
            _log: log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(moto._log.path()).unwrap_or_default();
                panic!(
                    "{}",
                    missing(&format!("moto's server exited ({status}): {log}"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto's server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Creates a symmetric KMS key through the API; returns its ARN.
    pub fn create_key(&self) -> String {
        self.boto3("print(kms.create_key(Description='pgshroud test')['KeyMetadata']['Arn'])")
    }

    pub fn disable_key(&self, key_id: &str) {
        // moto's DisableKey takes the bare key id, not the ARN.
        self.boto3(&format!(
            "kms.disable_key(KeyId=kms.describe_key(KeyId='{key_id}')['KeyMetadata']['KeyId'])"
        ));
    }

    /// Runs Python with `kms`, a boto3 client of this server; returns its stdout, trimmed.
    pub fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3\nkms = boto3.client('kms', endpoint_url='{}', region_name='{REGION}')\n{code}\n",
            self.endpoint
        );
        let out = with_credentials(Command::new("python3").args(["-c", &script]))
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "boto3 against moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Stops the server (KMS goes down).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn missing(why: &str) -> String {
    format!(
        "the KMS tests need moto's server, a local AWS KMS API: run scripts/install-test-deps.sh \
         (or `python3 -m pip install 'moto[server]'`) so that `moto_server` is on PATH ({why})"
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `pgshroud keygen --kms-key-id` against `moto`: the [[keys]] entry it prints.
pub fn keygen(bin: &Path, moto: &Moto, key_id: &str, version: u32) -> Output {
    with_credentials(Command::new(bin).args([
        "keygen",
        "--kms-key-id",
        key_id,
        "--kms-endpoint",
        &moto.endpoint,
        "--region",
        REGION,
        "--key-version",
        &version.to_string(),
    ]))
    .output()
    .expect("pgshroud keygen runs")
}

/// A `pgshroud serve` child process, killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl ServeProcess {
    /// Waits until its admin listener is up (bound after the keys loaded; the client listener
    /// is bound before), or returns its exit status and log if it stopped first.
    pub fn wait_listening(&mut self) -> Result<(), (std::process::ExitStatus, String)> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err((status, self.log_text()));
            }
            // A connection to itself (Linux's simultaneous open, when the kernel picks the
            // unbound port as the source port) is not the proxy listening.
            if let Ok(stream) = TcpStream::connect_timeout(&self.admin, Duration::from_millis(200))
            {
                if stream.local_addr().ok() != stream.peer_addr().ok() {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "pgshroud neither listened nor stopped within 90 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pgshroud serve` with `rules` and `keys_file` in front of `upstream`; `env` sets up
/// the child's AWS environment. Its stdout and stderr go to `dir/serve.log`.
pub fn serve(
    bin: &Path,
    dir: &Path,
    upstream: &str,
    rules: &Path,
    keys_file: &Path,
    env: impl FnOnce(&mut Command) -> &mut Command,
) -> ServeProcess {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = dir.join("serve.log");
    let file = std::fs::File::create(&log).expect("serve log");
    let mut command = Command::new(bin);
    command
        .args([
            "serve",
            "--listen",
            &listen.to_string(),
            "--upstream",
            upstream,
        ])
        .arg("--admin-listen")
        .arg(admin.to_string())
        .arg("--rules")
        .arg(rules)
        .arg("--keys-file")
        .arg(keys_file)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    let child = env(&mut command).spawn().expect("pgshroud serve starts");
    ServeProcess {
        child,
        listen,
        admin,
        log,
    }
}

/// GET `path` from the admin listener: (status code, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("admin connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
