//! Client commands against a running server: `run`, `upload`, `runs`, `show`, `cancel`, `rerun`,
//! `logs`, `stub`, `stubs`.
//!
//! Exit codes (for CI scripts): 0 the run passed / the command worked; 1 the run did not pass
//! (or `wait` timed out); 2 usage, connection or server errors. Server errors print as one line,
//! `error: <code>: <message>`.
//!
//! Streams (as cargo, gh, kubectl): a command's answer goes to stdout — `run`'s streamed log and
//! final summary, `show`'s summary (and log), `runs`' table, `upload`'s path, any `--json` — so it
//! can be piped to `grep`, `tee` or `jq`; progress (`run N submitted`, where it is queued), the
//! Ctrl-C prompt and errors go to stderr.
//!
//! # Layout
//! - `run.rs` — `eventual run`: submit, queue position, live log, summary, JUnit report, Ctrl-C.
//! - `upload.rs` — `eventual upload`.
//! - `inspect.rs` — `eventual runs`, `show`, `logs`.
//! - `manage.rs` — `eventual cancel`, `rerun`.
//! - `stub.rs` — `eventual stub`, `stubs` (the sink's scripted answers).
//! - `verify.rs` — `eventual verify`: a signature verifier on a sink, the secret from env or stdin.

mod inspect;
mod manage;
mod run;
mod stub;
mod upload;
mod verify;

use std::process::ExitCode;

use harness::{
    Run,
    client::{Client, ClientError},
};

pub(crate) use inspect::{LogsArgs, RunsArgs, ShowArgs, logs, runs, show};
pub(crate) use manage::{RerunArgs, RunIdArgs, cancel, rerun};
pub(crate) use run::{RunArgs, run};
pub(crate) use stub::{StubArgs, StubsArgs, stub, stubs};
pub(crate) use upload::{UploadArgs, upload};
pub(crate) use verify::{VerifyArgs, verify};

/// How to reach the server.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The running server.
    #[arg(long, env = "EVENTUAL_URL", default_value = "http://127.0.0.1:7700")]
    pub(crate) url: String,
    /// Bearer token of a server started with --token.
    #[arg(long, env = "EVENTUAL_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

impl Target {
    pub(super) fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone())
    }
}

pub(super) fn fail(e: &ClientError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// The run's status and a line per test, on stdout: it is the answer of `run` and `show`.
pub(super) fn print_summary(run: &Run) {
    println!(
        "run {} on env {} by {}: {}",
        run.id,
        run.env_id,
        run.username,
        run.status.as_str()
    );
    for t in &run.tests {
        let exit = t
            .exit_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        let took = t.duration_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.3}s", ms as f64 / 1000.0),
        );
        println!(
            "  {:<10} {:>5} {:>9}  {}",
            t.status.as_str(),
            exit,
            took,
            t.path
        );
    }
}
