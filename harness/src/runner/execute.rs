//! Executing a run once its environment is its own: its `eventual.toml` scripts (if any) around
//! its tests, the tests one after another with the await phase between preparation and
//! validation, and each test's status recorded as it ends.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    error::HarnessError,
    exec,
    logs::{RunLog, Tag},
    model::{Awaiting, Phase, Run, RunStatus, ScriptView, TestStatus},
    phases::{self, Announcements, AwaitEnd, AwaitPhase, PhaseHost, parse_announce},
    services::{self, RunHost},
};

use super::Harness;

impl Harness {
    /// Executes run `id` (it holds its environment): waits for a worker, runs its scripts and
    /// tests, records its final status, and retires it.
    pub(super) async fn execute(
        &self,
        id: i64,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(), HarnessError> {
        let inner = &*self.inner;
        let history = &inner.history;
        let Some(run) = history.get_run(id).await? else {
            return Err(HarnessError::UnknownRun(id));
        };
        let (cancel, log) = match inner.active.get(&id) {
            Some(a) => (a.cancel.clone(), a.log.clone()),
            None => return Err(HarnessError::UnknownRun(id)),
        };
        let _permit = match permit {
            Some(permit) => Some(permit),
            None => tokio::select! {
                permit = inner.workers.clone().acquire_owned() => permit.ok(),
                () = cancel.cancelled() => None,
            },
        };
        if cancel.is_cancelled() {
            return self.finish_cancelled(id, &log).await;
        }
        history.set_run_status(id, RunStatus::Running).await?;
        self.mark_started(id);
        self.emit_run(id).await;
        self.emit_env(run.env_id).await;
        let work = self.work_dir(id);
        std::fs::create_dir_all(&work)?;
        let ctx = RunContext {
            harness: self,
            run: &run,
            log: &log,
            cancel: &cancel,
            work: &work,
        };
        let paths = run.test_paths();
        let status = match inner.catalog.config_for(&paths) {
            None => ctx.run_tests(Vec::new()).await?,
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
                services::run(&ctx, &config, &log, &cancel, &work).await?
            }
        };
        if cancel.is_cancelled() && status.is_none_or(|s| s == RunStatus::Cancelled) {
            return self.finish_cancelled(id, &log).await;
        }
        if !self.holds_claim(id).await {
            return self.give_up_lost(id, &log).await;
        }
        history.finish_open_tests(id, TestStatus::Skipped).await?;
        let tests = history
            .get_run(id)
            .await?
            .map(|r| r.tests)
            .unwrap_or_default();
        let status = status.unwrap_or_else(|| Run::outcome(&tests));
        if !history.finish_run(id, status, self.fence_of(id)).await? {
            return self.give_up_lost(id, &log).await;
        }
        log.line(Tag::Harness, &format!("run {id} {}", status.as_str()));
        self.retire(id).await;
        Ok(())
    }

    /// Records a run's script states and tells followers.
    async fn set_scripts(&self, id: i64, scripts: &[ScriptView]) {
        if let Err(e) = self.inner.history.set_scripts(id, scripts).await {
            tracing::warn!(run = id, error = %e, "failed to record script states");
        }
        self.emit_run(id).await;
    }

    /// Records a phased run's phase and awaited keys, and tells followers.
    async fn set_phase(
        &self,
        id: i64,
        phase: Phase,
        awaiting: &[Awaiting],
    ) -> Result<(), HarnessError> {
        self.inner.history.set_phase(id, phase, awaiting).await?;
        self.emit_run(id).await;
        Ok(())
    }
}

/// One executing run: what its tests and scripts share. It is also what the services module
/// sees of the harness ([`RunHost`]).
pub(super) struct RunContext<'a> {
    pub(super) harness: &'a Harness,
    pub(super) run: &'a Run,
    pub(super) log: &'a Arc<RunLog>,
    pub(super) cancel: &'a CancellationToken,
    pub(super) work: &'a Path,
}

impl RunContext<'_> {
    /// The run's tests, phases included. Returns a status that overrides the tests' own
    /// outcome (a failed preparation, a missed callback), if any.
    async fn tests(
        &self,
        mut extra_env: Vec<(String, String)>,
    ) -> Result<Option<RunStatus>, HarnessError> {
        let (run, log, cancel) = (self.run, self.log, self.cancel);
        let prep = self
            .harness
            .inner
            .history
            .prep_count(run.id)
            .await?
            .min(run.tests.len());
        let announcements = Announcements::default();
        let mut forced = None;
        if prep > 0 {
            self.harness
                .set_phase(run.id, Phase::Preparation, &[])
                .await?;
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
                match self.await_phase(&announcements).await? {
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
                .test(i, &extra_env, is_prep.then_some(&announcements))
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
            if let AwaitEnd::TimedOut = self.await_phase(&announcements).await? {
                forced = Some(RunStatus::TimedOut);
            }
        }
        Ok(forced)
    }

    /// The await phase of this run (see `phases.rs`).
    async fn await_phase(&self, announcements: &Announcements) -> Result<AwaitEnd, HarnessError> {
        let config = &self.harness.inner.config;
        let phase = AwaitPhase {
            sink: config.sink.as_ref(),
            default_timeout: config.await_timeout,
            log: self.log,
            cancel: self.cancel,
            work: self.work,
            host: self,
        };
        phases::await_phase(phase, announcements).await
    }

    /// Runs test `i`, recording its status; returns it. Preparation tests get `announcements`
    /// to collect the keys they announce.
    async fn test(
        &self,
        i: usize,
        extra_env: &[(String, String)],
        announcements: Option<&Announcements>,
    ) -> Result<TestStatus, HarnessError> {
        let (harness, run, log) = (self.harness, self.run, self.log);
        let history = &harness.inner.history;
        let id = run.id;
        let test = &run.tests[i];
        let total = run.tests.len();
        history
            .set_test(id, i, TestStatus::Running, None, None)
            .await?;
        harness.emit_run(id).await;
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
        let outcome = match harness.spec_for(run, i, &test.path, self.work) {
            Ok(mut spec) => {
                spec.env.extend(extra_env.iter().cloned());
                exec::run(
                    &spec,
                    log,
                    self.cancel,
                    |pgid| {
                        // Recorded beside the test's run (the callback cannot wait); only a
                        // restart after a crash reads it.
                        let history = history.clone();
                        tokio::spawn(async move {
                            if let Err(e) = history.set_test_pgid(id, i, pgid).await {
                                tracing::warn!(run = id, error = %e, "failed to record a test's process group");
                            }
                        });
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
        if !harness.holds_claim(id).await {
            // Cluster mode: the environment went on without this node; the run's end is not ours
            // to write any more.
            self.cancel.cancel();
            return Ok(outcome.status);
        }
        history
            .set_test(
                id,
                i,
                outcome.status,
                outcome.exit_code,
                Some(outcome.duration.as_millis() as u64),
            )
            .await?;
        harness.emit_run(id).await;
        Ok(outcome.status)
    }
}

impl RunHost for RunContext<'_> {
    fn base_env(&self) -> Vec<(String, String)> {
        self.harness.base_env(self.run)
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.harness
            .inner
            .catalog
            .config_dir(&self.run.test_paths())
    }

    fn kill_grace(&self) -> Duration {
        self.harness.inner.config.kill_grace
    }

    fn set_scripts(&self, scripts: &[ScriptView]) -> impl Future<Output = ()> + Send {
        self.harness.set_scripts(self.run.id, scripts)
    }

    fn run_tests(
        &self,
        extra_env: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Option<RunStatus>, HarnessError>> + Send {
        self.tests(extra_env)
    }

    async fn tests_outcome(&self) -> RunStatus {
        self.harness
            .get_run(self.run.id)
            .await
            .map_or(RunStatus::Error, |r| Run::outcome(&r.tests))
    }
}

impl PhaseHost for RunContext<'_> {
    fn report(
        &self,
        phase: Phase,
        awaiting: &[Awaiting],
    ) -> impl Future<Output = Result<(), HarnessError>> + Send {
        self.harness.set_phase(self.run.id, phase, awaiting)
    }
}
