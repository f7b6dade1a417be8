//! Durability: an append-only, checksummed log of puts and deletes under `--data-dir`.
//!
//! # Design
//! - A put is written to the file *under its key's lock* (so the log's order per key is the
//!   store's) by the request's own thread, with one `write(2)` into the page cache: it survives
//!   `kill -9` of the server before anyone sees `200`. No hand-off to another thread, no wake-up.
//! - `--fsync` decides when the kernel's copy reaches the disk: `always` (before every ack: also
//!   survives power loss), a duration such as `1s` (the default: at most that much is lost on
//!   power loss, nothing on a process crash), or `never` (left to the OS). A syncer thread does
//!   the fsyncs on its own descriptor; with `always`, each request waits ([`WalAck`]) until a
//!   sync that started after its write has finished, so one fsync covers every write before it
//!   (group commit).
//! - Frames are `[len u32][crc32 u32][payload]`. Replay stops at the first frame that is short or
//!   fails its checksum: that tail is cut off with a warning (and kept beside the log for a
//!   post-mortem); everything before it is loaded.
//! - Compaction rewrites the log from a snapshot of the store once the file is more than twice
//!   the live data (deletes and expiry make garbage), on a thread of its own. The store's gate
//!   blocks mutations only while the snapshot is taken (cloning reference-counted records); from
//!   then on every append also goes to a `tail` buffer, which is written after the snapshot into
//!   the new file before it replaces the old one, so nothing is lost or doubled.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufReader, Read, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::store::{Inner, Store};

/// When the log is fsync'd (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement (group commit): survives power loss.
    Always,
    /// At most this long after a write: survives a crash of the server, not of the machine.
    Every(Duration),
    /// Never explicitly; the OS writes back when it likes.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Every(Duration::from_secs(1))
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => crate::duration::parse_duration(other)
                .map(Self::Every)
                .map_err(|_| {
                    format!(
                        "invalid fsync policy {other:?}: use `always`, `never` or a duration ({})",
                        crate::duration::DURATION_FORMS
                    )
                }),
        }
    }
}

/// One logged mutation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put {
        key: Arc<str>,
        seq: u64,
        received_ms: i64,
        json: Bytes,
    },
    Delete {
        key: Arc<str>,
    },
}

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// No single frame is larger than this: a length above it is corruption, not a record.
const MAX_FRAME: u32 = 1 << 30;
/// Compaction is not worth it below this many bytes of log.
pub(crate) const DEFAULT_COMPACT_MIN: u64 = 64 << 20;

/// The store's handle to the log.
#[derive(Debug)]
pub(crate) struct Wal {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    policy: FsyncPolicy,
    /// Bytes (counted since start, across compactions) known to be on disk.
    synced: watch::Sender<u64>,
    /// Wakes the syncer (a request for `always`, shutdown for every policy).
    sync_requests: mpsc::Sender<SyncRequest>,
    compacting: AtomicBool,
    compact_min: u64,
    store: OnceLock<Weak<Inner>>,
}

#[derive(Debug)]
enum SyncRequest {
    Sync,
    Stop,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Size of the current file.
    len: u64,
    /// Bytes written since start, across compactions (what `synced` is compared with).
    written: u64,
    /// Written but not yet fsync'd.
    dirty: bool,
    /// While a compaction writes its snapshot: frames appended meanwhile, for the new file.
    tail: Option<Vec<u8>>,
}

/// Resolves once a put is as durable as `--fsync` promises.
#[derive(Debug)]
pub(crate) enum WalAck {
    Done(Result<(), String>),
    Synced(u64, watch::Receiver<u64>),
}

impl WalAck {
    pub(crate) fn done() -> Self {
        Self::Done(Ok(()))
    }

    pub(crate) async fn wait(self) -> Result<(), String> {
        match self {
            Self::Done(result) => result,
            Self::Synced(target, mut synced) => synced
                .wait_for(|s| *s >= target)
                .await
                .map(|_| ())
                .map_err(|_| "the log's syncer stopped".to_owned()),
        }
    }
}

impl Wal {
    /// Writes one operation; call it under the key's lock.
    pub(crate) fn append(&self, op: Op) -> WalAck {
        let shared = &*self.shared;
        let mut frame = Vec::with_capacity(op_len(&op) + 8);
        encode(&op, &mut frame);
        let mut state = shared.state.lock();
        if let Err(e) = state.file.write_all(&frame) {
            tracing::error!(path = %shared.path.display(), error = %e, "failed to write the callback log");
            return WalAck::Done(Err(format!("the callback log could not be written: {e}")));
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
        self.maybe_compact(len);
        match shared.policy {
            FsyncPolicy::Always => {
                let rx = shared.synced.subscribe();
                let _ = shared.sync_requests.send(SyncRequest::Sync);
                WalAck::Synced(written, rx)
            }
            _ => WalAck::done(),
        }
    }

    /// Waits until everything appended so far is on disk (fsync'd).
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = shared.state.lock();
            state
                .file
                .sync_data()
                .map_err(|e| format!("fsync of the callback log failed: {e}"))?;
            state.dirty = false;
            let written = state.written;
            drop(state);
            shared.synced.send_modify(|s| *s = (*s).max(written));
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn maybe_compact(&self, len: u64) {
        let shared = &self.shared;
        if len < shared.compact_min {
            return;
        }
        let Some(inner) = shared.store.get().and_then(Weak::upgrade) else {
            return;
        };
        if len <= Store::from_inner(inner).live_bytes().saturating_mul(2) {
            return;
        }
        if shared.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("eventual-compact".into())
            .spawn(move || {
                compact(&shared);
                shared.compacting.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.shared.compacting.store(false, Ordering::Release);
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shared.sync_requests.send(SyncRequest::Stop);
    }
}

fn op_len(op: &Op) -> usize {
    match op {
        Op::Put { key, json, .. } => 21 + key.len() + json.len(),
        Op::Delete { key } => 1 + key.len(),
    }
}

/// What replay found.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    /// Frames applied.
    pub frames: u64,
    /// Bytes cut off the end because they did not form a whole, valid frame.
    pub truncated_bytes: u64,
}

/// Opens (or creates) the log in `dir`, replays it into a new store and starts the writer.
pub(crate) fn open(
    dir: &Path,
    fsync: FsyncPolicy,
    max_callbacks: usize,
    retention: Option<Duration>,
    compact_min: u64,
) -> io::Result<(Store, ReplayStats)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("callbacks.log");
    // Replay into a store without a log (nothing replayed is written again), then attach it.
    let store = Store::new(max_callbacks, retention, None);
    let stats = replay(&path, &store)?;
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
        store: OnceLock::new(),
    });
    let store = store.with_wal(Wal {
        shared: shared.clone(),
    });
    let _ = shared.store.set(store.downgrade());
    let syncer = shared.clone();
    std::thread::Builder::new()
        .name("eventual-fsync".into())
        .spawn(move || run_syncer(&syncer, sync_rx))?;
    Ok((store, stats))
}

fn encode(op: &Op, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    match op {
        Op::Put {
            key,
            seq,
            received_ms,
            json,
        } => {
            out.push(KIND_PUT);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&received_ms.to_le_bytes());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(json);
        }
        Op::Delete { key } => {
            out.push(KIND_DELETE);
            out.extend_from_slice(key.as_bytes());
        }
    }
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn replay(path: &Path, store: &Store) -> io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stats),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        match read_full(&mut reader, &mut header)? {
            0 => break,
            8 => {}
            _ => break, // torn header
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_FRAME {
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut reader, &mut payload)? != len as usize {
            break;
        }
        if crc32fast::hash(&payload) != crc || !apply(&payload, store) {
            break;
        }
        offset += 8 + u64::from(len);
        stats.frames += 1;
    }
    if offset < total {
        stats.truncated_bytes = total - offset;
        let kept = keep_torn_tail(path, offset);
        tracing::warn!(
            path = %path.display(),
            valid_bytes = offset,
            truncated_bytes = stats.truncated_bytes,
            kept_in = ?kept,
            "the callback log ends in a torn or corrupt frame (an interrupted write); cut it off and kept every record before it"
        );
        OpenOptions::new().write(true).open(path)?.set_len(offset)?;
    }
    Ok(stats)
}

/// Copies the bytes past `offset` beside the log, so a truncation never destroys evidence.
fn keep_torn_tail(path: &Path, offset: u64) -> Option<PathBuf> {
    let bytes = std::fs::read(path).ok()?;
    let tail = bytes.get(offset as usize..)?;
    let dest = path.with_extension(format!("log.torn-{}", crate::store::now_ms()));
    std::fs::write(&dest, tail).ok()?;
    Some(dest)
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Applies one frame's payload; `false` if it does not decode.
fn apply(payload: &[u8], store: &Store) -> bool {
    match payload.first() {
        Some(&KIND_PUT) if payload.len() >= 21 => {
            let seq = u64::from_le_bytes(payload[1..9].try_into().unwrap_or_default());
            let received_ms = i64::from_le_bytes(payload[9..17].try_into().unwrap_or_default());
            let key_len =
                u32::from_le_bytes(payload[17..21].try_into().unwrap_or_default()) as usize;
            let Some(key) = payload
                .get(21..21 + key_len)
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                return false;
            };
            let json = Bytes::copy_from_slice(&payload[21 + key_len..]);
            store.replay_put(key, seq, received_ms, json);
            true
        }
        Some(&KIND_DELETE) => match std::str::from_utf8(&payload[1..]) {
            Ok(key) => {
                store.replay_delete(key);
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}

/// The syncer thread: fsyncs on request (`always`), on an interval (a duration), or only at
/// shutdown (`never`). It syncs through its own descriptor, so writers never wait for it.
fn run_syncer(shared: &Shared, requests: mpsc::Receiver<SyncRequest>) {
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

/// Rewrites the log from a snapshot of the store (see the module docs).
fn compact(shared: &Shared) {
    let Some(store) = shared
        .store
        .get()
        .and_then(Weak::upgrade)
        .map(Store::from_inner)
    else {
        return;
    };
    let started = Instant::now();
    let ops = store.snapshot_for_compaction(|| {
        shared.state.lock().tail = Some(Vec::new());
    });
    drop(store);
    let result = rewrite(shared, &ops);
    match result {
        Ok((before, after)) => tracing::info!(
            before_bytes = before,
            after_bytes = after,
            records = ops.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "compacted the callback log"
        ),
        Err(e) => {
            shared.state.lock().tail = None;
            tracing::error!(path = %shared.path.display(), error = %e, "failed to compact the callback log; keeping the old one");
        }
    }
}

fn rewrite(shared: &Shared, ops: &[Op]) -> io::Result<(u64, u64)> {
    let tmp = shared.path.with_extension("log.compacting");
    let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut buf = Vec::new();
    let mut len = 0u64;
    for op in ops {
        buf.clear();
        encode(op, &mut buf);
        out.write_all(&buf)?;
        len += buf.len() as u64;
    }
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    // Appends wait from here until the new file is in place (one tail write and one fsync).
    let mut state = shared.state.lock();
    let tail = state.tail.take().unwrap_or_default();
    file.write_all(&tail)?;
    len += tail.len() as u64;
    file.sync_all()?;
    std::fs::rename(&tmp, &shared.path)?;
    if let Some(dir) = shared.path.parent() {
        File::open(dir)?.sync_all()?;
    }
    let before = state.len;
    state.file = OpenOptions::new().append(true).open(&shared.path)?;
    state.len = len;
    state.dirty = false;
    let written = state.written;
    drop(state);
    shared.synced.send_modify(|s| *s = (*s).max(written));
    Ok((before, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_words_and_durations() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!(
            "250ms".parse(),
            Ok(FsyncPolicy::Every(Duration::from_millis(250)))
        );
        let err = "sometimes".parse::<FsyncPolicy>().unwrap_err();
        assert!(err.contains("always"), "{err}");
    }
}
