//! Waiting for a key's records without polling and without missed wake-ups.
//!
//! A waiter checks the slot *and* subscribes to its watch channel under the same shard lock
//! that a writer holds while it appends and sends. Whatever lands after the check is therefore a
//! change the receiver has not seen yet (the wiremock-rs "register, then check" rule, made
//! atomic by the lock).

use std::sync::{Arc, atomic::Ordering};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    records::Store,
    slot::{SlotView, Stored},
};

/// How [`Store::wait_for_count`] ended; each carries how many records the key held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountWait {
    /// At least the wanted number arrived.
    Reached(usize),
    /// The deadline passed first.
    TimedOut(usize),
    /// The cancel token fired first.
    Cancelled(usize),
}

/// How a wait ended.
#[derive(Debug)]
pub(crate) enum WaitEnd<T> {
    Ready(T),
    TimedOut,
    ShuttingDown,
}

impl Store {
    /// Waits until `key` holds at least `count` records — woken by the insert itself, never by
    /// polling — or until `deadline` or `cancel`. For in-process users such as the harness.
    pub async fn wait_for_count(
        &self,
        key: &str,
        count: usize,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> CountWait {
        match self
            .wait_until(key, deadline, cancel, |slot| {
                (slot.len() >= count).then(|| slot.len())
            })
            .await
        {
            WaitEnd::Ready(n) => CountWait::Reached(n),
            WaitEnd::TimedOut => CountWait::TimedOut(self.count(key)),
            WaitEnd::ShuttingDown => CountWait::Cancelled(self.count(key)),
        }
    }

    /// Waits for a record of `key` newer than `after`; answers with the latest.
    pub(crate) async fn wait_latest_after(
        &self,
        key: &str,
        after: u64,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
    ) -> WaitEnd<Bytes> {
        self.wait_until(key, deadline, shutdown, |slot| slot.latest_after(after))
            .await
    }

    /// Waits until `key` holds at least `need` records; answers with all of them.
    pub(crate) async fn wait_all(
        &self,
        key: &str,
        need: usize,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
    ) -> WaitEnd<Vec<Bytes>> {
        self.wait_until(key, deadline, shutdown, |slot| {
            (slot.len() >= need).then(|| slot.all())
        })
        .await
    }

    /// Waits for records of `key` newer than `after`; answers with those, oldest first.
    pub(crate) async fn wait_newer(
        &self,
        key: &str,
        after: u64,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
    ) -> WaitEnd<Vec<Stored>> {
        self.wait_until(key, deadline, shutdown, |slot| {
            let newer = slot.after(after);
            (!newer.is_empty()).then_some(newer)
        })
        .await
    }

    /// Waits until `check` finds what it needs in `key`'s slot, the deadline passes, or `shutdown`
    /// fires. `check` runs under the key's lock, with the waiter already subscribed.
    async fn wait_until<T>(
        &self,
        key: &str,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
        check: impl Fn(&SlotView<'_>) -> Option<T>,
    ) -> WaitEnd<T> {
        let inner = &*self.inner;
        let rx = {
            let mut slot = match inner.map.get_mut(key) {
                Some(slot) => slot,
                None => inner.map.entry(Arc::from(key)).or_default(),
            };
            if let Some(found) = check(&SlotView(&slot)) {
                drop(slot);
                self.forget_if_unused(key);
                return WaitEnd::Ready(found);
            }
            slot.watch
                .get_or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        // Counts the waiter and, however the wait ends (even when the client disconnects and
        // this future is dropped), removes a slot it created and nobody needs any more.
        let mut registration = Registration::new(self, key, rx);
        loop {
            let rx = &mut registration.rx;
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The slot was removed and re-created; follow the new one.
                        *rx = self.resubscribe(key);
                    }
                    let found = self.inner.map.get(key).and_then(|slot| {
                        // Mark the value seen under the lock, then check.
                        rx.borrow_and_update();
                        check(&SlotView(&slot))
                    });
                    if let Some(found) = found {
                        return WaitEnd::Ready(found);
                    }
                }
                () = tokio::time::sleep_until(deadline) => return WaitEnd::TimedOut,
                () = shutdown.cancelled() => return WaitEnd::ShuttingDown,
            }
        }
    }

    fn resubscribe(&self, key: &str) -> watch::Receiver<u64> {
        let mut slot = self.inner.map.entry(Arc::from(key)).or_default();
        let mut rx = slot
            .watch
            .get_or_insert_with(|| watch::channel(0).0)
            .subscribe();
        // Force one check on the next loop turn.
        rx.mark_changed();
        rx
    }

    /// Drops a slot that a waiter created and nobody needs any more, and a watch channel that
    /// has no receivers left.
    pub(super) fn forget_if_unused(&self, key: &str) {
        let removed = self.inner.map.remove_if(key, |_, slot| slot.is_unused());
        if removed.is_none() {
            if let Some(mut slot) = self.inner.map.get_mut(key) {
                if slot.watch.is_some() && !slot.has_waiters() {
                    slot.watch = None;
                }
            }
        }
    }
}

/// One waiter, for as long as it lives: counted in `waiting`, and on drop the slot it may have
/// created is removed again if it holds no record and nobody else waits on it.
struct Registration<'a> {
    store: &'a Store,
    key: &'a str,
    rx: watch::Receiver<u64>,
}

impl<'a> Registration<'a> {
    fn new(store: &'a Store, key: &'a str, rx: watch::Receiver<u64>) -> Self {
        store.inner.waiting.fetch_add(1, Ordering::Relaxed);
        Self { store, key, rx }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.store.inner.waiting.fetch_sub(1, Ordering::Relaxed);
        // Our receiver must be gone before the slot is checked for other waiters.
        let mut closed = watch::channel(0).1;
        std::mem::swap(&mut self.rx, &mut closed);
        drop(closed);
        self.store.forget_if_unused(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::records::tests::encoded;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_racing_inserts_and_waits_never_miss_a_wake_up() {
        let store = Store::new(usize::MAX, None, None);
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for i in 0..10_000 {
            let key = format!("k{i}");
            let (s1, s2, stop) = (store.clone(), store.clone(), stop.clone());
            let k2 = key.clone();
            let waiter = tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                matches!(
                    s1.wait_until(&key, deadline, &stop, |s| s.latest_after(0))
                        .await,
                    WaitEnd::Ready(_)
                )
            });
            let poster =
                tokio::spawn(async move { s2.insert(&k2, &encoded(&k2)).map(|r| r.0).ok() });
            tasks.push((waiter, poster));
        }
        for (waiter, poster) in tasks {
            assert_eq!(poster.await.unwrap(), Some(1));
            assert!(waiter.await.unwrap(), "a waiter missed its wake-up");
        }
        assert_eq!(store.waiting(), 0);
        assert_eq!(
            store.inner.map.len(),
            10_000,
            "no slot left over by waiters"
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_slot_behind() {
        let store = Store::new(10, None, None);
        let stop = CancellationToken::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1);
        let end = store
            .wait_until("ghost", deadline, &stop, |s| s.latest_after(0))
            .await;
        assert!(matches!(end, WaitEnd::TimedOut));
        assert!(store.inner.map.is_empty());

        // A client that disconnects drops the wait mid-way: the slot must go all the same.
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        let dropped = tokio::time::timeout(
            Duration::from_millis(1),
            store.wait_until("gone", far, &stop, |s| s.latest_after(0)),
        )
        .await;
        assert!(dropped.is_err(), "the wait was cut short");
        assert_eq!(store.waiting(), 0);
        assert!(
            store.inner.map.is_empty(),
            "slot left behind by a dropped wait"
        );
    }
}
