//! The seam between the routes and the callback store: [`Backend`], one variant per kind of
//! store.
//!
//! The routes reach the callbacks only through `Backend`'s methods, in the API's terms (store a
//! record durably, read, wait, list, delete). Today there is one backend, the embedded store (in
//! memory, with the log under `--data-dir`). A PostgreSQL backend would be a second variant with
//! an arm in each method; the routes would not change.
//!
//! Why an enum and not a `dyn` trait object: the ingest path stays statically dispatched (a
//! match on the variant compiles to a direct, inlinable call; with one variant, to nothing), the
//! async methods need no boxed futures, and which backend runs is chosen at open time from the
//! configuration, which an enum expresses directly where generics could not.

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::store::{InsertError, KeySummary, Stored, WaitEnd};
use crate::{annotate::Annotation, record::Encoded, store::Store};

/// Where the callbacks live.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The in-process store, persisted (with `--data-dir`) by its append-only log.
    Embedded(Store),
}

impl Backend {
    /// Records held in all.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Embedded(store) => store.len(),
        }
    }

    /// Requests waiting for a callback right now.
    pub(crate) fn waiting(&self) -> usize {
        match self {
            Self::Embedded(store) => store.waiting(),
        }
    }

    /// Stores a record under `key` and resolves once it is as durable as configured; answers
    /// its `seq`. Waiters on `key` are woken by the store itself.
    ///
    /// `annotate` is the insert's one hook (see `annotate.rs`): every backend calls it exactly
    /// once, with the `seq` it just assigned and before it writes the record; the annotation's
    /// `response` becomes the record's `"response"` field and its `answer` is returned with the
    /// `seq` (`None` when the hook annotated nothing).
    pub(crate) async fn insert<A>(
        &self,
        key: &str,
        encoded: &Encoded,
        annotate: impl FnOnce(u64) -> Option<Annotation<A>>,
    ) -> Result<(u64, Option<A>), InsertError> {
        match self {
            Self::Embedded(store) => store.insert_durable(key, encoded, annotate).await,
        }
    }

    /// The latest record of `key`, if it is newer than `after`.
    pub(crate) fn latest_after(&self, key: &str, after: u64) -> Option<Bytes> {
        match self {
            Self::Embedded(store) => store.latest_after(key, after),
        }
    }

    /// Every record of `key`, oldest first.
    pub(crate) fn all(&self, key: &str) -> Vec<Bytes> {
        match self {
            Self::Embedded(store) => store.all(key),
        }
    }

    /// How many records `key` holds.
    pub(crate) fn count(&self, key: &str) -> usize {
        match self {
            Self::Embedded(store) => store.count(key),
        }
    }

    /// The record of `key` with this `seq`, or the latest when `seq` is `None`.
    pub(crate) fn get_seq(&self, key: &str, seq: Option<u64>) -> Option<Bytes> {
        match self {
            Self::Embedded(store) => store.get_seq(key, seq),
        }
    }

    /// Waits for a record of `key` newer than `after` (answers the latest), until `deadline`
    /// or `shutdown`. A record stored after the wait began is never missed.
    pub(crate) async fn wait_latest_after(
        &self,
        key: &str,
        after: u64,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> WaitEnd<Bytes> {
        match self {
            Self::Embedded(store) => {
                store
                    .wait_latest_after(key, after, deadline, shutdown)
                    .await
            }
        }
    }

    /// Waits until `key` holds at least `need` records (answers all of them).
    pub(crate) async fn wait_all(
        &self,
        key: &str,
        need: usize,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> WaitEnd<Vec<Bytes>> {
        match self {
            Self::Embedded(store) => store.wait_all(key, need, deadline, shutdown).await,
        }
    }

    /// Waits for records of `key` newer than `after` (answers those, oldest first).
    pub(crate) async fn wait_newer(
        &self,
        key: &str,
        after: u64,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> WaitEnd<Vec<Stored>> {
        match self {
            Self::Embedded(store) => store.wait_newer(key, after, deadline, shutdown).await,
        }
    }

    /// Forgets one key; answers how many records it held.
    pub(crate) fn delete(&self, key: &str) -> usize {
        match self {
            Self::Embedded(store) => store.delete(key),
        }
    }

    /// Forgets every key under `prefix`; answers how many keys went.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> usize {
        match self {
            Self::Embedded(store) => store.delete_prefix(prefix),
        }
    }

    /// Summaries of the keys under `prefix` in order, after `after`, at most `limit`.
    pub(crate) fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeySummary> {
        match self {
            Self::Embedded(store) => store.list(prefix, after, limit),
        }
    }
}
