//! The listener: accepts clients under a connection limit, hands each to a session task, and
//! drives graceful shutdown (drain, then force after `shutdown_timeout_secs`). Also here: the
//! process's log set-up and the readiness it reports on `/readyz`.

pub mod logging;
pub mod readiness;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::context::shutdown::{reached, ShutdownTrigger, Stage};
use crate::context::ProxyContext;
use crate::server::readiness::ProxyReadiness;
use crate::server::workers::SessionThreads;
use crate::session::Admission;

/// A proxy listening in this process (used by `serve` and by tests).
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// Where the admin HTTP listener is bound, when enabled.
    pub admin_addr: Option<SocketAddr>,
    pub context: Arc<ProxyContext>,
    pub trigger: ShutdownTrigger,
    pub task: tokio::task::JoinHandle<()>,
}

impl RunningProxy {
    /// Binds the listen address and starts accepting.
    pub async fn start(settings: Settings) -> Result<RunningProxy, String> {
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
            format!(
                "invalid setting `listen`: cannot bind {}: {e}",
                settings.listen
            )
        })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (trigger, watch) = ShutdownTrigger::new();
        let ctx = Arc::new(ProxyContext::new(settings, watch)?);
        let admin_addr = match ctx.settings.admin_listen {
            Some(admin) => Some(start_admin(admin, &ctx).await?),
            None => None,
        };
        // Rules reload on SIGHUP and on file change for as long as the listener runs.
        let watcher = ctx
            .protection
            .clone()
            .map(|live| tokio::spawn(live.watch(ctx.metrics.clone())));
        let threads = SessionThreads::start(ctx.settings.limits.session_threads, &ctx)?;
        let accepting = accept_loop(listener, ctx.clone(), trigger.clone(), threads);
        let task = tokio::spawn(async move {
            accepting.await;
            if let Some(watcher) = watcher {
                watcher.abort();
            }
        });
        Ok(RunningProxy {
            addr,
            admin_addr,
            context: ctx,
            trigger,
            task,
        })
    }

    /// Drains and waits for every session to end, then flushes the audit queue and ends
    /// its chain segment.
    pub async fn shutdown(self) {
        self.trigger.set(Stage::Draining);
        if let Some(audit) = &self.context.audit {
            // Sessions blocked on a full audit queue (a syslog collector away, `block`) must
            // be able to end within the drain.
            audit.begin_close();
        }
        let _ = self.task.await;
        if let Some(audit) = self.context.audit.clone() {
            let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        }
    }
}

/// Binds the admin listener and serves `/metrics`, `/healthz`, `/readyz` until shutdown.
async fn start_admin(addr: SocketAddr, ctx: &Arc<ProxyContext>) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("invalid setting `admin_listen`: cannot bind {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let readiness = Arc::new(ProxyReadiness::new(ctx));
    let mut shutdown = ctx.shutdown.clone();
    tokio::spawn(crate::ops::admin::serve(
        listener,
        ctx.metrics.clone(),
        readiness,
        async move { reached(&mut shutdown, Stage::Forced).await },
    ));
    Ok(bound)
}

/// Clients over the limit still get a proper `53300` error; beyond this many such refusals
/// in flight, further connections are closed without a word.
const MAX_PENDING_REFUSALS: usize = 64;

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ProxyContext>,
    trigger: ShutdownTrigger,
    threads: SessionThreads,
) {
    let limit = Arc::new(Semaphore::new(ctx.settings.limits.max_client_connections));
    let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Duration::from_millis(10);
    info!(listen = %ctx.settings.listen, upstream = %ctx.settings.upstream.address(), "pgshroud accepting connections");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = reached(&mut shutdown, Stage::Draining) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                error!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => threads.hand_over(tcp, peer, Admission::Admitted, permit),
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => threads.hand_over(tcp, peer, Admission::OverLimit, permit),
                Err(_) => warn!(%peer, "connection dropped: too many clients waiting for refusal"),
            },
        }
    }
    drop(listener);
    let mut draining = threads.close();
    info!(sessions = draining.live(), "draining sessions");
    let grace = ctx.settings.limits.shutdown_timeout;
    let drained = tokio::time::timeout(grace, draining.wait()).await;
    if drained.is_err() {
        warn!(
            sessions = draining.live(),
            "shutdown timeout reached; closing remaining sessions"
        );
        trigger.set(Stage::Forced);
        draining.wait().await;
    }
    info!("all sessions closed");
}
