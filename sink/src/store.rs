//! The callback store: records indexed by key, an ordered key index, waiters, capacity and
//! retention.
//!
//! # Design
//! - `map` (a [`DashMap`]) owns every key's [`Slot`]. Each mutation of a key happens under that
//!   key's shard lock, and so do the three things that must agree with it: the ordered `index`
//!   (a lock-free skip list of the keys that hold records, so a prefix is listed or deleted
//!   without scanning every key), the write-ahead log's order, and the key's watch channel.
//! - Waiting cannot miss a wake-up: a waiter checks the slot *and* subscribes to its watch channel
//!   under the same lock that a writer holds while it appends and sends. Whatever lands after the
//!   check is therefore a change the receiver has not seen yet (the wiremock-rs "register, then
//!   check" rule, made atomic by the lock).
//! - Capacity is one atomic counter reserved before the insert; a full sink refuses (`507`) and
//!   never evicts. Retention, when configured, is a FIFO of deadlines drained by one task woken by
//!   a [`Notify`] (records all share one TTL, so arrival order is expiry order).

use std::{
    collections::VecDeque,
    ops::Bound,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use crossbeam_skiplist::SkipSet;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

use crate::{
    record::Encoded,
    wal::{Op, Wal, WalAck},
};

/// One stored callback.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) seq: u64,
    pub(crate) received_ms: i64,
    /// The record's JSON, final form (see `record.rs`).
    pub(crate) json: Bytes,
}

/// Everything the sink knows about one key.
#[derive(Debug, Default)]
struct Slot {
    records: VecDeque<Stored>,
    last_seq: u64,
    /// Created when the first waiter arrives; carries a change counter, not data.
    watch: Option<watch::Sender<u64>>,
}

impl Slot {
    fn notify(&self) {
        if let Some(tx) = &self.watch {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn has_waiters(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.receiver_count() > 0)
    }
}

/// Why a callback was not stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The sink holds `--max-callbacks` records already.
    #[error("the sink is full: it holds {0} callbacks")]
    Full(usize),
    /// The write-ahead log could not be written.
    #[error("failed to persist the callback: {0}")]
    Persist(String),
}

/// Summary of one key for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySummary {
    /// The key.
    pub key: String,
    /// How many records it holds.
    pub count: usize,
    /// When its latest record arrived (RFC 3339, ms).
    pub last_received_at: String,
}

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

/// Shared handle to the store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// foldhash rather than the default SipHash: hashing the key was 3 % of the sink's CPU under
    /// load, and foldhash is still randomly seeded per process.
    map: DashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    /// Keys that hold at least one record, in order. Mutated only under the key's shard lock.
    index: SkipSet<Arc<str>>,
    /// Records held, across keys; reserved before an insert so the cap cannot be overshot.
    count: AtomicUsize,
    /// Bytes of record JSON held: compaction compares the log's size with it.
    live_bytes: AtomicU64,
    /// Requests waiting right now (long-polls, event streams): shown by `/healthz`.
    waiting: AtomicUsize,
    max_callbacks: usize,
    retention: Option<Duration>,
    /// (deadline in ms since the epoch, key) in arrival order; only used with `retention`.
    expiry: Mutex<VecDeque<(i64, Arc<str>)>>,
    expiry_wake: Notify,
    wal: Option<Wal>,
    /// Held shared by every logged mutation, exclusively by log compaction while it takes its
    /// snapshot, so that the snapshot and the log's tail never overlap or leave a gap.
    gate: RwLock<()>,
}

impl Store {
    /// An empty in-memory store.
    pub(crate) fn new(max_callbacks: usize, retention: Option<Duration>, wal: Option<Wal>) -> Self {
        Self {
            inner: Arc::new(Inner {
                map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                index: SkipSet::new(),
                count: AtomicUsize::new(0),
                live_bytes: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                max_callbacks,
                retention,
                expiry: Mutex::new(VecDeque::new()),
                expiry_wake: Notify::new(),
                wal,
                gate: RwLock::new(()),
            }),
        }
    }

    /// Attaches the log after replay (replay itself must not write to it).
    pub(crate) fn with_wal(self, wal: Wal) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).expect("the store is not shared during open");
        inner.wal = Some(wal);
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn wal(&self) -> Option<&Wal> {
        self.inner.wal.as_ref()
    }

    /// Records held in all.
    pub fn len(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests waiting for a callback right now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn live_bytes(&self) -> u64 {
        self.inner.live_bytes.load(Ordering::Relaxed)
    }

    /// Stores a record; the returned ack resolves once it is in the log (immediately without one).
    pub(crate) fn insert(
        &self,
        key: &str,
        encoded: &Encoded,
    ) -> Result<(u64, WalAck), InsertError> {
        let inner = &*self.inner;
        if inner.count.fetch_add(1, Ordering::AcqRel) >= inner.max_callbacks {
            inner.count.fetch_sub(1, Ordering::AcqRel);
            return Err(InsertError::Full(inner.max_callbacks));
        }
        let _gate = inner.wal.as_ref().map(|_| inner.gate.read());
        let mut slot = match inner.map.get_mut(key) {
            Some(slot) => slot,
            None => inner.map.entry(Arc::from(key)).or_default(),
        };
        let seq = slot.last_seq + 1;
        slot.last_seq = seq;
        let json = encoded.finish(seq);
        inner
            .live_bytes
            .fetch_add(json.len() as u64, Ordering::Relaxed);
        let key_arc = slot.key().clone();
        let ack = match &inner.wal {
            Some(wal) => wal.append(Op::Put {
                key: key_arc.clone(),
                seq,
                received_ms: encoded.received_ms,
                json: json.clone(),
            }),
            None => WalAck::done(),
        };
        if slot.records.is_empty() {
            slot.records.reserve_exact(1);
            inner.index.insert(key_arc.clone());
        }
        slot.records.push_back(Stored {
            seq,
            received_ms: encoded.received_ms,
            json,
        });
        slot.notify();
        drop(slot);
        if let Some(ttl) = inner.retention {
            let deadline = encoded.received_ms + ttl.as_millis() as i64;
            let was_empty = {
                let mut q = inner.expiry.lock();
                q.push_back((deadline, key_arc));
                q.len() == 1
            };
            if was_empty {
                inner.expiry_wake.notify_one();
            }
        }
        Ok((seq, ack))
    }

    /// Applies a logged record during replay (no log write, no capacity check: what was
    /// acknowledged is never dropped, even if `--max-callbacks` shrank since).
    pub(crate) fn replay_put(&self, key: &str, seq: u64, received_ms: i64, json: Bytes) {
        if let Some(ttl) = self.inner.retention {
            if received_ms + (ttl.as_millis() as i64) <= now_ms() {
                return;
            }
        }
        let inner = &*self.inner;
        let mut slot = inner.map.entry(Arc::from(key)).or_default();
        if slot.records.is_empty() {
            inner.index.insert(slot.key().clone());
        }
        slot.last_seq = seq;
        inner.count.fetch_add(1, Ordering::Relaxed);
        inner
            .live_bytes
            .fetch_add(json.len() as u64, Ordering::Relaxed);
        slot.records.push_back(Stored {
            seq,
            received_ms,
            json,
        });
        if let Some(ttl) = inner.retention {
            let key = slot.key().clone();
            drop(slot);
            inner
                .expiry
                .lock()
                .push_back((received_ms + ttl.as_millis() as i64, key));
        }
    }

    /// The latest record of `key`, if it is newer than `after`.
    pub(crate) fn latest_after(&self, key: &str, after: u64) -> Option<Bytes> {
        let slot = self.inner.map.get(key)?;
        latest_newer(&slot, after)
    }

    /// Every record of `key`, oldest first.
    pub(crate) fn all(&self, key: &str) -> Vec<Bytes> {
        self.inner
            .map
            .get(key)
            .map(|slot| slot.records.iter().map(|r| r.json.clone()).collect())
            .unwrap_or_default()
    }

    /// How many records `key` holds.
    pub(crate) fn count(&self, key: &str) -> usize {
        self.inner.map.get(key).map_or(0, |s| s.records.len())
    }

    /// The record with this `seq`, or the latest when `seq` is `None`.
    pub(crate) fn get_seq(&self, key: &str, seq: Option<u64>) -> Option<Bytes> {
        let slot = self.inner.map.get(key)?;
        match seq {
            None => slot.records.back().map(|r| r.json.clone()),
            Some(seq) => slot
                .records
                .iter()
                .find(|r| r.seq == seq)
                .map(|r| r.json.clone()),
        }
    }

    /// Waits until `key` holds at least `count` records — woken by the insert itself, never by
    /// polling — or until `deadline` or `cancel`. For in-process users such as the harness.
    pub async fn wait_for_count(
        &self,
        key: &str,
        count: usize,
        deadline: tokio::time::Instant,
        cancel: &tokio_util::sync::CancellationToken,
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

    /// Every record of `key` as the JSON the API returns, oldest first.
    pub fn records_json(&self, key: &str) -> Vec<Bytes> {
        self.all(key)
    }

    /// Waits until `check` finds what it needs in `key`'s slot, the deadline passes, or `shutdown`
    /// fires. `check` runs under the key's lock, with the waiter already subscribed.
    pub(crate) async fn wait_until<T>(
        &self,
        key: &str,
        deadline: tokio::time::Instant,
        shutdown: &tokio_util::sync::CancellationToken,
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
    fn forget_if_unused(&self, key: &str) {
        let removed = self.inner.map.remove_if(key, |_, slot| {
            slot.records.is_empty() && !slot.has_waiters()
        });
        if removed.is_none() {
            if let Some(mut slot) = self.inner.map.get_mut(key) {
                if slot.watch.is_some() && !slot.has_waiters() {
                    slot.watch = None;
                }
            }
        }
    }

    /// Forgets one key. Returns how many records it held.
    pub(crate) fn delete(&self, key: &str) -> usize {
        self.delete_inner(key, true)
    }

    /// Applies a logged delete during replay.
    pub(crate) fn replay_delete(&self, key: &str) {
        self.delete_inner(key, false);
    }

    fn delete_inner(&self, key: &str, log: bool) -> usize {
        let inner = &*self.inner;
        let _gate = inner
            .wal
            .as_ref()
            .filter(|_| log)
            .map(|_| inner.gate.read());
        let dashmap::mapref::entry::Entry::Occupied(mut entry) = inner.map.entry(Arc::from(key))
        else {
            return 0;
        };
        let removed = entry.get().records.len();
        if removed == 0 {
            return 0;
        }
        let bytes: u64 = entry
            .get()
            .records
            .iter()
            .map(|r| r.json.len() as u64)
            .sum();
        inner.index.remove(entry.key());
        if let Some(wal) = inner.wal.as_ref().filter(|_| log) {
            // Deletes are acknowledged without waiting for the log: losing one in a crash only
            // brings data back, never loses it.
            let _ = wal.append(Op::Delete {
                key: entry.key().clone(),
            });
        }
        if entry.get().has_waiters() {
            let slot = entry.get_mut();
            slot.records.clear();
            slot.last_seq = 0;
        } else {
            entry.remove();
        }
        inner.count.fetch_sub(removed, Ordering::AcqRel);
        inner.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
        removed
    }

    /// Forgets every key that starts with `prefix`. Returns how many keys were removed.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> usize {
        let keys = self.keys_from(prefix, None, usize::MAX);
        keys.iter().filter(|k| self.delete(k) > 0).count()
    }

    /// Keys under `prefix` in order, starting after `after`, at most `limit`.
    pub(crate) fn keys_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<Arc<str>> {
        let lower: Bound<&str> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.inner
            .index
            .range::<str, _>((lower, Bound::Unbounded))
            .map(|e| e.value().clone())
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .collect()
    }

    /// Summaries of keys under `prefix`, paged by `after` and `limit`.
    pub(crate) fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeySummary> {
        self.keys_from(prefix, after, limit)
            .into_iter()
            .filter_map(|key| {
                let slot = self.inner.map.get(&*key)?;
                let last = slot.records.back()?;
                Some(KeySummary {
                    key: key.to_string(),
                    count: slot.records.len(),
                    last_received_at: format_ms(last.received_ms),
                })
            })
            .collect()
    }

    /// Takes a consistent copy of every record for log compaction: blocks logged mutations
    /// while `drain` empties the log's queue and the copy is made.
    pub(crate) fn snapshot_for_compaction(&self, drain: impl FnOnce()) -> Vec<Op> {
        let _gate = self.inner.gate.write();
        drain();
        let mut ops = Vec::with_capacity(self.len());
        for slot in self.inner.map.iter() {
            for r in &slot.records {
                ops.push(Op::Put {
                    key: slot.key().clone(),
                    seq: r.seq,
                    received_ms: r.received_ms,
                    json: r.json.clone(),
                });
            }
        }
        ops
    }

    /// Forgets every record (the test helper's `reset`).
    pub(crate) fn clear(&self) -> usize {
        self.delete_prefix("")
    }

    /// Removes expired records until `stop` is cancelled; a no-op without retention.
    pub(crate) async fn run_expiry(self, stop: tokio_util::sync::CancellationToken) {
        let Some(ttl) = self.inner.retention else {
            return;
        };
        loop {
            let wake = self.inner.expiry_wake.notified();
            tokio::pin!(wake);
            // Registered before looking at the queue, so a push in between is not missed.
            wake.as_mut().enable();
            let next = self.inner.expiry.lock().front().map(|(d, _)| *d);
            let sleep = match next {
                Some(deadline) => Duration::from_millis((deadline - now_ms()).max(0) as u64),
                None => Duration::from_secs(24 * 3600),
            };
            if next.is_some() && sleep.is_zero() {
                self.expire_due(ttl);
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = &mut wake => {}
                () = stop.cancelled() => return,
            }
        }
    }

    fn expire_due(&self, ttl: Duration) {
        let now = now_ms();
        let ttl_ms = ttl.as_millis() as i64;
        loop {
            let due = {
                let mut q = self.inner.expiry.lock();
                match q.front() {
                    Some((deadline, _)) if *deadline <= now => q.pop_front().map(|(_, k)| k),
                    _ => None,
                }
            };
            let Some(key) = due else { break };
            let inner = &*self.inner;
            let dashmap::mapref::entry::Entry::Occupied(mut entry) = inner.map.entry(key) else {
                continue;
            };
            let slot = entry.get_mut();
            let mut removed = 0;
            let mut bytes = 0;
            while slot
                .records
                .front()
                .is_some_and(|r| r.received_ms + ttl_ms <= now)
            {
                if let Some(r) = slot.records.pop_front() {
                    removed += 1;
                    bytes += r.json.len() as u64;
                }
            }
            if removed > 0 && slot.records.is_empty() {
                inner.index.remove(entry.key());
                if !entry.get().has_waiters() {
                    entry.remove();
                }
            }
            inner.count.fetch_sub(removed, Ordering::AcqRel);
            inner.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
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

/// Read-only view of a slot handed to wait conditions.
#[derive(Debug)]
pub(crate) struct SlotView<'a>(&'a Slot);

impl SlotView<'_> {
    pub(crate) fn latest_after(&self, after: u64) -> Option<Bytes> {
        latest_newer(self.0, after)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.records.len()
    }

    pub(crate) fn all(&self) -> Vec<Bytes> {
        self.0.records.iter().map(|r| r.json.clone()).collect()
    }

    pub(crate) fn after(&self, after: u64) -> Vec<Stored> {
        records_after(self.0, after)
    }
}

fn latest_newer(slot: &Slot, after: u64) -> Option<Bytes> {
    slot.records
        .back()
        .filter(|r| r.seq > after)
        .map(|r| r.json.clone())
}

fn records_after(slot: &Slot, after: u64) -> Vec<Stored> {
    // Records are in seq order; scan from the back for the common "only the newest" case.
    let start = slot
        .records
        .iter()
        .rposition(|r| r.seq <= after)
        .map_or(0, |i| i + 1);
    slot.records.range(start..).cloned().collect()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn format_ms(ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use axum::http::{HeaderMap, Method};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::record::Incoming;

    fn encoded(key: &str) -> Encoded {
        Encoded::new(
            key,
            &Incoming {
                method: &Method::POST,
                path: "/",
                query: None,
                headers: &HeaderMap::new(),
                body: b"{}",
            },
            SystemTime::now(),
        )
    }

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

    #[tokio::test]
    async fn retention_forgets_expired_records_and_frees_capacity() {
        let store = Store::new(2, Some(Duration::from_millis(20)), None);
        store.insert("a", &encoded("a")).unwrap();
        store.insert("b", &encoded("b")).unwrap();
        assert!(matches!(
            store.insert("c", &encoded("c")),
            Err(InsertError::Full(2))
        ));
        let stop = CancellationToken::new();
        let task = tokio::spawn(store.clone().run_expiry(stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !store.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "records never expired"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(store.latest_after("a", 0).is_none());
        assert!(
            store.keys_from("", None, 10).is_empty(),
            "index emptied too"
        );
        store.insert("c", &encoded("c")).unwrap();
        stop.cancel();
        task.await.unwrap();
    }
}
