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
    catalog::{Catalog, Kind, TestPath, tags_of},
    claims::{Claim, Envs},
    config::Config,
    db::{Db, RunFilter},
    exec::{self, Spec},
    logs::{RunLog, Tag},
    model::{EnvView, Run, RunStatus, TestStatus},
    phases::{
        Announce, Announcements, Awaiting, KeyWait, MAX_AWAIT, callbacks_json, parse_announce,
    },
};

/// How an await phase ended.
#[derive(Debug)]
enum AwaitEnd {
    /// Everything arrived; the callbacks file's path.
    Arrived(String),
    TimedOut,
    Cancelled,
}

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
    /// A test to delete is named by runs that have not ended.
    #[error(
        "{path} is used by queued or running run(s) {}: delete it once they have ended \
         (or cancel them)",
        .runs.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    )]
    TestInUse {
        /// The test.
        path: String,
        /// The runs naming it, by id.
        runs: Vec<i64>,
    },
    /// A catalog file could not be deleted.
    #[error(transparent)]
    Delete(#[from] crate::catalog::DeleteError),
    /// A test of a new run was deleted between validation and admission.
    #[error("unknown test {0}")]
    TestGone(String),
}

/// A live run's switches.
#[derive(Debug)]
struct Active {
    cancel: CancellationToken,
    log: Arc<RunLog>,
    /// Its test paths, so an upload it will run cannot be deleted under it.
    tests: Vec<String>,
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
    /// Cancelled when the server stops: running runs end `interrupted`, nothing new starts, and
    /// streams (events, log follows) end so the server can exit.
    stopping: CancellationToken,
}

impl Harness {
    /// Opens the history, marks runs that were running `interrupted`, and starts queued ones
    /// again in order. Must be called inside a Tokio runtime.
    pub fn open(mut config: Config) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(&config.data_dir)?;
        // Tests run in `<data-dir>/runs/<id>/work`: every path handed to them (EVENTUAL_CALLBACKS,
        // EVENTUAL_DATA_DIR) must not depend on the server's working directory.
        config.data_dir = std::path::absolute(&config.data_dir)?;
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
                stopping: CancellationToken::new(),
                config,
            }),
        };
        let (interrupted, queued) = harness.inner.db.recover()?;
        for (id, pgid) in interrupted {
            let Ok(log) = RunLog::create(&harness.log_path(id)) else {
                continue;
            };
            // The server died under the run (kill -9, crash): its test and scripts may still be
            // running. They are no children of ours any more, so end them outright.
            let _ = pgid;
            {
                let left = exec::kill_run_processes(id, &harness.data_dir_marker());
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
            harness.cleanup_after_crash(id, Arc::new(log));
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
            let _order = self.inner.admission.lock();
            // Checked again under the admission lock, which deletes take too: a test validated
            // before a concurrent delete is not admitted to fail later.
            if let Some(gone) = ordered.iter().find(|t| {
                TestPath::parse(t).map_or(true, |tp| self.inner.catalog.resolve(&tp).is_none())
            }) {
                return Err(HarnessError::TestGone(gone.clone()));
            }
            let run = self
                .inner
                .db
                .insert_run(username, env_id, &ordered, prep_count)?;
            self.admit(&run)?;
            run
        };
        self.emit_run(run.id);
        Ok(self.inner.db.get_run(run.id)?.unwrap_or(run))
    }

    /// Deletes an upload unless a queued or running run names it. Under the admission lock, so
    /// no run naming it can be admitted between the check and the removal.
    pub fn delete_upload(&self, path: &TestPath) -> Result<(), HarnessError> {
        let _order = self.inner.admission.lock();
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

    /// Registers a queued run as live and submits it to its environment.
    fn admit(&self, run: &Run) -> Result<(), HarnessError> {
        let log = Arc::new(RunLog::create(&self.log_path(run.id))?);
        self.inner.active.insert(
            run.id,
            Active {
                cancel: CancellationToken::new(),
                log: log.clone(),
                tests: run.tests.iter().map(|t| t.path.clone()).collect(),
                done: watch::channel(false).0,
            },
        );
        match self.inner.envs.submit_by(run.env_id, run.id, &run.username) {
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
        if self.inner.stopping.is_cancelled() {
            // The server is going down: the run stays queued and goes on after the restart.
            return;
        }
        let harness = self.clone();
        tokio::spawn(async move {
            if let Err(e) = harness.execute(id).await {
                tracing::error!(run = id, error = %e, "run failed inside the harness");
                let _ = harness.inner.db.finish_open_tests(id, TestStatus::Skipped);
                let _ = harness.inner.db.set_run_status(id, RunStatus::Error);
                harness.retire(id);
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
        let paths: Vec<String> = run.tests.iter().map(|t| t.path.clone()).collect();
        let status = match inner.catalog.config_for(&paths) {
            None => {
                self.run_tests(&run, &log, &cancel, &work, Vec::new())
                    .await?
            }
            Some((dir, Err(problems))) => {
                log.line(
                    Tag::Harness,
                    &format!(
                        "error: {}/eventual.toml is not valid: {}",
                        if dir.is_empty() { "." } else { &dir },
                        problems.join("; ")
                    ),
                );
                Some(RunStatus::Error)
            }
            Some((dir, Ok(config))) => {
                log.line(
                    Tag::Harness,
                    &format!(
                        "using {}/eventual.toml: scripts {}",
                        if dir.is_empty() { "." } else { &dir },
                        config
                            .scripts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                crate::services::run(self, &run, &config, &log, &cancel, &work).await?
            }
        };
        if cancel.is_cancelled() && status.is_none_or(|s| s == RunStatus::Cancelled) {
            return self.finish_cancelled(id, &log);
        }
        inner.db.finish_open_tests(id, TestStatus::Skipped)?;
        let tests = inner.db.get_run(id)?.map(|r| r.tests).unwrap_or_default();
        let status = status.unwrap_or_else(|| Run::outcome(&tests));
        inner.db.set_run_status(id, status)?;
        log.line(Tag::Harness, &format!("run {id} {}", status.as_str()));
        self.retire(id);
        Ok(())
    }

    /// The run's tests, phases included. Returns a status that overrides the tests' own
    /// outcome (a failed preparation, a missed callback), if any.
    pub(crate) async fn run_tests(
        &self,
        run: &Run,
        log: &Arc<RunLog>,
        cancel: &CancellationToken,
        work: &std::path::Path,
        mut extra_env: Vec<(String, String)>,
    ) -> Result<Option<RunStatus>, HarnessError> {
        let inner = &*self.inner;
        let id = run.id;
        let prep = inner.db.prep_count(id)?.min(run.tests.len());
        let announcements = Announcements::default();
        let mut forced = None;
        if prep > 0 {
            inner.db.set_phase(id, "preparation", &[])?;
            log.line(
                Tag::Harness,
                &format!("phase preparation: {prep} test(s) that start the work"),
            );
        }
        for i in 0..run.tests.len() {
            if cancel.is_cancelled() {
                break;
            }
            if prep > 0 && i == prep {
                match self
                    .await_phase(run, log, cancel, &announcements, work)
                    .await?
                {
                    AwaitEnd::Arrived(file) => {
                        extra_env.push(("EVENTUAL_CALLBACKS".to_owned(), file));
                    }
                    AwaitEnd::TimedOut => {
                        forced = Some(RunStatus::TimedOut);
                        break;
                    }
                    AwaitEnd::Cancelled => break,
                }
            }
            let is_prep = i < prep;
            let outcome = self
                .run_test(
                    run,
                    i,
                    log,
                    cancel,
                    work,
                    &extra_env,
                    is_prep.then_some(&announcements),
                )
                .await?;
            if is_prep && outcome != TestStatus::Passed && !cancel.is_cancelled() {
                log.line(
                    Tag::Harness,
                    "a preparation test did not pass: skipping the rest of the run",
                );
                forced = Some(RunStatus::Failed);
                break;
            }
        }
        // A run whose tests are all preparation tests still waits for what they started.
        if prep > 0 && prep == run.tests.len() && forced.is_none() && !cancel.is_cancelled() {
            if let AwaitEnd::TimedOut = self
                .await_phase(run, log, cancel, &announcements, work)
                .await?
            {
                forced = Some(RunStatus::TimedOut);
            }
        }
        Ok(forced)
    }

    /// Runs test `i` of `run`, recording its status; returns it.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; a struct would only rename them"
    )]
    async fn run_test(
        &self,
        run: &Run,
        i: usize,
        log: &Arc<RunLog>,
        cancel: &CancellationToken,
        work: &std::path::Path,
        extra_env: &[(String, String)],
        announcements: Option<&Announcements>,
    ) -> Result<TestStatus, HarnessError> {
        let inner = &*self.inner;
        let id = run.id;
        let test = &run.tests[i];
        let total = run.tests.len();
        inner.db.set_test(id, i, TestStatus::Running, None, None)?;
        self.emit_run(id);
        log.line(
            Tag::Harness,
            &format!("start {} ({}/{total})", test.path, i + 1),
        );
        let on_stdout = |line: &str| {
            let Some(announcements) = announcements else {
                return;
            };
            match parse_announce(line) {
                None => {}
                Some(Ok(a)) => {
                    let timeout = a.timeout.map_or(String::new(), |t| {
                        format!(" within {}", humantime::format_duration(t))
                    });
                    log.line(
                        Tag::Harness,
                        &format!("will await {} callback(s) for {}{timeout}", a.count, a.key),
                    );
                    announcements.add(a);
                }
                Some(Err(why)) => log.line(
                    Tag::Harness,
                    &format!("ignored a malformed announce line: {why}"),
                ),
            }
        };
        let outcome = match self.spec_for(run, &test.path, work) {
            Ok(mut spec) => {
                spec.env.extend(extra_env.iter().cloned());
                let db = &inner.db;
                exec::run(
                    &spec,
                    log,
                    cancel,
                    |pgid| {
                        if let Err(e) = db.set_test_pgid(id, i, pgid) {
                            tracing::warn!(run = id, error = %e, "failed to record a test's process group");
                        }
                    },
                    &on_stdout,
                )
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
        Ok(outcome.status)
    }

    /// The await phase: waits for every announced key, then writes the callbacks file.
    async fn await_phase(
        &self,
        run: &Run,
        log: &Arc<RunLog>,
        cancel: &CancellationToken,
        announcements: &Announcements,
        work: &std::path::Path,
    ) -> Result<AwaitEnd, HarnessError> {
        let inner = &*self.inner;
        let id = run.id;
        let wanted = announcements.take();
        let started = tokio::time::Instant::now();
        let started_wall = std::time::SystemTime::now();
        let limits: Vec<Duration> = wanted.iter().map(|a| self.await_limit(a, log)).collect();
        let mut awaiting: Vec<Awaiting> = wanted
            .iter()
            .zip(&limits)
            .map(|(a, t)| Awaiting {
                key: a.key.clone(),
                count: a.count,
                arrived: 0,
                deadline: humantime::format_rfc3339_millis(started_wall + *t).to_string(),
            })
            .collect();
        inner.db.set_phase(id, "awaiting", &awaiting)?;
        self.emit_run(id);
        if wanted.is_empty() {
            log.line(Tag::Harness, "phase awaiting: no callbacks were announced");
        } else {
            log.line(
                Tag::Harness,
                &format!("phase awaiting: {} key(s)", wanted.len()),
            );
        }
        let Some(sink) = inner.config.sink.clone() else {
            log.line(Tag::Harness, "error: this server has no sink to wait on");
            return Ok(AwaitEnd::TimedOut);
        };
        let on_error = |m: String| log.line(Tag::Harness, &m);
        let deadlines: Vec<_> = limits.iter().map(|t| started + *t).collect();
        // Each key is awaited one record at a time (at least `arrived + 1`, not `count`), so the
        // run JSON, its events and the run page follow every arrival, not only the last one.
        let wait_next = |n: usize, arrived: usize| {
            let (sink, on_error, key) = (&sink, &on_error, &wanted[n].key);
            let deadline = deadlines[n];
            async move {
                let end = sink.wait(key, arrived + 1, deadline, cancel, on_error);
                (n, end.await)
            }
        };
        let mut waits = futures_util::stream::FuturesUnordered::new();
        for n in 0..wanted.len() {
            waits.push(wait_next(n, 0));
        }
        let mut missing = Vec::new();
        while let Some((n, end)) = futures_util::StreamExt::next(&mut waits).await {
            let a = &wanted[n];
            match end {
                KeyWait::Arrived(count) => {
                    awaiting[n].arrived = count;
                    log.line(
                        Tag::Harness,
                        &format!(
                            "callback {} arrived ({}/{}) after {:.3}s",
                            a.key,
                            count.min(a.count),
                            a.count,
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    if count < a.count {
                        waits.push(wait_next(n, count));
                    }
                }
                KeyWait::TimedOut(count) => {
                    awaiting[n].arrived = count;
                    missing.push(format!("{} ({count} of {} arrived)", a.key, a.count));
                }
                KeyWait::Cancelled => return Ok(AwaitEnd::Cancelled),
            }
            inner.db.set_phase(id, "awaiting", &awaiting)?;
            self.emit_run(id);
        }
        if !missing.is_empty() {
            log.line(
                Tag::Harness,
                &format!("timed out waiting for callbacks: {}", missing.join(", ")),
            );
            return Ok(AwaitEnd::TimedOut);
        }
        let mut records = Vec::with_capacity(wanted.len());
        for a in &wanted {
            let list = sink.records(&a.key).await.unwrap_or_else(|e| {
                log.line(
                    Tag::Harness,
                    &format!("failed to read the callbacks of {}: {e}", a.key),
                );
                Vec::new()
            });
            records.push((a.key.clone(), list));
        }
        let file = work.join("callbacks.json");
        std::fs::write(&file, callbacks_json(&records))?;
        inner.db.set_phase(id, "validation", &awaiting)?;
        self.emit_run(id);
        log.line(
            Tag::Harness,
            &format!(
                "phase validation: callbacks in {} (EVENTUAL_CALLBACKS)",
                file.display()
            ),
        );
        Ok(AwaitEnd::Arrived(file.display().to_string()))
    }

    /// How long to wait for one announced key.
    fn await_limit(&self, a: &Announce, log: &RunLog) -> Duration {
        match a.timeout {
            Some(t) if t > MAX_AWAIT => {
                log.line(
                    Tag::Harness,
                    &format!(
                        "timeout={} for {} is longer than {}; waiting {} instead",
                        humantime::format_duration(t),
                        a.key,
                        humantime::format_duration(MAX_AWAIT),
                        humantime::format_duration(MAX_AWAIT)
                    ),
                );
                MAX_AWAIT
            }
            Some(t) => t,
            None => self.inner.config.await_timeout,
        }
    }

    fn finish_cancelled(&self, id: i64, log: &RunLog) -> Result<(), HarnessError> {
        self.inner.db.finish_open_tests(id, TestStatus::Skipped)?;
        if self.inner.stopping.is_cancelled() {
            self.inner.db.set_run_status(id, RunStatus::Interrupted)?;
            log.line(
                Tag::Harness,
                "interrupted: the server stopped while this run was running",
            );
        } else {
            self.inner.db.set_run_status(id, RunStatus::Cancelled)?;
            log.line(Tag::Harness, &format!("run {id} cancelled"));
        }
        self.retire(id);
        Ok(())
    }

    /// A token cancelled when the server begins to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.stopping.clone()
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
        let running: Vec<watch::Receiver<bool>> = self
            .inner
            .active
            .iter()
            .filter(|a| {
                matches!(
                    self.inner.db.get_run(*a.key()),
                    Ok(Some(Run {
                        status: RunStatus::Running,
                        ..
                    }))
                )
            })
            .map(|a| a.done.subscribe())
            .collect();
        let limit = self.inner.config.kill_grace + Duration::from_secs(10);
        for mut done in running {
            let _ = tokio::time::timeout(limit, done.wait_for(|d| *d)).await;
        }
    }

    /// The run has its final status: close its log, forget its switches, tell everyone.
    /// Frees the run's environment first (starting whoever is next), so that anyone told the run
    /// is over — a cancel's answer, a follower — finds the environment already handed on.
    fn retire(&self, id: i64) {
        if let Ok(Some(run)) = self.inner.db.get_run(id) {
            self.release(run.env_id, id);
        }
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
                // tee-sys: prints (announce lines included) reach the log live and are still in
                // pytest's failure report; no cache directory written into the catalog.
                vec![
                    "python3".into(),
                    "-m".into(),
                    "pytest".into(),
                    "--capture=tee-sys".into(),
                    "-p".into(),
                    "no:cacheprovider".into(),
                    file.into(),
                ]
            }
            Kind::Python => vec!["python3".into(), file.into()],
            Kind::Shell => vec!["bash".into(), file.into()],
            Kind::Executable => vec![file.into()],
        };
        let config = &self.inner.config;
        Ok(Spec {
            argv,
            cwd: work.to_owned(),
            env: self.base_env(run),
            timeout: config.test_timeout,
            kill_grace: config.kill_grace,
            tags: None,
        })
    }

    /// This server's data directory as its tests and scripts see it (`EVENTUAL_DATA_DIR`).
    fn data_dir_marker(&self) -> String {
        let dir = &self.inner.config.data_dir;
        dir.canonicalize()
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string()
    }

    /// After a crash: runs the interrupted run's `ignore_abort` scripts (cleanup) in the
    /// background, as a cancel would have.
    fn cleanup_after_crash(&self, id: i64, log: Arc<RunLog>) {
        let Ok(run) = self.get_run(id) else { return };
        let paths: Vec<String> = run.tests.iter().map(|t| t.path.clone()).collect();
        let Some((_, Ok(config))) = self.inner.catalog.config_for(&paths) else {
            return;
        };
        if !config.scripts.values().any(|s| s.ignore_abort) {
            return;
        }
        let harness = self.clone();
        tokio::spawn(async move {
            let work = harness
                .inner
                .config
                .data_dir
                .join("runs")
                .join(id.to_string())
                .join("work");
            crate::services::cleanup_after_crash(&harness, &run, &config, &log, &work).await;
        });
    }

    /// The variables every test and script of `run` gets.
    pub(crate) fn base_env(&self, run: &Run) -> Vec<(String, String)> {
        let config = &self.inner.config;
        let mut env = vec![
            ("EVENTUAL_RUN_ID".into(), run.id.to_string()),
            ("EVENTUAL_ENV_ID".into(), run.env_id.to_string()),
            ("EVENTUAL_USERNAME".into(), run.username.clone()),
            ("EVENTUAL_SINK_URL".into(), config.sink_url.clone()),
            ("EVENTUAL_KEY_PREFIX".into(), format!("run-{}.", run.id)),
            // With EVENTUAL_RUN_ID, how a restart after a crash recognises what the dead server
            // left running (see exec::kill_run_processes).
            ("EVENTUAL_DATA_DIR".into(), self.data_dir_marker()),
            // Python buffers stdout when it is a pipe; users expect to see lines live.
            ("PYTHONUNBUFFERED".into(), "1".into()),
            // Keep `__pycache__` out of the catalog.
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ];
        // The sample tests' helper (`import eventual`) for every Python test, uploads included.
        if let Some(lib) = config
            .sample_tests
            .as_ref()
            .map(|d| d.join("_lib"))
            .filter(|d| d.is_dir())
            .and_then(|d| d.canonicalize().ok())
        {
            let mut path = lib.into_os_string();
            if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
                path.push(":");
                path.push(old);
            }
            env.push(("PYTHONPATH".to_owned(), path.to_string_lossy().into_owned()));
        }
        env
    }

    /// The run's settings (for the services module).
    pub(crate) fn settings(&self) -> &Config {
        &self.inner.config
    }

    /// Records a run's script states and tells followers.
    pub(crate) fn set_scripts(&self, id: i64, scripts: &[crate::services::ScriptView]) {
        if let Err(e) = self.inner.db.set_scripts(id, scripts) {
            tracing::warn!(run = id, error = %e, "failed to record script states");
        }
        self.emit_run(id);
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
