//! `eventual cancel`, `eventual rerun`: acting on a run.

use std::process::ExitCode;

use super::{Target, fail, print_summary};

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
