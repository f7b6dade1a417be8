//! A run's way through its environment: created and admitted (its id is its queue order),
//! started when the environment is its own, released and retired at its end, cancelled,
//! paused with its environment; and uploads deleted only when no live run names them.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::{TestPath, tags_of},
    claims::Claim,
    error::HarnessError,
    logs::{RunLog, Tag},
    model::{EnvView, Run, RunStatus, TestStatus},
};

use super::{Harness, harness::Active};

impl Harness {
    /// Creates a run of already validated tests on `env_id` (`None`: a free environment, else
    /// the one with the shortest queue, chosen under the admission lock so that no other
    /// submission can take it in between) and queues or starts it.
    pub async fn create_run(
        &self,
        username: &str,
        env_id: Option<u32>,
        tests: &[String],
    ) -> Result<Run, HarnessError> {
        // A run with preparation tests is phased: they go first, in the order given.
        let is_prep = |path: &String| {
            TestPath::parse(path).ok().is_some_and(|tp| {
                self.inner
                    .catalog
                    .resolve(&tp)
                    .is_some_and(|file| tags_of(&file, &tp).iter().any(|t| t == "preparation"))
            })
        };
        let (prep, rest): (Vec<String>, Vec<String>) = tests.iter().cloned().partition(is_prep);
        let prep_count = prep.len();
        let ordered: Vec<String> = prep.into_iter().chain(rest).collect();
        let run = {
            let _order = self.inner.admission.lock().await;
            // Checked again under the admission lock, which deletes take too: a test validated
            // before a concurrent delete is not admitted to fail later.
            if let Some(gone) = ordered.iter().find(|t| {
                TestPath::parse(t).map_or(true, |tp| self.inner.catalog.resolve(&tp).is_none())
            }) {
                return Err(HarnessError::TestGone(gone.clone()));
            }
            let env_id = match env_id {
                Some(env) => env,
                None => self
                    .inner
                    .claims
                    .least_busy()
                    .await?
                    .ok_or(HarnessError::AllPaused)?,
            };
            if self.inner.cluster.is_some() {
                let run = self
                    .submit_cluster(username, env_id, &ordered, prep_count)
                    .await?;
                drop(_order);
                self.emit_run(run.id).await;
                return Ok(self.inner.history.get_run(run.id).await?.unwrap_or(run));
            }
            let run = self
                .inner
                .history
                .insert_run(username, env_id, &ordered, prep_count)
                .await?;
            self.admit(&run).await?;
            run
        };
        self.emit_run(run.id).await;
        Ok(self.inner.history.get_run(run.id).await?.unwrap_or(run))
    }

    /// Deletes an upload unless a queued or running run names it. Under the admission lock, so
    /// no run naming it can be admitted between the check and the removal. Blocks (file system,
    /// lock): call it on the blocking pool.
    pub fn delete_upload(&self, path: &TestPath) -> Result<(), HarnessError> {
        let _order = self.inner.admission.blocking_lock();
        let mut runs: Vec<i64> = self
            .inner
            .active
            .iter()
            .filter(|a| a.tests.iter().any(|t| t == path.as_str()))
            .map(|a| *a.key())
            .collect();
        if !runs.is_empty() {
            runs.sort_unstable();
            return Err(HarnessError::TestInUse {
                path: path.as_str().to_owned(),
                runs,
            });
        }
        Ok(self.inner.catalog.delete(path)?)
    }

    /// Cluster mode: refuses to delete an upload that a queued or running run names on any
    /// node (a single process knows its live runs from their switches: [`Self::delete_upload`]).
    pub async fn check_upload_unused(&self, path: &TestPath) -> Result<(), HarnessError> {
        if self.inner.cluster.is_none() {
            return Ok(());
        }
        let mut runs = Vec::new();
        for status in [RunStatus::Queued, RunStatus::Running] {
            let filter = crate::history::RunFilter {
                status: Some(status),
                test: Some(path.as_str().to_owned()),
                limit: 1000,
                ..Default::default()
            };
            runs.extend(
                self.inner
                    .history
                    .list_runs(&filter)
                    .await?
                    .iter()
                    .map(|r| r.id),
            );
        }
        if runs.is_empty() {
            return Ok(());
        }
        runs.sort_unstable();
        Err(HarnessError::TestInUse {
            path: path.as_str().to_owned(),
            runs,
        })
    }

    /// Registers a queued run as live and submits it to its environment.
    pub(super) async fn admit(&self, run: &Run) -> Result<(), HarnessError> {
        let log = Arc::new(RunLog::create(&self.log_path(run.id))?);
        self.inner.active.insert(
            run.id,
            Active {
                cancel: CancellationToken::new(),
                log: log.clone(),
                env_id: run.env_id,
                tests: run.test_paths(),
                done: watch::channel(false).0,
                queued_at: std::time::Instant::now(),
                started_at: std::sync::OnceLock::new(),
                fence: None,
                shipper: parking_lot::Mutex::new(None),
            },
        );
        match self
            .inner
            .claims
            .submit(run.env_id, run.id, &run.username)
            .await?
        {
            Some(Claim::Holder) => self.start(run.id),
            Some(Claim::Queued { position, behind }) => {
                let behind = behind.map_or(String::new(), |b| format!(" behind run {b}"));
                log.line(
                    Tag::Harness,
                    &format!("queued on env {}{behind} (position {position})", run.env_id),
                );
            }
            None => {
                log.line(
                    Tag::Harness,
                    &format!("error: there is no environment {}", run.env_id),
                );
                let history = &self.inner.history;
                history
                    .finish_open_tests(run.id, TestStatus::Skipped)
                    .await?;
                history.set_run_status(run.id, RunStatus::Error).await?;
                self.retire(run.id).await;
            }
        }
        self.emit_env(run.env_id).await;
        Ok(())
    }

    /// The run is `running` now: how long it waited goes to the metrics, and its clock starts.
    pub(super) fn mark_started(&self, id: i64) {
        if let Some(active) = self.inner.active.get(&id) {
            let now = std::time::Instant::now();
            if active.started_at.set(now).is_ok() {
                self.inner
                    .metrics
                    .started(now.duration_since(active.queued_at));
            }
        }
    }

    pub(super) fn start(&self, id: i64) {
        self.start_with(id, None);
    }

    /// Starts executing run `id` (it holds its environment), under `permit` if a worker was
    /// taken for it already (cluster mode takes one before it takes a run).
    pub(super) fn start_with(&self, id: i64, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        if self.inner.stopping.is_cancelled() {
            if self.inner.cluster.is_none() {
                // The server is going down: the run stays queued and goes on after the restart.
                return;
            }
            // Taken by this node as it stops: it ends `interrupted` at once and its environment
            // goes on to another node.
            if let Some(active) = self.inner.active.get(&id) {
                active.cancel.cancel();
            }
        }
        let harness = self.clone();
        tokio::spawn(async move {
            if let Err(e) = harness.execute(id, permit).await {
                tracing::error!(run = id, error = %e, "run failed inside the harness");
                let history = &harness.inner.history;
                let _ = history.finish_open_tests(id, TestStatus::Skipped).await;
                let _ = history.set_run_status(id, RunStatus::Error).await;
                harness.retire(id).await;
            }
        });
    }

    /// Frees `env` and starts whoever is next (here; in cluster mode, on whichever node has a
    /// free worker first).
    pub(super) async fn release(&self, env: u32, id: i64) {
        match self.inner.claims.release(env, id).await {
            Ok(Some(next)) => self.start_next(next).await,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(run = id, env, error = %e, "failed to release an environment")
            }
        }
        self.emit_env(env).await;
    }

    /// Run `next` holds its environment now: start it.
    async fn start_next(&self, next: i64) {
        if self.inner.cluster.is_some() {
            self.wake_for_hand_over().await;
        } else {
            self.start(next);
        }
    }

    /// The run has its final status: close its log, forget its switches, tell everyone.
    /// Frees the run's environment first (starting whoever is next), so that anyone told the run
    /// is over — a cancel's answer, a follower — finds the environment already handed on.
    pub(super) async fn retire(&self, id: i64) {
        // Read once: its environment (if its switches are gone), its final status for the
        // metrics, and what followers are told.
        let run = self.inner.history.get_run(id).await.ok().flatten();
        let env = self
            .inner
            .active
            .get(&id)
            .map(|a| a.env_id)
            .or(run.as_ref().map(|r| r.env_id));
        if let Some(env) = env {
            self.release(env, id).await;
        }
        let active = self.inner.active.remove(&id);
        if let Some((_, active)) = &active {
            // Counted once (only the call that removed the run's switches gets here), and before
            // its log ends: whoever saw the run end finds it counted.
            if let Some(status) = run.as_ref().map(|r| r.status).filter(|s| s.is_finished()) {
                let ran = active.started_at.get().map(|at| at.elapsed());
                self.inner.metrics.finished(status, ran);
            }
            active.log.finish();
            // Cluster mode: the whole log is in the database before anyone hears of the end.
            let shipper = active.shipper.lock().take();
            if let Some(shipper) = shipper {
                let _ = shipper.await;
            }
        }
        self.hint(crate::cluster::Hint::Run(id));
        if let Some(run) = run {
            self.send_run(run);
        }
        if let Some((_, active)) = active {
            let _ = active.done.send(true);
        }
    }

    pub(super) async fn finish_cancelled(&self, id: i64, log: &RunLog) -> Result<(), HarnessError> {
        let history = &self.inner.history;
        if !self.holds_claim(id).await {
            return self.give_up_lost(id, log).await;
        }
        history.finish_open_tests(id, TestStatus::Skipped).await?;
        let fence = self.fence_of(id);
        if self.inner.stopping.is_cancelled() {
            if !history
                .finish_run(id, RunStatus::Interrupted, fence)
                .await?
            {
                return self.give_up_lost(id, log).await;
            }
            log.line(
                Tag::Harness,
                "interrupted: the server stopped while this run was running",
            );
        } else {
            if !history.finish_run(id, RunStatus::Cancelled, fence).await? {
                return self.give_up_lost(id, log).await;
            }
            log.line(Tag::Harness, &format!("run {id} cancelled"));
        }
        self.retire(id).await;
        Ok(())
    }

    /// Cancels a queued or running run and returns it once it is `cancelled`.
    pub async fn cancel(&self, id: i64) -> Result<Run, HarnessError> {
        let run = self.get_run(id).await?;
        if run.status.is_finished() {
            return Err(HarnessError::Finished(id, run.status.as_str()));
        }
        let dequeued = self.inner.claims.dequeue(run.env_id, id).await?;
        let local = self.inner.active.get(&id).map(|a| a.log.clone());
        if dequeued {
            if let Some(active) = local {
                active.line(Tag::Harness, "cancelled while queued");
                self.finish_cancelled(id, &active).await?;
                self.emit_env(run.env_id).await;
                return self.get_run(id).await;
            }
        }
        if local.is_none() && self.inner.cluster.is_some() {
            let run = self.cancel_elsewhere(id, dequeued).await?;
            self.emit_env(run.env_id).await;
            return Ok(run);
        }
        let done = self.inner.active.get(&id).map(|a| {
            a.cancel.cancel();
            a.done.subscribe()
        });
        if let Some(mut done) = done {
            // The executor ends the test's process group (SIGTERM, grace, SIGKILL) and then
            // reports; that bounds this wait.
            let _ = done.wait_for(|d| *d).await;
        }
        self.get_run(id).await
    }

    /// Cluster mode: the run's claim moved on (this node was declared dead, its environment
    /// handed on): nothing of its end is written; its switches go.
    pub(super) async fn give_up_lost(&self, id: i64, log: &RunLog) -> Result<(), HarnessError> {
        log.line(
            Tag::Harness,
            "this node lost the run's claim (its environment went on without it): its results are not written",
        );
        self.retire(id).await;
        Ok(())
    }

    /// Holds an environment's queue.
    pub async fn pause(&self, env: u32) -> Result<EnvView, HarnessError> {
        let claims = &self.inner.claims;
        if !claims.pause(env).await? {
            return Err(HarnessError::UnknownEnv(env, claims.count()));
        }
        self.emit_env(env).await;
        self.env(env).await
    }

    /// Lets an environment's queue go on.
    pub async fn resume(&self, env: u32) -> Result<EnvView, HarnessError> {
        let claims = &self.inner.claims;
        match claims.resume(env).await? {
            None => return Err(HarnessError::UnknownEnv(env, claims.count())),
            Some(Some(next)) => self.start_next(next).await,
            Some(None) => {}
        }
        self.emit_env(env).await;
        self.env(env).await
    }

    /// Begins stopping: running runs are ended (their process groups terminated) and will be
    /// `interrupted`; queued runs stay queued for the next start; streams end.
    pub fn begin_stop(&self) {
        self.inner.stopping.cancel();
        for active in self.inner.active.iter() {
            active.cancel.cancel();
        }
    }

    /// Stops, waiting until every running run has its final status (bounded by the kill grace).
    pub async fn stop(&self) {
        self.begin_stop();
        let live: Vec<(i64, watch::Receiver<bool>)> = self
            .inner
            .active
            .iter()
            .map(|a| (*a.key(), a.done.subscribe()))
            .collect();
        let limit = self.inner.config.kill_grace + Duration::from_secs(10);
        for (id, mut done) in live {
            let run = self.inner.history.get_run(id).await;
            if matches!(
                run,
                Ok(Some(Run {
                    status: RunStatus::Running,
                    ..
                }))
            ) {
                let _ = tokio::time::timeout(limit, done.wait_for(|d| *d)).await;
            }
        }
        self.leave_cluster().await;
    }
}
