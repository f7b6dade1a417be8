//! The ordered key index: a lock-free skip list of the keys that hold records, so a prefix is
//! listed or deleted without scanning every key.

use std::{ops::Bound, sync::Arc};

use crossbeam_skiplist::SkipSet;

/// Keys that hold at least one record, in order. Mutated only under the key's shard lock, so
/// it agrees with the map.
#[derive(Debug)]
pub(super) struct KeyIndex(SkipSet<Arc<str>>);

/// Summary of one key for listings.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeySummary {
    /// The key.
    pub key: String,
    /// How many records it holds.
    pub count: usize,
    /// When its latest record arrived (RFC 3339, ms).
    pub last_received_at: String,
}

impl KeyIndex {
    pub(super) fn new() -> Self {
        Self(SkipSet::new())
    }

    pub(super) fn insert(&self, key: Arc<str>) {
        self.0.insert(key);
    }

    pub(super) fn remove(&self, key: &str) {
        self.0.remove(key);
    }

    /// Keys under `prefix` in order, starting after `after`, at most `limit`.
    pub(super) fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<Arc<str>> {
        let lower: Bound<&str> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.0
            .range::<str, _>((lower, Bound::Unbounded))
            .map(|e| e.value().clone())
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .collect()
    }

    /// Calls `f` with every key under `prefix`, in order (reading the list as it goes).
    pub(super) fn for_each_under(&self, prefix: &str, mut f: impl FnMut(&str)) {
        for entry in self
            .0
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        {
            if !entry.value().starts_with(prefix) {
                break;
            }
            f(entry.value());
        }
    }
}
