//! Watching every key under a prefix (`GET /watch`): a sink-wide id per visible record, and a
//! watcher that reads the store as it goes.
//!
//! # Why a watcher never misses a record below one it was sent
//! - **Ids are assigned where a record becomes visible**: under its key's shard lock, in the
//!   same critical section that pushes it into the slot (at insert, or in `publish` once its
//!   fsync is done with `--fsync always`). A record is never visible without an id, and an id is
//!   never given to a record that is not (yet) visible — so no id can "appear late".
//! - **The watermark**: a scan first reads the last id given out, `upto`, and only sends ids up
//!   to it. Every id `<= upto` was given out before that read, by a writer that held its key's
//!   lock from before taking the id until after the push (and that put a new key in the
//!   ordered index before taking the id). The scan locks each key after its read of `upto`, so
//!   it waits for any such writer and then sees the record. Ids above `upto` are left for the
//!   next scan. So when a scan is done, every record `<= upto` under the prefix has been seen
//!   (unless deleted or expired meanwhile), and the cursor moves to `upto`.
//! - The insert path pays one `fetch_add` for the id and one load of the watcher count (plus,
//!   only while someone watches, one swap of the `rung` flag); no lock of its own.
//!
//! # Waking without missed wake-ups
//! A watcher enables its [`Notify`] future, clears `rung`, then reads `upto` and scans; a
//! writer takes its id, then (if anyone watches) sets `rung` and, if it was clear, calls
//! `notify_waiters`. A writer that finds `rung` already set took its id before the watcher
//! cleared it (so the scan sees it) or after another writer set it anew (and that one wakes the
//! watcher). All of these are `SeqCst`.
//!
//! # Bounded memory
//! A scan keeps at most [`BATCH`] records (the lowest ids above the cursor; cloned records
//! share their bytes with the store). A slow consumer is sent one batch at a time, and the next
//! is read from the store only when the batch has been written.

use std::{
    collections::BinaryHeap,
    pin::pin,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{records::Store, slot::Stored};

/// The most records one scan hands out.
pub(crate) const BATCH: usize = 256;

/// The sink-wide id sequence and the prefix watchers' wake-up.
#[derive(Debug)]
pub(super) struct Watches {
    /// The last id given out (see the module docs for where).
    last_id: AtomicU64,
    /// Prefix watchers alive: inserts ring only when there is one.
    watchers: AtomicUsize,
    /// Set by the first insert after a watcher's scan began; saves the others the ring.
    rung: AtomicBool,
    /// Wakes the watchers.
    bell: Notify,
}

impl Watches {
    /// Ids continue from `start` (see [`Store::new`] for why not from 0).
    pub(super) fn new(start: u64) -> Self {
        Self {
            last_id: AtomicU64::new(start),
            watchers: AtomicUsize::new(0),
            rung: AtomicBool::new(false),
            bell: Notify::new(),
        }
    }

    /// The id of a record that becomes visible now: call under its key's lock, just before
    /// the push (and after a new key went into the index).
    pub(super) fn next_id(&self) -> u64 {
        self.last_id.fetch_add(1, SeqCst) + 1
    }

    /// After records became visible (their ids taken): wakes the watchers, if there are any.
    pub(super) fn ring(&self) {
        if self.watchers.load(SeqCst) > 0 && !self.rung.swap(true, SeqCst) {
            self.bell.notify_waiters();
        }
    }
}

/// One `GET /watch` stream's place in the store: what it has been sent up to. Counted in
/// `/healthz`'s `waiting` while it lives.
#[derive(Debug)]
pub(crate) struct Watcher {
    store: Store,
    prefix: String,
    /// Every record under the prefix with an id up to this one has been handed out.
    cursor: u64,
}

impl Store {
    /// A watcher of every key under `prefix`, starting strictly after the id `after`.
    pub(crate) fn watch(&self, prefix: &str, after: u64) -> Watcher {
        self.inner.watches.watchers.fetch_add(1, SeqCst);
        self.inner.waiting.fetch_add(1, SeqCst);
        Watcher {
            store: self.clone(),
            prefix: prefix.to_owned(),
            cursor: after,
        }
    }

    /// Up to [`BATCH`] records under `prefix` with ids in `(after, upto]`, in id order, and
    /// the cursor after them: `upto` when that was all of them.
    fn scan(&self, prefix: &str, after: u64) -> (Vec<Stored>, u64) {
        let inner = &*self.inner;
        let upto = inner.watches.last_id.load(SeqCst);
        if upto <= after {
            return (Vec::new(), after);
        }
        // A max-heap of the lowest ids seen so far, at most BATCH of them.
        let mut lowest: BinaryHeap<ById> = BinaryHeap::new();
        inner.index.for_each_under(prefix, |key| {
            let Some(slot) = inner.map.get(key) else {
                return;
            };
            // A slot's records are in id order: ids are taken in push order under its lock.
            let start = slot.records.partition_point(|r| r.id <= after);
            for r in slot.records.range(start..) {
                let beaten = lowest.len() >= BATCH && lowest.peek().is_some_and(|m| r.id > m.0.id);
                if r.id > upto || beaten {
                    break;
                }
                lowest.push(ById(r.clone()));
                if lowest.len() > BATCH {
                    lowest.pop();
                }
            }
        });
        let full = lowest.len() >= BATCH;
        let batch: Vec<Stored> = lowest.into_sorted_vec().into_iter().map(|r| r.0).collect();
        let cursor = match batch.last() {
            // Everything up to the last one sent: there may be more above it, up to `upto`.
            Some(last) if full => last.id,
            _ => upto,
        };
        (batch, cursor)
    }
}

impl Watcher {
    /// The next records under the prefix (oldest id first, at most [`BATCH`]), waiting for one
    /// if there is none; `None` once `shutdown` fires.
    pub(crate) async fn next(&mut self, shutdown: &CancellationToken) -> Option<Vec<Stored>> {
        let watches = &self.store.inner.watches;
        loop {
            let mut woken = pin!(watches.bell.notified());
            woken.as_mut().enable();
            watches.rung.store(false, SeqCst);
            let (batch, cursor) = self.store.scan(&self.prefix, self.cursor);
            self.cursor = cursor;
            if !batch.is_empty() {
                return Some(batch);
            }
            tokio::select! {
                () = woken => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.store.inner.watches.watchers.fetch_sub(1, SeqCst);
        self.store.inner.waiting.fetch_sub(1, SeqCst);
    }
}

/// A record ordered by its id alone.
struct ById(Stored);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::Duration};

    use super::*;
    use crate::store::records::tests::encoded;

    /// Writers on many threads race a watcher: ids must come in increasing order, each record
    /// exactly once, none skipped because a lower id became visible after a higher one was read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_watcher_racing_writers_on_many_threads_gets_every_record_once_in_id_order() {
        const WRITERS: usize = 4;
        const EACH: usize = 5_000;
        let store = Store::new(usize::MAX, None, None);
        let stop = CancellationToken::new();
        let mut watcher = store.watch("p/", 0);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        // Keys spread over the shards; some under another prefix.
                        let key = format!("{}{w}-{}", if i % 5 == 0 { "q/" } else { "p/" }, i % 97);
                        store.insert(&key, &encoded(&key)).expect("insert");
                    }
                })
            })
            .collect();
        let wanted = WRITERS * EACH * 4 / 5;
        let mut ids = Vec::with_capacity(wanted);
        while ids.len() < wanted {
            let batch = tokio::time::timeout(Duration::from_secs(30), watcher.next(&stop))
                .await
                .unwrap_or_else(|_| panic!("only {} of {wanted} records came", ids.len()))
                .expect("not shut down");
            ids.extend(batch.iter().map(|r| r.id));
        }
        for w in writers {
            w.join().expect("a writer panicked");
        }
        assert!(ids.windows(2).all(|p| p[0] < p[1]), "ids out of order");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), wanted);
        let in_store: usize = store
            .keys_from("p/", None, usize::MAX)
            .iter()
            .map(|k| store.count(k))
            .sum();
        assert_eq!(
            ids.len(),
            in_store,
            "every record under the prefix, and no other"
        );
    }

    /// With `--fsync always` records become visible when their fsync is done, not in the order
    /// they were written: a watcher must still get them in id order, none skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn with_fsync_always_a_watcher_racing_writers_gets_every_record_once_in_id_order() {
        const TASKS: usize = 64;
        const EACH: usize = 40;
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _) = crate::wal::Wal::open(
            dir.path(),
            crate::config::FsyncPolicy::Always,
            u64::MAX,
            |_| {},
        )
        .expect("open the log");
        let store = Store::new(usize::MAX, None, Some(wal));
        let stop = CancellationToken::new();
        let mut watcher = store.watch("p/", 0);
        let writers: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let key = format!("p/{}", (t * 7 + i) % 23);
                        store
                            .insert_durable(&key, &encoded(&key), crate::annotate::nothing)
                            .await
                            .expect("insert");
                    }
                })
            })
            .collect();
        let wanted = TASKS * EACH;
        let mut seen = Vec::with_capacity(wanted);
        while seen.len() < wanted {
            let batch = tokio::time::timeout(Duration::from_secs(30), watcher.next(&stop))
                .await
                .unwrap_or_else(|_| panic!("only {} of {wanted} records came", seen.len()))
                .expect("not shut down");
            seen.extend(batch.iter().map(|r| r.id));
        }
        for w in writers {
            w.await.expect("a writer panicked");
        }
        assert!(seen.windows(2).all(|p| p[0] < p[1]), "ids out of order");
        assert_eq!(seen.len(), store.len(), "every record exactly once");
    }
}
