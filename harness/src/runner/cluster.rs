//! Cluster mode (`serve --database`): this node's part in running runs with the others.
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
use deadpool_postgres::Pool;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::{Mirror, SharedUploads, TestPath},
    claims::{Claim, PgClaims, Startable},
    cluster::{self, Hint, RECHECK},
    config::ClusterConfig,
    error::HarnessError,
    exec,
    history::{AppendError, History, PgHistory, PgLogChunks, first_log_chunk_in, insert_run_in},
    logs::{Progress, RunLog, Tag, format_line},
    model::{Run, RunStatus, TestStatus},
    nodes::{NodeView, Nodes},
};

use super::{Harness, harness::Active};

/// This node's part in the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// `--node-name`.
    pub(super) name: String,
    /// The harness's pool in the cluster's database (history, claims and logs share it).
    pool: Pool,
    /// Where the listener connects (its own connection, outside the pool).
    listen_config: tokio_postgres::Config,
    /// This node's heartbeat and the others' deaths.
    nodes: Nodes,
    /// Run logs in the database.
    chunks: PgLogChunks,
    /// Woken when a run may start (a `NOTIFY`, or this node's own release).
    startable: Notify,
    /// Runs executed elsewhere whose log this node's followers wait on: how far this node's
    /// copy goes, and whether the run has ended.
    follows: DashMap<i64, Follow>,
    /// One copy from the database at a time per run (two would append the same bytes twice).
    syncing: DashMap<i64, Arc<tokio::sync::Mutex<()>>>,
    /// `--node-timeout`, for the line a dead node's runs get.
    timeout: Duration,
    /// Uploads in the database, and this node's copy of them in its catalog.
    uploads: SharedUploads,
    mirror: tokio::sync::Mutex<Mirror>,
}

/// What followers on this node see of a run executed on another.
#[derive(Debug)]
struct Follow {
    progress: watch::Sender<Progress>,
    done: watch::Sender<bool>,
}

/// Connects to the cluster's database as the node `config` describes: its history and claims.
pub(super) async fn connect(
    config: &ClusterConfig,
    envs: u32,
    workers: usize,
) -> Result<(History, PgClaims, Cluster), HarnessError> {
    let pool = crate::database::open(&config.database).await?;
    let listen_config = sink::database::parse_url(&config.database)?;
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
    let pool_for_uploads = pool.clone();
    let cluster = Cluster {
        name: config.node_name.clone(),
        chunks: PgLogChunks::new(pool.clone()),
        pool,
        listen_config,
        nodes,
        startable: Notify::new(),
        follows: DashMap::new(),
        syncing: DashMap::new(),
        timeout: config.node_timeout,
        uploads: SharedUploads::new(pool_for_uploads),
        mirror: tokio::sync::Mutex::new(Mirror::default()),
    };
    Ok((history, claims, cluster))
}

impl Harness {
    fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    fn pg_claims(&self) -> Option<&PgClaims> {
        self.inner.claims.postgres()
    }

    /// Tells every node `hint` (logged, not returned: a lost hint is caught up by re-checks).
    pub(super) async fn hint(&self, hint: Hint) {
        if let Some(cluster) = self.cluster() {
            if let Err(e) = cluster::notify(&cluster.pool, &hint, &cluster.name).await {
                tracing::warn!(error = %e, ?hint, "failed to notify the other nodes");
            }
        }
    }

    /// A run may start: this node's worker loop looks now, and so do the others'.
    pub(super) async fn wake_startable(&self) {
        if let Some(cluster) = self.cluster() {
            cluster.startable.notify_one();
            self.hint(Hint::Claims).await;
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
                    self.hint(Hint::Log(id)).await;
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

    async fn sync_log(&self, id: i64) -> Result<u64, HarnessError> {
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
    async fn copy_log(&self, id: i64) -> Result<u64, HarnessError> {
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
    async fn live_follow(
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
    async fn refresh_follow(&self, id: i64) {
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

    /// A hint from another node (or the listener's reconnection).
    fn on_hint(&self, hint: Hint) {
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
                tokio::spawn(async move { harness.mirror_uploads().await });
            }
            Hint::Reconnected => {
                tokio::spawn(async move { harness.recheck().await });
            }
        }
    }

    /// What a lost notification would have said: look for runs to start, and at every
    /// followed log.
    async fn recheck(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        cluster.startable.notify_one();
        self.mirror_uploads().await;
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
        self.mirror_uploads().await;
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
    async fn rechecks(self) {
        let stopping = self.inner.stopping.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(RECHECK) => self.recheck().await,
                () = stopping.cancelled() => return,
            }
        }
    }

    /// The worker loop: while a worker is free, take the oldest run that may start.
    async fn take_runs(self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let Some(claims) = self.pg_claims() else {
            return;
        };
        let stopping = self.inner.stopping.clone();
        loop {
            let permit = tokio::select! {
                permit = self.inner.workers.clone().acquire_owned() => permit,
                () = stopping.cancelled() => return,
            };
            let Ok(permit) = permit else { return };
            match claims.take_startable(&cluster.name).await {
                Ok(Some(startable)) => {
                    self.begin(startable, permit).await;
                    continue;
                }
                Ok(None) => drop(permit),
                Err(e) => {
                    drop(permit);
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
    async fn begin(&self, startable: Startable, permit: OwnedSemaphorePermit) {
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
            let at = self.copy_log(id).await?;
            let log = Arc::new(RunLog::create(&path)?);
            let run = self.get_run(id).await?;
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

    /// Copies run `id`'s log from this node's file into the database as it grows, from byte
    /// `at`, until the log is complete. Another writer at the end means this node lost the
    /// run (it was declared dead): the run is stopped.
    async fn ship_log(
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
                        self.hint(Hint::Log(id)).await;
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
    async fn heartbeats(self) {
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
    async fn end_lost_runs(&self) {
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
    async fn end_runs_of(&self, node: &str) {
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
        loop {
            self.hint(Hint::Cancel(id)).await;
            let run = self.get_run(id).await?;
            if run.status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            // Its end arrives as a notification; the re-check bounds a lost one.
            let mut done = self.done_signal(id).await;
            match &mut done {
                Some(done) => {
                    let _ = tokio::time::timeout(RECHECK, done.wait_for(|d| *d)).await;
                }
                None => tokio::time::sleep(RECHECK).await,
            }
        }
    }

    /// Brings this node's uploads in line with the cluster's.
    async fn mirror_uploads(&self) {
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
        self.hint(Hint::Uploads).await;
        Ok(())
    }

    /// Cluster mode: an upload deleted here is deleted for every node.
    pub async fn unshare_upload(&self, path: &TestPath) -> Result<(), HarnessError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        cluster.uploads.delete(path).await?;
        self.hint(Hint::Uploads).await;
        Ok(())
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

/// A harness line stamped now, as the log stores it.
fn harness_line(text: &str) -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    format_line(&now, Tag::Harness, text)
}
