//! The syslog thread: delivers queued messages one by one, reconnects with back-off while the
//! collector is away, and sends the last messages again after a lost connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::message::frame;
use super::transport::{Connection, Connector};
use super::{Message, FIRST_BACKOFF, MAX_BACKOFF, RESEND_BYTES, RESEND_FRAMES};
use crate::audit::host::hostname;
use crate::ops::metrics::Metrics;

/// The syslog thread: takes events from the queue and delivers them one by one.
pub(super) struct Sender {
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
pub(super) struct Recent {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Recent {
    pub(super) fn push(&mut self, frame: Vec<u8>) {
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
    pub(super) fn new(
        connector: Connector,
        app_name: String,
        dropped: Arc<AtomicU64>,
        closing: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Sender {
        Sender {
            connector,
            hostname: hostname(),
            procid: std::process::id().to_string(),
            app_name,
            dropped,
            closing,
            metrics,
            connection: None,
            outage: None,
            recent: Recent::default(),
            resend: false,
        }
    }
    pub(super) fn run(mut self, rx: Receiver<Message>) {
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
    pub(super) fn deliver(&mut self, frame: &[u8]) -> bool {
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
    pub(super) fn send_recent(&mut self) -> bool {
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

    pub(super) fn connected(&mut self, connection: Connection) {
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

    pub(super) fn lost_connection(&mut self, why: &str) {
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

    pub(super) fn unreachable(&mut self, why: &str) {
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
    pub(super) fn pause(&self, d: Duration) -> bool {
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
