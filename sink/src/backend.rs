//! The seam between the routes and the callback store: [`Backend`], one variant per kind of
//! store.
//!
//! The routes reach the callbacks only through `Backend`'s methods, in the API's terms (store a
//! record durably, read, wait, list, delete): the embedded store (in memory, with the log under
//! `--data-dir`) or, in cluster mode, PostgreSQL. Every method is async and may answer
//! [`Unavailable`] (only the database can be unavailable; the embedded arms never are).
//!
//! Why an enum and not a `dyn` trait object: the ingest path stays statically dispatched (a
//! match on the variant compiles to a direct, inlinable call), the async methods need no boxed
//! futures, and which backend runs is chosen at open time from the configuration, which an enum
//! expresses directly where generics could not.

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::postgres::Unavailable;
pub(crate) use crate::store::{InsertError, KeySummary, Stored, WaitEnd};
use crate::{
    annotate::Annotation,
    postgres::{PgInsertError, PgStore},
    record::Encoded,
    store::Store,
};
use crate::{postgres::PgWatcher, store::Watcher};

/// Where the callbacks live.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The in-process store, persisted (with `--data-dir`) by its append-only log.
    Embedded(Store),
    /// PostgreSQL, shared by every node of a cluster (`--database`).
    Postgres(PgStore),
}

impl Backend {
    /// Records held in all (cluster-wide with a database).
    pub(crate) async fn len(&self) -> Result<usize, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.len()),
            Self::Postgres(db) => db.len().await,
        }
    }

    /// Requests waiting for a callback on this node right now.
    pub(crate) fn waiting(&self) -> usize {
        match self {
            Self::Embedded(store) => store.waiting(),
            Self::Postgres(db) => db.waiting(),
        }
    }

    /// Stores a record under `key` and resolves once it is as durable as configured (committed,
    /// with a database); answers its `seq`. Waiters on `key` are woken by the store itself.
    ///
    /// `annotate` is the insert's one hook (see `annotate.rs`): every backend calls it exactly
    /// once, with the `seq` it just assigned and before it writes the record; the annotation's
    /// `response` becomes the record's `"response"` field and its `answer` is returned with the
    /// `seq` (`None` when the hook annotated nothing). When nothing can annotate the record (no
    /// stub for its key), [`insert_plain`](Self::insert_plain) is the faster path.
    pub(crate) async fn insert<A>(
        &self,
        key: &str,
        encoded: &Encoded,
        annotate: impl FnOnce(u64) -> Option<Annotation<A>>,
    ) -> Result<(u64, Option<A>), InsertError> {
        match self {
            Self::Embedded(store) => store.insert_durable(key, encoded, annotate).await,
            Self::Postgres(db) => db
                .insert_annotated(key, encoded, annotate)
                .await
                .map_err(|e| db_insert_error(db, e)),
        }
    }

    /// Stores a record that nothing annotates, like [`insert`](Self::insert): with a database in
    /// one statement (the seq is assigned and spliced in by PostgreSQL) instead of a transaction
    /// of two around the hook.
    pub(crate) async fn insert_plain(
        &self,
        key: &str,
        encoded: &Encoded,
    ) -> Result<u64, InsertError> {
        match self {
            Self::Embedded(store) => store
                .insert_durable(key, encoded, |_| None::<Annotation<()>>)
                .await
                .map(|(seq, _)| seq),
            Self::Postgres(db) => db
                .insert(key, encoded)
                .await
                .map_err(|e| db_insert_error(db, e)),
        }
    }

    /// The latest record of `key`, if it is newer than `after`.
    pub(crate) async fn latest_after(
        &self,
        key: &str,
        after: u64,
    ) -> Result<Option<Bytes>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.latest_after(key, after)),
            Self::Postgres(db) => db.latest_after(key, after).await,
        }
    }

    /// Every record of `key`, oldest first.
    pub(crate) async fn all(&self, key: &str) -> Result<Vec<Bytes>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.all(key)),
            Self::Postgres(db) => db.all(key).await,
        }
    }

    /// How many records `key` holds.
    pub(crate) async fn count(&self, key: &str) -> Result<usize, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.count(key)),
            Self::Postgres(db) => db.count(key).await,
        }
    }

    /// The record of `key` with this `seq`, or the latest when `seq` is `None`.
    pub(crate) async fn get_seq(
        &self,
        key: &str,
        seq: Option<u64>,
    ) -> Result<Option<Bytes>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.get_seq(key, seq)),
            Self::Postgres(db) => db.get_seq(key, seq).await,
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
    ) -> Result<WaitEnd<Bytes>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store
                .wait_latest_after(key, after, deadline, shutdown)
                .await),
            Self::Postgres(db) => {
                db.wait_until(key, deadline, shutdown, || db.latest_after(key, after))
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
    ) -> Result<WaitEnd<Vec<Bytes>>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.wait_all(key, need, deadline, shutdown).await),
            Self::Postgres(db) => {
                db.wait_until(key, deadline, shutdown, || async {
                    let all = db.all(key).await?;
                    Ok((all.len() >= need).then_some(all))
                })
                .await
            }
        }
    }

    /// Waits for records of `key` newer than `after` (answers those, oldest first).
    pub(crate) async fn wait_newer(
        &self,
        key: &str,
        after: u64,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<WaitEnd<Vec<Stored>>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.wait_newer(key, after, deadline, shutdown).await),
            Self::Postgres(db) => {
                db.wait_until(key, deadline, shutdown, || async {
                    let newer = db.newer(key, after).await?;
                    Ok((!newer.is_empty()).then_some(newer))
                })
                .await
            }
        }
    }

    /// Forgets one key; answers how many records it held.
    pub(crate) async fn delete(&self, key: &str) -> Result<usize, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.delete(key)),
            Self::Postgres(db) => db.delete(key).await,
        }
    }

    /// Forgets every key under `prefix`; answers how many keys went.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<usize, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.delete_prefix(prefix)),
            Self::Postgres(db) => db.delete_prefix(prefix).await,
        }
    }

    /// Summaries of the keys under `prefix` in order, after `after`, at most `limit`.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeySummary>, Unavailable> {
        match self {
            Self::Embedded(store) => Ok(store.list(prefix, after, limit)),
            Self::Postgres(db) => db.list(prefix, after, limit).await,
        }
    }
}

/// A `GET /watch` stream's reader of the backend: where it is in the sink-wide sequence.
#[derive(Debug)]
pub(crate) enum Watch {
    /// Reads the embedded store's keys under the prefix as it goes.
    Embedded(Watcher),
    /// Reads the database's records under the prefix in commit order.
    Postgres(PgWatcher),
}

impl Watch {
    /// The next records under the prefix, in id order (each with its `id`), waiting for one if
    /// there is none; `None` once `shutdown` fires.
    pub(crate) async fn next(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Stored>>, Unavailable> {
        match self {
            Self::Embedded(watcher) => Ok(watcher.next(shutdown).await),
            Self::Postgres(watcher) => watcher.next(shutdown).await,
        }
    }
}

impl Backend {
    /// A reader of every record under `prefix` with an id above `after`.
    pub(crate) fn watch(&self, prefix: &str, after: u64) -> Watch {
        match self {
            Self::Embedded(store) => Watch::Embedded(store.watch(prefix, after)),
            Self::Postgres(db) => Watch::Postgres(db.watch(prefix, after)),
        }
    }
}

fn db_insert_error(db: &PgStore, e: PgInsertError) -> InsertError {
    match e {
        PgInsertError::Full => InsertError::Full(db.max_callbacks()),
        PgInsertError::Unavailable(e) => InsertError::Unavailable(e),
    }
}
