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
    shared::{Outcome, Shared, State, SyncRequest, Synced},
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
        remove_unfinished_compaction(&path)?;
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
                torn: false,
                refusing: None,
                #[cfg(test)]
                faults: Default::default(),
            }),
            policy: fsync,
            synced: watch::channel(Synced::default()).0,
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
    ///
    /// A write that fails leaves the log as it was: whatever part of the frame reached the file
    /// is cut off again before this returns (or, if even that fails, before the next write is
    /// attempted; until then every write is refused), so a later frame never sits behind a torn
    /// one.
    pub(crate) fn append(&self, op: &Op) -> Result<(WalAck, u64), LogError> {
        let shared = &*self.shared;
        let frame = frame::frame(op);
        let mut state = shared.state.lock();
        if state.torn {
            if let Err(e) = cut_back(&mut state) {
                return Err(refuse(shared, &mut state, e));
            }
            state.torn = false;
            tracing::info!(path = %shared.path.display(), valid_bytes = state.len, "cut the partial frame of a failed write off the callback log");
        }
        if let Err(e) = write_frame(&mut state, &frame) {
            if let Err(cut) = cut_back(&mut state) {
                state.torn = true;
                tracing::error!(path = %shared.path.display(), error = %cut, "failed to cut a partial frame off the callback log; refusing every write until it can be cut");
            }
            return Err(refuse(shared, &mut state, e));
        }
        if let Some(refused) = state.refusing.take() {
            tracing::info!(path = %shared.path.display(), refused, "the callback log accepts writes again (space is back): callbacks are stored again");
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
            _ => WalAck::Written,
        };
        Ok((ack, len))
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

    /// Tests only: the disk fills up after `space` more bytes (`None`: space is back).
    #[cfg(test)]
    pub(crate) fn set_space(&self, space: Option<u64>) {
        self.shared.state.lock().faults.space = space;
    }

    /// Tests only: fsync fails from now on (`true`) or succeeds again.
    #[cfg(test)]
    pub(crate) fn set_sync_fails(&self, fails: bool) {
        self.shared.state.lock().faults.sync_fails = fails;
    }

    /// What became of the frame appended with an ack target of `at` (`--fsync always`).
    pub(crate) fn outcome(&self, at: u64) -> Outcome {
        self.shared.synced.borrow().outcome(at)
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
            shared.synced.send_modify(|s| s.reached(written));
            Ok(())
        })
        .await
        .map_err(LogError::FlushTask)?
    }
}

/// Removes what a compaction killed midway left: the old log is whole (a compaction replaces
/// it only by an atomic rename once the new file is complete), so the half-written new one is
/// garbage, and often large.
fn remove_unfinished_compaction(log: &Path) -> io::Result<()> {
    let leftover = log.with_extension("log.compacting");
    match std::fs::metadata(&leftover) {
        Ok(meta) => {
            std::fs::remove_file(&leftover)?;
            tracing::warn!(path = %leftover.display(), bytes = meta.len(), "removed the file of a compaction that did not finish (the server stopped during it); the log itself is whole");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes one whole frame at the end of the file (`O_APPEND`).
fn write_frame(state: &mut State, frame: &[u8]) -> io::Result<()> {
    #[cfg(test)]
    if let Some(space) = &mut state.faults.space {
        let fits = (*space).min(frame.len() as u64) as usize;
        *space -= fits as u64;
        state.file.write_all(&frame[..fits])?;
        if fits < frame.len() {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        return Ok(());
    }
    state.file.write_all(frame)
}

/// Cuts the file back to its last whole frame.
pub(super) fn cut_back(state: &mut State) -> io::Result<()> {
    #[cfg(test)]
    if state.faults.cut_fails {
        return Err(io::Error::other("injected: the cut fails"));
    }
    state.file.set_len(state.len)
}

/// The error for a refused append; logs the first of a run of refusals (they come one per
/// request while the disk is full).
fn refuse(shared: &Shared, state: &mut State, e: io::Error) -> LogError {
    let full = matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    );
    match &mut state.refusing {
        Some(refused) => {
            *refused += 1;
            tracing::debug!(path = %shared.path.display(), error = %e, "refused a callback: the log cannot be written");
        }
        None => {
            state.refusing = Some(1);
            if full {
                tracing::error!(path = %shared.path.display(), error = %e, "the disk of the data directory is full: callbacks are refused (507 storage_full, nothing stored) until space is freed there; reads go on");
            } else {
                tracing::error!(path = %shared.path.display(), error = %e, "failed to write the callback log: callbacks are refused until it can be written");
            }
        }
    }
    let dir = shared.path.parent().unwrap_or(&shared.path).to_path_buf();
    if full {
        LogError::StorageFull { dir, source: e }
    } else {
        LogError::Write(e)
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
            let (ack, _) = wal.append(op).expect("append");
            assert!(matches!(ack, WalAck::Written));
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
            wal.append(&put("garbage", seq)).expect("append");
        }
        let (_, len) = wal.append(&put("kept", 1)).expect("append");
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
        wal.append(&put("during", 1)).expect("append");
        compaction.write(&[put("kept", 1)]);
        drop(
            wal.compaction_due(len, 0)
                .expect("claimable again once done"),
        );
        wal.append(&put("after", 1)).expect("append");
        drop(wal);
        assert_eq!(
            replayed(dir.path()),
            [put("kept", 1), put("during", 1), put("after", 1)]
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
        );
    }

    fn log_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("callbacks.log"))
            .expect("the log exists")
            .len()
    }

    #[test]
    fn a_failed_append_leaves_the_log_as_it_was_and_later_frames_replay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, u64::MAX, |_| {}).expect("open");
        wal.append(&put("a", 1)).expect("append a");
        let whole = log_len(dir.path());
        // The disk fills up 5 bytes into the next frame.
        wal.shared.state.lock().faults.space = Some(5);
        let refused = wal.append(&put("b", 1));
        assert!(
            matches!(refused, Err(LogError::StorageFull { .. })),
            "a full disk is reported as such: {refused:?}"
        );
        assert_eq!(
            log_len(dir.path()),
            whole,
            "the partial frame was cut off again"
        );
        // Space is back.
        wal.shared.state.lock().faults.space = None;
        wal.append(&put("c", 1)).expect("append c");
        drop(wal);
        let mut seen = Vec::new();
        let (wal, replay) = Wal::open(dir.path(), FsyncPolicy::Never, u64::MAX, |op| {
            seen.push(describe(&op));
        })
        .expect("reopen");
        drop(wal);
        assert_eq!(replay.truncated_bytes, 0, "no torn frame in the log");
        assert_eq!(seen, [describe(&put("a", 1)), describe(&put("c", 1))]);
    }

    #[test]
    fn while_a_partial_frame_cannot_be_cut_off_every_append_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, u64::MAX, |_| {}).expect("open");
        wal.append(&put("a", 1)).expect("append a");
        {
            let mut state = wal.shared.state.lock();
            state.faults.space = Some(5);
            state.faults.cut_fails = true;
        }
        assert!(wal.append(&put("b", 1)).is_err(), "the disk is full");
        wal.shared.state.lock().faults.space = None;
        assert!(
            wal.append(&put("c", 1)).is_err(),
            "a frame written now would sit behind the torn one: refused"
        );
        wal.shared.state.lock().faults.cut_fails = false;
        wal.append(&put("d", 1))
            .expect("the cut succeeds, then the write");
        drop(wal);
        assert_eq!(
            replayed(dir.path()),
            [describe(&put("a", 1)), describe(&put("d", 1))]
        );
    }

    #[test]
    fn an_unfinished_compaction_file_is_removed_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, u64::MAX, |_| {}).expect("open");
        wal.append(&put("a", 1)).expect("append a");
        drop(wal);
        let leftover = dir.path().join("callbacks.log.compacting");
        std::fs::write(&leftover, b"half a compaction").expect("plant the leftover");
        assert_eq!(replayed(dir.path()), [describe(&put("a", 1))]);
        assert!(
            !leftover.exists(),
            "callbacks.log.compacting is still there after open"
        );
    }
}
