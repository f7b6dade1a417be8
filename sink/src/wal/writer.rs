//! [`Wal`]: the owner's handle to the log — open (with replay), append, flush.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{
    compaction::Compaction,
    frame::{self, Op},
    replay::{ReplayStats, replay},
    shared::{Shared, State, SyncRequest},
    syncer::{WalAck, run_syncer},
};
use crate::{config::FsyncPolicy, error::LogError};

/// The handle to an open log. Knows frames and files, nothing of what the frames mean.
#[derive(Debug)]
pub(crate) struct Wal {
    shared: Arc<Shared>,
}

impl Wal {
    /// Opens (or creates) `callbacks.log` in `dir`, hands every frame it holds to `apply` in
    /// order, and starts the syncer. Nothing is appended until this returns, so replaying
    /// never writes the log again.
    pub(crate) fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        compact_min: u64,
        apply: impl FnMut(Op),
    ) -> io::Result<(Self, ReplayStats)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("callbacks.log");
        let stats = replay(&path, apply)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        let (sync_tx, sync_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            path,
            state: Mutex::new(State {
                file,
                len,
                written: 0,
                dirty: false,
                tail: None,
            }),
            policy: fsync,
            synced: watch::channel(0).0,
            sync_requests: sync_tx,
            compacting: AtomicBool::new(false),
            compact_min,
        });
        let syncer = shared.clone();
        std::thread::Builder::new()
            .name("eventual-fsync".into())
            .spawn(move || run_syncer(&syncer, sync_rx))?;
        Ok((Self { shared }, stats))
    }

    /// Writes one operation; call it under the key's lock. Returns the ack to wait on and the
    /// log's size after the write (for [`compaction_due`](Self::compaction_due)).
    pub(crate) fn append(&self, op: &Op) -> (WalAck, u64) {
        let shared = &*self.shared;
        let frame = frame::frame(op);
        let mut state = shared.state.lock();
        if let Err(e) = state.file.write_all(&frame) {
            let len = state.len;
            drop(state);
            tracing::error!(path = %shared.path.display(), error = %e, "failed to write the callback log");
            return (WalAck::Done(Err(LogError::Write(e))), len);
        }
        state.len += frame.len() as u64;
        state.written += frame.len() as u64;
        state.dirty = true;
        if let Some(tail) = &mut state.tail {
            tail.extend_from_slice(&frame);
        }
        let written = state.written;
        let len = state.len;
        drop(state);
        let ack = match shared.policy {
            FsyncPolicy::Always => {
                let rx = shared.synced.subscribe();
                let _ = shared.sync_requests.send(SyncRequest::Sync);
                WalAck::Synced(written, rx)
            }
            _ => WalAck::done(),
        };
        (ack, len)
    }

    /// Whether a log of `log_len` bytes holding `live_bytes` of live records is worth rewriting
    /// (more than twice the live data, and past the minimum size); if so, claims the one
    /// compaction that may run at a time.
    pub(crate) fn compaction_due(&self, log_len: u64, live_bytes: u64) -> Option<Compaction> {
        let shared = &self.shared;
        if log_len < shared.compact_min || log_len <= live_bytes.saturating_mul(2) {
            return None;
        }
        if shared.compacting.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Compaction::claimed(shared.clone()))
    }

    /// Waits until everything appended so far is on disk (fsync'd).
    pub(crate) async fn flush(&self) -> Result<(), LogError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = shared.state.lock();
            state.file.sync_data().map_err(LogError::Sync)?;
            state.dirty = false;
            let written = state.written;
            drop(state);
            shared.synced.send_modify(|s| *s = (*s).max(written));
            Ok(())
        })
        .await
        .map_err(LogError::FlushTask)?
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shared.sync_requests.send(SyncRequest::Stop);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn put(key: &str, seq: u64) -> Op {
        Op::Put {
            key: Arc::from(key),
            seq,
            received_ms: 1_700_000_000_000,
            json: Bytes::from(format!("{{\"seq\":{seq}}}")),
        }
    }

    fn describe(op: &Op) -> String {
        match op {
            Op::Put { key, seq, json, .. } => {
                format!("put {key} {seq} {}", String::from_utf8_lossy(json))
            }
            Op::Delete { key } => format!("delete {key}"),
        }
    }

    /// Opens the log in `dir` and answers what it replayed.
    fn replayed(dir: &Path) -> Vec<String> {
        let mut seen = Vec::new();
        let (wal, _) = Wal::open(dir, FsyncPolicy::Never, u64::MAX, |op| {
            seen.push(describe(&op));
        })
        .expect("open the log");
        drop(wal);
        seen
    }

    #[test]
    fn appended_frames_are_handed_back_in_order_at_the_next_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(replayed(dir.path()).is_empty(), "a new log replays nothing");
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, u64::MAX, |_| {}).expect("open");
        let ops = [
            put("a", 1),
            put("b", 1),
            Op::Delete { key: "a".into() },
            put("a", 1),
        ];
        for op in &ops {
            let (ack, _) = wal.append(op);
            assert!(matches!(ack, WalAck::Done(Ok(()))));
        }
        drop(wal);
        assert_eq!(
            replayed(dir.path()),
            ops.iter().map(describe).collect::<Vec<_>>()
        );
    }

    #[test]
    fn compaction_keeps_the_snapshot_and_what_was_appended_after_it_began() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, 0, |_| {}).expect("open");
        for seq in 1..=10 {
            wal.append(&put("garbage", seq));
        }
        let (_, len) = wal.append(&put("kept", 1));
        assert!(
            wal.compaction_due(len, len).is_none(),
            "not due while the live data is over half the log"
        );
        let mut compaction = wal
            .compaction_due(len, 0)
            .expect("due: the log is all garbage");
        assert!(
            wal.compaction_due(len, 0).is_none(),
            "one compaction at a time"
        );
        compaction.begin();
        wal.append(&put("during", 1));
        compaction.write(&[put("kept", 1)]);
        drop(
            wal.compaction_due(len, 0)
                .expect("claimable again once done"),
        );
        wal.append(&put("after", 1));
        drop(wal);
        assert_eq!(
            replayed(dir.path()),
            [put("kept", 1), put("during", 1), put("after", 1)]
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
        );
    }
}
