//! `eventual upload FILE --dir D [--overwrite]`.

use std::{path::PathBuf, process::ExitCode};

use harness::client::ClientError;

use super::{Target, fail};

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
pub(super) fn catalog_path(dir: &str, file: &std::path::Path) -> String {
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
