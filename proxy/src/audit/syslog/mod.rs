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

mod message;
mod sender;
mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use self::message::cef;
use self::message::{line_chain, msgid, severity};
use self::sender::Sender;
use self::transport::Connector;
use super::event::Event;
use super::sink::Forward;
use crate::config::syslog::{MessageFormat, SyslogSettings};
use crate::config::OnFull;
use crate::ops::metrics::Metrics;

/// Our structured-data ID. 32473 is the private enterprise number RFC 5612 reserves for
/// documentation and examples; pgshroud has none of its own.
pub const SD_ID: &str = "pgshroud@32473";

pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// On shutdown, how long queued events may wait for an absent collector.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages kept after sending, to send again after a lost connection: more than a collector
/// stopping or crashing can have taken unread with it at ordinary rates (bounded by
/// [`RESEND_BYTES`] too). `audit verify` remembers more than this many chain values per
/// segment, so the repeats it meets are recognised.
pub const RESEND_FRAMES: usize = 1024;
pub(super) const RESEND_BYTES: usize = 4 << 20;

/// One event waiting to be sent: everything but the `dropped` count, which is known only
/// when it leaves.
pub(super) struct Queued {
    pub(super) pri: u8,
    pub(super) ts: String,
    pub(super) msgid: &'static str,
    pub(super) seq: u64,
    pub(super) chain: String,
    pub(super) msg: Vec<u8>,
}

pub(super) enum Message {
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
        let sender = Sender::new(
            connector,
            settings.app_name.clone(),
            dropped.clone(),
            closing.clone(),
            metrics.clone(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{EventType, Outcome};
    use crate::config::syslog::Transport;
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
