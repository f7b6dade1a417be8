//! When writes reach the disk: the syncer thread and the [`WalAck`] a put waits on.

use std::sync::mpsc;

use tokio::sync::watch;

use super::{
    shared::{Outcome, Shared, SyncRequest, Synced},
    writer::cut_back,
};
use crate::{config::FsyncPolicy, error::LogError};

/// Resolves once a put that was written is as durable as `--fsync` promises.
#[derive(Debug)]
pub(crate) enum WalAck {
    /// Durable by the policy already: the write succeeded (a duration or `never`, or no log).
    Written,
    /// Durable once the syncs reach this many bytes (`--fsync always`); refused if the fsync
    /// that should have made it durable failed.
    Synced(u64, watch::Receiver<Synced>),
}

impl WalAck {
    pub(crate) async fn wait(self) -> Result<(), LogError> {
        match self {
            Self::Written => Ok(()),
            Self::Synced(target, mut synced) => {
                let state = synced
                    .wait_for(|s| s.outcome(target) != Outcome::Pending)
                    .await
                    .map_err(|_| LogError::SyncerStopped)?;
                match state.outcome(target) {
                    Outcome::Failed => Err(LogError::SyncFailed),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// The syncer thread: fsyncs on request (`always`), on an interval (a duration), or only at
/// shutdown (`never`). It syncs through its own descriptor, so writers never wait for it.
pub(super) fn run_syncer(shared: &Shared, requests: mpsc::Receiver<SyncRequest>) {
    loop {
        let request = match shared.policy {
            FsyncPolicy::Every(every) => match requests.recv_timeout(every) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => SyncRequest::Sync,
                Err(mpsc::RecvTimeoutError::Disconnected) => SyncRequest::Stop,
            },
            _ => requests.recv().unwrap_or(SyncRequest::Stop),
        };
        // Requests that queued up meanwhile are served by this one sync.
        let mut stop = matches!(request, SyncRequest::Stop);
        while let Ok(more) = requests.try_recv() {
            stop |= matches!(more, SyncRequest::Stop);
        }
        if !matches!(shared.policy, FsyncPolicy::Never) || stop {
            sync_once(shared);
        }
        if stop {
            return;
        }
    }
}

fn sync_once(shared: &Shared) {
    let (handle, target) = {
        let mut state = shared.state.lock();
        if !state.dirty {
            let written = state.written;
            drop(state);
            shared.synced.send_modify(|s| s.reached(written));
            return;
        }
        state.dirty = false;
        #[cfg(test)]
        if state.faults.sync_fails {
            drop(state);
            return fsync_failed(shared, &std::io::Error::other("injected: fsync fails"));
        }
        (state.file.try_clone(), state.written)
    };
    match handle.and_then(|f| f.sync_data()) {
        Ok(()) => shared.synced.send_modify(|s| s.reached(target)),
        Err(e) => fsync_failed(shared, &e),
    }
}

/// An fsync failed. After a failed fsync the kernel may have dropped the pages it could not
/// write and reports the error once: a later fsync that succeeds proves nothing about them. So
/// with `--fsync always` every frame not yet known to be on disk is refused (its callback is
/// answered as not stored, never made visible) and cut off the log, so that a restart does not
/// bring back a callback that was refused. With a duration or `never` the callbacks were
/// acknowledged already; the failure is logged and the next sync tries again.
fn fsync_failed(shared: &Shared, e: &std::io::Error) {
    let mut state = shared.state.lock();
    state.dirty = true;
    if !matches!(shared.policy, FsyncPolicy::Always) {
        tracing::error!(path = %shared.path.display(), error = %e, "failed to fsync the callback log; retrying at the next sync");
        return;
    }
    // Not yet known durable, and not refused by an earlier failure already.
    let upto = {
        let synced = shared.synced.borrow();
        synced
            .failed
            .last()
            .map_or(synced.upto, |&(_, through)| through.max(synced.upto))
    };
    let unsynced = state.written - upto;
    if unsynced == 0 {
        return;
    }
    state.len = state.len.saturating_sub(unsynced);
    if let Some(tail) = &mut state.tail {
        // A compaction under way holds the same frames to write into the new file.
        let keep = tail.len().saturating_sub(unsynced as usize);
        tail.truncate(keep);
    }
    tracing::error!(path = %shared.path.display(), error = %e, refused_bytes = unsynced, "failed to fsync the callback log: the callbacks waiting for it are refused (not stored) and cut off the log");
    if let Err(cut) = cut_back(&mut state) {
        state.torn = true;
        tracing::error!(path = %shared.path.display(), error = %cut, "failed to cut the refused frames off the callback log; refusing every write until it can be cut");
    }
    let through = state.written;
    shared
        .synced
        .send_modify(|s| s.failed.push((upto, through)));
}
