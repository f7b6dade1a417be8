//! Retention (`--retention`): a FIFO of deadlines drained by one task woken by a [`Notify`].
//! Records all share one TTL, so arrival order is expiry order.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::record::now_ms;

#[derive(Debug)]
pub(super) struct Expiry {
    /// How long a record lives, in ms.
    ttl_ms: i64,
    /// (deadline in ms since the epoch, key) in arrival order.
    queue: Mutex<VecDeque<(i64, Arc<str>)>>,
    /// Wakes the expiry task when a deadline lands in an empty queue (it sleeps for a day then).
    wake: Notify,
}

impl Expiry {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as i64,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        }
    }

    /// Whether a record that arrived at `received_ms` is past its TTL at `now`.
    pub(super) fn is_expired(&self, received_ms: i64, now: i64) -> bool {
        received_ms + self.ttl_ms <= now
    }

    /// Schedules the expiry of a record just stored under `key`.
    pub(super) fn schedule(&self, received_ms: i64, key: Arc<str>) {
        let was_empty = {
            let mut q = self.queue.lock();
            q.push_back((received_ms + self.ttl_ms, key));
            q.len() == 1
        };
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Schedules the expiry of a replayed record (before the expiry task runs: no wake-up).
    pub(super) fn schedule_replayed(&self, received_ms: i64, key: Arc<str>) {
        self.queue
            .lock()
            .push_back((received_ms + self.ttl_ms, key));
    }

    /// Takes the next key whose deadline is at or before `now`.
    pub(super) fn pop_due(&self, now: i64) -> Option<Arc<str>> {
        let mut q = self.queue.lock();
        match q.front() {
            Some((deadline, _)) if *deadline <= now => q.pop_front().map(|(_, k)| k),
            _ => None,
        }
    }

    /// Calls `expire_due` whenever the earliest deadline has passed, until `stop` is cancelled.
    pub(super) async fn run(&self, stop: CancellationToken, mut expire_due: impl FnMut()) {
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            // Registered before looking at the queue, so a push in between is not missed.
            wake.as_mut().enable();
            let next = self.queue.lock().front().map(|(d, _)| *d);
            let sleep = match next {
                Some(deadline) => Duration::from_millis((deadline - now_ms()).max(0) as u64),
                None => Duration::from_secs(24 * 3600),
            };
            if next.is_some() && sleep.is_zero() {
                expire_due();
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = &mut wake => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
