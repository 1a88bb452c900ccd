//! Where events go: a bounded queue to one writer thread that numbers, chains and writes them
//! (stdout, or a file rotated by size with the chain running on across files), then hands each
//! sealed line to the forwarders (the syslog sink), so every sink carries the same chain. A
//! full queue either blocks the statement (`block`, the default) or drops the event and counts
//! it (`drop`).
//!
//! The writer is a thread, not a tokio task: with `block`, a session waiting for room must not
//! be able to starve the writer of a runtime worker.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

mod output;

pub use self::output::last_chain;
use self::output::Output;
use super::chain::{Chain, ChainKey};
use super::event::{Event, EventType};
use crate::ops::metrics::Metrics;

/// What to do when the queue is full (a setting, so defined with the settings).
pub use crate::config::OnFull;

/// Where the writer writes.
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        /// Rotate once the file reaches this size; `None`: never.
        rotate_bytes: Option<u64>,
    },
    /// Any writer (tests).
    Writer(Box<dyn Write + Send>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Stdout => f.write_str("Stdout"),
            Target::File { path, .. } => write!(f, "File({})", path.display()),
            Target::Writer(_) => f.write_str("Writer"),
        }
    }
}

/// A further destination of sealed events, with a queue of its own (the syslog sink). The
/// writer calls it after writing its own output, in chain order.
pub trait Forward: Send {
    /// `line` is the sealed JSON line without its newline; `event` carries its `seq`.
    fn forward(&mut self, event: &Event, line: &[u8]);
    /// Delivers what is queued (bounded wait) and stops.
    fn close(&mut self);
    /// Called from [`Sink::close`] before the writer is told to finish, so the bounded wait
    /// starts even while the writer is blocked on this forwarder's full queue.
    fn closer(&self) -> Box<dyn Fn() + Send + Sync>;
}

enum Message {
    Event(Box<Event>),
    Close,
}

/// The handle sessions emit through.
pub struct Sink {
    tx: SyncSender<Message>,
    on_full: OnFull,
    /// Dropped since the last written event (the writer reports and resets it).
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    writer: Mutex<Option<JoinHandle<()>>>,
    closers: Vec<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("on_full", &self.on_full)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Opens the target and starts the writer, which writes `chain_start` first.
    pub fn start(
        target: Target,
        queue: usize,
        on_full: OnFull,
        k0: ChainKey,
        metrics: Arc<Metrics>,
    ) -> Result<Sink, String> {
        Sink::start_with(Some(target), Vec::new(), queue, on_full, k0, metrics)
    }

    /// Like [`Sink::start`], with forwarders after the target (or instead of one).
    pub fn start_with(
        target: Option<Target>,
        forwards: Vec<Box<dyn Forward>>,
        queue: usize,
        on_full: OnFull,
        k0: ChainKey,
        metrics: Arc<Metrics>,
    ) -> Result<Sink, String> {
        let output = target.map(Output::open).transpose()?;
        let closers = forwards.iter().map(|f| f.closer()).collect();
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            output,
            forwards,
            chain: Chain::start(k0),
            seq: 0,
            dropped: dropped.clone(),
            dropped_total: 0,
            metrics: metrics.clone(),
            failing: false,
        };
        let handle = std::thread::Builder::new()
            .name("pgshroud-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(Sink {
            tx,
            on_full,
            dropped,
            metrics,
            writer: Mutex::new(Some(handle)),
            closers,
        })
    }

    /// Queues an event. With `block` this waits while the queue is full.
    pub fn emit(&self, event: Event) {
        let message = Message::Event(Box::new(event));
        match self.on_full {
            OnFull::Block => match self.tx.try_send(message) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(message)) => wait_for_room(&self.tx, message),
            },
            OnFull::Drop => {
                if let Err(TrySendError::Full(_)) = self.tx.try_send(message) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.metrics.audit_dropped();
                }
            }
        }
    }

    /// Shutdown has begun: forwarders waiting for an absent destination (a syslog collector)
    /// give up after their bounded wait, so statements blocked on a full queue can end.
    pub fn begin_close(&self) {
        for closer in &self.closers {
            closer();
        }
    }

    /// Writes what is queued, then `chain_end`, and waits for the writer to finish. Events
    /// emitted afterwards are lost.
    pub fn close(&self) {
        let handle = match self.writer.lock() {
            Ok(mut w) => w.take(),
            Err(_) => None,
        };
        if let Some(handle) = handle {
            self.begin_close();
            let _ = self.tx.send(Message::Close);
            let _ = handle.join();
        }
    }
}

/// Waits for room in a full queue. On a multi-threaded tokio runtime the wait is announced
/// with `block_in_place`, so the runtime hands this worker's other tasks (the metrics endpoint,
/// other sessions, shutdown) to another thread instead of stalling them behind the audit
/// writer: with `block` and an absent collector, every session may be waiting here at once.
fn wait_for_room(tx: &SyncSender<Message>, message: Message) {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(|| {
            let _ = tx.send(message);
        });
    } else {
        let _ = tx.send(message);
    }
}

struct Writer {
    output: Option<Output>,
    forwards: Vec<Box<dyn Forward>>,
    chain: Chain,
    seq: u64,
    dropped: Arc<AtomicU64>,
    dropped_total: u64,
    metrics: Arc<Metrics>,
    /// The last write failed (logged once per run of failures).
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        let mut start = Event::new(EventType::ChainStart);
        start.version = Some(env!("CARGO_PKG_VERSION"));
        start.prev_chain = self
            .output
            .as_ref()
            .and_then(|o| o.previous_chain)
            .map(hex::encode);
        self.write(start);
        loop {
            let message = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    // Queue drained: make what was written visible, then wait.
                    self.flush();
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            match message {
                Message::Event(e) => self.write(*e),
                Message::Close => break,
            }
        }
        // Whatever is still queued was emitted before close: write it before the end marker.
        while let Ok(Message::Event(e)) = rx.try_recv() {
            self.write(*e);
        }
        let mut end = Event::new(EventType::ChainEnd);
        end.events = Some(self.seq + 1);
        self.write(end);
        self.flush();
        for forward in &mut self.forwards {
            forward.close();
        }
    }

    fn write(&mut self, mut event: Event) {
        event.seq = self.seq;
        self.seq += 1;
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.dropped_total += dropped;
            event.dropped = Some(dropped);
        }
        let line = self.chain.seal(&event.canonical());
        match self.output.as_mut().map(|o| o.write(&line)) {
            Some(Ok(())) | None => {
                self.failing = false;
                self.metrics.audit_event();
            }
            Some(Err(e)) => {
                if !self.failing {
                    tracing::error!("cannot write audit events: {e}");
                }
                self.failing = true;
            }
        }
        let without_newline = &line[..line.len() - 1];
        for forward in &mut self.forwards {
            forward.forward(&event, without_newline);
        }
        if self.output.as_ref().is_some_and(Output::wants_rotation) {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let Some(output) = self.output.as_mut() else {
            return;
        };
        match output.rotate() {
            Ok(()) => {
                let mut first = Event::new(EventType::FileStart);
                first.prev_chain = Some(hex::encode(self.chain.previous()));
                self.write(first);
            }
            Err(e) => tracing::error!("cannot rotate the audit file: {e}"),
        }
    }

    fn flush(&mut self) {
        let Some(output) = self.output.as_mut() else {
            return;
        };
        if let Err(e) = output.flush() {
            tracing::error!("cannot flush audit events: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;

    /// A writer that holds every write until the test lets it go.
    struct Gated {
        gate: Arc<Mutex<()>>,
        out: Arc<Mutex<Vec<u8>>>,
        wrote: Sender<()>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.gate.lock().unwrap();
            self.out.lock().unwrap().extend_from_slice(buf);
            let _ = self.wrote.send(());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink, its writer's gate, what it wrote, and a signal per write.
    type GatedSink = (
        Sink,
        Arc<Mutex<()>>,
        Arc<Mutex<Vec<u8>>>,
        mpsc::Receiver<()>,
    );

    fn gated(queue: usize, on_full: OnFull) -> GatedSink {
        let gate = Arc::new(Mutex::new(()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (wrote, writes) = mpsc::channel();
        let writer = Gated {
            gate: gate.clone(),
            out: out.clone(),
            wrote,
        };
        let sink = Sink::start(
            Target::Writer(Box::new(writer)),
            queue,
            on_full,
            ChainKey::new([1; 32]),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        (sink, gate, out, writes)
    }

    fn lines(out: &Arc<Mutex<Vec<u8>>>) -> Vec<serde_json::Value> {
        String::from_utf8(out.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn statement() -> Event {
        Event::new(EventType::Statement)
    }

    #[test]
    fn a_segment_starts_and_ends_with_its_markers_and_numbers_events() {
        let (sink, _gate, out, _writes) = gated(8, OnFull::Block);
        sink.emit(statement());
        sink.emit(statement());
        sink.close();
        let events = lines(&out);
        let types: Vec<_> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["chain_start", "statement", "statement", "chain_end"]
        );
        let seqs: Vec<_> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(events[3]["events"], 4);
    }

    #[test]
    fn full_queue_with_drop_counts_and_reports_in_the_next_event() {
        let (sink, gate, out, writes) = gated(1, OnFull::Drop);
        let held = gate.lock().unwrap();
        // The writer takes the first event and waits on the gate; the second fills the queue.
        sink.emit(statement());
        sink.emit(statement());
        sink.emit(statement());
        sink.emit(statement());
        drop(held);
        // chain_start, then the events that were not dropped.
        writes.recv().unwrap();
        sink.emit(statement());
        sink.close();
        let events = lines(&out);
        let dropped: u64 = events.iter().filter_map(|e| e["dropped"].as_u64()).sum();
        let statements = events.iter().filter(|e| e["event"] == "statement").count();
        assert!(dropped >= 1, "{events:?}");
        assert_eq!(statements as u64 + dropped, 5);
        let metric = format!("pgshroud_audit_dropped_total {dropped}");
        assert!(sink.metrics.encode().contains(&metric));
    }

    #[test]
    fn full_queue_with_block_waits_and_loses_nothing() {
        let (sink, gate, out, _writes) = gated(1, OnFull::Block);
        let sink = Arc::new(sink);
        let held = gate.lock().unwrap();
        let emitter = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    sink.emit(statement());
                }
            })
        };
        // The writer is stuck on the gate with a queue of one: the emitter cannot finish.
        assert!(!emitter.is_finished());
        drop(held);
        emitter.join().unwrap();
        sink.close();
        let events = lines(&out);
        assert_eq!(
            events.iter().filter(|e| e["event"] == "statement").count(),
            5
        );
        assert!(events.iter().all(|e| e.get("dropped").is_none()));
    }

    #[test]
    fn a_line_cut_short_by_a_crash_stays_on_its_own_line() {
        let dir = std::env::temp_dir().join(format!("pgshroud-audit-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, "{\"ts\":\"2026").unwrap();
        let sink = Sink::start(
            Target::File {
                path: path.clone(),
                rotate_bytes: None,
            },
            4,
            OnFull::Block,
            ChainKey::new([4; 32]),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        sink.close();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "{\"ts\":\"2026");
        assert!(lines[1].contains("\"event\":\"chain_start\""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_rotate_by_size_and_the_new_file_links_to_the_old() {
        let dir =
            std::env::temp_dir().join(format!("pgshroud-audit-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let sink = Sink::start(
            Target::File {
                path: path.clone(),
                rotate_bytes: Some(400),
            },
            16,
            OnFull::Block,
            ChainKey::new([2; 32]),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        for _ in 0..10 {
            sink.emit(statement());
        }
        sink.close();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() > 2, "{files:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current
            .lines()
            .next()
            .unwrap()
            .contains("\"event\":\"file_start\""));
        assert!(current
            .lines()
            .last()
            .unwrap()
            .contains("\"event\":\"chain_end\""));
        // Rotated files sort by name; the current file comes last.
        let mut ordered: Vec<_> = files.iter().filter(|f| **f != path).cloned().collect();
        ordered.push(path.clone());
        let checked = super::super::verify::verify(&ordered, &ChainKey::new([2; 32])).unwrap();
        assert_eq!(checked.events, 12 + files.len() as u64 - 1);
        assert!(checked.unterminated.is_empty());
        // A restart appends a new segment that names the last chain value before it.
        let before = last_chain(&path).unwrap();
        let sink = Sink::start(
            Target::File {
                path: path.clone(),
                rotate_bytes: None,
            },
            16,
            OnFull::Block,
            ChainKey::new([2; 32]),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        sink.close();
        let text = std::fs::read_to_string(&path).unwrap();
        let restart = text.lines().rev().nth(1).unwrap();
        assert!(restart.contains(&format!("\"prev_chain\":\"{}\"", hex::encode(before))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
