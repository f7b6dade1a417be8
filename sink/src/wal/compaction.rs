//! Compaction: rewriting the log from a snapshot that the log's owner hands over.
//!
//! The log cannot take the snapshot itself: it knows frames, not records. So the owner (the
//! store) asks [`Wal::compaction_due`](super::Wal::compaction_due) after a write, and with the
//! [`Compaction`] it gets back: blocks its own logged mutations, calls [`Compaction::begin`]
//! (from then on every append also goes to a `tail` buffer), copies its records, unblocks, and
//! hands the copy to [`Compaction::write`]. The tail is written after the snapshot into the new
//! file before it replaces the old one, so nothing is lost or doubled.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use super::{
    frame::{self, Op},
    shared::Shared,
};

/// A compaction that this owner has claimed; only one exists at a time. Dropping it without
/// [`write`](Self::write) abandons it and lets a later write claim the next one.
#[derive(Debug)]
pub(crate) struct Compaction {
    shared: Arc<Shared>,
    started: Instant,
}

impl Compaction {
    pub(super) fn claimed(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            started: Instant::now(),
        }
    }

    /// Call with the owner's logged mutations blocked, just before it copies its records:
    /// every frame appended after this also goes into the new file.
    pub(crate) fn begin(&mut self) {
        self.started = Instant::now();
        self.shared.state.lock().tail = Some(Vec::new());
    }

    /// Rewrites the log as `snapshot` followed by what was appended since [`begin`](Self::begin);
    /// keeps the old log if that fails.
    pub(crate) fn write(self, snapshot: &[Op]) {
        match rewrite(&self.shared, snapshot) {
            Ok((before, after)) => tracing::info!(
                before_bytes = before,
                after_bytes = after,
                records = snapshot.len(),
                took_ms = self.started.elapsed().as_millis() as u64,
                "compacted the callback log"
            ),
            Err(e) => {
                tracing::error!(path = %self.shared.path.display(), error = %e, "failed to compact the callback log; keeping the old one");
            }
        }
    }
}

impl Drop for Compaction {
    fn drop(&mut self) {
        // A finished rewrite has taken the tail already; an abandoned one must stop collecting.
        self.shared.state.lock().tail = None;
        self.shared.compacting.store(false, Ordering::Release);
    }
}

fn rewrite(shared: &Shared, ops: &[Op]) -> io::Result<(u64, u64)> {
    let tmp = shared.path.with_extension("log.compacting");
    let result = write_and_swap(shared, ops, &tmp);
    if result.is_err() {
        // A half-written copy only takes space (on a full disk, the space the log needs).
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_and_swap(shared: &Shared, ops: &[Op], tmp: &std::path::Path) -> io::Result<(u64, u64)> {
    let mut out = io::BufWriter::with_capacity(1 << 20, File::create(tmp)?);
    let mut buf = Vec::new();
    let mut len = 0u64;
    for op in ops {
        buf.clear();
        frame::encode(op, &mut buf);
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
    // Opened before the rename so that nothing can fail between replacing the log and
    // appending to the new file (appends to the old, unlinked one would be lost).
    let appender = OpenOptions::new().append(true).open(tmp)?;
    std::fs::rename(tmp, &shared.path)?;
    let before = state.len;
    state.file = appender;
    state.len = len;
    state.dirty = false;
    state.torn = false;
    let written = state.written;
    drop(state);
    if let Some(dir) = shared.path.parent() {
        // The rename is durable once the directory is; until then a power loss keeps the old
        // log, which holds everything too.
        File::open(dir)?.sync_all()?;
    }
    shared.synced.send_modify(|s| s.reached(written));
    Ok((before, len))
}
