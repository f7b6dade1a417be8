//! Durability: an append-only, checksummed log of puts and deletes under `--data-dir`.
//!
//! # Design
//! - A put is handed to the log *under its key's lock* (so the log's order per key is the
//!   store's), and the HTTP answer waits for [`WalAck`]: the record has been `write(2)`n to the
//!   file — it survives `kill -9` of the server — before anyone sees `200`.
//! - One writer thread does all file I/O. It takes every message queued since its last turn as
//!   one batch: one `write`, at most one `fdatasync` (group commit), then all their acks.
//! - `--fsync` decides when the kernel's copy reaches the disk: `always` (before every ack: also
//!   survives power loss), a duration such as `1s` (the default: at most that much is lost on
//!   power loss, nothing on a process crash), or `never` (left to the OS).
//! - Frames are `[len u32][crc32 u32][payload]`. Replay stops at the first frame that is short or
//!   fails its checksum: that tail is cut off with a warning (and kept beside the log for a
//!   post-mortem); everything before it is loaded.
//! - Compaction rewrites the log from a snapshot of the store once the file is more than twice
//!   the live data (deletes and expiry make garbage). The store's gate blocks mutations while the
//!   snapshot is taken, so snapshot and later appends neither overlap nor leave a gap.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufReader, Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, Weak, mpsc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::oneshot;

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
            other => humantime::parse_duration(other).map(Self::Every).map_err(|_| {
                format!("invalid fsync policy {other:?}: use `always`, `never` or a duration such as `1s`")
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

type AckTx = oneshot::Sender<Result<(), String>>;

#[derive(Debug)]
enum Msg {
    Op(Op, Option<AckTx>),
    Flush(AckTx),
}

/// The store's handle to the writer thread.
#[derive(Debug)]
pub(crate) struct Wal {
    tx: mpsc::Sender<Msg>,
}

/// Resolves once a put is in the log.
#[derive(Debug)]
pub(crate) struct WalAck(Option<oneshot::Receiver<Result<(), String>>>);

impl WalAck {
    pub(crate) fn done() -> Self {
        Self(None)
    }

    pub(crate) async fn wait(self) -> Result<(), String> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err("the log writer stopped".to_owned())),
        }
    }
}

impl Wal {
    pub(crate) fn append(&self, op: Op) -> WalAck {
        let (tx, rx) = oneshot::channel();
        match self.tx.send(Msg::Op(op, Some(tx))) {
            Ok(()) => WalAck(Some(rx)),
            Err(_) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err("the log writer stopped".to_owned()));
                WalAck(Some(rx))
            }
        }
    }

    /// Waits until everything appended so far is on disk (fsync'd).
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return Err("the log writer stopped".to_owned());
        }
        rx.await
            .unwrap_or_else(|_| Err("the log writer stopped".to_owned()))
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
    let (tx, rx) = mpsc::channel();
    let store = Store::new(max_callbacks, retention, Some(Wal { tx }));
    let stats = replay(&path, &store)?;
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let file_len = file.metadata()?.len();
    let writer = Writer {
        path,
        file,
        file_len,
        rx,
        store: store.downgrade(),
        fsync,
        dirty: false,
        last_sync: Instant::now(),
        compact_min,
    };
    std::thread::Builder::new()
        .name("eventual-wal".into())
        .spawn(move || writer.run())?;
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

struct Writer {
    path: PathBuf,
    file: File,
    file_len: u64,
    rx: mpsc::Receiver<Msg>,
    store: Weak<Inner>,
    fsync: FsyncPolicy,
    /// Written since the last fsync.
    dirty: bool,
    last_sync: Instant,
    compact_min: u64,
}

impl Writer {
    fn run(mut self) {
        let mut buf = Vec::with_capacity(1 << 20);
        loop {
            let first = match self.fsync {
                FsyncPolicy::Every(every) if self.dirty => {
                    let left = every.saturating_sub(self.last_sync.elapsed());
                    match self.rx.recv_timeout(left) {
                        Ok(msg) => msg,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.sync();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match self.rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match self.rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            self.write_batch(batch, &mut buf);
            self.maybe_compact();
        }
        self.sync();
    }

    fn write_batch(&mut self, batch: Vec<Msg>, buf: &mut Vec<u8>) {
        buf.clear();
        let mut acks = Vec::with_capacity(batch.len());
        let mut flush = false;
        for msg in batch {
            match msg {
                Msg::Op(op, ack) => {
                    encode(&op, buf);
                    acks.extend(ack);
                }
                Msg::Flush(ack) => {
                    flush = true;
                    acks.push(ack);
                }
            }
        }
        let mut result = Ok(());
        if !buf.is_empty() {
            result = self.file.write_all(buf);
            self.file_len += buf.len() as u64;
            self.dirty = true;
        }
        if result.is_ok()
            && (flush
                || self.fsync == FsyncPolicy::Always
                || matches!(self.fsync, FsyncPolicy::Every(d) if self.last_sync.elapsed() >= d))
        {
            result = self.file.sync_data();
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        let result = result.map_err(|e| {
            tracing::error!(path = %self.path.display(), error = %e, "failed to write the callback log");
            format!("the callback log could not be written: {e}")
        });
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }

    fn sync(&mut self) {
        if self.dirty {
            if let Err(e) = self.file.sync_data() {
                tracing::error!(path = %self.path.display(), error = %e, "failed to fsync the callback log");
            }
            self.dirty = false;
        }
        self.last_sync = Instant::now();
    }

    fn maybe_compact(&mut self) {
        let Some(inner) = self.store.upgrade() else {
            return;
        };
        let store = Store::from_inner(inner);
        let live = store.live_bytes();
        if self.file_len < self.compact_min || self.file_len <= live.saturating_mul(2) {
            return;
        }
        let started = Instant::now();
        let before = self.file_len;
        let mut pending = Vec::new();
        let ops = store.snapshot_for_compaction(|| {
            while let Ok(msg) = self.rx.try_recv() {
                pending.push(msg);
            }
        });
        drop(store);
        // Everything in `pending` is already in the snapshot: it only needs its ack, once the
        // new file is durable.
        let result = self.rewrite(&ops).map_err(|e| {
            tracing::error!(path = %self.path.display(), error = %e, "failed to compact the callback log");
            format!("the callback log could not be compacted: {e}")
        });
        if result.is_ok() {
            tracing::info!(
                before_bytes = before,
                after_bytes = self.file_len,
                records = ops.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "compacted the callback log"
            );
        }
        for msg in pending {
            match msg {
                Msg::Op(_, Some(ack)) | Msg::Flush(ack) => {
                    let _ = ack.send(result.clone());
                }
                Msg::Op(_, None) => {}
            }
        }
    }

    fn rewrite(&mut self, ops: &[Op]) -> io::Result<()> {
        let tmp = self.path.with_extension("log.compacting");
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut buf = Vec::new();
        let mut len = 0u64;
        for op in ops {
            buf.clear();
            encode(op, &mut buf);
            out.write_all(&buf)?;
            len += buf.len() as u64;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.file_len = len;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
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
