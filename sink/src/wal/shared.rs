//! The state that appends, the syncer thread and compaction share.

use std::{
    fs::File,
    path::PathBuf,
    sync::{atomic::AtomicBool, mpsc},
};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::FsyncPolicy;

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) path: PathBuf,
    pub(super) state: Mutex<State>,
    pub(super) policy: FsyncPolicy,
    /// What is known to be on disk, and what failed to get there.
    pub(super) synced: watch::Sender<Synced>,
    /// Wakes the syncer (a request for `always`, shutdown for every policy).
    pub(super) sync_requests: mpsc::Sender<SyncRequest>,
    /// Set while a compaction is under way, so that only one runs at a time.
    pub(super) compacting: AtomicBool,
    /// Log size below which compaction is not attempted.
    pub(super) compact_min: u64,
}

/// Where the syncs have got to, in bytes counted since start (across compactions, never reused).
#[derive(Debug, Default, Clone)]
pub(crate) struct Synced {
    /// Bytes known to be on disk.
    pub(crate) upto: u64,
    /// Ranges `(after, through]` whose fsync failed (`--fsync always`): cut off the log again,
    /// so never durable, whatever a later sync reaches. Empty unless a disk failed.
    pub(crate) failed: Vec<(u64, u64)>,
}

/// What became of the bytes up to a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// On disk.
    Durable,
    /// Their fsync failed; they were cut off the log.
    Failed,
    /// Not synced yet.
    Pending,
}

impl Synced {
    /// What became of the frame that ends at `at`.
    pub(crate) fn outcome(&self, at: u64) -> Outcome {
        if self
            .failed
            .iter()
            .any(|&(after, through)| after < at && at <= through)
        {
            Outcome::Failed
        } else if self.upto >= at {
            Outcome::Durable
        } else {
            Outcome::Pending
        }
    }

    /// Records that everything up to `written` is on disk.
    pub(crate) fn reached(&mut self, written: u64) {
        self.upto = self.upto.max(written);
    }
}

#[derive(Debug)]
pub(super) enum SyncRequest {
    Sync,
    Stop,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) file: File,
    /// Size of the current file.
    pub(super) len: u64,
    /// Bytes written since start, across compactions (what `synced` is compared with).
    pub(super) written: u64,
    /// Written but not yet fsync'd.
    pub(super) dirty: bool,
    /// While a compaction writes its snapshot: frames appended meanwhile, for the new file.
    pub(super) tail: Option<Vec<u8>>,
    /// A failed write left part of a frame past `len` and cutting it off failed too: every
    /// append first retries the cut, and is refused while it fails, so that no frame is ever
    /// written behind a torn one.
    pub(super) torn: bool,
    /// Appends refused since the last one that succeeded (`None` while writes succeed): the
    /// first refusal of an episode is logged as an error, the end of it as "space is back".
    pub(super) refusing: Option<u64>,
    /// Tests only, a fault-injecting file layer: bytes the file still takes before writes fail
    /// with "no space left" (`None`: no limit), and whether cutting the file back fails.
    #[cfg(test)]
    pub(super) faults: Faults,
}

#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct Faults {
    pub(super) space: Option<u64>,
    pub(super) cut_fails: bool,
    /// Whether fsync fails (as on a failing disk: EIO).
    pub(super) sync_fails: bool,
}
