//! Services in a run (SPEC "Services in a run"): the scripts of an `eventual.toml` run beside the
//! tests as a dependency graph over script states.
//!
//! # Design
//! - Every script (and `tests`, the implicit script for the run's tests) is a task that waits for
//!   its `after` entries on a shared board of states. A state change bumps a watch channel; a
//!   waiter subscribes *before* it reads the board, so no change is missed, and nothing polls.
//! - Scripts are supervised processes (`exec.rs`: own process group, timeout, SIGTERM → grace →
//!   SIGKILL, leftovers killed), logging as `NAME/out` and `NAME/err`.
//! - Readiness probes are the one place that retries on a timer: an outside process gives no
//!   event when it starts listening, so the probe is tried every 100 ms until `ready_timeout`.
//! - When `tests` ends, services still running are stopped (and end `passed`); scripts that come
//!   after `tests` then run; the run ends once every script is terminal. A cancel stops
//!   everything and lets only `ignore_abort` scripts whose `after` can still be met run.
//!
//! # Layout
//! - `board.rs` — the board of script states, and the gate: is a script's `after` met, still
//!   possible, or never going to be.
//! - `run.rs` — running a run's scripts and its tests as tasks over the board.
//! - `probe.rs` — readiness probes (http, tcp, run).
//! - `cleanup.rs` — after a crash: the interrupted run's `ignore_abort` scripts.

mod board;
mod cleanup;
mod probe;
mod run;

use std::{path::PathBuf, time::Duration};

use crate::{
    error::HarnessError,
    model::{RunStatus, ScriptView},
};

pub(crate) use cleanup::cleanup_after_crash;
pub(crate) use run::run;

/// What the scripts of a run need from the harness: running the run's tests, and what a script
/// is launched with. The runner implements it for one run; this module never sees the harness.
pub(crate) trait RunHost: Sync {
    /// The variables every test and script of the run gets (the ports are added here).
    fn base_env(&self) -> Vec<(String, String)>;
    /// The directory of the run's `eventual.toml`, for `EVENTUAL_CONFIG_DIR`.
    fn config_dir(&self) -> Option<PathBuf>;
    /// Between SIGTERM and SIGKILL when a script is stopped.
    fn kill_grace(&self) -> Duration;
    /// Records the scripts' states and tells followers.
    fn set_scripts(&self, scripts: &[ScriptView]) -> impl Future<Output = ()> + Send;
    /// Runs the run's tests (phases included) with `extra_env` added to their environment;
    /// returns a status overriding the tests' own outcome, if any.
    fn run_tests(
        &self,
        extra_env: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Option<RunStatus>, HarnessError>> + Send;
    /// The outcome of the run's tests once they have ended.
    fn tests_outcome(&self) -> impl Future<Output = RunStatus> + Send;
}
