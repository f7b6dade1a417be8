//! What the API shows: runs, their tests, statuses and environments (SPEC "The harness").

use serde::{Deserialize, Serialize};

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
            /// The status as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }

            /// Parses a stored status.
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

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// One test within a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// For a phased run: `preparation`, `awaiting` or `validation` while it runs (the last
    /// phase reached once it ended); `null` for a plain run.
    pub phase: Option<String>,
    /// For a phased run: the announced keys, how many records each needs and has, and when the
    /// wait for it gives up.
    pub awaiting: Vec<crate::phases::Awaiting>,
    /// With an `eventual.toml`: its scripts' states, exit codes and times.
    pub scripts: Vec<crate::services::ScriptView>,
}

impl Run {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvView {
    /// Environment id, `1..=N`.
    pub id: u32,
    /// `free`, `busy` or `paused`.
    pub state: &'static str,
    /// The run holding it.
    pub run_id: Option<i64>,
    /// Who started that run.
    pub username: Option<String>,
    /// Since when it has been held.
    pub since: Option<String>,
    /// Runs waiting for it, in the order they will start.
    pub queued: Vec<i64>,
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
