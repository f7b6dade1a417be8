//! Waking this node's waiters when a callback is stored on any node: one connection per node
//! `LISTEN`s on the channel every insert `NOTIFY`s with its key; a notification wakes the waiters
//! of that key. Notifications are hints: a waiter always reads the database itself, and after
//! the listener reconnects (notifications sent meanwhile are lost) every waiter reads again.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::CHANNEL;

/// This node's waiters, by key.
#[derive(Debug, Default)]
pub(super) struct Wakeups {
    /// One [`Notify`] per key that has waiters, with how many; removed with its last waiter.
    keys: Mutex<HashMap<Vec<u8>, Waiters>>,
    /// The prefix watchers (`GET /watch`): woken by a callback under any key.
    any: Notify,
    /// How many prefix watchers there are: no wake-up of `any` without one.
    watchers: AtomicUsize,
    /// Stubs or verifiers changed on some node (or may have: a reconnection).
    pub(super) definitions: Notify,
}

/// A prefix watcher's registration; unregisters on drop.
#[derive(Debug)]
pub(super) struct AnyKey(Arc<Wakeups>);

impl AnyKey {
    /// The wake-up to wait for: enable it *before* reading the database.
    pub(super) fn notify(&self) -> &Notify {
        &self.0.any
    }
}

impl Drop for AnyKey {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wake-up of one key's waiters and how many there are.
type Waiters = (Arc<Notify>, usize);

/// A waiter's registration for one key; unregisters on drop.
#[derive(Debug)]
pub(super) struct Subscription {
    wakeups: Arc<Wakeups>,
    key: Vec<u8>,
    notify: Arc<Notify>,
}

impl Subscription {
    /// The wake-up to wait for. Enable the returned future *before* reading the database, so a
    /// notification that arrives during the read is not missed.
    pub(super) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut keys = self.wakeups.keys.lock();
        if let Some((_, count)) = keys.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

impl Wakeups {
    /// Registers a waiter for `key`.
    pub(super) fn subscribe(self: &Arc<Self>, key: &[u8]) -> Subscription {
        let notify = {
            let mut keys = self.keys.lock();
            let entry = keys
                .entry(key.to_vec())
                .or_insert_with(|| (Arc::new(Notify::new()), 0));
            entry.1 += 1;
            Arc::clone(&entry.0)
        };
        Subscription {
            wakeups: Arc::clone(self),
            key: key.to_vec(),
            notify,
        }
    }

    /// Registers a watcher of every key.
    pub(super) fn subscribe_any(self: &Arc<Self>) -> AnyKey {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        AnyKey(Arc::clone(self))
    }

    /// Wakes the watchers of every key.
    fn wake_any(&self) {
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.any.notify_waiters();
        }
    }

    /// Wakes the waiters of `key` (a callback was stored under it), and the prefix watchers.
    pub(super) fn wake(&self, key: &[u8]) {
        self.wake_any();
        let notify = self.keys.lock().get(key).map(|(n, _)| Arc::clone(n));
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter (notifications may have been lost).
    fn wake_all(&self) {
        self.wake_any();
        self.definitions.notify_one();
        let all: Vec<Arc<Notify>> = self
            .keys
            .lock()
            .values()
            .map(|(n, _)| Arc::clone(n))
            .collect();
        for notify in all {
            notify.notify_waiters();
        }
    }
}

/// Listens on [`CHANNEL`] until `shutdown`: every notification wakes the waiters of the keys
/// it names, and every (re)connection wakes every waiter (what was notified while nobody
/// listened is caught up by reading again).
pub(super) async fn listen(
    config: tokio_postgres::Config,
    wakeups: Arc<Wakeups>,
    shutdown: CancellationToken,
) {
    let again = Arc::clone(&wakeups);
    super::listener::listen(
        config,
        CHANNEL,
        |payload| wake_payload(&wakeups, payload),
        || again.wake_all(),
        shutdown,
    )
    .await;
}

/// A notification names the keys stored (hex, joined by `,`: see `notifier.rs`).
fn wake_payload(wakeups: &Wakeups, payload: &str) {
    if payload == super::DEFINITIONS_CHANGED {
        wakeups.definitions.notify_one();
        return;
    }
    for hex in payload.split(',') {
        match decode_hex(hex) {
            Some(key) => wakeups.wake(&key),
            None => tracing::debug!(%hex, "ignored a notified key that is not hex"),
        }
    }
}

/// The key of a notification (`encode(key, 'hex')` in SQL).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_payloads_decode_to_their_keys() {
        assert_eq!(decode_hex("6a6f622d3432").as_deref(), Some(&b"job-42"[..]));
        assert_eq!(decode_hex("00ff").as_deref(), Some(&[0u8, 255][..]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[tokio::test]
    async fn a_wake_reaches_the_waiters_of_its_key_only_and_the_last_one_out_cleans_up() {
        let wakeups = Arc::new(Wakeups::default());
        let a = wakeups.subscribe(b"a");
        let b = wakeups.subscribe(b"b");
        {
            let woken_a = a.notify().notified();
            let woken_b = b.notify().notified();
            tokio::pin!(woken_a, woken_b);
            woken_a.as_mut().enable();
            woken_b.as_mut().enable();
            wakeups.wake(b"a");
            assert!(futures_util::poll!(woken_a).is_ready());
            assert!(futures_util::poll!(woken_b.as_mut()).is_pending());
        }
        drop((a, b));
        assert!(wakeups.keys.lock().is_empty());
    }
}
