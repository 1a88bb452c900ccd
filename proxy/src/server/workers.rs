//! Session threads: each runs its own single-threaded tokio runtime, and a session lives on
//! one of them from its first byte to its last.
//!
//! Why: a session's two directions (client to server, server to client) and its timers then
//! wake each other on the same thread. On the work-stealing runtime they often woke another
//! worker instead (a futex and an eventfd write per transaction), and on a small machine that
//! wake-up cost more than everything pgshroud does to a message (bench/RESULTS.md, issue 25).
//! PgBouncer is one thread for the same reason; several threads let the proxy still use
//! more than one core.
//!
//! Measured on 2 cores: one session thread (the default there: half the CPUs) spends less
//! CPU per transaction than the work-stealing runtime, whose two workers wake each other (a
//! futex and an epoll_wait more per transaction); two session threads on 2 cores gave a worse
//! p99 at 16 clients (a session waits for its busy thread). `session_threads = 0` keeps the
//! shared work-stealing runtime. See bench/RESULTS.md (the relay notes).
//!
//! The acceptor (on the main runtime) hands each accepted socket to the thread serving the
//! fewest sessions. A thread blocked by one session (a CPU-heavy statement analysis, a full
//! audit queue with `audit_on_full = block`) stalls only the sessions on that thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tracing::{error, warn};

use crate::context::ProxyContext;
use crate::session::{self, Admission};

/// One accepted connection on its way to a session thread.
struct Handover {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    admission: Admission,
    /// Held for as long as the session runs (the connection limit, or the refusal budget).
    permit: OwnedSemaphorePermit,
}

struct Worker {
    sender: mpsc::UnboundedSender<Handover>,
    /// Sessions handed to this thread and not yet ended.
    live: Arc<AtomicUsize>,
    /// Fires when the thread has ended every session after the senders closed.
    done: oneshot::Receiver<()>,
}

impl Worker {
    /// A worker's hand-over channel and the future that serves it (on a thread's runtime, or
    /// as a task of the shared one); the future signals `done` once its sessions have ended.
    fn new(ctx: &Arc<ProxyContext>) -> (Worker, impl std::future::Future<Output = ()> + Send) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (done_tx, done) = oneshot::channel();
        let live = Arc::new(AtomicUsize::new(0));
        let serving = serve_handovers(receiver, ctx.clone(), live.clone());
        let serving = async move {
            serving.await;
            let _ = done_tx.send(());
        };
        (Worker { sender, live, done }, serving)
    }
}

/// The session threads of one listener.
pub struct SessionThreads {
    workers: Vec<Worker>,
}

impl SessionThreads {
    /// Starts `count` threads; with 0, sessions run on the calling (work-stealing) runtime,
    /// handed over by one task instead of a thread. Must be called within a runtime.
    pub fn start(count: usize, ctx: &Arc<ProxyContext>) -> Result<SessionThreads, String> {
        if count == 0 {
            let (worker, serving) = Worker::new(ctx);
            tokio::spawn(serving);
            return Ok(SessionThreads {
                workers: vec![worker],
            });
        }
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let (worker, serving) = Worker::new(ctx);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start session thread {index}: {e}"))?;
            std::thread::Builder::new()
                .name(format!("pgshroud-session-{index}"))
                .spawn(move || runtime.block_on(serving))
                .map_err(|e| format!("cannot start session thread {index}: {e}"))?;
            workers.push(worker);
        }
        Ok(SessionThreads { workers })
    }

    /// Sessions running now, across threads.
    pub fn live(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.live.load(Ordering::Relaxed))
            .sum()
    }

    /// Hands a connection to the thread serving the fewest sessions.
    pub fn hand_over(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        admission: Admission,
        permit: OwnedSemaphorePermit,
    ) {
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                warn!(%peer, "connection dropped: cannot hand it to a session thread: {e}");
                return;
            }
        };
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.live.load(Ordering::Relaxed))
        else {
            return;
        };
        // Counted here, not on arrival, so a burst of connects spreads over the threads.
        worker.live.fetch_add(1, Ordering::Relaxed);
        let handover = Handover {
            tcp,
            peer,
            admission,
            permit,
        };
        if worker.sender.send(handover).is_err() {
            worker.live.fetch_sub(1, Ordering::Relaxed);
            error!(%peer, "connection dropped: its session thread has stopped");
        }
    }

    /// Stops handing over; the threads end once their sessions have. The caller waits with a
    /// timeout, forces, and waits again.
    pub fn close(self) -> Draining {
        let live: Vec<Arc<AtomicUsize>> = self.workers.iter().map(|w| w.live.clone()).collect();
        let mut done = Vec::with_capacity(self.workers.len());
        for worker in self.workers {
            drop(worker.sender);
            done.push(worker.done);
        }
        Draining { done, live }
    }
}

/// Session threads that take no new connections and are ending their sessions.
pub struct Draining {
    done: Vec<oneshot::Receiver<()>>,
    live: Vec<Arc<AtomicUsize>>,
}

impl Draining {
    /// Sessions still running.
    pub fn live(&self) -> usize {
        self.live.iter().map(|l| l.load(Ordering::Relaxed)).sum()
    }

    /// Waits until every thread has ended; safe to call again after a timeout cut it short.
    pub async fn wait(&mut self) {
        for d in &mut self.done {
            let _ = d.await;
        }
    }
}

/// A session thread's loop: serves every connection handed over until the channel closes,
/// then waits for its sessions to end.
async fn serve_handovers(
    mut receiver: mpsc::UnboundedReceiver<Handover>,
    ctx: Arc<ProxyContext>,
    live: Arc<AtomicUsize>,
) {
    let mut sessions = JoinSet::new();
    loop {
        let handover = tokio::select! {
            handover = receiver.recv() => handover,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let Some(Handover {
            tcp,
            peer,
            admission,
            permit,
        }) = handover
        else {
            break;
        };
        let ctx = ctx.clone();
        let live = live.clone();
        sessions.spawn(async move {
            // Decremented however the session ends (a panic unwinds through the guard).
            let _counted = Counted(live);
            match TcpStream::from_std(tcp) {
                Ok(tcp) => session::serve(tcp, peer, ctx, admission).await,
                Err(e) => warn!(%peer, "connection dropped: cannot register it: {e}"),
            }
            drop(permit);
        });
    }
    while sessions.join_next().await.is_some() {}
}

/// Counts a session out when dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    /// Bytes of a session's task (its future), held by every idle connection. Its largest
    /// state sets it: the handshake, login and catalog look-up are boxed so that only the
    /// relay's state counts (7.6 KiB before, 3.3 KiB after). Since the lean branch the
    /// login's locals are in a boxed future of their own and the statement path (~200 B,
    /// no longer an `Arc` to a 2 KiB state) sits inline: 3,600 bytes (debug build).
    const SESSION_FUTURE_BUDGET: usize = 3700;

    #[test]
    fn an_idle_session_s_task_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let layer = crate::config::ConfigLayer {
                upstream: Some("postgres://127.0.0.1:1?sslmode=disable".into()),
                ..Default::default()
            };
            let settings = crate::config::Settings::resolve(layer).unwrap();
            let (_trigger, watch) = crate::context::shutdown::ShutdownTrigger::new();
            let ctx = std::sync::Arc::new(crate::context::ProxyContext::new(settings, watch).unwrap());
            let session = crate::session::serve(tcp, addr, ctx, crate::session::Admission::Admitted);
            let size = std::mem::size_of_val(&session);
            assert!(
                size <= SESSION_FUTURE_BUDGET,
                "a session's future is {size} bytes (budget {SESSION_FUTURE_BUDGET}): box the state that grew"
            );
        });
    }
}
