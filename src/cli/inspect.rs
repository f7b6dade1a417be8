//! `eventual runs`, `eventual show`, `eventual logs`: reading runs and their logs.

use std::{io::Write as _, process::ExitCode};

use futures_util::StreamExt;
use harness::{
    Run, RunStatus,
    client::{Client, ClientError},
};

use super::{Target, fail, print_summary};

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
pub(super) async fn read_log(client: &Client, id: i64) -> Result<Vec<u8>, ClientError> {
    let mut log = client.log(id, false).await?;
    let mut all = Vec::new();
    while let Some(chunk) = log.next().await {
        all.extend_from_slice(&chunk?);
    }
    Ok(all)
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
