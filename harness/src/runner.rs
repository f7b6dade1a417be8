//! The harness core: creating runs, starting them when their environment is theirs, executing
//! their tests one after another, cancelling, and recovering after a restart.

use std::{
    ffi::OsString,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use dashmap::DashMap;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::{Catalog, Kind, TestPath},
    claims::{Claim, Envs},
    config::Config,
    db::{Db, RunFilter},
    exec::{self, Spec},
    logs::{RunLog, Tag},
    model::{EnvView, Run, RunStatus, TestStatus},
};

/// A change the UI and followers hear about (`GET /api/events`).
#[derive(Debug, Clone)]
pub enum Event {
    /// A run was created or changed.
    Run(Run),
    /// An environment changed.
    Env(EnvView),
}

/// What can go wrong at the harness's level (mapped to HTTP errors by the routes).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No such run.
    #[error("there is no run {0}")]
    UnknownRun(i64),
    /// The run has ended already.
    #[error("run {0} has already finished ({1}); nothing to cancel")]
    Finished(i64, &'static str),
    /// No such environment.
    #[error("there is no environment {0}: environments are 1..={1}")]
    UnknownEnv(u32, u32),
    /// The database failed.
    #[error("history database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The file system failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A live run's switches.
#[derive(Debug)]
struct Active {
    cancel: CancellationToken,
    log: Arc<RunLog>,
    /// Becomes true once the run has its final status.
    done: watch::Sender<bool>,
}

/// The harness: shared by every route.
#[derive(Debug, Clone)]
pub struct Harness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    db: Db,
    catalog: Catalog,
    envs: Envs,
    /// `--workers`: runs executing at once.
    workers: Semaphore,
    active: DashMap<i64, Active>,
    events: broadcast::Sender<Event>,
    /// Set when `python3 -c "import pytest"` has worked once.
    pytest_ok: OnceLock<()>,
    /// Held from giving a run its id to queueing it, so that ids are queue order: two concurrent
    /// submissions cannot be numbered in one order and queued in the other.
    admission: parking_lot::Mutex<()>,
}

impl Harness {
    /// Opens the history, marks runs that were running `interrupted`, and starts queued ones
    /// again in order. Must be called inside a Tokio runtime.
    pub fn open(config: Config) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = Db::open(&config.data_dir.join("history.db"))?;
        let catalog = Catalog::new(config.sample_tests.clone(), config.data_dir.join("tests"))?;
        let harness = Self {
            inner: Arc::new(Inner {
                envs: Envs::new(config.envs),
                workers: Semaphore::new(config.workers.max(1)),
                db,
                catalog,
                active: DashMap::new(),
                events: broadcast::channel(1024).0,
                pytest_ok: OnceLock::new(),
                admission: parking_lot::Mutex::new(()),
                config,
            }),
        };
        let (interrupted, queued) = harness.inner.db.recover()?;
        for (id, pgid) in interrupted {
            let Ok(log) = RunLog::create(&harness.log_path(id)) else {
                continue;
            };
            // The server died under the test (kill -9, crash): its process group may still be
            // running. It is no child of ours any more, so end it outright.
            if let Some(pgid) = pgid {
                let left = exec::kill_orphaned_group(pgid, id);
                if !left.is_empty() {
                    let list = left
                        .iter()
                        .map(|(pid, name)| format!("{pid} {name}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    log.line(
                        Tag::Harness,
                        &format!(
                            "killed {} leftover {} the stopped server left running: {list}",
                            left.len(),
                            if left.len() == 1 {
                                "process"
                            } else {
                                "processes"
                            }
                        ),
                    );
                }
            }
            log.line(
                Tag::Harness,
                "interrupted: the server stopped while this run was running",
            );
        }
        for run in queued {
            harness.admit(&run)?;
        }
        Ok(harness)
    }

    /// The catalog of tests.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Subscribes to run and environment changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Where a run's log is.
    pub fn log_path(&self, id: i64) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join("runs")
            .join(id.to_string())
            .join("log.txt")
    }

    /// A receiver that changes as the run's log grows, while the run is live.
    pub(crate) fn log_progress(&self, id: i64) -> Option<watch::Receiver<crate::logs::Progress>> {
        self.inner.active.get(&id).map(|a| a.log.follow())
    }

    /// A receiver that turns true when the run has its final status, while the run is live.
    pub fn done_signal(&self, id: i64) -> Option<watch::Receiver<bool>> {
        self.inner.active.get(&id).map(|a| a.done.subscribe())
    }

    /// Creates a run of already validated tests and queues or starts it.
    pub fn create_run(
        &self,
        username: &str,
        env_id: u32,
        tests: &[String],
    ) -> Result<Run, HarnessError> {
        let run = {
            let _order = self.inner.admission.lock();
            let run = self.inner.db.insert_run(username, env_id, tests)?;
            self.admit(&run)?;
            run
        };
        self.emit_run(run.id);
        Ok(self.inner.db.get_run(run.id)?.unwrap_or(run))
    }

    /// Registers a queued run as live and submits it to its environment.
    fn admit(&self, run: &Run) -> Result<(), HarnessError> {
        let log = Arc::new(RunLog::create(&self.log_path(run.id))?);
        self.inner.active.insert(
            run.id,
            Active {
                cancel: CancellationToken::new(),
                log: log.clone(),
                done: watch::channel(false).0,
            },
        );
        match self.inner.envs.submit(run.env_id, run.id) {
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
                self.inner
                    .db
                    .finish_open_tests(run.id, TestStatus::Skipped)?;
                self.inner.db.set_run_status(run.id, RunStatus::Error)?;
                self.retire(run.id);
            }
        }
        self.emit_env(run.env_id);
        Ok(())
    }

    fn start(&self, id: i64) {
        let harness = self.clone();
        tokio::spawn(async move {
            let env = harness
                .inner
                .db
                .get_run(id)
                .ok()
                .flatten()
                .map(|r| r.env_id);
            if let Err(e) = harness.execute(id).await {
                tracing::error!(run = id, error = %e, "run failed inside the harness");
                let _ = harness.inner.db.finish_open_tests(id, TestStatus::Skipped);
                let _ = harness.inner.db.set_run_status(id, RunStatus::Error);
                harness.retire(id);
            }
            if let Some(env) = env {
                harness.release(env, id);
            }
        });
    }

    /// Frees `env` and starts whoever is next.
    fn release(&self, env: u32, id: i64) {
        if let Some(next) = self.inner.envs.release(env, id) {
            self.start(next);
        }
        self.emit_env(env);
    }

    async fn execute(&self, id: i64) -> Result<(), HarnessError> {
        let inner = &*self.inner;
        let Some(run) = inner.db.get_run(id)? else {
            return Err(HarnessError::UnknownRun(id));
        };
        let (cancel, log) = match inner.active.get(&id) {
            Some(a) => (a.cancel.clone(), a.log.clone()),
            None => return Err(HarnessError::UnknownRun(id)),
        };
        let _permit = tokio::select! {
            permit = inner.workers.acquire() => permit.ok(),
            () = cancel.cancelled() => None,
        };
        if cancel.is_cancelled() {
            return self.finish_cancelled(id, &log);
        }
        inner.db.set_run_status(id, RunStatus::Running)?;
        self.emit_run(id);
        self.emit_env(run.env_id);
        let work = inner
            .config
            .data_dir
            .join("runs")
            .join(id.to_string())
            .join("work");
        std::fs::create_dir_all(&work)?;
        let total = run.tests.len();
        for (i, test) in run.tests.iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            inner.db.set_test(id, i, TestStatus::Running, None, None)?;
            self.emit_run(id);
            log.line(
                Tag::Harness,
                &format!("start {} ({}/{total})", test.path, i + 1),
            );
            let outcome = match self.spec_for(&run, &test.path, &work) {
                Ok(spec) => {
                    let db = &inner.db;
                    exec::run(&spec, &log, &cancel, |pgid| {
                        if let Err(e) = db.set_test_pgid(id, i, pgid) {
                            tracing::warn!(run = id, error = %e, "failed to record a test's process group");
                        }
                    })
                    .await
                }
                Err(why) => {
                    log.line(Tag::Harness, &format!("error: {why}"));
                    exec::Outcome {
                        status: TestStatus::Error,
                        exit_code: None,
                        duration: Duration::ZERO,
                    }
                }
            };
            let exit = outcome
                .exit_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string());
            log.line(
                Tag::Harness,
                &format!(
                    "end {} {} exit={exit} in {:.3}s",
                    test.path,
                    outcome.status.as_str(),
                    outcome.duration.as_secs_f64()
                ),
            );
            inner.db.set_test(
                id,
                i,
                outcome.status,
                outcome.exit_code,
                Some(outcome.duration.as_millis() as u64),
            )?;
            self.emit_run(id);
        }
        if cancel.is_cancelled() {
            return self.finish_cancelled(id, &log);
        }
        let tests = inner.db.get_run(id)?.map(|r| r.tests).unwrap_or_default();
        let status = Run::outcome(&tests);
        inner.db.set_run_status(id, status)?;
        log.line(Tag::Harness, &format!("run {id} {}", status.as_str()));
        self.retire(id);
        Ok(())
    }

    fn finish_cancelled(&self, id: i64, log: &RunLog) -> Result<(), HarnessError> {
        self.inner.db.finish_open_tests(id, TestStatus::Skipped)?;
        self.inner.db.set_run_status(id, RunStatus::Cancelled)?;
        log.line(Tag::Harness, &format!("run {id} cancelled"));
        self.retire(id);
        Ok(())
    }

    /// The run has its final status: close its log, forget its switches, tell everyone.
    fn retire(&self, id: i64) {
        if let Some((_, active)) = self.inner.active.remove(&id) {
            active.log.finish();
            self.emit_run(id);
            let _ = active.done.send(true);
        } else {
            self.emit_run(id);
        }
    }

    /// How to run one test, or why it cannot be run.
    fn spec_for(&self, run: &Run, path: &str, work: &std::path::Path) -> Result<Spec, String> {
        let test_path = TestPath::parse(path).map_err(|e| format!("invalid test path: {e}"))?;
        let file = self
            .inner
            .catalog
            .resolve(&test_path)
            .ok_or_else(|| format!("{path} is no longer in the catalog"))?;
        let file = file.canonicalize().unwrap_or(file);
        let kind = Kind::of(&file).ok_or_else(|| format!("{path} is not a runnable test"))?;
        let argv: Vec<OsString> = match kind {
            Kind::Pytest => {
                self.check_pytest()?;
                vec!["python3".into(), "-m".into(), "pytest".into(), file.into()]
            }
            Kind::Python => vec!["python3".into(), file.into()],
            Kind::Shell => vec!["bash".into(), file.into()],
            Kind::Executable => vec![file.into()],
        };
        let config = &self.inner.config;
        Ok(Spec {
            argv,
            cwd: work.to_owned(),
            env: vec![
                ("EVENTUAL_RUN_ID".into(), run.id.to_string()),
                ("EVENTUAL_ENV_ID".into(), run.env_id.to_string()),
                ("EVENTUAL_USERNAME".into(), run.username.clone()),
                ("EVENTUAL_SINK_URL".into(), config.sink_url.clone()),
                ("EVENTUAL_KEY_PREFIX".into(), format!("run-{}.", run.id)),
                // Python buffers stdout when it is a pipe; users expect to see lines live.
                ("PYTHONUNBUFFERED".into(), "1".into()),
            ],
            timeout: config.test_timeout,
            kill_grace: config.kill_grace,
        })
    }

    fn check_pytest(&self) -> Result<(), String> {
        if self.inner.pytest_ok.get().is_some() {
            return Ok(());
        }
        let ok = std::process::Command::new("python3")
            .args(["-c", "import pytest"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|_| "python3 is not installed or not on PATH: install Python 3 (e.g. `apt-get install python3`)".to_owned())?
            .success();
        if !ok {
            return Err("pytest is not installed for python3: install it with `python3 -m pip install pytest`".into());
        }
        let _ = self.inner.pytest_ok.set(());
        Ok(())
    }

    /// One run.
    pub fn get_run(&self, id: i64) -> Result<Run, HarnessError> {
        self.inner
            .db
            .get_run(id)?
            .ok_or(HarnessError::UnknownRun(id))
    }

    /// Runs matching `filter`, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, HarnessError> {
        Ok(self.inner.db.list_runs(filter)?)
    }

    /// Cancels a queued or running run and returns it once it is `cancelled`.
    pub async fn cancel(&self, id: i64) -> Result<Run, HarnessError> {
        let run = self.get_run(id)?;
        if run.status.is_finished() {
            return Err(HarnessError::Finished(id, run.status.as_str()));
        }
        if self.inner.envs.dequeue(run.env_id, id) {
            if let Some(active) = self.inner.active.get(&id).map(|a| a.log.clone()) {
                active.line(Tag::Harness, "cancelled while queued");
                self.finish_cancelled(id, &active)?;
            }
            self.emit_env(run.env_id);
            return self.get_run(id);
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
        self.get_run(id)
    }

    /// Where `run` stands in its environment's queue, if queued.
    pub fn queue_position(&self, run: &Run) -> Option<usize> {
        self.inner.envs.position(run.env_id, run.id)
    }

    /// Every environment.
    pub fn envs(&self) -> Vec<EnvView> {
        self.inner.envs.views()
    }

    /// Holds an environment's queue.
    pub fn pause(&self, env: u32) -> Result<EnvView, HarnessError> {
        if !self.inner.envs.pause(env) {
            return Err(HarnessError::UnknownEnv(env, self.inner.envs.count()));
        }
        self.emit_env(env);
        self.env(env)
    }

    /// Lets an environment's queue go on.
    pub fn resume(&self, env: u32) -> Result<EnvView, HarnessError> {
        match self.inner.envs.resume(env) {
            None => return Err(HarnessError::UnknownEnv(env, self.inner.envs.count())),
            Some(Some(next)) => self.start(next),
            Some(None) => {}
        }
        self.emit_env(env);
        self.env(env)
    }

    fn env(&self, env: u32) -> Result<EnvView, HarnessError> {
        self.inner
            .envs
            .view(env)
            .ok_or(HarnessError::UnknownEnv(env, self.inner.envs.count()))
    }

    fn emit_run(&self, id: i64) {
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        if let Ok(Some(run)) = self.inner.db.get_run(id) {
            let _ = self.inner.events.send(Event::Run(run));
        }
    }

    fn emit_env(&self, env: u32) {
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        if let Some(view) = self.inner.envs.view(env) {
            let _ = self.inner.events.send(Event::Env(view));
        }
    }
}
