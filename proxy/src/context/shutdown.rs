//! Shutdown stages every task can watch: first drain (finish what is running, accept
//! nothing new), then, after `shutdown_timeout_secs`, force.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Running,
    /// Sessions end at their next idle point, outside a transaction.
    Draining,
    /// Sessions end now.
    Forced,
}

/// The sending side, held by whoever handles signals.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<Stage>);

/// The receiving side, one clone per task.
pub type ShutdownWatch = watch::Receiver<Stage>;

impl ShutdownTrigger {
    pub fn new() -> (ShutdownTrigger, ShutdownWatch) {
        let (tx, rx) = watch::channel(Stage::Running);
        (ShutdownTrigger(tx), rx)
    }

    pub fn set(&self, stage: Stage) {
        self.0.send_if_modified(|current| {
            let advance = stage > *current;
            if advance {
                *current = stage;
            }
            advance
        });
    }

    pub fn subscribe(&self) -> ShutdownWatch {
        self.0.subscribe()
    }
}

/// Waits until the stage is at least `stage` (or the trigger is gone).
pub async fn reached(watch: &mut ShutdownWatch, stage: Stage) {
    let _ = watch.wait_for(|s| *s >= stage).await;
}
