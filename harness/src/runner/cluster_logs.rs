//! Cluster mode's run logs: the executing node copies its file into the database as it grows;
//! every other node copies the database into a local file before it serves it (so ranges,
//! sections, search and JUnit XML read a file as on one process), and follows it as hints say
//! it grew. A run that becomes this node's takes over the follows of its followers here.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{Hint, RECHECK},
    error::HarnessError,
    history::AppendError,
    logs::{Progress, Tag, format_line},
};

use super::{Harness, harness::Active};

/// What followers on this node see of a run executed on another.
#[derive(Debug)]
pub(crate) struct Follow {
    /// How far this node's copy goes, and whether it is complete.
    pub(super) progress: watch::Sender<Progress>,
    /// Turns true once the run has its final status.
    pub(super) done: watch::Sender<bool>,
}

impl Harness {
    /// Appends a harness line to the log of a run this node does not execute (queued,
    /// cancelled while queued, ended with a dead node).
    pub(super) async fn append_line(&self, id: i64, text: &str) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let line = harness_line(text);
        // Another writer may append between reading the end and appending: read it again.
        for _ in 0..5 {
            let appended = match cluster.chunks.len(id).await {
                Ok(at) => cluster.chunks.append(id, at, line.as_bytes()).await,
                Err(e) => Err(AppendError::Unavailable(e)),
            };
            match appended {
                Ok(_) => {
                    self.hint(Hint::Log(id));
                    self.refresh_follow(id).await;
                    return;
                }
                Err(AppendError::NotAtEnd { .. }) => continue,
                Err(e) => {
                    tracing::warn!(run = id, error = %e, "failed to append to a run's log");
                    return;
                }
            }
        }
    }

    /// Where run `id`'s log is, ready to read: in cluster mode this node's copy is first
    /// brought up to what the database holds (nothing to do for a run this node executes: its
    /// file is the original).
    pub(crate) async fn log_file(&self, id: i64) -> Result<std::path::PathBuf, HarnessError> {
        if self.cluster().is_some() && !self.inner.active.contains_key(&id) {
            self.sync_log(id).await?;
        }
        Ok(self.log_path(id))
    }

    pub(super) async fn sync_log(&self, id: i64) -> Result<u64, HarnessError> {
        let Some(cluster) = self.cluster() else {
            return Ok(0);
        };
        let lock = cluster.syncing.entry(id).or_default().clone();
        let _one = lock.lock().await;
        if let Some(active) = self.inner.active.get(&id) {
            // This node executes it (since the check before the lock): its file is the original.
            return Ok(active.log.follow().borrow().bytes);
        }
        self.copy_log(id).await
    }

    /// Appends what the database holds past the end of this node's copy of run `id`'s log (the
    /// caller holds the run's `syncing` lock).
    pub(super) async fn copy_log(&self, id: i64) -> Result<u64, HarnessError> {
        use tokio::io::AsyncWriteExt;
        let Some(cluster) = self.cluster() else {
            return Ok(0);
        };
        let path = self.log_path(id);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let mut len = file.metadata().await?.len();
        loop {
            let part = cluster.chunks.read(id, len, 1 << 20).await?;
            if part.is_empty() {
                break;
            }
            file.write_all(&part).await?;
            len += part.len() as u64;
        }
        file.flush().await?;
        Ok(len)
    }

    /// A receiver that changes as run `id`'s log grows, while the run is live (on any node).
    pub(crate) async fn follow_log(&self, id: i64) -> Option<watch::Receiver<Progress>> {
        self.live_follow(id).await.map(|(progress, _)| progress)
    }

    /// A receiver that turns true when the run has its final status, while the run is live.
    pub async fn done_signal(&self, id: i64) -> Option<watch::Receiver<bool>> {
        self.live_follow(id).await.map(|(_, done)| done)
    }

    /// How a live run's log grows and when it ends: from its switches if this node executes
    /// it, else from a follow of the database's copy (made on first use). `None` once it ended.
    pub(super) async fn live_follow(
        &self,
        id: i64,
    ) -> Option<(watch::Receiver<Progress>, watch::Receiver<bool>)> {
        let local = |active: &Active| (active.log.follow(), active.done.subscribe());
        if let Some(active) = self.inner.active.get(&id) {
            return Some(local(&active));
        }
        let cluster = self.cluster()?;
        let remote = |f: &Follow| (f.progress.subscribe(), f.done.subscribe());
        if let Some(follow) = cluster.follows.get(&id) {
            return Some(remote(&follow));
        }
        let run = self.inner.history.get_run(id).await.ok()??;
        if run.status.is_finished() {
            return None;
        }
        // Under the run's copy lock, as `begin` holds it while the run becomes this node's:
        // either it is this node's already, or `begin` will hand this follow over.
        let lock = cluster.syncing.entry(id).or_default().clone();
        let one = lock.lock().await;
        if let Some(active) = self.inner.active.get(&id) {
            return Some(local(&active));
        }
        let bytes = self.copy_log(id).await.ok()?;
        let receivers = remote(&cluster.follows.entry(id).or_insert_with(|| Follow {
            progress: watch::channel(Progress { bytes, done: false }).0,
            done: watch::channel(false).0,
        }));
        drop(one);
        // Looked at once more: the run may have ended between the read and the insert.
        self.refresh_follow(id).await;
        Some(receivers)
    }

    /// Copies what is new of a followed run's log and ends the follow once the run has ended.
    pub(super) async fn refresh_follow(&self, id: i64) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        if !cluster.follows.contains_key(&id) {
            return;
        }
        let finished = matches!(
            self.inner.history.get_run(id).await,
            Ok(Some(run)) if run.status.is_finished()
        );
        // The log is complete once the run has ended (its executor copies the rest first).
        let Ok(bytes) = self.sync_log(id).await else {
            return;
        };
        if let Some(follow) = cluster.follows.get(&id) {
            follow.progress.send_modify(|p| {
                p.bytes = bytes;
                p.done = finished;
            });
            if finished {
                let _ = follow.done.send(true);
            }
        }
        if finished {
            cluster.follows.remove(&id);
        }
    }

    /// Copies run `id`'s log from this node's file into the database as it grows, from byte
    /// `at`, until the log is complete. Another writer at the end means this node lost the
    /// run (it was declared dead): the run is stopped.
    pub(super) async fn ship_log(
        self,
        id: i64,
        mut progress: watch::Receiver<Progress>,
        path: std::path::PathBuf,
        mut at: u64,
        cancel: CancellationToken,
    ) {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Some(cluster) = self.cluster() else {
            return;
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let seen = *progress.borrow_and_update();
            while at < seen.bytes {
                let read = async {
                    let mut file = tokio::fs::File::open(&path).await?;
                    file.seek(std::io::SeekFrom::Start(at)).await?;
                    file.read(&mut buf).await
                };
                let n = match read.await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(run = id, error = %e, "failed to read a run log to copy");
                        return;
                    }
                };
                match cluster.chunks.append(id, at, &buf[..n]).await {
                    Ok(end) => {
                        at = end;
                        self.hint(Hint::Log(id));
                    }
                    Err(AppendError::NotAtEnd { .. }) => {
                        tracing::warn!(
                            run = id,
                            "another node writes this run's log: this node lost it; stopping it"
                        );
                        cancel.cancel();
                        return;
                    }
                    Err(AppendError::Unavailable(e)) => {
                        tracing::warn!(run = id, error = %e, "failed to copy a run log to the database; retrying");
                        tokio::time::sleep(RECHECK / 2).await;
                    }
                }
            }
            if seen.done && at >= seen.bytes {
                return;
            }
            if progress.changed().await.is_err() && at >= progress.borrow().bytes {
                return;
            }
        }
    }
}

/// A harness line stamped now, as the log stores it.
pub(super) fn harness_line(text: &str) -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    format_line(&now, Tag::Harness, text)
}
