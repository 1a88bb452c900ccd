//! Polling a future only when its own waker fired.
//!
//! A session's task runs both relay directions and the shutdown watch side by side in one
//! `select!`, which polls every branch whenever the task wakes. Each poll of a branch that
//! is not ready is not free: a socket read still waiting takes the socket's waiter lock in
//! tokio (to update its waker), the shutdown watch takes the watch's, and the direction's
//! state machine is entered and left. On the pass-through path every relayed read woke the
//! task once and paid for all three (issue 25's profile: `poll_notified`, tokio readiness).
//! [`WhenWoken`] hands its future a waker of its own and polls it only after that waker
//! fired: a wake for the server's socket polls the server -> client direction alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// `inner`, polled on its first poll and then only after its own waker fired.
pub struct WhenWoken<F> {
    inner: F,
    woken: Arc<Woken>,
    /// `woken` as a waker, handed to `inner` when it is polled.
    own: Waker,
    /// The task's waker as last stored in `woken` (tokio's stays the same for a task's life,
    /// so it is stored once).
    task: Option<Waker>,
}

impl<F> WhenWoken<F> {
    pub fn new(inner: F) -> WhenWoken<F> {
        let woken = Arc::new(Woken {
            // The first poll polls `inner`, which registers what it waits for.
            fired: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        WhenWoken {
            inner,
            own: Waker::from(woken.clone()),
            woken,
            task: None,
        }
    }
}

impl<F: Future + Unpin> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // The task's waker is stored before the flag is read: a wake in between finds it.
        if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let waker = cx.waker().clone();
            if let Ok(mut task) = this.woken.task.lock() {
                *task = Some(waker.clone());
            }
            this.task = Some(waker);
        }
        if !this.woken.fired.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before `inner` runs: a wake during its poll is kept for the next one.
        this.woken.fired.store(false, Ordering::Release);
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.own))
    }
}

/// What `inner` wakes: marks the gate fired, then wakes the task that polls it.
struct Woken {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Ok(task) = self.task.lock() {
            if let Some(task) = task.as_ref() {
                task.wake_by_ref();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;

    /// Polls once, with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_its_waker_fired() {
        let notify = Arc::new(Notify::new());
        let polls = Arc::new(AtomicUsize::new(0));
        let inner = {
            let (notify, polls) = (notify.clone(), polls.clone());
            Box::pin(async move {
                let notified = notify.notified();
                tokio::pin!(notified);
                std::future::poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::Relaxed);
                    notified.as_mut().poll(cx)
                })
                .await;
                "done"
            })
        };
        let mut gate = WhenWoken::new(inner);
        for _ in 0..100 {
            assert!(poll_once(&mut gate).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled once to register, then left alone"
        );
        notify.notify_one();
        assert_eq!(gate.await, "done");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_wake_reaches_the_task_that_polled_last() {
        // Polled by a task, woken from another thread: the task is woken and finishes.
        let notify = Arc::new(Notify::new());
        let inner = {
            let notify = notify.clone();
            Box::pin(async move { notify.notified().await })
        };
        let waiting = tokio::spawn(WhenWoken::new(inner));
        tokio::task::yield_now().await;
        std::thread::spawn(move || notify.notify_one())
            .join()
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the wake must reach the task")
            .unwrap();
    }
}
