//! The callback store's operations on PostgreSQL: insert (one statement, answered after its
//! commit), reads, listing and deletion by key range, and waits.

use std::{
    future::Future,
    sync::atomic::Ordering,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{PgStore, Unavailable};
use crate::{
    annotate::Annotation,
    record::Encoded,
    store::{KeySummary, Stored, WaitEnd},
};

/// Stores a record: bumps (or creates) the key's row, which gives the next seq under its lock;
/// inserts the record with that seq spliced into its JSON; counts it. Inserts nothing
/// when the cluster-wide total has reached `$5` (`--max-callbacks`).
const INSERT: &str = "
WITH k AS (
    INSERT INTO callback_keys AS c (key, last_seq, count, last_ms)
    SELECT $1::bytea, 1, 1, $2::bigint
    WHERE (SELECT sum(stored) FROM callback_usage)::bigint < $5::bigint
    ON CONFLICT (key) DO UPDATE
        SET last_seq = c.last_seq + 1, count = c.count + 1, last_ms = EXCLUDED.last_ms
    RETURNING last_seq
), r AS (
    INSERT INTO callbacks (key, seq, received_ms, record)
    SELECT $1::bytea, last_seq, $2::bigint,
           $3::bytea || convert_to(last_seq::text, 'UTF8') || $4::bytea
    FROM k
    RETURNING seq
), u AS (
    UPDATE callback_usage SET stored = stored + 1
    WHERE shard = $6::smallint AND EXISTS (SELECT 1 FROM r)
)
SELECT seq FROM r";

/// The first statement of an annotated insert: the key's next seq (under its row's lock until
/// the transaction ends), unless the cluster-wide total has reached `$3`.
const NEXT_SEQ: &str = "
INSERT INTO callback_keys AS c (key, last_seq, count, last_ms)
SELECT $1::bytea, 1, 1, $2::bigint
WHERE (SELECT sum(stored) FROM callback_usage)::bigint < $3::bigint
ON CONFLICT (key) DO UPDATE
    SET last_seq = c.last_seq + 1, count = c.count + 1, last_ms = EXCLUDED.last_ms
RETURNING last_seq";

/// The second: the record, finished with its seq and annotation; counted.
const PUT_RECORD: &str = "
WITH r AS (
    INSERT INTO callbacks (key, seq, received_ms, record)
    VALUES ($1::bytea, $2::bigint, $3::bigint, $4::bytea)
    RETURNING seq
), u AS (
    UPDATE callback_usage SET stored = stored + 1 WHERE shard = $5::smallint
)
SELECT seq FROM r";

/// Counter rows of `callback_usage` (see the migration).
const USAGE_SHARDS: i16 = 16;

/// Why a callback was not stored in the database.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgInsertError {
    /// `--max-callbacks` records are stored cluster-wide.
    #[error("the sink is full")]
    Full,
    /// The database could not commit it: nothing was acknowledged.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl PgStore {
    /// Stores a record under `key`; resolves once it is committed, with its seq.
    pub(crate) async fn insert(&self, key: &str, encoded: &Encoded) -> Result<u64, PgInsertError> {
        let (head, tail) = encoded.parts();
        let head = [head, b"\"seq\":"].concat();
        let tail = [b",", tail].concat();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(INSERT)
            .await
            .map_err(Unavailable::from)?;
        let max = i64::try_from(self.inner.max_callbacks).unwrap_or(i64::MAX);
        let shard = (encoded.received_ms.rem_euclid(i64::from(USAGE_SHARDS))) as i16;
        let row = client
            .query_opt(
                &statement,
                &[
                    &key.as_bytes(),
                    &encoded.received_ms,
                    &head.as_slice(),
                    &tail.as_slice(),
                    &max,
                    &shard,
                ],
            )
            .await
            .map_err(Unavailable::from)?;
        drop(client);
        let seq: i64 = row.ok_or(PgInsertError::Full)?.get(0);
        self.stored(key);
        Ok(seq as u64)
    }

    /// Stores a record whose `"response"` depends on its seq (see `annotate.rs`): one
    /// transaction takes the key's next seq, calls `annotate` with it, and inserts the record
    /// finished with both; answered after the commit.
    pub(crate) async fn insert_annotated<A>(
        &self,
        key: &str,
        encoded: &Encoded,
        annotate: impl FnOnce(u64) -> Option<Annotation<A>>,
    ) -> Result<(u64, Option<A>), PgInsertError> {
        let max = i64::try_from(self.inner.max_callbacks).unwrap_or(i64::MAX);
        let shard = (encoded.received_ms.rem_euclid(i64::from(USAGE_SHARDS))) as i16;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Unavailable::from)?;
        let next = tx
            .prepare_cached(NEXT_SEQ)
            .await
            .map_err(Unavailable::from)?;
        let row = tx
            .query_opt(&next, &[&key.as_bytes(), &encoded.received_ms, &max])
            .await
            .map_err(Unavailable::from)?;
        let seq = row.ok_or(PgInsertError::Full)?.get::<_, i64>(0) as u64;
        let annotation = annotate(seq);
        let record = encoded.finish_with(seq, annotation.as_ref().map(|a| a.response.as_slice()));
        let put = tx
            .prepare_cached(PUT_RECORD)
            .await
            .map_err(Unavailable::from)?;
        tx.query_one(
            &put,
            &[
                &key.as_bytes(),
                &(seq as i64),
                &encoded.received_ms,
                &record.as_ref(),
                &shard,
            ],
        )
        .await
        .map_err(Unavailable::from)?;
        tx.commit().await.map_err(Unavailable::from)?;
        drop(client);
        self.stored(key);
        Ok((seq, annotation.map(|a| a.answer)))
    }

    /// After a commit: wakes this node's waiters of `key` at once, and has the notifier tell
    /// the other nodes.
    fn stored(&self, key: &str) {
        self.inner.wakeups.wake(key.as_bytes());
        let _ = self.inner.notify.send(super::notifier::hex(key.as_bytes()));
    }

    /// Records held, cluster-wide.
    pub(crate) async fn len(&self) -> Result<usize, Unavailable> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT sum(stored)::bigint FROM callback_usage", &[])
            .await?;
        Ok(row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as usize)
    }

    /// Reads ignore records received before this (milliseconds since the epoch).
    pub(super) fn cutoff_ms(&self) -> i64 {
        match self.inner.retention {
            None => i64::MIN,
            Some(retention) => now_ms() - retention.as_millis() as i64,
        }
    }

    /// The latest record of `key`, if it is newer than `after`.
    pub(crate) async fn latest_after(
        &self,
        key: &str,
        after: u64,
    ) -> Result<Option<Bytes>, Unavailable> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT record FROM callbacks WHERE key = $1 AND seq > $2 AND received_ms >= $3
                 ORDER BY seq DESC LIMIT 1",
            )
            .await?;
        let row = client
            .query_opt(
                &statement,
                &[&key.as_bytes(), &(after as i64), &self.cutoff_ms()],
            )
            .await?;
        Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
    }

    /// Records of `key` newer than `after`, oldest first.
    pub(crate) async fn newer(&self, key: &str, after: u64) -> Result<Vec<Stored>, Unavailable> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, received_ms, record FROM callbacks
                 WHERE key = $1 AND seq > $2 AND received_ms >= $3 ORDER BY seq",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[&key.as_bytes(), &(after as i64), &self.cutoff_ms()],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Stored {
                seq: r.get::<_, i64>(0) as u64,
                id: 0,
                received_ms: r.get(1),
                json: Bytes::from(r.get::<_, Vec<u8>>(2)),
            })
            .collect())
    }

    /// Every record of `key`, oldest first.
    pub(crate) async fn all(&self, key: &str) -> Result<Vec<Bytes>, Unavailable> {
        Ok(self
            .newer(key, 0)
            .await?
            .into_iter()
            .map(|s| s.json)
            .collect())
    }

    /// How many records `key` holds.
    pub(crate) async fn count(&self, key: &str) -> Result<usize, Unavailable> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT count(*) FROM callbacks WHERE key = $1 AND received_ms >= $2")
            .await?;
        let row = client
            .query_one(&statement, &[&key.as_bytes(), &self.cutoff_ms()])
            .await?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    /// The record of `key` with this `seq`, or the latest when `seq` is `None`.
    pub(crate) async fn get_seq(
        &self,
        key: &str,
        seq: Option<u64>,
    ) -> Result<Option<Bytes>, Unavailable> {
        let Some(seq) = seq else {
            return self.latest_after(key, 0).await;
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT record FROM callbacks WHERE key = $1 AND seq = $2 AND received_ms >= $3",
            )
            .await?;
        let row = client
            .query_opt(
                &statement,
                &[&key.as_bytes(), &(seq as i64), &self.cutoff_ms()],
            )
            .await?;
        Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
    }

    /// Summaries of the keys under `prefix` in order, after `after`, at most `limit`.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeySummary>, Unavailable> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT key, count, last_ms FROM callback_keys
                 WHERE key >= $1 AND key < $2 AND key > $3 AND count > 0
                 ORDER BY key LIMIT $4",
            )
            .await?;
        let upper = upper_bound(prefix.as_bytes());
        let after = after.unwrap_or("").as_bytes();
        let rows = client
            .query(
                &statement,
                &[&prefix.as_bytes(), &upper, &after, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| KeySummary {
                key: String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned(),
                count: r.get::<_, i64>(1) as usize,
                last_received_at: rfc3339_ms(r.get(2)),
            })
            .collect())
    }

    /// Forgets one key; answers how many records it held.
    pub(crate) async fn delete(&self, key: &str) -> Result<usize, Unavailable> {
        self.delete_where("key = $1", &[&key.as_bytes()])
            .await
            .map(|(_, records)| records)
    }

    /// Forgets every key under `prefix`; answers how many keys went.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<usize, Unavailable> {
        let upper = upper_bound(prefix.as_bytes());
        self.delete_where("key >= $1 AND key < $2", &[&prefix.as_bytes(), &upper])
            .await
            .map(|(keys, _)| keys)
    }

    /// Deletes the keys that `range` selects and their records in one transaction; answers
    /// (keys, records). The key rows are locked first, so an insert racing with the deletion
    /// either commits before it (and goes with it) or starts the key again at seq 1 after it —
    /// never a record left behind by a deleted key.
    async fn delete_where(
        &self,
        range: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(usize, usize), Unavailable> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let keys = tx
            .query(
                &format!("SELECT key FROM callback_keys WHERE {range} FOR UPDATE"),
                params,
            )
            .await?
            .len();
        let records = tx
            .execute(&format!("DELETE FROM callbacks WHERE {range}"), params)
            .await?;
        tx.execute(&format!("DELETE FROM callback_keys WHERE {range}"), params)
            .await?;
        tx.execute(
            "UPDATE callback_usage SET stored = stored - $1 WHERE shard = 0",
            &[&(records as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok((keys, records as usize))
    }

    /// Deletes every record received before `cutoff_ms`; answers how many went.
    pub(super) async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, Unavailable> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let gone: i64 = tx
            .query_one(
                "WITH gone AS (DELETE FROM callbacks WHERE received_ms < $1 RETURNING key),
                      per AS (SELECT key, count(*) AS n FROM gone GROUP BY key),
                      k AS (UPDATE callback_keys c SET count = c.count - per.n
                            FROM per WHERE c.key = per.key)
                 SELECT count(*) FROM gone",
                &[&cutoff_ms],
            )
            .await?
            .get(0);
        if gone > 0 {
            tx.execute(
                "UPDATE callback_usage SET stored = stored - $1 WHERE shard = 0",
                &[&gone],
            )
            .await?;
            tx.execute("DELETE FROM callback_keys WHERE count <= 0", &[])
                .await?;
        }
        tx.commit().await?;
        Ok(gone as u64)
    }

    /// Waits until `check` finds something for `key`, or `deadline`, or `shutdown`. Woken by the
    /// notification of a callback under `key` (this node's or another's), by the listener's
    /// reconnection, or every `--recheck` ([`super::RECHECK_INTERVAL`]). A database that fails meanwhile is retried at
    /// each wake-up; if it is still failing at the deadline, that is the answer.
    pub(crate) async fn wait_until<T, F, Fut>(
        &self,
        key: &str,
        deadline: Instant,
        shutdown: &CancellationToken,
        mut check: F,
    ) -> Result<WaitEnd<T>, Unavailable>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, Unavailable>>,
    {
        let _waiting = Waiting::enter(self);
        let subscription = self.inner.wakeups.subscribe(key.as_bytes());
        loop {
            let woken = subscription.notify().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let failed = match check().await {
                Ok(Some(found)) => return Ok(WaitEnd::Ready(found)),
                Ok(None) => None,
                Err(e) => Some(e),
            };
            let recheck = Instant::now() + self.inner.recheck;
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(recheck.min(deadline)) => {
                    if Instant::now() >= deadline {
                        return match failed {
                            Some(e) => Err(e),
                            None => Ok(WaitEnd::TimedOut),
                        };
                    }
                }
                () = shutdown.cancelled() => return Ok(WaitEnd::ShuttingDown),
            }
        }
    }
}

/// Counts a waiter in [`PgStore::waiting`] while it lives.
struct Waiting<'a>(&'a PgStore);

impl<'a> Waiting<'a> {
    fn enter(store: &'a PgStore) -> Self {
        store.inner.waiting.fetch_add(1, Ordering::Relaxed);
        Self(store)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.inner.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when there is none (an empty prefix, or only `0xff` bytes): the exclusive upper bound of the
/// prefix's range.
pub(super) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// The exclusive upper bound of the keys under `prefix`: its [`successor`], or past every key
/// when it has none (keys are at most 1,024 bytes, so 1,025 `0xff` bytes sort after all of
/// them). Always a bound, so the condition is an index range, never a filter over the rest.
pub(super) fn upper_bound(prefix: &[u8]) -> Vec<u8> {
    successor(prefix).unwrap_or_else(|| vec![u8::MAX; crate::routes::MAX_KEY_LEN + 1])
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339_ms(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_at_the_successor_of_its_last_byte_below_0xff() {
        assert_eq!(successor(b"run-7."), Some(b"run-7/".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff"), None);
        assert_eq!(successor(b""), None);
        // Every key under the prefix sorts inside [prefix, successor).
        let upper = successor(b"ab").unwrap();
        for key in [&b"ab"[..], b"ab\x00", b"ab\xff\xff", b"abz"] {
            assert!(key >= &b"ab"[..] && key < upper.as_slice(), "{key:?}");
        }
        assert!(&b"ac"[..] >= upper.as_slice());
        // With no successor the bound is past the longest key there can be.
        let longest = vec![u8::MAX; crate::routes::MAX_KEY_LEN];
        assert!(longest < upper_bound(b""));
        assert!(longest < upper_bound(b"\xff"));
    }
}
