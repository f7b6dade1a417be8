//! Running a run's scripts and its tests: each a task that waits on the board for its `after`,
//! runs as a supervised process, and reports its state.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use futures_util::{StreamExt, stream::FuturesUnordered};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    error::HarnessError,
    exec::{self, Spec},
    logs::{RunLog, Tag},
    model::{RunStatus, ScriptState, TestStatus},
    scripts::{RunConfig, Script, TESTS},
};

use super::{
    RunHost,
    board::{Board, Gate, gate},
    probe::{Readiness, describe, probe_once, until_ready},
};

/// What the run's scripts decided, for the final status.
struct Shared {
    tests_forced: Mutex<Option<RunStatus>>,
}

/// Runs `config`'s scripts and the run's tests; returns a status overriding the tests' outcome.
pub(crate) async fn run(
    host: &impl RunHost,
    config: &RunConfig,
    log: &Arc<RunLog>,
    cancel: &CancellationToken,
    work: &std::path::Path,
) -> Result<Option<RunStatus>, HarnessError> {
    let mut env = host.base_env();
    let mut ports = Vec::new();
    for name in &config.ports {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        ports.push((name.clone(), port.to_string()));
    }
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(|(n, p)| format!("{n}={p}")).collect();
        log.line(Tag::Harness, &format!("ports: {}", list.join(" ")));
    }
    // Scripts run in the run's working directory; this says where their catalog directory (the
    // one holding eventual.toml, and whatever files the scripts need) is. Tests get it too.
    if let Some(dir) = host.config_dir() {
        ports.push(("EVENTUAL_CONFIG_DIR".into(), dir.display().to_string()));
    }
    env.extend(ports.iter().cloned());
    let mut names: Vec<String> = config.scripts.keys().cloned().collect();
    names.push(TESTS.to_owned());
    let board = Board::new(host, &names);
    let shared = Shared {
        tests_forced: Mutex::new(None),
    };
    let tests_started = CancellationToken::new();
    let tests_done = CancellationToken::new();
    let ctx = Ctx {
        host,
        config,
        log,
        cancel,
        work,
        env: &env,
        ports: &ports,
        board: &board,
        tests_started: &tests_started,
        tests_done: &tests_done,
        shared: &shared,
    };
    let mut tasks = FuturesUnordered::new();
    for script in config.scripts.values() {
        tasks.push(Box::pin(ctx.script(script))
            as std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), HarnessError>> + Send + '_>,
            >);
    }
    tasks.push(Box::pin(ctx.tests()));
    while let Some(result) = tasks.next().await {
        result?;
    }
    if cancel.is_cancelled() {
        return Ok(Some(RunStatus::Cancelled));
    }
    let views = board.snapshot();
    let failed_script = views
        .iter()
        .filter(|v| v.name != TESTS)
        .find(|v| matches!(v.state, ScriptState::Failed | ScriptState::TimedOut));
    Ok(match failed_script {
        Some(v) if v.state == ScriptState::TimedOut => Some(RunStatus::TimedOut),
        Some(_) => Some(RunStatus::Failed),
        None => *shared.tests_forced.lock(),
    })
}

struct Ctx<'a, H> {
    host: &'a H,
    config: &'a RunConfig,
    log: &'a Arc<RunLog>,
    cancel: &'a CancellationToken,
    work: &'a std::path::Path,
    env: &'a [(String, String)],
    ports: &'a [(String, String)],
    board: &'a Board<'a, H>,
    tests_started: &'a CancellationToken,
    tests_done: &'a CancellationToken,
    shared: &'a Shared,
}

impl<H: RunHost> Ctx<'_, H> {
    /// Waits until `after` is met (`Ok`) or can no longer be (`Err(why)`).
    async fn wait_gate(
        &self,
        name: &str,
        after: &BTreeMap<String, Vec<String>>,
        ignore_abort: bool,
    ) -> Result<(), String> {
        loop {
            // Subscribe first, then read: a change in between is not missed.
            let mut changed = self.board.subscribe();
            if self.cancel.is_cancelled() && !ignore_abort {
                return Err("the run was cancelled".into());
            }
            let after_tests = self.config.waits_on_tests(name) || name == TESTS;
            if self.tests_done.is_cancelled() && !after_tests {
                return Err("the tests have ended".into());
            }
            let states = self.board.states();
            // Scripts that come after `tests` (cleanup) start only once the services are down.
            let services_up = name != TESTS
                && after_tests
                && self.config.scripts.keys().any(|s| {
                    !self.config.waits_on_tests(s) && !states.get(s).is_some_and(|st| st.is_final())
                });
            match gate(after, &states) {
                Gate::Met if services_up => {}
                Gate::Met => return Ok(()),
                Gate::Never(why) => return Err(why),
                Gate::Wait => {}
            }
            tokio::select! {
                _ = changed.changed() => {}
                () = self.cancel.cancelled(), if !ignore_abort => {}
                () = self.tests_done.cancelled(), if !after_tests => {}
            }
        }
    }

    async fn script(&self, script: &Script) -> Result<(), HarnessError> {
        let name = script.name.as_str();
        self.board.set(name, ScriptState::Waiting, None).await;
        if let Err(why) = self
            .wait_gate(name, &script.after, script.ignore_abort)
            .await
        {
            let state = if self.cancel.is_cancelled() && !script.ignore_abort {
                ScriptState::Cancelled
            } else {
                ScriptState::Skipped
            };
            self.log.line(
                Tag::Harness,
                &format!("script {name} {}: {why}", state.as_str()),
            );
            self.board.set(name, state, None).await;
            return Ok(());
        }
        let stop = CancellationToken::new();
        let spec = Spec {
            argv: vec!["bash".into(), "-c".into(), script.run.clone().into()],
            cwd: self.work.to_owned(),
            env: self.env.to_vec(),
            timeout: script.timeout,
            kill_grace: self.host.kill_grace(),
            tags: Some((format!("{name}/out"), format!("{name}/err"))),
        };
        self.log.line(
            Tag::Harness,
            &format!("script {name} starts: {}", script.run),
        );
        self.board.set(name, ScriptState::Running, None).await;
        let started = Instant::now();
        // A service is a script with a readiness probe: one that exits by itself while the tests
        // run has died under them. A script without a probe that exits 0 meanwhile simply passed.
        let is_service = script.ready.is_some();
        let probe_timed_out = std::sync::atomic::AtomicBool::new(false);
        let stopped_by_tests = std::sync::atomic::AtomicBool::new(false);
        let stops_with_tests = !self.config.waits_on_tests(name);
        let watch_stops = async {
            tokio::select! {
                // A cancel ends the tests too: when both have happened, the cancel is the reason
                // (the script ends `cancelled`, not `passed` as a service stopped after tests).
                biased;
                () = self.cancel.cancelled(), if !script.ignore_abort => {}
                () = self.tests_done.cancelled(), if stops_with_tests => {
                    stopped_by_tests.store(true, std::sync::atomic::Ordering::Relaxed);
                    self.log.line(Tag::Harness, &format!("stopping {name}: the tests have ended"));
                }
                () = self.probe(script, &stop, &probe_timed_out) => return,
            }
            stop.cancel();
        };
        let process = exec::run(&spec, self.log, &stop, |_| {}, &|_| {});
        tokio::pin!(process);
        let outcome = tokio::select! {
            outcome = &mut process => outcome,
            // The watcher has stopped the script (or its probe gave up): wait for its end.
            () = watch_stops => process.await,
        };
        let exit = outcome.exit_code;
        let state = if probe_timed_out.load(std::sync::atomic::Ordering::Relaxed) {
            ScriptState::TimedOut
        } else {
            match outcome.status {
                TestStatus::TimedOut => ScriptState::TimedOut,
                TestStatus::Cancelled
                    if stopped_by_tests.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    ScriptState::Passed
                }
                TestStatus::Cancelled => ScriptState::Cancelled,
                TestStatus::Passed
                    if is_service
                        && self.tests_started.is_cancelled()
                        && !self.tests_done.is_cancelled() =>
                {
                    self.log.line(
                        Tag::Harness,
                        &format!("service {name} exited while the tests were running"),
                    );
                    ScriptState::Failed
                }
                TestStatus::Passed => ScriptState::Passed,
                _ => {
                    if is_service
                        && self.tests_started.is_cancelled()
                        && !self.tests_done.is_cancelled()
                    {
                        self.log.line(
                            Tag::Harness,
                            &format!(
                                "service {name} died while the tests were running (exit={})",
                                exit.map_or("-".into(), |c| c.to_string())
                            ),
                        );
                    }
                    ScriptState::Failed
                }
            }
        };
        self.log.line(
            Tag::Harness,
            &format!(
                "script {name} {} exit={} in {:.3}s",
                state.as_str(),
                exit.map_or("-".into(), |c| c.to_string()),
                started.elapsed().as_secs_f64()
            ),
        );
        self.board.set(name, state, exit).await;
        Ok(())
    }

    /// Runs the readiness probe, if any: marks the script `ready`, or stops it on
    /// `ready_timeout`. Resolves only when it stopped the script (never otherwise).
    async fn probe(
        &self,
        script: &Script,
        stop: &CancellationToken,
        timed_out: &std::sync::atomic::AtomicBool,
    ) {
        let Some(probe) = &script.ready else {
            return std::future::pending().await;
        };
        let name = &script.name;
        match until_ready(script.ready_timeout, || {
            probe_once(probe, self.env, self.work)
        })
        .await
        {
            Readiness::Ready(after) => {
                self.log.line(
                    Tag::Harness,
                    &format!("script {name} is ready after {:.3}s", after.as_secs_f64()),
                );
                self.board.set(name, ScriptState::Ready, None).await;
                std::future::pending().await
            }
            Readiness::TimedOut(last_error) => {
                self.log.line(
                    Tag::Harness,
                    &format!(
                        "script {name} not ready within {}: probe {} kept failing; last error: {last_error}",
                        humantime::format_duration(script.ready_timeout),
                        describe(probe, self.env)
                    ),
                );
                timed_out.store(true, std::sync::atomic::Ordering::Relaxed);
                stop.cancel();
            }
        }
    }

    async fn tests(&self) -> Result<(), HarnessError> {
        self.board.set(TESTS, ScriptState::Waiting, None).await;
        let after = self.config.after_of(TESTS);
        if let Err(why) = self.wait_gate(TESTS, &after, false).await {
            let state = if self.cancel.is_cancelled() {
                ScriptState::Cancelled
            } else {
                ScriptState::Skipped
            };
            self.log
                .line(Tag::Harness, &format!("tests {}: {why}", state.as_str()));
            self.board.set(TESTS, state, None).await;
            self.tests_done.cancel();
            return Ok(());
        }
        self.board.set(TESTS, ScriptState::Running, None).await;
        self.tests_started.cancel();
        let forced = self.host.run_tests(self.ports.to_vec()).await;
        let state = match &forced {
            _ if self.cancel.is_cancelled() => ScriptState::Cancelled,
            Ok(Some(status)) => ScriptState::from(*status),
            Ok(None) => ScriptState::from(self.host.tests_outcome().await),
            Err(_) => ScriptState::Error,
        };
        if let Ok(f) = &forced {
            *self.shared.tests_forced.lock() = *f;
        }
        self.board.set(TESTS, state, None).await;
        self.tests_done.cancel();
        forced.map(|_| ())
    }
}
