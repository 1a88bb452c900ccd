//! The syslog sink: sealed audit events to a SIEM's collector as RFC 5424 messages over TCP
//! (octet-counted framing, RFC 6587) or TLS (RFC 5425), from a queue and thread of its own.
//!
//! The message is the event's JSON line exactly as the file holds it (chain value included),
//! so the collected messages verify with `pgshroud audit verify`; the structured data repeats
//! `seq` and `chain` for the SIEM's parser. CEF is the alternative message format.
//!
//! Delivery: the thread sends one message at a time; when the collector goes away (refused,
//! reset, closed, a write that fails or times out) it reconnects with back-off, while new
//! events wait in the queue. TCP syslog has no acknowledgement, so messages written shortly
//! before the collector stopped reading may be gone with it: after a lost connection the
//! thread sends the last [`RESEND_FRAMES`] messages again (at least once: a collector may store
//! some twice, byte for byte the same, which `audit verify` skips as repeats). A full queue
//! blocks the audit writer (`block`: nothing is lost, statements wait for the collector) or
//! drops the event (`drop`: counted, and reported in the next message's `dropped` parameter).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::event::{Event, EventType, Outcome};
use super::sink::Forward;
use crate::config::syslog::{MessageFormat, SyslogSettings, Transport};
use crate::config::OnFull;
use crate::ops::metrics::Metrics;

/// Our structured-data ID. 32473 is the private enterprise number RFC 5612 reserves for
/// documentation and examples; pgshroud has none of its own.
pub const SD_ID: &str = "pgshroud@32473";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A collector that accepts no data for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// On shutdown, how long queued events may wait for an absent collector.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages kept after sending, to send again after a lost connection: more than a collector
/// stopping or crashing can have taken unread with it at ordinary rates (bounded by
/// [`RESEND_BYTES`] too). `audit verify` remembers more than this many chain values per
/// segment, so the repeats it meets are recognised.
pub const RESEND_FRAMES: usize = 1024;
const RESEND_BYTES: usize = 4 << 20;

/// One event waiting to be sent: everything but the `dropped` count, which is known only
/// when it leaves.
struct Queued {
    pri: u8,
    ts: String,
    msgid: &'static str,
    seq: u64,
    chain: String,
    msg: Vec<u8>,
}

enum Message {
    Event(Box<Queued>),
    Close,
}

/// The audit writer's handle on the syslog thread.
pub struct SyslogSink {
    settings: SyslogSettings,
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    deadline_started: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogSink {
    /// Builds the TLS configuration (so a bad CA or key stops start-up) and starts the
    /// thread, which connects in the background.
    pub fn start(settings: SyslogSettings, metrics: Arc<Metrics>) -> Result<SyslogSink, String> {
        let connector = Connector::new(&settings)?;
        let (tx, rx) = mpsc::sync_channel(settings.queue_size.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let sender = Sender {
            connector,
            hostname: hostname(),
            procid: std::process::id().to_string(),
            app_name: settings.app_name.clone(),
            dropped: dropped.clone(),
            closing: closing.clone(),
            metrics: metrics.clone(),
            connection: None,
            outage: None,
            recent: Recent::default(),
            resend: false,
        };
        let thread = std::thread::Builder::new()
            .name("pgshroud-syslog".into())
            .spawn(move || sender.run(rx))
            .map_err(|e| format!("cannot start the syslog sender: {e}"))?;
        Ok(SyslogSink {
            settings,
            tx,
            dropped,
            closing,
            deadline_started: Arc::new(AtomicBool::new(false)),
            metrics,
            thread: Some(thread),
        })
    }
}

impl Forward for SyslogSink {
    fn forward(&mut self, event: &Event, line: &[u8]) {
        let chain = line_chain(line).unwrap_or_default();
        let msg = match self.settings.format {
            MessageFormat::Json => line.to_vec(),
            MessageFormat::Cef => cef(event, &chain).into_bytes(),
        };
        let queued = Message::Event(Box::new(Queued {
            pri: self.settings.facility * 8 + severity(event),
            ts: event.ts.clone(),
            msgid: msgid(event.event),
            seq: event.seq,
            chain,
            msg,
        }));
        match self.settings.on_full {
            OnFull::Block => {
                if self.tx.send(queued).is_err() {
                    // The thread gave up on the collector at shutdown.
                    self.metrics.audit_syslog_dropped(1);
                }
            }
            OnFull::Drop => match self.tx.try_send(queued) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.metrics.audit_syslog_dropped(1);
                }
                Err(TrySendError::Disconnected(_)) => self.metrics.audit_syslog_dropped(1),
            },
        }
    }

    /// Sends what is queued (waiting at most [`CLOSE_TIMEOUT`] for an absent collector).
    fn close(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        (self.closer())();
        let _ = self.tx.send(Message::Close);
        let _ = thread.join();
    }

    /// Starts the shutdown deadline: from [`CLOSE_TIMEOUT`] on, the thread stops waiting for
    /// an absent collector (and so frees a writer blocked on a full queue).
    fn closer(&self) -> Box<dyn Fn() + Send + Sync> {
        let closing = self.closing.clone();
        let started = self.deadline_started.clone();
        Box::new(move || {
            if !started.swap(true, Ordering::Relaxed) {
                let closing = closing.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(CLOSE_TIMEOUT);
                    closing.store(true, Ordering::Relaxed);
                });
            }
        })
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.close();
    }
}

/// The chain value (hex) at the end of a sealed line.
fn line_chain(line: &[u8]) -> Option<String> {
    let (_, chain) = super::chain::split_line(line)?;
    Some(hex::encode(chain))
}

/// RFC 5424 severity of an event.
fn severity(event: &Event) -> u8 {
    const WARNING: u8 = 4;
    const NOTICE: u8 = 5;
    const INFO: u8 = 6;
    match event.event {
        EventType::Alert => WARNING,
        EventType::AuthFailed => NOTICE,
        EventType::Statement if event.outcome == Some(Outcome::Refused) => NOTICE,
        _ => INFO,
    }
}

/// MSGID: the event type, as the JSON names it.
fn msgid(kind: EventType) -> &'static str {
    match kind {
        EventType::ChainStart => "chain_start",
        EventType::ChainEnd => "chain_end",
        EventType::FileStart => "file_start",
        EventType::Connect => "connect",
        EventType::AuthOk => "auth_ok",
        EventType::AuthFailed => "auth_failed",
        EventType::Statement => "statement",
        EventType::Alert => "alert",
        EventType::Disconnect => "disconnect",
    }
}

/// The event in ArcSight CEF: `CEF:0|vendor|product|version|signature|name|severity|ext`.
pub fn cef(event: &Event, chain: &str) -> String {
    let name = msgid(event.event);
    let signature = match (event.event, event.alert) {
        (EventType::Alert, Some(alert)) => format!("alert:{alert}"),
        _ => name.to_owned(),
    };
    let cef_severity = match severity(event) {
        4 => 7,
        5 => 5,
        _ => 3,
    };
    let mut ext: Vec<(&str, String)> = vec![("rt", event.ts.clone())];
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(v) = value {
            ext.push((key, v));
        }
    };
    put("suser", event.user.clone());
    put("src", event.client_addr.as_ref().map(|a| host_of(a)));
    put("cs1Label", event.role.as_ref().map(|_| "role".into()));
    put("cs1", event.role.clone());
    put(
        "cs2Label",
        event.database.as_ref().map(|_| "database".into()),
    );
    put("cs2", event.database.clone());
    put("cs3Label", event.session.as_ref().map(|_| "session".into()));
    put("cs3", event.session.clone());
    put(
        "act",
        event.outcome.map(|o| format!("{o:?}").to_lowercase()),
    );
    put("outcome", event.sqlstate.clone());
    put("msg", event.statement.clone());
    put("cnt", event.rows.map(|r| r.to_string()));
    put(
        "cs4Label",
        event.columns.as_ref().map(|_| "protected_columns".into()),
    );
    put(
        "cs4",
        event.columns.as_ref().map(|cols| {
            cols.iter()
                .map(|c| format!("{}:{}", c.column, c.action))
                .collect::<Vec<_>>()
                .join(",")
        }),
    );
    put("cn1Label", Some("seq".into()));
    put("cn1", Some(event.seq.to_string()));
    put("cs6Label", Some("chain".into()));
    put("cs6", Some(chain.to_owned()));
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_ext_escape(&v)))
        .collect();
    format!(
        "CEF:0|pgshroud|pgshroud|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header_escape(&signature),
        cef_header_escape(name),
        cef_severity,
        ext.join(" ")
    )
}

/// `host:port` or `[v6]:port` -> the host.
fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        None => addr.to_owned(),
    }
}

fn cef_header_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

fn cef_ext_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// HOSTNAME of our messages: the kernel's host name when it is printable ASCII, else `-`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name = name.trim();
    if (1..=255).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b)) {
        name.to_owned()
    } else {
        "-".to_owned()
    }
}

/// An RFC 5424 message with RFC 6587 octet counting: `LEN SP <PRI>1 TS HOST APP PROCID MSGID
/// [SD] MSG`.
fn frame(q: &Queued, hostname: &str, app_name: &str, procid: &str, dropped: u64) -> Vec<u8> {
    let mut sd = format!("[{SD_ID} seq=\"{}\" chain=\"{}\"", q.seq, q.chain);
    if dropped > 0 {
        sd.push_str(&format!(" dropped=\"{dropped}\""));
    }
    sd.push(']');
    let head = format!(
        "<{}>1 {} {hostname} {app_name} {procid} {} {sd} ",
        q.pri, q.ts, q.msgid
    );
    let len = head.len() + q.msg.len();
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&q.msg);
    out
}

/// Opens connections to the collector.
struct Connector {
    address: String,
    host: String,
    port: u16,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Connector {
    fn new(settings: &SyslogSettings) -> Result<Connector, String> {
        let tls = match &settings.transport {
            Transport::Tcp => None,
            Transport::Tls {
                ca_file,
                client_cert,
                server_name,
            } => {
                let config = crate::net::tls::syslog_client_config(
                    ca_file,
                    client_cert
                        .as_ref()
                        .map(|(c, k)| (c.as_path(), k.as_path())),
                )?;
                let name = ServerName::try_from(server_name.clone())
                    .map_err(|_| format!("`{server_name}` is not a valid server name"))?;
                Some((config, name))
            }
        };
        Ok(Connector {
            address: settings.address(),
            host: settings.host.clone(),
            port: settings.port,
            tls,
        })
    }

    fn connect(&self) -> std::io::Result<Connection> {
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the host resolves to nothing");
        let mut socket = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let socket = socket.ok_or(last)?;
        socket.set_nodelay(true)?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let Some((config, name)) = &self.tls else {
            return Ok(Connection::Tcp(socket));
        };
        socket.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        let conn = ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, socket);
        // Finish the handshake now, so a certificate the collector cannot prove is reported
        // as such instead of as a failed write.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        stream.sock.set_read_timeout(None)?;
        Ok(Connection::Tls(Box::new(stream)))
    }
}

enum Connection {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Connection {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Tcp(s) => s.write_all(frame),
            Connection::Tls(s) => {
                s.write_all(frame)?;
                s.flush()
            }
        }
    }

    /// Whether the collector has closed or reset the connection. A syslog collector sends
    /// nothing, so end of stream, an error or a TLS close_notify waiting to be read means it
    /// went away (a restart); checked before each message so that message is not written
    /// into a dead connection and lost.
    fn peer_gone(&mut self) -> bool {
        let socket = match self {
            Connection::Tcp(s) => s,
            Connection::Tls(s) => &mut s.sock,
        };
        if socket.set_nonblocking(true).is_err() {
            return true;
        }
        let gone = match self {
            Connection::Tcp(s) => tcp_gone(s),
            Connection::Tls(s) => tls_gone(s),
        };
        let socket = match self {
            Connection::Tcp(s) => s,
            Connection::Tls(s) => &mut s.sock,
        };
        gone || socket.set_nonblocking(false).is_err()
    }
}

fn tcp_gone(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

fn tls_gone(stream: &mut StreamOwned<ClientConnection, TcpStream>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.conn.read_tls(&mut stream.sock) {
            Ok(0) => return true,
            Ok(_) => match stream.conn.process_new_packets() {
                Ok(state) if state.peer_has_closed() => return true,
                // Session tickets and the like: read and ignore any data.
                Ok(_) => {
                    while let Ok(n @ 1..) = stream.conn.reader().read(&mut buf) {
                        let _ = n;
                    }
                }
                Err(_) => return true,
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// The syslog thread: takes events from the queue and delivers them one by one.
struct Sender {
    connector: Connector,
    hostname: String,
    procid: String,
    app_name: String,
    dropped: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    connection: Option<Connection>,
    /// Since when the collector has been unreachable, and how often we tried.
    outage: Option<(Instant, u32)>,
    /// The last messages sent, and whether they must go again on the next connection.
    recent: Recent,
    resend: bool,
}

/// The last messages sent, oldest first, bounded by count and bytes.
#[derive(Default)]
struct Recent {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        while self.frames.len() > RESEND_FRAMES || self.bytes > RESEND_BYTES {
            match self.frames.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

impl Sender {
    fn run(mut self, rx: Receiver<Message>) {
        while let Ok(Message::Event(q)) = rx.recv() {
            let frame = frame(
                &q,
                &self.hostname,
                &self.app_name,
                &self.procid,
                self.dropped.swap(0, Ordering::Relaxed),
            );
            if self.deliver(&frame) {
                self.recent.push(frame);
            } else {
                // Shutting down with the collector away: count what is left, say so.
                let mut lost = 1u64;
                while let Ok(Message::Event(_)) = rx.try_recv() {
                    lost += 1;
                }
                self.metrics.audit_syslog_dropped(lost);
                tracing::error!(
                    "audit: {lost} events could not be sent to the syslog collector {} before shutdown (they are in the audit file, if one is configured)",
                    self.connector.address
                );
                return;
            }
        }
    }

    /// Sends one frame, reconnecting as often as it takes. False only when shutting down
    /// and the collector stayed away.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.connection.as_mut().is_some_and(Connection::peer_gone) {
                self.lost_connection("the collector closed the connection");
            }
            if self.connection.is_none() {
                match self.connector.connect() {
                    Ok(c) => self.connected(c),
                    Err(e) => {
                        self.unreachable(&e.to_string());
                        if !self.pause(backoff) {
                            return false;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            if self.resend && !self.send_recent() {
                continue;
            }
            let Some(conn) = self.connection.as_mut() else {
                continue;
            };
            match conn.send(frame) {
                Ok(()) => {
                    self.metrics.audit_syslog_sent();
                    return true;
                }
                Err(e) => self.lost_connection(&e.to_string()),
            }
        }
    }

    /// Sends the recent messages again on a new connection; false if it was lost meanwhile.
    fn send_recent(&mut self) -> bool {
        let Some(conn) = self.connection.as_mut() else {
            return false;
        };
        for frame in &self.recent.frames {
            if let Err(e) = conn.send(frame) {
                self.lost_connection(&e.to_string());
                return false;
            }
        }
        if !self.recent.frames.is_empty() {
            tracing::info!(
                "audit: sent the last {} events to the syslog collector {} again, in case it lost them with the connection (repeats are identical)",
                self.recent.frames.len(),
                self.connector.address
            );
        }
        self.resend = false;
        true
    }

    fn connected(&mut self, connection: Connection) {
        self.connection = Some(connection);
        self.metrics.audit_syslog_connected(true);
        match self.outage.take() {
            Some((since, attempts)) => tracing::warn!(
                "audit: reconnected to the syslog collector {} after {:.1} s ({attempts} attempts)",
                self.connector.address,
                since.elapsed().as_secs_f64()
            ),
            None => tracing::info!(
                "audit: connected to the syslog collector {}",
                self.connector.address
            ),
        }
    }

    fn lost_connection(&mut self, why: &str) {
        self.connection = None;
        self.resend = true;
        self.metrics.audit_syslog_connected(false);
        self.metrics.audit_syslog_reconnect();
        if self.outage.is_none() {
            tracing::warn!(
                "audit: lost the syslog collector {} ({why}); reconnecting, events wait in the queue",
                self.connector.address
            );
            self.outage = Some((Instant::now(), 0));
        }
    }

    fn unreachable(&mut self, why: &str) {
        self.metrics.audit_syslog_connect_failure();
        match &mut self.outage {
            Some((_, attempts)) => *attempts += 1,
            None => {
                tracing::warn!(
                    "audit: cannot reach the syslog collector {} ({why}); retrying with back-off, events wait in the queue",
                    self.connector.address
                );
                self.outage = Some((Instant::now(), 1));
            }
        }
    }

    /// Sleeps `d` unless shutdown gives up on the collector; false then.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.closing.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
        !self.closing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    fn settings(port: u16, on_full: OnFull) -> SyslogSettings {
        SyslogSettings {
            host: "127.0.0.1".into(),
            port,
            transport: Transport::Tcp,
            facility: 16,
            app_name: "pgshroud".into(),
            format: MessageFormat::Json,
            on_full,
            queue_size: 16,
        }
    }

    /// Reads one octet-counted frame.
    fn read_frame(r: &mut impl BufRead) -> Option<String> {
        let mut len = Vec::new();
        r.read_until(b' ', &mut len).ok()?;
        let len: usize = std::str::from_utf8(&len).ok()?.trim().parse().ok()?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        String::from_utf8(body).ok()
    }

    fn sealed(seq: u64) -> (Event, Vec<u8>) {
        let mut e = Event::new(EventType::Statement);
        e.seq = seq;
        e.outcome = Some(Outcome::Refused);
        let mut chain =
            super::super::chain::Chain::start(super::super::chain::ChainKey::new([3; 32]));
        let mut line = chain.seal(&e.canonical());
        line.pop();
        (e, line)
    }

    #[test]
    fn a_message_is_rfc5424_octet_counted_with_the_json_line_and_its_chain() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sink =
            SyslogSink::start(settings(port, OnFull::Block), Arc::new(Metrics::new())).unwrap();
        let (event, line) = sealed(7);
        sink.forward(&event, &line);
        let (socket, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(socket);
        let message = read_frame(&mut reader).unwrap();
        let chain = line_chain(&line).unwrap();
        // local0 (16) * 8 + notice (5): a refused statement.
        let head = format!("<133>1 {} ", event.ts);
        assert!(message.starts_with(&head), "{message}");
        let sd = format!(
            " pgshroud {} statement [pgshroud@32473 seq=\"7\" chain=\"{chain}\"] ",
            std::process::id()
        );
        assert!(message.contains(&sd), "{message}");
        assert!(message.ends_with(std::str::from_utf8(&line).unwrap()));
        sink.close();
    }

    #[test]
    fn a_collector_that_goes_away_gets_the_recent_messages_again_then_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sink =
            SyslogSink::start(settings(port, OnFull::Block), Arc::new(Metrics::new())).unwrap();
        let (e0, l0) = sealed(0);
        sink.forward(&e0, &l0);
        let (first, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(first);
        assert!(read_frame(&mut reader).unwrap().contains("seq=\"0\""));
        drop(reader); // The collector restarts.
        for seq in 1..4 {
            let (e, l) = sealed(seq);
            sink.forward(&e, &l);
        }
        let (second, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(second);
        for seq in 0..4 {
            let m = read_frame(&mut reader).unwrap();
            assert!(m.contains(&format!("seq=\"{seq}\"")), "{m}");
        }
        sink.close();
    }

    #[test]
    fn cef_carries_the_chain_and_escapes_its_separators() {
        let mut e = Event::new(EventType::Statement);
        e.user = Some("app".into());
        e.statement = Some("SELECT a = $1 | b".into());
        e.seq = 3;
        let cef = cef(&e, "ab");
        assert!(cef.starts_with("CEF:0|pgshroud|pgshroud|"), "{cef}");
        assert!(cef.contains("|statement|statement|3|"), "{cef}");
        assert!(cef.contains("msg=SELECT a \\= $1 | b"), "{cef}");
        assert!(cef.contains("suser=app"), "{cef}");
        assert!(cef.contains("cs6Label=chain cs6=ab"), "{cef}");
    }
}
