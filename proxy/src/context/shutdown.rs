//! Shutdown stages every task can watch: first drain (finish what is running, accept
//! nothing new), then, after `shutdown_timeout_secs`, force.

use std::future::Future;
use std::pin::Pin;

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

/// A boxed wait for a stage (see [`stage_reached`]): `Unpin`, and one pointer in the task
/// that holds it.
pub type StageWait = Pin<Box<dyn Future<Output = Stage> + Send>>;

/// Resolves with the stage once it is `at_least` or later (or the trigger is gone: then with
/// `Forced`, the end of the process). A session's relay wraps it in
/// `session::woken::WhenWoken`, so the watch (a lock per poll) is polled only when it fires.
pub fn stage_reached(watch: ShutdownWatch, at_least: Stage) -> StageWait {
    let mut watch = watch;
    Box::pin(async move {
        match watch.wait_for(|s| *s >= at_least).await {
            Ok(stage) => *stage,
            Err(_) => Stage::Forced,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wait_resolves_at_its_stage_and_not_before() {
        let (trigger, watch) = ShutdownTrigger::new();
        let draining = stage_reached(watch.clone(), Stage::Draining);
        let mut forced = stage_reached(watch, Stage::Forced);
        let pending = |f: &mut StageWait| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            f.as_mut().poll(&mut cx).is_pending()
        };
        assert!(pending(&mut forced));
        trigger.set(Stage::Draining);
        assert_eq!(draining.await, Stage::Draining);
        assert!(pending(&mut forced), "draining is not forced");
        trigger.set(Stage::Forced);
        assert_eq!(forced.await, Stage::Forced);
    }

    #[tokio::test]
    async fn a_wait_begun_after_the_stage_resolves_at_once() {
        let (trigger, watch) = ShutdownTrigger::new();
        trigger.set(Stage::Forced);
        assert_eq!(stage_reached(watch, Stage::Draining).await, Stage::Forced);
    }

    #[tokio::test]
    async fn a_dropped_trigger_forces() {
        let (trigger, watch) = ShutdownTrigger::new();
        let wait = stage_reached(watch, Stage::Draining);
        drop(trigger);
        assert_eq!(wait.await, Stage::Forced);
    }
}
