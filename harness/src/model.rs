//! What the API shows: runs, their tests, statuses and environments (SPEC "The harness").

use serde::{Deserialize, Serialize};

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for its environment (or for a worker).
    Queued,
    /// Executing its tests.
    Running,
    /// Every test passed.
    Passed,
    /// A test failed.
    Failed,
    /// A test ran past `--test-timeout`.
    TimedOut,
    /// Stopped by a user.
    Cancelled,
    /// The harness could not run it.
    Error,
    /// The server stopped while it ran.
    Interrupted,
}

/// Status of one test of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    /// Not started yet.
    Pending,
    /// Executing.
    Running,
    /// Exit code 0.
    Passed,
    /// Any other exit code (or killed by a signal).
    Failed,
    /// Ran past `--test-timeout` and was terminated.
    TimedOut,
    /// Stopped by a cancel or a server stop.
    Cancelled,
    /// Not run because the run was cancelled or stopped early.
    Skipped,
    /// Could not be started (e.g. a missing interpreter).
    Error,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The value as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }

            /// Parses a stored value.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

text_enum!(RunStatus {
    Queued => "queued", Running => "running", Passed => "passed", Failed => "failed",
    TimedOut => "timed_out", Cancelled => "cancelled", Error => "error", Interrupted => "interrupted",
});

text_enum!(TestStatus {
    Pending => "pending", Running => "running", Passed => "passed", Failed => "failed",
    TimedOut => "timed_out", Cancelled => "cancelled", Skipped => "skipped", Error => "error",
});

/// Where a phased run stands (`null` in the JSON for a plain run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Its preparation tests run (they start the work and announce keys).
    Preparation,
    /// It waits for the announced callbacks.
    Awaiting,
    /// Its other tests run, with the callbacks in `EVENTUAL_CALLBACKS`.
    Validation,
}

text_enum!(Phase {
    Preparation => "preparation", Awaiting => "awaiting", Validation => "validation",
});

/// State of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvState {
    /// Nobody holds it.
    Free,
    /// A run holds it.
    Busy,
    /// Its queue is held (maintenance); a run may still be finishing on it.
    Paused,
}

text_enum!(EnvState { Free => "free", Busy => "busy", Paused => "paused" });

/// State of one script of a run (or of `tests`, the run's tests as one script).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScriptState {
    /// Not looked at yet.
    Pending,
    /// Waiting for its `after` to be met.
    Waiting,
    /// Started.
    Running,
    /// A service whose readiness probe succeeded.
    Ready,
    /// Exited 0 (or, for a service, was stopped when the tests ended).
    Passed,
    /// Exited non-zero, or a service that died while the tests ran.
    Failed,
    /// Ran past its `timeout` (or its probe past `ready_timeout`).
    TimedOut,
    /// Stopped by a cancel.
    Cancelled,
    /// Never started: its `after` could no longer be met.
    Skipped,
    /// Could not be run.
    Error,
}

text_enum!(ScriptState {
    Pending => "pending", Waiting => "waiting", Running => "running", Ready => "ready",
    Passed => "passed", Failed => "failed", TimedOut => "timed_out", Cancelled => "cancelled",
    Skipped => "skipped", Error => "error",
});

impl ScriptState {
    /// Whether the script is over (no later state follows).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Passed
                | Self::Failed
                | Self::TimedOut
                | Self::Cancelled
                | Self::Skipped
                | Self::Error
        )
    }
}

impl From<RunStatus> for ScriptState {
    /// The state of `tests` once the tests have ended with this outcome.
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Passed => Self::Passed,
            RunStatus::Failed => Self::Failed,
            RunStatus::TimedOut => Self::TimedOut,
            RunStatus::Cancelled => Self::Cancelled,
            RunStatus::Queued | RunStatus::Running => Self::Running,
            RunStatus::Error | RunStatus::Interrupted => Self::Error,
        }
    }
}

/// One script's state as the run JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScriptView {
    /// Its name (`tests` for the run's tests).
    pub name: String,
    /// Where it stands.
    pub state: ScriptState,
    /// Exit code once it exited by itself.
    pub exit_code: Option<i32>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
}

/// A key being (or having been) awaited by a phased run, as the run JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Awaiting {
    /// The sink key.
    pub key: String,
    /// How many records are wanted.
    pub count: usize,
    /// How many had arrived at the last update.
    pub arrived: usize,
    /// When the wait for this key gives up (RFC 3339, ms).
    pub deadline: String,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// One test within a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunTest {
    /// Catalog path of the test.
    pub path: String,
    /// Its status.
    pub status: TestStatus,
    /// Exit code once it ended (none when killed by a signal or not run).
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: Option<u64>,
}

/// A run: who, where, what, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// Run id, increasing.
    pub id: i64,
    /// Who started it.
    pub username: String,
    /// Environment it runs on.
    pub env_id: u32,
    /// Its status.
    pub status: RunStatus,
    /// Its tests, in execution order.
    pub tests: Vec<RunTest>,
    /// When it was submitted (RFC 3339, ms).
    pub created_at: String,
    /// When it started executing.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// For a phased run: its phase while it runs (the last phase reached once it ended);
    /// `null` for a plain run.
    pub phase: Option<Phase>,
    /// For a phased run: the announced keys, how many records each needs and has, and when the
    /// wait for it gives up.
    pub awaiting: Vec<Awaiting>,
    /// With an `eventual.toml`: its scripts' states, exit codes and times.
    pub scripts: Vec<ScriptView>,
    /// Cluster mode: the node executing it (or that executed it); absent on a single process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Run {
    /// A run just stored: queued, its tests pending, nothing started.
    pub(crate) fn queued(
        id: i64,
        username: &str,
        env_id: u32,
        tests: &[String],
        created_at: String,
    ) -> Self {
        Self {
            id,
            username: username.to_owned(),
            env_id,
            status: RunStatus::Queued,
            tests: tests
                .iter()
                .map(|path| RunTest {
                    path: path.clone(),
                    status: TestStatus::Pending,
                    exit_code: None,
                    duration_ms: None,
                })
                .collect(),
            created_at,
            started_at: None,
            finished_at: None,
            phase: None,
            awaiting: Vec::new(),
            scripts: Vec::new(),
            node: None,
        }
    }

    /// Its test paths, in execution order.
    pub fn test_paths(&self) -> Vec<String> {
        self.tests.iter().map(|t| t.path.clone()).collect()
    }

    /// The status of a run whose tests have all ended: passed, or the status of the first test
    /// that did not pass.
    pub fn outcome(tests: &[RunTest]) -> RunStatus {
        tests
            .iter()
            .find_map(|t| match t.status {
                TestStatus::Passed => None,
                TestStatus::Failed => Some(RunStatus::Failed),
                TestStatus::TimedOut => Some(RunStatus::TimedOut),
                TestStatus::Cancelled | TestStatus::Skipped => Some(RunStatus::Cancelled),
                TestStatus::Error | TestStatus::Pending | TestStatus::Running => {
                    Some(RunStatus::Error)
                }
            })
            .unwrap_or(RunStatus::Passed)
    }
}

/// State of one environment (`GET /api/envs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EnvView {
    /// Environment id, `1..=N`.
    pub id: u32,
    /// Free, busy or paused.
    pub state: EnvState,
    /// The run holding it.
    pub run_id: Option<i64>,
    /// Who started that run.
    pub username: Option<String>,
    /// Since when it has been held.
    pub since: Option<String>,
    /// Runs waiting for it, in the order they will start.
    pub queued: Vec<i64>,
    /// Cluster mode: the node executing the run that holds it (once a node took it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Current time as SPEC formats it: RFC 3339, UTC, milliseconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(status: TestStatus) -> RunTest {
        RunTest {
            path: "x".into(),
            status,
            exit_code: None,
            duration_ms: None,
        }
    }

    #[test]
    fn a_run_takes_the_status_of_its_first_test_that_did_not_pass() {
        use TestStatus::*;
        assert_eq!(Run::outcome(&[t(Passed), t(Passed)]), RunStatus::Passed);
        assert_eq!(
            Run::outcome(&[t(Passed), t(TimedOut), t(Failed)]),
            RunStatus::TimedOut
        );
        assert_eq!(Run::outcome(&[t(Failed), t(Error)]), RunStatus::Failed);
        assert_eq!(Run::outcome(&[t(Error), t(Passed)]), RunStatus::Error);
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        for s in [
            "queued",
            "running",
            "passed",
            "failed",
            "timed_out",
            "cancelled",
            "error",
            "interrupted",
        ] {
            assert_eq!(RunStatus::parse(s).map(RunStatus::as_str), Some(s));
        }
        assert_eq!(
            serde_json::to_string(&TestStatus::TimedOut).ok().as_deref(),
            Some("\"timed_out\"")
        );
    }
}
