//! A run's log: one file per run, every line timestamped and tagged, written as it is produced;
//! followers are woken by a watch channel of bytes written (they read the file, so memory stays
//! flat however big the log grows and a slow follower never makes the writer wait).
//!
//! Line format (SPEC): `2026-11-23T18:02:11.042Z out collected 4 items` — tag `out`/`err` for
//! a test's streams, `---` for the harness's own lines.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use parking_lot::Mutex;
use tokio::sync::watch;

/// How far a log has been written, and whether it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Progress {
    /// Bytes flushed to the file.
    pub(crate) bytes: u64,
    /// No more lines will come.
    pub(crate) done: bool,
}

/// The writer side of one run's log.
#[derive(Debug)]
pub(crate) struct RunLog {
    path: PathBuf,
    file: Mutex<Writer>,
    progress: watch::Sender<Progress>,
}

#[derive(Debug)]
struct Writer {
    out: BufWriter<File>,
    bytes: u64,
}

/// Who wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag<'a> {
    /// The test's stdout.
    Out,
    /// The test's stderr.
    Err,
    /// The harness.
    Harness,
    /// A script's stream (`sut/out`).
    Named(&'a str),
}

impl<'a> Tag<'a> {
    fn as_str(self) -> &'a str {
        match self {
            Self::Out => "out",
            Self::Err => "err",
            Self::Harness => "---",
            Self::Named(name) => name,
        }
    }
}

impl RunLog {
    /// Creates (or appends to) the log at `path`.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(Writer {
                out: BufWriter::with_capacity(64 * 1024, file),
                bytes,
            }),
            progress: watch::channel(Progress { bytes, done: false }).0,
        })
    }

    /// Appends one line now (timestamped) and makes it visible to followers.
    pub(crate) fn line(&self, tag: Tag<'_>, text: &str) {
        self.lines(std::iter::once((tag, text)));
    }

    /// Appends several lines and makes them visible with one flush.
    pub(crate) fn lines<'a>(&self, lines: impl IntoIterator<Item = (Tag<'a>, &'a str)>) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut w = self.file.lock();
        let mut result = Ok(());
        for (tag, text) in lines {
            let line = format_line(&now, tag, text);
            result = result.and(w.out.write_all(line.as_bytes()));
            w.bytes += line.len() as u64;
        }
        result = result.and(w.out.flush());
        if let Err(e) = result {
            tracing::error!(path = %self.path.display(), error = %e, "failed to write a run log");
        }
        let bytes = w.bytes;
        drop(w);
        self.progress.send_modify(|p| p.bytes = bytes);
    }

    /// Marks the log complete: followers end once they have read everything.
    pub(crate) fn finish(&self) {
        self.progress.send_modify(|p| p.done = true);
    }

    /// A receiver to follow the log with.
    pub(crate) fn follow(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// One log line as it is stored: `now` (RFC 3339, ms), the tag, the text without its line end.
pub(crate) fn format_line(now: &str, tag: Tag<'_>, text: &str) -> String {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    format!("{now} {} {text}\n", tag.as_str())
}

/// Streams a log file: what is there, then what is appended, until `progress` says done. Yields
/// chunks of whole lines.
pub(crate) fn follow_file(
    path: PathBuf,
    progress: Option<watch::Receiver<Progress>>,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> {
    follow_file_from(path, progress, 0)
}

/// [`follow_file`] from byte `start` (the start of a line) on.
pub(crate) fn follow_file_from(
    path: PathBuf,
    progress: Option<watch::Receiver<Progress>>,
    start: u64,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    futures_util::stream::unfold(
        (path, progress, start, Vec::new(), false),
        |(path, mut progress, mut offset, mut partial, mut finished)| async move {
            loop {
                if finished {
                    return None;
                }
                // Snapshot "done" before reading, so nothing written before it is missed.
                let done = progress.as_mut().is_none_or(|p| p.borrow_and_update().done);
                let mut file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && !done => {
                        if wait_change(&mut progress).await {
                            continue;
                        }
                        return None;
                    }
                    Err(e) => return Some((Err(e), (path, progress, offset, partial, true))),
                };
                if let Err(e) = file.seek(io::SeekFrom::Start(offset)).await {
                    return Some((Err(e), (path, progress, offset, partial, true)));
                }
                let mut buf = vec![0u8; 256 * 1024];
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => return Some((Err(e), (path, progress, offset, partial, true))),
                };
                if n > 0 {
                    offset += n as u64;
                    partial.extend_from_slice(&buf[..n]);
                    // Hand out whole lines only; keep a trailing partial line for the next read.
                    if let Some(last_nl) = partial.iter().rposition(|b| *b == b'\n') {
                        let rest = partial.split_off(last_nl + 1);
                        let chunk = std::mem::replace(&mut partial, rest);
                        return Some((Ok(chunk.into()), (path, progress, offset, partial, false)));
                    }
                    continue;
                }
                if done {
                    finished = true;
                    if !partial.is_empty() {
                        let chunk = std::mem::take(&mut partial);
                        return Some((Ok(chunk.into()), (path, progress, offset, partial, true)));
                    }
                    continue;
                }
                if !wait_change(&mut progress).await {
                    // The writer is gone: read what is left, then stop.
                    progress = None;
                }
            }
        },
    )
}

async fn wait_change(progress: &mut Option<watch::Receiver<Progress>>) -> bool {
    match progress {
        Some(p) => p.changed().await.is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_follower_sees_every_line_in_order_and_ends_when_the_log_is_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/log.txt");
        let log = std::sync::Arc::new(RunLog::create(&path).expect("create"));
        log.line(Tag::Harness, "start t.sh (1/1)");
        let follower =
            tokio::spawn(follow_file(path.clone(), Some(log.follow())).collect::<Vec<_>>());
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..2000 {
                    log.line(
                        if i % 2 == 0 { Tag::Out } else { Tag::Err },
                        &format!("line {i}"),
                    );
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                log.finish();
            })
        };
        writer.await.expect("writer");
        let chunks = follower.await.expect("follower");
        let text: String = chunks
            .into_iter()
            .map(|c| String::from_utf8(c.expect("chunk").to_vec()).expect("utf-8"))
            .collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2001);
        assert!(lines[0].ends_with(" --- start t.sh (1/1)"), "{}", lines[0]);
        for (i, line) in lines[1..].iter().enumerate() {
            let tag = if i % 2 == 0 { " out " } else { " err " };
            assert!(
                line.ends_with(&format!("{tag}line {i}")),
                "line {i}: {line}"
            );
            assert_eq!(&line[23..24], "Z", "timestamp with ms: {line}");
        }
    }
}
