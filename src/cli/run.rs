//! `eventual run`: submit, show where it waits, stream the log, summarise, exit 0 iff passed.

use std::{io::IsTerminal as _, io::Write as _, path::PathBuf, process::ExitCode};

use futures_util::StreamExt;
use harness::{
    RunStatus,
    client::{Client, ClientError},
};

use super::{Target, fail, print_summary};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Who runs it.
    #[arg(long)]
    user: String,
    /// Environment to run on: a number, or `any` (a free one, else the shortest queue).
    #[arg(long, value_parser = parse_env)]
    env: EnvChoice,
    /// Tests to run, in order: catalog paths, directories (`smoke/`: every test under it) or
    /// tags (`tag:preparation`); GET /api/tests lists them.
    #[arg(required = true)]
    tests: Vec<String>,
    /// On Ctrl-C, cancel the run without asking.
    #[arg(long)]
    cancel_on_interrupt: bool,
    /// When the run ends (passed or not), write it as JUnit XML to FILE for CI's test report
    /// (`GET /api/runs/ID/junit.xml`).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

/// `--env`: an environment id, or `any` (`None`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnvChoice(Option<u32>);

pub(super) fn parse_env(s: &str) -> Result<EnvChoice, String> {
    if s == "any" {
        return Ok(EnvChoice(None));
    }
    s.parse()
        .map(|id| EnvChoice(Some(id)))
        .map_err(|_| format!("{s:?} is not an environment: give its number, or `any`"))
}

/// `eventual run`: submit, show the queue position, stream the log, summarise, exit 0 iff passed.
pub(crate) async fn run(args: RunArgs) -> ExitCode {
    let client = args.target.client();
    // A report that cannot be written is found out before a run is spent on it.
    let report = match args.junit.as_deref().map(JunitReport::prepare).transpose() {
        Ok(report) => report,
        Err(code) => return code,
    };
    let run = match client.create_run(&args.user, args.env.0, &args.tests).await {
        Ok(run) => run,
        Err(e) => {
            if let Some(report) = &report {
                report.abandon();
            }
            return fail(&e);
        }
    };
    // Progress, not the answer: stderr.
    eprintln!("run {} submitted on env {}", run.id, run.env_id);
    // Where it waits, from one snapshot of the environments (two requests could straddle the
    // moment the queue moves).
    if let Ok(envs) = client.envs().await {
        if let Some(env) = envs.iter().find(|e| e.id == run.env_id) {
            if let Some(idx) = env.queued.iter().position(|id| *id == run.id) {
                let ahead = if idx == 0 {
                    env.run_id
                } else {
                    env.queued.get(idx - 1).copied()
                };
                let ahead = ahead.map_or(String::new(), |id| format!(" behind run {id}"));
                let paused = if env.state == harness::EnvState::Paused {
                    ", paused"
                } else {
                    ""
                };
                eprintln!(
                    "queued on env {}{ahead} (position {}{paused})",
                    run.env_id,
                    idx + 1
                );
            }
        }
    }
    let follow = async {
        let mut log = client.log(run.id, true).await?;
        let mut out = std::io::stdout();
        while let Some(chunk) = log.next().await {
            let _ = out.write_all(&chunk?);
            let _ = out.flush();
        }
        Ok::<(), ClientError>(())
    };
    tokio::select! {
        followed = follow => {
            if let Err(e) = followed {
                if let Some(report) = &report {
                    report.abandon();
                }
                return fail(&e);
            }
        }
        _ = tokio::signal::ctrl_c() => {
            return interrupted(&client, run.id, args.cancel_on_interrupt, report.as_ref()).await;
        }
    }
    match client.run(run.id).await {
        Ok((run, _)) => {
            // Apart from the log above it.
            println!();
            print_summary(&run);
            if let Some(report) = &report {
                if let Err(code) = report.write(&client, run.id).await {
                    return code;
                }
            }
            if run.status == RunStatus::Passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&e),
    }
}

/// `run --junit FILE`: where the run's JUnit XML goes once it has ended.
#[derive(Debug)]
pub(super) struct JunitReport {
    path: PathBuf,
    /// The file did not exist before: if no report comes, it goes again.
    created: bool,
}

impl JunitReport {
    /// Checks that `path` can be written (creating it, empty, if it is new); exit 2 if not.
    fn prepare(path: &std::path::Path) -> Result<Self, ExitCode> {
        let existed = path.exists();
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(_) => Ok(Self {
                path: path.to_owned(),
                created: !existed,
            }),
            Err(e) => {
                eprintln!(
                    "error: cannot write the JUnit report to {}: {e}; give --junit a file in a \
                     directory that exists and that you can write to",
                    path.display()
                );
                Err(ExitCode::from(2))
            }
        }
    }

    /// Fetches run `id`'s report and writes it; exit 2 (after saying why) if that fails.
    async fn write(&self, client: &Client, id: i64) -> Result<(), ExitCode> {
        let xml = client.junit(id).await.map_err(|e| fail(&e))?;
        if let Err(e) = std::fs::write(&self.path, xml) {
            eprintln!(
                "error: failed to write the JUnit report of run {id} to {}: {e}",
                self.path.display()
            );
            return Err(ExitCode::from(2));
        }
        eprintln!(
            "JUnit report of run {id} written to {}",
            self.path.display()
        );
        Ok(())
    }

    /// No report will come: remove the empty file [`prepare`](Self::prepare) created.
    fn abandon(&self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub(super) async fn interrupted(
    client: &Client,
    id: i64,
    cancel_without_asking: bool,
    report: Option<&JunitReport>,
) -> ExitCode {
    let cancel = cancel_without_asking || {
        if std::io::stdin().is_terminal() {
            eprint!("\ncancel run {id}? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            matches!(answer.trim(), "y" | "Y" | "yes")
        } else {
            false
        }
    };
    if !cancel {
        eprintln!("\nrun {id} keeps running; follow it with `eventual show {id} --log`");
        if let Some(report) = report {
            report.abandon();
        }
        return ExitCode::from(130);
    }
    match client.cancel(id).await {
        Ok(run) => {
            println!();
            print_summary(&run);
            if let Some(report) = report {
                if let Err(code) = report.write(client, run.id).await {
                    return code;
                }
            }
            ExitCode::from(1)
        }
        Err(e) => fail(&e),
    }
}
