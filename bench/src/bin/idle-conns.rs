//! Idle-connection memory: starts a stub PostgreSQL upstream (trust login, then silence) and a
//! pgshroud in front of it, opens N client connections that log in and then sit idle, and
//! prints pgshroud's resident memory (VmRSS) before and after, per connection.
//!
//! A stub upstream, not a real server, because 10,000 PostgreSQL backends would need far
//! more memory than the machine has; pgshroud's own memory per session does not depend on
//! what answers behind it. The stub runs as a child process of its own (`idle-conns stub`)
//! so that neither process needs more than one file descriptor per connection (pgshroud
//! needs two). Loopback only; every loop is bounded by the connection count.
//!
//! Usage: idle-conns --pgshroud PATH [--counts 1000,10000] [--settle-ms 2000]
//! Output, one line per count: `idle <n> <rss_before_kib> <rss_after_kib> <bytes_per_conn>`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections being opened at once (logins in flight), to stay under the listen backlog.
const CONCURRENT_LOGINS: usize = 200;
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    pgshroud: String,
    counts: Vec<usize>,
    settle: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut pgshroud = None;
    let mut counts = vec![1000, 10000];
    let mut settle = Duration::from_millis(2000);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pgshroud" => pgshroud = Some(value),
            "--counts" => {
                counts = value
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|_| format!("bad count {c:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--settle-ms" => {
                settle = Duration::from_millis(value.parse().map_err(|_| "bad --settle-ms")?)
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        pgshroud: pgshroud.ok_or("--pgshroud PATH is required")?,
        counts,
        settle,
    })
}

/// A typed backend message.
fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What a trust login answers: AuthenticationOk, a few ParameterStatus, BackendKeyData,
/// ReadyForQuery (idle).
fn login_answer(pid: i32) -> Vec<u8> {
    let mut out = msg(b'R', &0i32.to_be_bytes());
    for (name, value) in [
        ("server_version", "15.18"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ] {
        let mut body = name.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
        out.extend_from_slice(&msg(b'S', &body));
    }
    let mut key = pid.to_be_bytes().to_vec();
    key.extend_from_slice(&0x5eed_i32.to_be_bytes());
    out.extend_from_slice(&msg(b'K', &key));
    out.extend_from_slice(&msg(b'Z', b"I"));
    out
}

/// The stub upstream: answers each login, then reads and discards until the peer closes.
async fn stub_upstream(listener: TcpListener) {
    let mut pid = 1000;
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            // Out of descriptors or a reset connection: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        pid += 1;
        tokio::spawn(async move {
            let mut len = [0u8; 4];
            if socket.read_exact(&mut len).await.is_err() {
                return;
            }
            let n = (i32::from_be_bytes(len) as usize)
                .saturating_sub(4)
                .min(10_000);
            let mut startup = vec![0u8; n];
            if socket.read_exact(&mut startup).await.is_err() {
                return;
            }
            if socket.write_all(&login_answer(pid)).await.is_err() {
                return;
            }
            let mut sink = [0u8; 256];
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
}

/// A client login: StartupMessage, then read until ReadyForQuery.
async fn login(addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut body = 196608i32.to_be_bytes().to_vec();
    for part in ["user", "bench", "database", "bench"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    socket
        .write_all(&startup)
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during login".into());
        }
        seen.extend_from_slice(&chunk[..n]);
        // Walk whole messages; ReadyForQuery ends the login, ErrorResponse fails it.
        let mut at = 0;
        while seen.len() >= at + 5 {
            let len = i32::from_be_bytes([seen[at + 1], seen[at + 2], seen[at + 3], seen[at + 4]]);
            let end = at + 1 + len as usize;
            if seen.len() < end {
                break;
            }
            match seen[at] {
                b'Z' => return Ok(socket),
                b'E' => return Err("login refused".into()),
                _ => at = end,
            }
        }
    }
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_pgshroud(path: &str, upstream: u16, listen: u16, max: usize) -> std::io::Result<Child> {
    Command::new(path)
        .args([
            "serve",
            "--upstream",
            &format!("postgres://127.0.0.1:{upstream}?sslmode=disable"),
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin-listen",
            "off",
            "--log-level",
            "warn",
            "--max-client-connections",
            &max.to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()
}

async fn wait_listening(port: u16) -> Result<(), String> {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("pgshroud did not listen on port {port}"))
}

/// One measurement: a fresh pgshroud, `count` idle logins, RSS before and after.
async fn measure(args: &Args, stub: u16, count: usize) -> Result<(u64, u64), String> {
    let listen = free_port().map_err(|e| e.to_string())?;
    let mut child = start_pgshroud(&args.pgshroud, stub, listen, count + 10)
        .map_err(|e| format!("cannot start pgshroud: {e}"))?;
    let result = async {
        wait_listening(listen).await?;
        // One login first, so the baseline includes a warmed-up runtime.
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], listen));
        let first = login(addr).await?;
        tokio::time::sleep(args.settle).await;
        let before = rss_kib(child.id())?;
        let gate = Arc::new(Semaphore::new(CONCURRENT_LOGINS));
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                tokio::time::timeout(LOGIN_TIMEOUT, login(addr))
                    .await
                    .map_err(|_| "login timed out".to_string())?
            }));
        }
        let mut held = Vec::with_capacity(count);
        for task in tasks {
            held.push(task.await.map_err(|e| e.to_string())??);
        }
        tokio::time::sleep(args.settle).await;
        let after = rss_kib(child.id())?;
        drop(held);
        drop(first);
        Ok((before, after))
    }
    .await;
    stop(&mut child);
    result
}

/// SIGTERM (pgshroud drains idle sessions at once), SIGKILL after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `idle-conns stub`: serve the stub upstream on an ephemeral loopback port, printed first.
async fn run_stub() -> std::process::ExitCode {
    let stub = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("idle-conns: cannot bind the stub upstream: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        stub.local_addr().map(|a| a.port()).unwrap_or_default()
    );
    stub_upstream(stub).await;
    std::process::ExitCode::SUCCESS
}

/// Starts `idle-conns stub` and reads its port.
fn spawn_stub() -> Result<(Child, u16), String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("stub")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the stub upstream: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stub stdout")?;
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let port = line
        .trim()
        .parse()
        .map_err(|_| format!("stub printed {line:?}"))?;
    Ok((child, port))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("stub") {
        return run_stub().await;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("idle-conns: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (mut stub, stub_port) = match spawn_stub() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("idle-conns: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = measure_all(&args, stub_port).await;
    let _ = stub.kill();
    let _ = stub.wait();
    code
}

async fn measure_all(args: &Args, stub_port: u16) -> std::process::ExitCode {
    for &count in &args.counts {
        match measure(args, stub_port, count).await {
            Ok((before, after)) => {
                let per_conn = (after.saturating_sub(before) * 1024) / count.max(1) as u64;
                println!("idle {count} {before} {after} {per_conn}");
            }
            Err(e) => {
                eprintln!("idle-conns: {count} connections: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
