//! [`Store`]: the keyed map of records — insert, read, delete, capacity, replay, and the
//! snapshot it hands the log for compaction.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::{
    expiry::Expiry,
    index::{KeyIndex, KeySummary},
    slot::{Slot, Stored},
    watch::Watches,
};
use crate::{
    annotate::Annotation,
    error::LogError,
    record::{Encoded, format_ms, now_ms},
    wal::{Compaction, Op, Outcome, Wal, WalAck},
};

/// Why a callback was not stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The sink holds `--max-callbacks` records already.
    #[error("the sink is full: it holds {0} callbacks")]
    Full(usize),
    /// The write-ahead log could not be written (or synced); nothing was stored.
    #[error("failed to persist the callback: {0}")]
    Persist(#[from] LogError),
    /// The database (cluster mode) could not commit it; nothing was stored.
    #[error("failed to store the callback: {0}")]
    Unavailable(crate::postgres::Unavailable),
}

/// Shared handle to the store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// foldhash rather than the default SipHash: hashing the key was 3 % of the sink's CPU under
    /// load, and foldhash is still randomly seeded per process.
    pub(super) map: DashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    /// Keys that hold at least one record, in order. Mutated only under the key's shard lock.
    pub(super) index: KeyIndex,
    /// Records held, across keys; reserved before an insert so the cap cannot be overshot.
    count: AtomicUsize,
    /// Bytes of record JSON held: compaction compares the log's size with it.
    live_bytes: AtomicU64,
    /// Requests waiting right now (long-polls, event streams): shown by `/healthz`.
    pub(super) waiting: AtomicUsize,
    max_callbacks: usize,
    /// Only with `--retention`.
    expiry: Option<Expiry>,
    wal: Option<Wal>,
    /// The sink-wide record ids and the prefix watchers (`GET /watch`).
    pub(super) watches: Watches,
    /// Held shared by every logged mutation, exclusively while a compaction snapshot is taken,
    /// so that the snapshot and the log's tail never overlap or leave a gap.
    gate: RwLock<()>,
}

impl Store {
    /// An empty in-memory store.
    ///
    /// Record ids (`GET /watch`) start at the time of opening in microseconds since the epoch,
    /// not at 0: the log does not keep them, so after a restart a watcher resuming with an id
    /// from before is sent the replayed records again (and everything new) rather than missing
    /// the first records of the new process. (That holds while a process gives out fewer ids
    /// than a million a second on average over its life.)
    pub(crate) fn new(max_callbacks: usize, retention: Option<Duration>, wal: Option<Wal>) -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Self {
            inner: Arc::new(Inner {
                map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                index: KeyIndex::new(),
                count: AtomicUsize::new(0),
                live_bytes: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                max_callbacks,
                expiry: retention.map(Expiry::new),
                wal,
                watches: Watches::new(start),
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

    fn live_bytes(&self) -> u64 {
        self.inner.live_bytes.load(Ordering::Relaxed)
    }

    /// Stores a record under `key` and resolves once it is as durable as `--fsync` promises;
    /// answers its `seq`. The record becomes visible (readable, waking waiters) only then, and
    /// a record that is refused is never visible and consumes no seq.
    ///
    /// `annotate` is the insert's hook (see `annotate.rs`): called once with the assigned `seq`,
    /// under the key's lock; its answer comes back with the `seq`.
    pub(crate) async fn insert_durable<A>(
        &self,
        key: &str,
        encoded: &Encoded,
        annotate: impl FnOnce(u64) -> Option<Annotation<A>>,
    ) -> Result<(u64, Option<A>), InsertError> {
        let (seq, ack, answer) = self.insert_annotated(key, encoded, annotate)?;
        if let WalAck::Synced(..) = &ack {
            let synced = ack.wait().await;
            // Made visible, or (its fsync failed) dropped, with whatever came before it.
            self.publish(key);
            if let Err(e) = synced {
                self.forget_if_unused(key);
                return Err(e.into());
            }
            if let Some(expiry) = &self.inner.expiry {
                expiry.schedule(encoded.received_ms, Arc::from(key));
            }
        }
        Ok((seq, answer))
    }

    /// Writes a record to the log under its key's lock and, if that makes it durable by the
    /// policy, makes it visible; otherwise (`--fsync always`) it waits in the slot's `pending`
    /// until [`publish`](Self::publish) after the returned ack.
    #[cfg(test)]
    pub(crate) fn insert(
        &self,
        key: &str,
        encoded: &Encoded,
    ) -> Result<(u64, WalAck), InsertError> {
        self.insert_annotated(key, encoded, crate::annotate::nothing)
            .map(|(seq, ack, _)| (seq, ack))
    }

    /// [`insert`](Self::insert) with the insert's hook, called with the new `seq` before the
    /// record is encoded and logged.
    fn insert_annotated<A>(
        &self,
        key: &str,
        encoded: &Encoded,
        annotate: impl FnOnce(u64) -> Option<Annotation<A>>,
    ) -> Result<(u64, WalAck, Option<A>), InsertError> {
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
        let seq = slot.next_seq();
        let (response, answer) = match annotate(seq) {
            Some(Annotation { response, answer }) => (Some(response), Some(answer)),
            None => (None, None),
        };
        let json = encoded.finish_with(seq, response.as_deref());
        let key_arc = slot.key().clone();
        let (ack, log_len) = match &inner.wal {
            Some(wal) => {
                let appended = wal.append(&Op::Put {
                    key: key_arc.clone(),
                    seq,
                    received_ms: encoded.received_ms,
                    json: json.clone(),
                });
                match appended {
                    Ok((ack, len)) => (ack, Some(len)),
                    Err(e) => {
                        // Nothing changed but the reservation (and maybe a new, empty slot).
                        drop(slot);
                        inner.count.fetch_sub(1, Ordering::AcqRel);
                        self.forget_if_unused(key);
                        return Err(e.into());
                    }
                }
            }
            None => (WalAck::Written, None),
        };
        inner
            .live_bytes
            .fetch_add(json.len() as u64, Ordering::Relaxed);
        let mut stored = Stored {
            seq,
            id: 0,
            received_ms: encoded.received_ms,
            json,
        };
        let visible = match &ack {
            WalAck::Synced(target, _) => {
                slot.pending.push_back((*target, stored));
                false
            }
            WalAck::Written => {
                if slot.records.is_empty() {
                    slot.records.reserve_exact(1);
                    inner.index.insert(key_arc.clone());
                }
                // After the index insert, under the lock, right before the push: see `watch.rs`.
                stored.id = inner.watches.next_id();
                slot.last_seq = seq;
                slot.records.push_back(stored);
                slot.notify();
                true
            }
        };
        drop(slot);
        if visible {
            inner.watches.ring();
        }
        if let Some(expiry) = inner.expiry.as_ref().filter(|_| visible) {
            expiry.schedule(encoded.received_ms, key_arc);
        }
        if let Some(len) = log_len {
            self.compact_if_due(len);
        }
        Ok((seq, ack, answer))
    }

    /// Makes visible, in seq order, every pending record of `key` that a sync made durable (the
    /// caller's own, and any earlier one whose request has not woken yet), and drops those whose
    /// fsync failed (they were cut off the log: never visible, no longer counted; a later post
    /// takes their seq again unless one is pending behind them).
    fn publish(&self, key: &str) {
        let inner = &*self.inner;
        let Some(wal) = &inner.wal else {
            return;
        };
        let Some(mut entry) = inner.map.get_mut(key) else {
            return; // deleted meanwhile: the delete is after the record in the log too
        };
        let key_arc = entry.key().clone();
        let slot = &mut *entry;
        let before = slot.records.len();
        while let Some((at, _)) = slot.pending.front() {
            let outcome = wal.outcome(*at);
            if outcome == Outcome::Pending {
                break;
            }
            let Some((_, mut stored)) = slot.pending.pop_front() else {
                break;
            };
            if outcome == Outcome::Failed {
                inner.count.fetch_sub(1, Ordering::AcqRel);
                inner
                    .live_bytes
                    .fetch_sub(stored.json.len() as u64, Ordering::Relaxed);
                continue;
            }
            if slot.records.is_empty() {
                // Before its id is taken: a watcher that sees the id finds the key (`watch.rs`).
                inner.index.insert(key_arc.clone());
            }
            stored.id = inner.watches.next_id();
            slot.last_seq = stored.seq;
            slot.records.push_back(stored);
        }
        if slot.records.len() > before {
            entry.notify();
            drop(entry);
            inner.watches.ring();
        }
    }

    /// Applies one frame of the log at open (no log write, no capacity check: what was
    /// acknowledged is never dropped, even if `--max-callbacks` shrank since).
    pub(crate) fn replay(&self, op: Op) {
        match op {
            Op::Put {
                key,
                seq,
                received_ms,
                json,
            } => self.replay_put(key, seq, received_ms, json),
            Op::Delete { key } => {
                self.delete_inner(&key, false);
            }
        }
    }

    fn replay_put(&self, key: Arc<str>, seq: u64, received_ms: i64, json: Bytes) {
        let inner = &*self.inner;
        if let Some(expiry) = &inner.expiry {
            if expiry.is_expired(received_ms, now_ms()) {
                return;
            }
        }
        let mut slot = inner.map.entry(key).or_default();
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
            id: inner.watches.next_id(),
            received_ms,
            json,
        });
        if let Some(expiry) = &inner.expiry {
            let key = slot.key().clone();
            drop(slot);
            expiry.schedule_replayed(received_ms, key);
        }
    }

    /// The latest record of `key`, if it is newer than `after`.
    pub(crate) fn latest_after(&self, key: &str, after: u64) -> Option<Bytes> {
        self.inner.map.get(key)?.latest_newer(after)
    }

    /// Every record of `key`, oldest first.
    pub(crate) fn all(&self, key: &str) -> Vec<Bytes> {
        self.inner
            .map
            .get(key)
            .map(|slot| slot.all())
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

    /// Every record of `key` as the JSON the API returns, oldest first.
    pub fn records_json(&self, key: &str) -> Vec<Bytes> {
        self.all(key)
    }

    /// Forgets one key. Returns how many records it held.
    pub(crate) fn delete(&self, key: &str) -> usize {
        self.delete_inner(key, true)
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
        // Pending records go too: they are before this delete in the log, so replay drops them.
        let slot = entry.get();
        let removed = slot.records.len() + slot.pending.len();
        if removed == 0 {
            return 0;
        }
        let bytes: u64 = slot
            .records
            .iter()
            .chain(slot.pending.iter().map(|(_, r)| r))
            .map(|r| r.json.len() as u64)
            .sum();
        inner.index.remove(entry.key());
        let mut log_len = None;
        if let Some(wal) = inner.wal.as_ref().filter(|_| log) {
            // Deletes are acknowledged without waiting for the log: losing one in a crash only
            // brings data back, never loses it.
            // A delete the log refused (a full disk) still applies in memory; the records come
            // back at a restart, which loses nothing acknowledged.
            if let Ok((_, len)) = wal.append(&Op::Delete {
                key: entry.key().clone(),
            }) {
                log_len = Some(len);
            }
        }
        if entry.get().has_waiters() {
            let slot = entry.get_mut();
            slot.records.clear();
            slot.pending.clear();
            slot.last_seq = 0;
        } else {
            entry.remove();
        }
        inner.count.fetch_sub(removed, Ordering::AcqRel);
        inner.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(len) = log_len {
            self.compact_if_due(len);
        }
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
        self.inner.index.range(prefix, after, limit)
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

    /// Forgets every record (the test helper's `reset`).
    pub(crate) fn clear(&self) -> usize {
        self.delete_prefix("")
    }

    /// After a logged write that left the log `log_len` bytes long: if the log asks for a
    /// compaction, takes the snapshot and hands it over, on a thread of its own.
    fn compact_if_due(&self, log_len: u64) {
        let Some(wal) = &self.inner.wal else { return };
        let Some(compaction) = wal.compaction_due(log_len, self.live_bytes()) else {
            return;
        };
        let store = self.clone();
        // If the thread cannot start, the closure and its claim on the compaction are dropped:
        // a later write tries again.
        let _ = std::thread::Builder::new()
            .name("eventual-compact".into())
            .spawn(move || store.compact(compaction));
    }

    fn compact(self, mut compaction: Compaction) {
        let snapshot = {
            // Blocks logged mutations while the log starts its tail and the copy is made
            // (cloning reference-counted records): nothing is in both, nothing in neither.
            let _gate = self.inner.gate.write();
            compaction.begin();
            self.snapshot()
        };
        // The rewrite needs the log, not the store: a store shut down meanwhile may go.
        drop(self);
        compaction.write(&snapshot);
    }

    /// Every record as the log's puts; call with logged mutations blocked.
    fn snapshot(&self) -> Vec<Op> {
        let mut ops = Vec::with_capacity(self.len());
        for slot in self.inner.map.iter() {
            // Pending records are in the log already: the new file must keep them too.
            for r in slot
                .records
                .iter()
                .chain(slot.pending.iter().map(|(_, r)| r))
            {
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

    /// Removes expired records until `stop` is cancelled; a no-op without retention.
    pub(crate) async fn run_expiry(self, stop: CancellationToken) {
        let Some(expiry) = &self.inner.expiry else {
            return;
        };
        expiry.run(stop, || self.expire_due(expiry)).await;
    }

    fn expire_due(&self, expiry: &Expiry) {
        let now = now_ms();
        let inner = &*self.inner;
        while let Some(key) = expiry.pop_due(now) {
            let dashmap::mapref::entry::Entry::Occupied(mut entry) = inner.map.entry(key) else {
                continue;
            };
            let slot = entry.get_mut();
            let mut removed = 0;
            let mut bytes = 0;
            while slot
                .records
                .front()
                .is_some_and(|r| expiry.is_expired(r.received_ms, now))
            {
                if let Some(r) = slot.records.pop_front() {
                    removed += 1;
                    bytes += r.json.len() as u64;
                }
            }
            if removed > 0 && slot.records.is_empty() {
                inner.index.remove(entry.key());
                if entry.get().is_unused() {
                    entry.remove();
                }
            }
            inner.count.fetch_sub(removed, Ordering::AcqRel);
            inner.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::SystemTime;

    use axum::http::{HeaderMap, Method};

    use super::*;
    use crate::record::Incoming;

    pub(in crate::store) fn encoded(key: &str) -> Encoded {
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

    fn logged(dir: &std::path::Path, fsync: crate::config::FsyncPolicy) -> Store {
        let (wal, _) = Wal::open(dir, fsync, u64::MAX, |_| {}).expect("open the log");
        Store::new(100, None, Some(wal))
    }

    #[tokio::test]
    async fn a_refused_callback_is_never_visible_and_consumes_no_seq() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = logged(dir.path(), crate::config::FsyncPolicy::Never);
        store
            .insert_durable("k", &encoded("k"), crate::annotate::nothing)
            .await
            .expect("first");
        let woken = store
            .inner
            .map
            .entry(Arc::from("k"))
            .or_default()
            .watch
            .get_or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe();
        store.wal().expect("a log").set_space(Some(3));
        let refused = store
            .insert_durable("k", &encoded("k"), crate::annotate::nothing)
            .await;
        assert!(
            matches!(
                refused,
                Err(InsertError::Persist(LogError::StorageFull { .. }))
            ),
            "{refused:?}"
        );
        assert_eq!(store.count("k"), 1, "the refused record is not readable");
        assert_eq!(store.len(), 1, "nor counted");
        assert!(
            !woken.has_changed().expect("watch open"),
            "nor did it wake a waiter"
        );
        store.wal().expect("a log").set_space(None);
        let (seq, _) = store
            .insert_durable("k", &encoded("k"), crate::annotate::nothing)
            .await
            .expect("space is back");
        assert_eq!(seq, 2, "the refused record consumed no seq");
        assert!(woken.has_changed().expect("watch open"));
    }

    #[tokio::test]
    async fn with_fsync_always_a_record_is_visible_only_after_its_fsync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = logged(dir.path(), crate::config::FsyncPolicy::Always);
        let (seq, ack) = store.insert("k", &encoded("k")).expect("insert");
        assert_eq!(seq, 1);
        let WalAck::Synced(target, _) = &ack else {
            panic!("with fsync=always the ack waits for a sync: {ack:?}");
        };
        let target = *target;
        assert!(
            store.latest_after("k", 0).is_none(),
            "visible before its fsync"
        );
        let (next, next_ack) = store.insert("k", &encoded("k")).expect("insert");
        assert_eq!(next, 2, "a pending record holds its seq");
        let WalAck::Synced(next_target, _) = &next_ack else {
            panic!("with fsync=always the ack waits for a sync: {next_ack:?}");
        };
        ack.wait().await.expect("synced");
        let wal = store.wal().expect("a log");
        assert_eq!(wal.outcome(target), Outcome::Durable);
        // The second may or may not have been synced by now (the syncer runs on): the first is
        // visible, the second only if durable. Durability only grows, so it is read after.
        store.publish("k");
        let visible = store.count("k");
        let second_durable = wal.outcome(*next_target) == Outcome::Durable;
        assert!(
            visible == 1 || (visible == 2 && second_durable),
            "visible after its sync, and only what is synced: {visible} visible, second durable: {second_durable}"
        );
        assert_eq!(
            store
                .insert_durable("k", &encoded("k"), crate::annotate::nothing)
                .await
                .expect("insert")
                .0,
            3
        );
        assert_eq!(
            store.count("k"),
            3,
            "a later sync publishes every earlier record, in order"
        );
    }

    #[tokio::test]
    async fn with_fsync_always_a_failed_fsync_refuses_the_callbacks_it_held_and_cuts_them_off_the_log()
     {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = logged(dir.path(), crate::config::FsyncPolicy::Always);
        store
            .insert_durable("k", &encoded("k"), crate::annotate::nothing)
            .await
            .expect("a first callback is stored");
        let wal = store.wal().expect("a log");
        wal.set_sync_fails(true);
        let bodies: Vec<Encoded> = (0..3).map(|_| encoded("k")).collect();
        let refused = futures_util::future::join_all(
            bodies
                .iter()
                .map(|e| store.insert_durable("k", e, crate::annotate::nothing)),
        )
        .await;
        assert!(
            refused
                .iter()
                .all(|r| matches!(r, Err(InsertError::Persist(LogError::SyncFailed)))),
            "every callback waiting for the failed fsync is refused: {refused:?}"
        );
        assert_eq!(store.count("k"), 1, "none of them is visible");
        assert_eq!(store.len(), 1, "nor counted");

        wal.set_sync_fails(false);
        let (seq, _) = store
            .insert_durable("k", &encoded("k"), crate::annotate::nothing)
            .await
            .expect("the disk works again");
        assert_eq!(seq, 2, "the refused ones gave their seqs back");
        drop(store);

        let reopened = Store::new(100, None, None);
        let (_wal, _) = Wal::open(
            dir.path(),
            crate::config::FsyncPolicy::Never,
            u64::MAX,
            |op| {
                reopened.replay(op);
            },
        )
        .expect("reopen the log");
        let seqs: Vec<u64> = reopened
            .all("k")
            .iter()
            .map(|json| {
                serde_json::from_slice::<serde_json::Value>(json).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, [1, 2], "a restart brings back no refused callback");
    }
}
