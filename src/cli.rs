//! Client commands against a running server: `run`, `upload`, `runs`, `show`.
//!
//! Exit codes (for CI scripts): 0 the run passed / the command worked; 1 the run did not pass
//! (or `wait` timed out); 2 usage, connection or server errors. Server errors print as one line,
//! `error: <code>: <message>`.
//!
//! Streams (as cargo, gh, kubectl): a command's answer goes to stdout — `run`'s streamed log and
//! final summary, `show`'s summary (and log), `runs`' table, `upload`'s path, any `--json` — so it
//! can be piped to `grep`, `tee` or `jq`; progress (`run N submitted`, where it is queued), the
//! Ctrl-C prompt and errors go to stderr.

use std::{io::IsTerminal as _, io::Write as _, path::PathBuf, process::ExitCode};

use futures_util::StreamExt;
use harness::{
    Run, RunStatus,
    client::{Client, ClientError},
};

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
    fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone())
    }
}

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

#[derive(Debug, clap::Args)]
pub(crate) struct UploadArgs {
    /// The test file (`.py` or `.sh`).
    file: PathBuf,
    /// Catalog directory to put it in (created if new; may be nested).
    #[arg(long, default_value = "")]
    dir: String,
    /// Replace a test that exists already.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunsArgs {
    /// Only this environment.
    #[arg(long)]
    env: Option<u32>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this status.
    #[arg(long)]
    status: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print JSON for scripts: `{"runs": […]}`, as `GET /api/runs` answers.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The run id.
    id: i64,
    /// Print its full log after the summary (with --json: as the object's `log` field).
    #[arg(long)]
    log: bool,
    /// Print the run as JSON for scripts (the object `GET /api/runs/ID` answers).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// `--env`: an environment id, or `any` (`None`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnvChoice(Option<u32>);

fn parse_env(s: &str) -> Result<EnvChoice, String> {
    if s == "any" {
        return Ok(EnvChoice(None));
    }
    s.parse()
        .map(|id| EnvChoice(Some(id)))
        .map_err(|_| format!("{s:?} is not an environment: give its number, or `any`"))
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunIdArgs {
    /// The run id.
    id: i64,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RerunArgs {
    /// The run to run again.
    id: i64,
    /// Only the tests that did not pass.
    #[arg(long)]
    failed: bool,
    /// Print the new run as JSON (the object `POST /api/runs/ID/rerun` answers).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// The run id.
    id: i64,
    /// Keep printing as the run goes on, until it ends.
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    target: Target,
}

fn fail(e: &ClientError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
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
struct JunitReport {
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

async fn interrupted(
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

/// The run's status and a line per test, on stdout: it is the answer of `run` and `show`.
fn print_summary(run: &Run) {
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

/// `eventual upload`.
pub(crate) async fn upload(args: UploadArgs) -> ExitCode {
    match args
        .target
        .client()
        .upload(&args.file, &args.dir, args.overwrite)
        .await
    {
        Ok(path) => {
            println!("{path}");
            ExitCode::SUCCESS
        }
        // The server's message names its form field (`overwrite=true`); a CLI user needs the flag.
        Err(ClientError::Api {
            status: 409, code, ..
        }) if !args.overwrite => {
            eprintln!(
                "error: {code}: {} exists already; pass --overwrite to replace it",
                catalog_path(&args.dir, &args.file)
            );
            ExitCode::from(2)
        }
        Err(e) => fail(&e),
    }
}

/// Where an upload of `file` into `dir` lands in the catalog (`team-a/x.sh`).
fn catalog_path(dir: &str, file: &std::path::Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = dir.trim_start_matches("./").trim_matches('/');
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// `eventual runs`.
pub(crate) async fn runs(args: RunsArgs) -> ExitCode {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(env) = args.env {
        query.push(("env_id", env.to_string()));
    }
    if let Some(user) = args.user {
        query.push(("username", user));
    }
    if let Some(status) = args.status {
        query.push(("status", status));
    }
    let client = args.target.client();
    if args.json {
        // The API's shape, `{"runs": […]}`, as the server sent it.
        return match client.runs_json(&query).await {
            Ok(body) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    match client.runs(&query).await {
        Ok(runs) => {
            println!(
                "{:>6}  {:<12} {:>4}  {:<11} {:<24}  tests",
                "id", "user", "env", "status", "created"
            );
            for r in runs {
                let tests: Vec<&str> = r.tests.iter().map(|t| t.path.as_str()).collect();
                println!(
                    "{:>6}  {:<12} {:>4}  {:<11} {:<24}  {}",
                    r.id,
                    r.username,
                    r.env_id,
                    r.status.as_str(),
                    r.created_at,
                    tests.join(" ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `eventual show`.
pub(crate) async fn show(args: ShowArgs) -> ExitCode {
    let client = args.target.client();
    // The run object exactly as the API answers it (`queue_position` and all).
    let mut value = match client.run_json(args.id).await {
        Ok(value) => value,
        Err(e) => return fail(&e),
    };
    let run: Run = match serde_json::from_value(value.clone()) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("error: bad_response: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        // One JSON document: the log is a field of the run object, not text after it.
        if args.log {
            match read_log(&client, run.id).await {
                Ok(log) => value["log"] = String::from_utf8_lossy(&log).into_owned().into(),
                Err(e) => return fail(&e),
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print_summary(&run);
        if args.log {
            let mut out = std::io::stdout();
            let _ = out.flush();
            match client.log(run.id, false).await {
                Ok(mut log) => {
                    while let Some(chunk) = log.next().await {
                        match chunk {
                            Ok(c) => {
                                let _ = out.write_all(&c);
                            }
                            Err(e) => return fail(&e),
                        }
                    }
                    let _ = out.flush();
                }
                Err(e) => return fail(&e),
            }
        }
    }
    if run.status == RunStatus::Passed || !run.status.is_finished() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The whole log of a run (as it is now).
async fn read_log(client: &Client, id: i64) -> Result<Vec<u8>, ClientError> {
    let mut log = client.log(id, false).await?;
    let mut all = Vec::new();
    while let Some(chunk) = log.next().await {
        all.extend_from_slice(&chunk?);
    }
    Ok(all)
}

/// `eventual cancel ID`: stops a queued or running run; prints it, now `cancelled`.
pub(crate) async fn cancel(args: RunIdArgs) -> ExitCode {
    match args.target.client().cancel(args.id).await {
        Ok(run) => {
            print_summary(&run);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `eventual rerun ID [--failed]`: submits the run again (or its tests that did not pass) and
/// prints the new run; follow it with `eventual logs NEW --follow`.
pub(crate) async fn rerun(args: RerunArgs) -> ExitCode {
    match args.target.client().rerun(args.id, args.failed).await {
        Ok(run) if args.json => {
            println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(run) => {
            eprintln!(
                "run {} submitted on env {} (a rerun of {})",
                run.id, run.env_id, args.id
            );
            print_summary(&run);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `eventual logs ID [--follow]`: the run's log on stdout (with --follow until the run ends).
pub(crate) async fn logs(args: LogsArgs) -> ExitCode {
    let client = args.target.client();
    let mut out = std::io::stdout();
    match client.log(args.id, args.follow).await {
        Ok(mut log) => {
            while let Some(chunk) = log.next().await {
                match chunk {
                    Ok(c) => {
                        if out.write_all(&c).and_then(|()| out.flush()).is_err() {
                            // The reader went away (`| head`): that is the end, not an error.
                            return ExitCode::SUCCESS;
                        }
                    }
                    Err(e) => return fail(&e),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
