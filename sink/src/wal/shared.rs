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
    /// Bytes (counted since start, across compactions) known to be on disk.
    pub(super) synced: watch::Sender<u64>,
    /// Wakes the syncer (a request for `always`, shutdown for every policy).
    pub(super) sync_requests: mpsc::Sender<SyncRequest>,
    /// Set while a compaction is under way, so that only one runs at a time.
    pub(super) compacting: AtomicBool,
    /// Log size below which compaction is not attempted.
    pub(super) compact_min: u64,
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
}
