//! When writes reach the disk: the syncer thread and the [`WalAck`] a put waits on.

use std::sync::mpsc;

use tokio::sync::watch;

use super::shared::{Shared, SyncRequest};
use crate::{config::FsyncPolicy, error::LogError};

/// Resolves once a put that was written is as durable as `--fsync` promises.
#[derive(Debug)]
pub(crate) enum WalAck {
    /// Durable by the policy already: the write succeeded (a duration or `never`, or no log).
    Written,
    /// Durable once `synced` reaches this many bytes (`--fsync always`).
    Synced(u64, watch::Receiver<u64>),
}

impl WalAck {
    pub(crate) async fn wait(self) -> Result<(), LogError> {
        match self {
            Self::Written => Ok(()),
            Self::Synced(target, mut synced) => synced
                .wait_for(|s| *s >= target)
                .await
                .map(|_| ())
                .map_err(|_| LogError::SyncerStopped),
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
            shared.synced.send_modify(|s| *s = (*s).max(written));
            return;
        }
        state.dirty = false;
        (state.file.try_clone(), state.written)
    };
    match handle.and_then(|f| f.sync_data()) {
        Ok(()) => shared.synced.send_modify(|s| *s = (*s).max(target)),
        Err(e) => {
            tracing::error!(path = %shared.path.display(), error = %e, "failed to fsync the callback log");
            shared.state.lock().dirty = true;
        }
    }
}
