//! `GET /watch` on PostgreSQL: the records under a prefix in commit order, the event id being
//! the id of the transaction that stored each one (`xid`, see migration V2).
//!
//! # Why a watcher never misses a record below one it was sent
//! Every insert stores one record in a transaction of its own, so `xid` is unique per record. A
//! read takes its snapshot's `xmin` — the oldest transaction still running — and reads only
//! records with `xid < xmin`: every such transaction has ended (committed, so the snapshot sees
//! its record, or rolled back, so there is none). Any record that becomes visible later belongs
//! to a transaction at or above that `xmin`, so the cursor may move to `xmin - 1` when the read
//! found everything below it, and nothing can later appear below the cursor. A record is sent
//! only once every older transaction has ended: a long transaction elsewhere on the server
//! delays the stream (never reorders it).
//!
//! Waking: a notification of a callback under any key (this node's or another's, see
//! `wakeups.rs`), the listener's reconnection, or every `--recheck` — which also catches the
//! end of an older transaction that stored nothing (it notifies no one).

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{PgStore, Unavailable, records::upper_bound, wakeups::AnyKey};
use crate::store::{Stored, watch::BATCH};

/// Up to `$5` records under the prefix (`[$2, $3)`, not past retention `$4`) after xid `$1`
/// and below the snapshot's `xmin`, in xid order, each row with that `xmin`; one row of
/// `NULL`s but the `xmin` when there is none.
const READ: &str = "
WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT c.xid, c.seq, c.received_ms, c.record, s.xmin::text::bigint
FROM s LEFT JOIN LATERAL (
    SELECT xid::text::bigint AS xid, seq, received_ms, record FROM callbacks
    WHERE xid > $1::text::xid8 AND xid < s.xmin
      AND key >= $2 AND key < $3 AND received_ms >= $4
    ORDER BY callbacks.xid LIMIT $5
) c ON true";

/// One `GET /watch` stream's place in the database.
#[derive(Debug)]
pub(crate) struct PgWatcher {
    store: PgStore,
    prefix: Vec<u8>,
    upper: Vec<u8>,
    /// Every record under the prefix with an xid up to this one has been handed out.
    cursor: u64,
    subscription: AnyKey,
}

impl PgStore {
    /// A watcher of every key under `prefix`, starting strictly after the xid `after`.
    pub(crate) fn watch(&self, prefix: &str, after: u64) -> PgWatcher {
        self.inner
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PgWatcher {
            store: self.clone(),
            prefix: prefix.as_bytes().to_vec(),
            upper: upper_bound(prefix.as_bytes()),
            cursor: after,
            subscription: self.inner.wakeups.subscribe_any(),
        }
    }
}

impl PgWatcher {
    /// The next records under the prefix (oldest xid first, at most [`BATCH`]), waiting for
    /// one if there is none; `None` once `shutdown` fires. A database that fails answers its
    /// error (the stream ends; the client resumes with `Last-Event-ID`).
    pub(crate) async fn next(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Stored>>, Unavailable> {
        let Self {
            subscription,
            store,
            ..
        } = self;
        loop {
            let woken = subscription.notify().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let batch = read(store, &self.prefix, &self.upper, &mut self.cursor).await?;
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
            let recheck = tokio::time::Instant::now() + store.inner.recheck;
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(recheck) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
        }
    }
}

/// One read: the records under `[prefix, upper)` after the cursor and below `xmin`; moves the
/// cursor past them (to `xmin - 1` when that was all of them).
async fn read(
    store: &PgStore,
    prefix: &[u8],
    upper: &[u8],
    cursor: &mut u64,
) -> Result<Vec<Stored>, Unavailable> {
    let client = store.client().await?;
    let statement = client.prepare_cached(READ).await?;
    let rows = client
        .query(
            &statement,
            &[
                &(*cursor as i64).to_string(),
                &prefix,
                &upper,
                &store.cutoff_ms(),
                &(BATCH as i64),
            ],
        )
        .await?;
    drop(client);
    let xmin = rows.first().map_or(0, |r| r.get::<_, i64>(4)) as u64;
    let batch: Vec<Stored> = rows
        .iter()
        .filter_map(|r| {
            let xid: Option<i64> = r.get(0);
            Some(Stored {
                id: xid? as u64,
                seq: r.get::<_, i64>(1) as u64,
                received_ms: r.get(2),
                json: Bytes::from(r.get::<_, Vec<u8>>(3)),
            })
        })
        .collect();
    *cursor = match batch.last() {
        Some(last) if batch.len() >= BATCH => last.id,
        _ => (*cursor).max(xmin.saturating_sub(1)),
    };
    Ok(batch)
}

impl Drop for PgWatcher {
    fn drop(&mut self) {
        self.store
            .inner
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
