//! Run logs in the cluster's database (cluster mode): the node executing a run appends its log
//! in chunks (a chunk is whatever the node has buffered: many lines at once, never one row per
//! line); any node reads a run's log from any byte offset, to serve a range or to follow it.
//!
//! A chunk's key is its start offset in the log, so an append states where it expects the log
//! to end: a second writer for one run (a node that lost its claim and came back) cannot
//! interleave its bytes — its append conflicts and is refused.

use deadpool_postgres::Pool;
use sink::Unavailable;

/// The logs of every run, in the database behind `pool`.
#[derive(Debug)]
pub(crate) struct PgLogChunks {
    pool: Pool,
}

/// Why an append was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// The database could not take it.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The log does not end at the offset the writer expected: another writer appended.
    #[error("run {run}'s log does not end at byte {at}: another node is writing it")]
    NotAtEnd {
        /// The run.
        run: i64,
        /// Where the writer thought the log ended.
        at: u64,
    },
}

impl PgLogChunks {
    /// Run logs in the database behind `pool` (migrated by [`crate::database::open`]).
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Appends `data` to `run`'s log, which must end at byte `at` (what the writer appended so
    /// far); answers the new length.
    pub(crate) async fn append(&self, run: i64, at: u64, data: &[u8]) -> Result<u64, AppendError> {
        if data.is_empty() {
            return Ok(at);
        }
        let start = to_i64(at);
        let stored = self
            .pool
            .get()
            .await
            .map_err(Unavailable::from)?
            .execute(
                // Only at the end: the chunk before `at` must end exactly there (or the log be
                // empty), and no chunk may start at `at` already.
                "INSERT INTO log_chunks (run_id, start, data)
                 SELECT $1, $2, $3
                 WHERE $2 = coalesce((SELECT start + length(data) FROM log_chunks
                                      WHERE run_id = $1 ORDER BY start DESC LIMIT 1), 0)
                 ON CONFLICT DO NOTHING",
                &[&run, &start, &data],
            )
            .await
            .map_err(Unavailable::from)?;
        if stored == 0 {
            return Err(AppendError::NotAtEnd { run, at });
        }
        Ok(at + data.len() as u64)
    }

    /// How long `run`'s log is, in bytes.
    pub(crate) async fn len(&self, run: i64) -> Result<u64, Unavailable> {
        let row = self
            .pool
            .get()
            .await?
            .query_one(
                "SELECT coalesce((SELECT start + length(data) FROM log_chunks
                                  WHERE run_id = $1 ORDER BY start DESC LIMIT 1), 0)",
                &[&run],
            )
            .await?;
        Ok(from_i64(row.get(0)))
    }

    /// Up to about `max` bytes of `run`'s log from byte `from` (whole chunks, the first cut at
    /// `from`; at least one chunk when there is one, however big): empty at the end.
    pub(crate) async fn read(
        &self,
        run: i64,
        from: u64,
        max: usize,
    ) -> Result<Vec<u8>, Unavailable> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT start, data FROM log_chunks
                 WHERE run_id = $1 AND start + length(data) > $2 ORDER BY start",
                &[&run, &to_i64(from)],
            )
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let start = from_i64(row.get(0));
            let data: &[u8] = row.get(1);
            let skip = usize::try_from(from.saturating_sub(start)).unwrap_or(usize::MAX);
            out.extend_from_slice(data.get(skip..).unwrap_or_default());
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}

/// Writes the first bytes of a new run's log in transaction `tx` (the run was created in it, so
/// nobody else can have written any).
pub(crate) async fn first_in(
    tx: &deadpool_postgres::Transaction<'_>,
    run: i64,
    data: &[u8],
) -> Result<(), Unavailable> {
    tx.execute(
        "INSERT INTO log_chunks (run_id, start, data) VALUES ($1, 0, $2)",
        &[&run, &data],
    )
    .await?;
    Ok(())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_i64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{history::History, testing::fresh_database};

    async fn logs() -> Option<(History, PgLogChunks, PgLogChunks)> {
        let url = fresh_database().await?;
        let history = History::open_postgres(&url, "a").await.expect("history");
        let writer = PgLogChunks::new(crate::database::open(&url).await.expect("pool"));
        let reader = PgLogChunks::new(crate::database::open(&url).await.expect("pool"));
        Some((history, writer, reader))
    }

    #[tokio::test]
    async fn a_log_appended_in_chunks_reads_back_from_any_offset_on_another_node() {
        let Some((history, writer, reader)) = logs().await else {
            return;
        };
        let run = history
            .insert_run("u", 1, &["t.sh".into()], 0)
            .await
            .expect("run")
            .id;
        let mut log = Vec::new();
        let mut at = 0;
        for i in 0..50 {
            let chunk: Vec<u8> = format!("line {i}: {}\n", "x".repeat(i * 7)).into_bytes();
            at = writer.append(run, at, &chunk).await.expect("append");
            log.extend_from_slice(&chunk);
        }
        assert_eq!(at, log.len() as u64);
        assert_eq!(reader.len(run).await.expect("len"), at);
        for from in [0, 1, 17, 500, log.len() - 1] {
            let mut got = Vec::new();
            let mut offset = from as u64;
            loop {
                let part = reader.read(run, offset, 256).await.expect("read");
                if part.is_empty() {
                    break;
                }
                offset += part.len() as u64;
                got.extend_from_slice(&part);
            }
            assert_eq!(got, log[from..], "from byte {from}");
        }
        assert!(
            reader.read(run, at, 256).await.expect("read").is_empty(),
            "at the end"
        );
        assert_eq!(reader.len(run + 1).await.expect("len"), 0, "no log yet");
    }

    #[tokio::test]
    async fn a_second_writer_cannot_interleave_its_bytes() {
        let Some((history, writer, other)) = logs().await else {
            return;
        };
        let run = history
            .insert_run("u", 1, &["t.sh".into()], 0)
            .await
            .expect("run")
            .id;
        let at = writer.append(run, 0, b"first\n").await.expect("append");
        let refused = other
            .append(run, 0, b"stale\n")
            .await
            .expect_err("not at the end");
        assert!(refused.to_string().contains("another node"), "{refused}");
        let refused = other
            .append(run, at + 3, b"gap\n")
            .await
            .expect_err("past the end");
        assert!(matches!(refused, AppendError::NotAtEnd { .. }));
        writer.append(run, at, b"second\n").await.expect("append");
        assert_eq!(
            other.read(run, 0, 1 << 20).await.expect("read"),
            b"first\nsecond\n"
        );
    }
}
