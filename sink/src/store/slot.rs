//! One key's records and watch channel, and the read-only view of it that waiters check.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::watch;

/// One stored callback.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) seq: u64,
    /// Its place in the sink-wide sequence of `GET /watch` (see `watch.rs`), given when it
    /// becomes visible; 0 until then.
    pub(crate) id: u64,
    pub(crate) received_ms: i64,
    /// The record's JSON, final form (see `record.rs`).
    pub(crate) json: Bytes,
}

/// Everything the sink knows about one key.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The visible records: durable by the `--fsync` policy.
    pub(super) records: VecDeque<Stored>,
    /// Written to the log but not yet fsync'd (`--fsync always` only), oldest first, each with
    /// the log position a sync must reach before it becomes visible. They hold their seqs, so
    /// a later post gets the next one, and the log's order per key stays the seqs' order.
    pub(super) pending: VecDeque<(u64, Stored)>,
    /// The seq of the newest visible record.
    pub(super) last_seq: u64,
    /// Created when the first waiter arrives; carries a change counter, not data.
    pub(super) watch: Option<watch::Sender<u64>>,
}

impl Slot {
    /// Wakes every waiter subscribed to this key (call under the key's lock, after the change).
    pub(super) fn notify(&self) {
        if let Some(tx) = &self.watch {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The seq the next record of this key gets: after the visible and the pending ones.
    pub(super) fn next_seq(&self) -> u64 {
        self.pending.back().map_or(self.last_seq, |(_, r)| r.seq) + 1
    }

    /// Whether nothing needs this slot: no record (visible or pending), no waiter.
    pub(super) fn is_unused(&self) -> bool {
        self.records.is_empty() && self.pending.is_empty() && !self.has_waiters()
    }

    pub(super) fn has_waiters(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.receiver_count() > 0)
    }

    /// The latest record, if it is newer than `after`.
    pub(super) fn latest_newer(&self, after: u64) -> Option<Bytes> {
        self.records
            .back()
            .filter(|r| r.seq > after)
            .map(|r| r.json.clone())
    }

    /// Every record's JSON, oldest first.
    pub(super) fn all(&self) -> Vec<Bytes> {
        self.records.iter().map(|r| r.json.clone()).collect()
    }

    /// The records newer than `after`, oldest first.
    pub(super) fn after(&self, after: u64) -> Vec<Stored> {
        // Records are in seq order; scan from the back for the common "only the newest" case.
        let start = self
            .records
            .iter()
            .rposition(|r| r.seq <= after)
            .map_or(0, |i| i + 1);
        self.records.range(start..).cloned().collect()
    }
}

/// Read-only view of a slot handed to wait conditions.
#[derive(Debug)]
pub(crate) struct SlotView<'a>(pub(super) &'a Slot);

impl SlotView<'_> {
    pub(crate) fn latest_after(&self, after: u64) -> Option<Bytes> {
        self.0.latest_newer(after)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.records.len()
    }

    pub(crate) fn all(&self) -> Vec<Bytes> {
        self.0.all()
    }

    pub(crate) fn after(&self, after: u64) -> Vec<Stored> {
        self.0.after(after)
    }
}
