//! Cluster mode (`serve --database`): this node's part in running runs with the others — its
//! connection to the cluster, submission, hints heard and sent, cancels of runs elsewhere,
//! uploads, nodes. Logs are in `cluster_logs.rs`; taking runs, fencing and heartbeats in
//! `cluster_work.rs`.
//!
//! - **Submission**: a run's id is given and the run claims or queues on its environment in one
//!   transaction under that environment's row lock, so ids are queue order cluster-wide.
//! - **Execution**: whichever node has a free worker takes the oldest run that holds its
//!   environment (`FOR UPDATE SKIP LOCKED`), woken by a `NOTIFY` when one may start and by a
//!   re-check every [`RECHECK`]. The run's claim has a fencing token: its results are written only
//!   while the claim still has it.
//! - **Logs**: the executor writes its local file as on one process and copies every new byte to
//!   the database (`log_chunks`); any other node reads the database into a local copy before it
//!   serves the log, and follows it as notifications say it grew.
//! - **Nodes**: each heartbeats every third of `--node-timeout`; the first live node to see
//!   another silent for longer ends its runs (`interrupted`, a line naming it in their logs) and
//!   hands their environments on.

use std::{sync::Arc, time::Duration};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::{
    catalog::{Mirror, SharedUploads, TestPath},
    claims::{Claim, PgClaims},
    cluster::{self, Hint, RECHECK},
    config::ClusterConfig,
    error::HarnessError,
    exec,
    history::{History, PgHistory, PgLogChunks, first_log_chunk_in, insert_run_in},
    model::{Run, RunStatus, TestStatus},
    nodes::{NodeView, Nodes},
};

use super::{Harness, cluster_logs::harness_line};

/// This node's part in the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// `--node-name`.
    pub(super) name: String,
    /// Where the listener connects (its own connection, outside the pool).
    pub(super) listen_config: tokio_postgres::Config,
    /// This node's heartbeat and the others' deaths.
    pub(super) nodes: Nodes,
    /// Run logs in the database.
    pub(super) chunks: PgLogChunks,
    /// Woken when a run may start (a `NOTIFY`, or this node's own release).
    pub(super) startable: Notify,
    /// Runs executed elsewhere whose log this node's followers wait on: how far this node's
    /// copy goes, and whether the run has ended.
    pub(super) follows: DashMap<i64, super::cluster_logs::Follow>,
    /// One copy from the database at a time per run (two would append the same bytes twice).
    pub(super) syncing: DashMap<i64, Arc<tokio::sync::Mutex<()>>>,
    /// Sends this node's hints to the others (and itself).
    pub(super) notifier: cluster::Notifier,
    /// `--node-timeout`, for the line a dead node's runs get.
    pub(super) timeout: Duration,
    /// Uploads in the database, and this node's copy of them in its catalog.
    pub(super) uploads: SharedUploads,
    pub(super) mirror: tokio::sync::Mutex<Mirror>,
}

/// Connects to the cluster's database as the node `config` describes: its history and claims.
pub(super) async fn connect(
    config: &ClusterConfig,
    envs: u32,
    workers: usize,
) -> Result<(History, PgClaims, Cluster), HarnessError> {
    let pool = crate::database::open(&config.database).await?;
    let listen_config = sink::database::parse_url(&config.database)?;
    let notify_config = listen_config.clone();
    let history = History::Postgres(Arc::new(PgHistory::new(pool.clone(), &config.node_name)));
    let claims = PgClaims::open(pool.clone(), envs).await?;
    let nodes = Nodes::join(
        pool.clone(),
        &config.node_name,
        &config.address,
        workers,
        config.node_timeout,
    )
    .await?;
    let cluster = Cluster {
        name: config.node_name.clone(),
        chunks: PgLogChunks::new(pool.clone()),
        listen_config,
        nodes,
        startable: Notify::new(),
        follows: DashMap::new(),
        syncing: DashMap::new(),
        // Until the last hint is handed over (never cancelled: a stopping node's last hints —
        // the environments it frees — are the ones the others most need).
        notifier: cluster::Notifier::start(
            notify_config,
            config.node_name.clone(),
            tokio_util::sync::CancellationToken::new(),
        ),
        timeout: config.node_timeout,
        uploads: SharedUploads::new(pool.clone()),
        mirror: tokio::sync::Mutex::new(Mirror::default()),
    };
    Ok((history, claims, cluster))
}

impl Harness {
    pub(super) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    pub(super) fn pg_claims(&self) -> Option<&PgClaims> {
        self.inner.claims.postgres()
    }

    /// Tells every node (this one included) `hint`, soon (a lost hint is caught up by the
    /// re-checks).
    pub(super) fn hint(&self, hint: Hint) {
        if let Some(cluster) = self.cluster() {
            cluster.notifier.send(hint);
        }
    }

    /// A run may start: this node's worker loop looks now, and so do the others'.
    pub(super) async fn wake_startable(&self) {
        if let Some(cluster) = self.cluster() {
            cluster.startable.notify_one();
            self.hint(Hint::Claims);
        }
    }

    /// A release on this node handed an environment to a queued run: this node starts it if it
    /// has a free worker (no notification, no node racing the others for nothing); else every
    /// node is told. A node whose take fills its workers tells the others itself (see
    /// `take_runs`), so a run never waits on a busy node while another is idle.
    pub(super) async fn wake_for_hand_over(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        if self.inner.workers.available_permits() > 0 && !self.inner.stopping.is_cancelled() {
            cluster.startable.notify_one();
        } else {
            self.wake_startable().await;
        }
    }

    /// Cluster mode's submission: the run is created and claims or queues on `env` in one
    /// transaction (see the module docs).
    pub(super) async fn submit_cluster(
        &self,
        username: &str,
        env: u32,
        tests: &[String],
        prep_count: usize,
    ) -> Result<Run, HarnessError> {
        let claims = self.pg_claims().ok_or(HarnessError::UnknownEnv(env, 0))?;
        let submitted = claims
            .submit_new(
                env,
                username,
                async |tx| {
                    let run = insert_run_in(tx, username, env, tests, prep_count).await?;
                    Ok((run.id, run))
                },
                async |tx, id, claim| {
                    let Claim::Queued { position, behind } = claim else {
                        return Ok(());
                    };
                    let behind = behind.map_or(String::new(), |b| format!(" behind run {b}"));
                    let line = harness_line(&format!(
                        "queued on env {env}{behind} (position {position})"
                    ));
                    first_log_chunk_in(tx, id, line.as_bytes()).await
                },
            )
            .await?;
        let Some((run, claim)) = submitted else {
            return Err(HarnessError::UnknownEnv(env, claims.count()));
        };
        if claim == Claim::Holder {
            self.wake_startable().await;
        }
        self.emit_env(env).await;
        Ok(run)
    }

    /// A hint from another node (or the listener's reconnection).
    pub(super) fn on_hint(&self, hint: Hint) {
        let harness = self.clone();
        match hint {
            Hint::Claims => {
                if let Some(cluster) = self.cluster() {
                    cluster.startable.notify_one();
                }
            }
            Hint::Cancel(id) => {
                if let Some(active) = self.inner.active.get(&id) {
                    active.cancel.cancel();
                }
            }
            Hint::Run(id) => {
                tokio::spawn(async move {
                    if harness.inner.events.receiver_count() > 0 {
                        if let Ok(Some(run)) = harness.inner.history.get_run(id).await {
                            harness.send_run(run);
                        }
                    }
                    harness.refresh_follow(id).await;
                });
            }
            Hint::Env(env) => {
                tokio::spawn(async move { harness.send_env(env).await });
            }
            Hint::Log(id) => {
                tokio::spawn(async move { harness.refresh_follow(id).await });
            }
            Hint::Uploads => {
                tokio::spawn(async move { harness.refresh_catalog().await });
            }
            Hint::Reconnected => {
                tokio::spawn(async move { harness.recheck().await });
            }
        }
    }

    /// What a lost notification would have said: look for runs to start, and at every
    /// followed log.
    pub(super) async fn recheck(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        cluster.startable.notify_one();
        self.refresh_catalog().await;
        let followed: Vec<i64> = cluster.follows.iter().map(|f| *f.key()).collect();
        for id in followed {
            self.refresh_follow(id).await;
        }
    }

    /// After opening in cluster mode: what this node left running when it stopped is ended
    /// (as a single process does after a crash), and the node starts taking runs.
    pub(super) async fn start_cluster(&self) -> Result<(), HarnessError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let (interrupted, _queued) = self.inner.history.recover().await?;
        for (id, _pgid) in interrupted {
            let left = exec::kill_run_processes(id, &self.data_dir_marker());
            if !left.is_empty() {
                self.append_line(
                    id,
                    &format!(
                        "killed {} leftover process(es) this node left running",
                        left.len()
                    ),
                )
                .await;
            }
            self.append_line(
                id,
                &format!(
                    "interrupted: node {} stopped while this run was running",
                    cluster.name
                ),
            )
            .await;
            if let Ok(run) = self.get_run(id).await {
                self.release(run.env_id, id).await;
            }
            self.emit_run(id).await;
        }
        self.refresh_catalog().await;
        let stopping = self.inner.stopping.clone();
        let harness = self.clone();
        let config = cluster.listen_config.clone();
        let name = cluster.name.clone();
        tokio::spawn(cluster::listen(
            config,
            name,
            move |hint| harness.on_hint(hint),
            stopping,
        ));
        tokio::spawn(self.clone().heartbeats());
        tokio::spawn(self.clone().rechecks());
        if self.inner.config.workers > 0 {
            tokio::spawn(self.clone().take_runs());
        }
        Ok(())
    }

    /// Every [`RECHECK`]: look again without being told.
    pub(super) async fn rechecks(self) {
        let stopping = self.inner.stopping.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(RECHECK) => self.recheck().await,
                () = stopping.cancelled() => return,
            }
        }
    }

    /// Cancels a run this node does not hold the switches of: dequeued here, or executed by
    /// another node (asked by a notification, repeated until it has ended).
    pub(super) async fn cancel_elsewhere(
        &self,
        id: i64,
        dequeued: bool,
    ) -> Result<Run, HarnessError> {
        if dequeued {
            self.append_line(id, "cancelled while queued").await;
            let history = &self.inner.history;
            history.finish_open_tests(id, TestStatus::Skipped).await?;
            history.set_run_status(id, RunStatus::Cancelled).await?;
            self.append_line(id, &format!("run {id} cancelled")).await;
            self.emit_run(id).await;
            return self.get_run(id).await;
        }
        let taken = match (self.pg_claims(), self.cluster()) {
            (Some(claims), Some(cluster)) => claims.take(id, &cluster.name).await?,
            _ => false,
        };
        if taken {
            // It held its environment, waiting for a worker: it never started.
            let history = &self.inner.history;
            history.finish_open_tests(id, TestStatus::Skipped).await?;
            history.set_run_status(id, RunStatus::Cancelled).await?;
            self.append_line(id, &format!("run {id} cancelled before it started"))
                .await;
            let run = self.get_run(id).await?;
            self.release(run.env_id, id).await;
            self.emit_run(id).await;
            return self.get_run(id).await;
        }
        let limit = self.inner.config.kill_grace + Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + limit;
        // Subscribed before asking: the executor's end reaches this node's followers as a run
        // event (forwarded from its hint), so it cannot be missed between a read and the wait.
        let mut events = self.subscribe();
        loop {
            self.hint(Hint::Cancel(id));
            let run = self.get_run(id).await?;
            if run.status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            // The ask is repeated every re-check, in case the hint or the answer was lost.
            let ended = async {
                loop {
                    match events.recv().await {
                        Ok(super::Event::Run(r)) if r.id == id && r.status.is_finished() => return,
                        Ok(_) => {}
                        // Missed events: read the run again.
                        Err(_) => return,
                    }
                }
            };
            let _ = tokio::time::timeout(RECHECK, ended).await;
        }
    }

    /// Cluster mode: brings this node's catalog in line with the cluster's uploads — before a
    /// route reads it (so a test uploaded through any node is there at once: one small query),
    /// on a hint, and at every re-check. Nothing on a single process.
    pub(crate) async fn refresh_catalog(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let mut mirror = cluster.mirror.lock().await;
        if let Err(e) = mirror.sync(&cluster.uploads, &self.inner.catalog).await {
            tracing::warn!(error = %e, "failed to mirror the cluster's uploads");
        }
    }

    /// Cluster mode: an upload stored in this node's catalog goes to the database for every
    /// node; if the database refuses it, the local copy goes too (nothing half-stored).
    pub async fn share_upload(&self, path: &TestPath, contents: &[u8]) -> Result<(), HarnessError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        if let Err(e) = cluster.uploads.put(path, contents).await {
            let _ = self.inner.catalog.delete(path);
            return Err(e.into());
        }
        self.hint(Hint::Uploads);
        Ok(())
    }

    /// Cluster mode: an upload deleted here is deleted for every node.
    pub async fn unshare_upload(&self, path: &TestPath) -> Result<(), HarnessError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        cluster.uploads.delete(path).await?;
        self.hint(Hint::Uploads);
        Ok(())
    }

    /// Cluster mode, once this node has stopped running things: the others see it `stopped`.
    pub(super) async fn leave_cluster(&self) {
        if let Some(cluster) = self.cluster() {
            if let Err(e) = cluster.nodes.leave().await {
                tracing::warn!(error = %e, "failed to record that this node stopped");
            }
        }
    }

    /// `GET /api/nodes`: every node of the cluster; on a single process, this one.
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeView>, HarnessError> {
        match self.cluster() {
            Some(cluster) => Ok(cluster.nodes.list().await?),
            None => Ok(Vec::new()),
        }
    }

    /// Tells this node's followers about environment `env`.
    pub(super) async fn send_env(&self, env: u32) {
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        if let Ok(Some(view)) = self.inner.claims.view(env).await {
            let _ = self.inner.events.send(super::Event::Env(view));
        }
    }
}
