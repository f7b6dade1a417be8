//! Cluster mode's execution: the worker loop that takes runs while a worker is free, a run
//! taken and begun, its fencing token checked before its results are written, and the
//! heartbeats that also end the runs of dead nodes (and this node's runs whose end could not be
//! recorded).

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    claims::Startable,
    cluster::{Hint, RECHECK},
    error::HarnessError,
    logs::RunLog,
    model::{RunStatus, TestStatus},
};

use super::{Harness, harness::Active};

impl Harness {
    /// The worker loop: while a worker is free, take the oldest run that may start.
    pub(super) async fn take_runs(self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let Some(claims) = self.pg_claims() else {
            return;
        };
        let stopping = self.inner.stopping.clone();
        loop {
            // At least one free worker; then as many runs as there are free workers, in one
            // statement, each begun on its own task (a hand-over to many environments at once
            // does not queue behind one run's preparation).
            let first = tokio::select! {
                permit = self.inner.workers.clone().acquire_owned() => permit,
                () = stopping.cancelled() => return,
            };
            let Ok(first) = first else { return };
            let mut permits = vec![first];
            while let Ok(more) = self.inner.workers.clone().try_acquire_owned() {
                permits.push(more);
            }
            match claims.take_startable(&cluster.name, permits.len()).await {
                Ok(taken) if !taken.is_empty() => {
                    if taken.len() == permits.len() {
                        // Every free worker here got one: there may be more for the others.
                        self.hint(Hint::Claims);
                    }
                    for (startable, permit) in taken.into_iter().zip(permits) {
                        let harness = self.clone();
                        tokio::spawn(async move { harness.begin(startable, permit).await });
                    }
                    continue;
                }
                Ok(_) => drop(permits),
                Err(e) => {
                    drop(permits);
                    tracing::warn!(error = %e, "failed to look for runs to start");
                }
            }
            tokio::select! {
                () = cluster.startable.notified() => {}
                () = tokio::time::sleep(RECHECK) => {}
                () = stopping.cancelled() => return,
            }
        }
    }

    /// Starts a run this node took: its log is brought here, copied back as it grows, and it
    /// executes under `permit`.
    pub(super) async fn begin(&self, startable: Startable, permit: OwnedSemaphorePermit) {
        let Startable {
            run: id,
            env,
            token,
        } = startable;
        let Some(cluster) = self.cluster() else {
            return;
        };
        let path = self.log_path(id);
        // Under the run's copy lock until its switches are in place: from then on nobody copies
        // into the file this node now writes.
        let lock = cluster.syncing.entry(id).or_default().clone();
        let one = lock.lock().await;
        let prepared = async {
            // Both from the database, at once: they do not depend on each other.
            let (at, run) = tokio::join!(self.copy_log(id), self.get_run(id));
            let (at, run) = (at?, run?);
            let log = Arc::new(RunLog::create(&path)?);
            Ok::<_, HarnessError>((at, log, run))
        };
        let (at, log, run) = match prepared.await {
            Ok(prepared) => prepared,
            Err(e) => {
                // The run stays taken by this node: the others see it as this node's, and it ends
                // `interrupted` if this node dies; here it ends as an error.
                tracing::error!(run = id, error = %e, "failed to prepare a run to start");
                let history = &self.inner.history;
                let _ = history.finish_open_tests(id, TestStatus::Skipped).await;
                let _ = history.set_run_status(id, RunStatus::Error).await;
                self.release(env, id).await;
                self.emit_run(id).await;
                return;
            }
        };
        let cancel = CancellationToken::new();
        let local = log.follow();
        let shipper =
            tokio::spawn(
                self.clone()
                    .ship_log(id, log.follow(), path, at, cancel.clone()),
            );
        self.inner.active.insert(
            id,
            Active {
                cancel,
                log,
                env_id: env,
                tests: run.test_paths(),
                done: watch::channel(false).0,
                queued_at: std::time::Instant::now(),
                started_at: std::sync::OnceLock::new(),
                fence: Some(token),
                shipper: parking_lot::Mutex::new(Some(shipper)),
            },
        );
        // Followers here that began while the run was another node's now follow this file.
        if let Some((_, follow)) = cluster.follows.remove(&id) {
            let mut local = local;
            tokio::spawn(async move {
                loop {
                    let seen = *local.borrow_and_update();
                    follow.progress.send_replace(seen);
                    if seen.done || local.changed().await.is_err() {
                        break;
                    }
                }
                let _ = follow.done.send(true);
            });
        }
        drop(one);
        self.start_with(id, Some(permit));
    }

    /// Run `id`'s environment and claim token, in cluster mode (for [`History::finish_run`]).
    ///
    /// [`History::finish_run`]: crate::history::History::finish_run
    pub(super) fn fence_of(&self, id: i64) -> Option<(u32, i64)> {
        self.inner
            .active
            .get(&id)
            .and_then(|a| a.fence.map(|token| (a.env_id, token)))
    }

    /// Whether run `id` may still write its results: always on a single process; in cluster
    /// mode while its claim has the fencing token it started with.
    pub(super) async fn holds_claim(&self, id: i64) -> bool {
        let Some(claims) = self.pg_claims() else {
            return true;
        };
        let Some((env, token)) = self
            .inner
            .active
            .get(&id)
            .and_then(|a| a.fence.map(|t| (a.env_id, t)))
        else {
            return true;
        };
        // Unknown when the database cannot answer: the writes that follow fail the same way.
        claims.holds(env, id, token).await.unwrap_or(true)
    }

    /// Every third of `--node-timeout`: this node is alive; runs whose claim moved on stop;
    /// the runs of nodes silent for too long end and their environments go on.
    pub(super) async fn heartbeats(self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let stopping = self.inner.stopping.clone();
        let interval = cluster
            .nodes
            .heartbeat_interval()
            .max(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stopping.cancelled() => return,
            }
            if let Err(e) = cluster.nodes.heartbeat().await {
                tracing::warn!(error = %e, "failed to heartbeat");
                continue;
            }
            let live: Vec<i64> = self.inner.active.iter().map(|a| *a.key()).collect();
            for id in live {
                if !self.holds_claim(id).await {
                    if let Some(active) = self.inner.active.get(&id) {
                        active.cancel.cancel();
                    }
                }
            }
            self.end_lost_runs().await;
            match cluster.nodes.reap_dead().await {
                Ok(dead) => {
                    for node in dead {
                        self.end_runs_of(&node).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "failed to look for dead nodes"),
            }
        }
    }

    /// Runs of this node the history says are running but this node no longer executes (their
    /// end was not recorded: the database was down then) end `interrupted` now, and their
    /// environments go on.
    pub(super) async fn end_lost_runs(&self) {
        let Some(history) = self.inner.history.postgres() else {
            return;
        };
        // Read before looking at the switches: a run is live here from before it is `running`
        // in the history until after its end is recorded.
        let lost: Vec<i64> = match history.running_here().await {
            Ok(running) => running
                .into_iter()
                .filter(|id| !self.inner.active.contains_key(id))
                .collect(),
            Err(_) => return,
        };
        if lost.is_empty() {
            return;
        }
        let lost = match history.interrupt_lost(&lost).await {
            Ok(lost) => lost,
            Err(e) => {
                tracing::warn!(error = %e, "failed to look for runs whose end was not recorded");
                return;
            }
        };
        for run in lost {
            self.append_line(
                run.id,
                "interrupted: this node could not record the run's end (the database was unreachable); it is over",
            )
            .await;
            self.release(run.env_id, run.id).await;
            self.emit_run(run.id).await;
        }
    }

    /// Node `node` is dead: its runs end `interrupted` and their environments go on.
    pub(super) async fn end_runs_of(&self, node: &str) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let Some(history) = self.inner.history.postgres() else {
            return;
        };
        let ended = match history.interrupt_node(node).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::warn!(%node, error = %e, "failed to end a dead node's runs");
                return;
            }
        };
        tracing::warn!(%node, runs = ended.len(), "a node stopped heartbeating: its runs are interrupted");
        for run in ended {
            self.append_line(
                run.id,
                &format!(
                    "interrupted: node {node} stopped heartbeating (silent for more than {})",
                    humantime::format_duration(cluster.timeout)
                ),
            )
            .await;
            self.release(run.env_id, run.id).await;
            self.emit_run(run.id).await;
        }
    }
}
