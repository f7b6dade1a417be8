//! `eventual`: the command line. Parses flags and wires the `sink` and `harness` crates together;
//! everything else lives in those libraries.

use std::{path::PathBuf, process::ExitCode, time::Duration};

mod cli;
mod serve;
mod stop;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "eventual",
    version,
    about = "Test asynchronous systems: a callback sink you can wait on, and a test runner for shared environments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the service on one port: the callback sink, the test harness and its web UI.
    Serve(ServeArgs),
    /// Start the callback sink alone, e.g. as a CI sidecar (in memory unless --data-dir is given).
    Sink(SinkArgs),
    /// Wait for a callback on a running sink and print it as JSON (exit 1 on timeout).
    ///
    /// Prints the record on stdout as `GET /callbacks/KEY` answers it; with --count N (any N,
    /// including 1) the object `GET /callbacks/KEY/all` answers, `{"key", "callbacks": […]}`.
    /// Errors, including the timeout, go to stderr.
    Wait(WaitArgs),
    /// Submit a run, stream its log, print a summary; exit 0 only if it passed.
    ///
    /// The log and the final summary go to stdout (pipe them to `tee` or `grep`); `run N
    /// submitted`, where the run is queued, the Ctrl-C prompt and errors go to stderr.
    Run(cli::RunArgs),
    /// Upload a test file into the catalog.
    ///
    /// Prints the catalog path it was stored under on stdout; errors go to stderr.
    Upload(cli::UploadArgs),
    /// List recent runs.
    ///
    /// The table (or with --json `{"runs": […]}`, as `GET /api/runs` answers) goes to stdout;
    /// errors go to stderr.
    Runs(cli::RunsArgs),
    /// Show one run (and its log with --log).
    ///
    /// The summary (or with --json the run object, with --log its `log` field) goes to stdout;
    /// errors go to stderr. Exit 1 if the run ended without passing.
    Show(cli::ShowArgs),
    /// Cancel a queued or running run.
    ///
    /// Prints the run, now cancelled, on stdout; errors (e.g. it has already finished) go to
    /// stderr with exit 2.
    Cancel(cli::RunIdArgs),
    /// Run a run again: its tests, or with --failed only those that did not pass.
    ///
    /// Prints the new run on stdout (with --json the object the API answers); `run N submitted`
    /// goes to stderr.
    Rerun(cli::RerunArgs),
    /// Print a run's log (with --follow, until the run ends).
    ///
    /// The log goes to stdout; errors go to stderr.
    Logs(cli::LogsArgs),
    /// Script the sink's answers to a key's callbacks (a stub), or --delete one.
    ///
    /// `eventual stub flaky --key job-42 --status 503 --times 2` answers the first two
    /// callbacks of job-42 with 503 (then, by default, the last response again); several
    /// responses are `--response JSON` repeated. Prints the stub as stored on stdout.
    Stub(cli::StubArgs),
    /// List the sink's stubs: id, key or prefix, script, hits (with --json as `GET /stubs`).
    Stubs(cli::StubsArgs),
    /// Set a signature verifier on a running sink (the secret from --secret-env VAR or stdin).
    ///
    /// Prints `verifier ID set` on stdout; errors go to stderr with exit 2.
    Verify(cli::VerifyArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (printed as `listening on …`).
    #[arg(long, env = "EVENTUAL_BIND", default_value = "127.0.0.1:7700")]
    bind: String,
    /// Where state is kept: the callback log, run history, run logs and uploaded tests.
    #[arg(long, env = "EVENTUAL_DATA_DIR", default_value = "./.eventual")]
    data_dir: PathBuf,
    #[command(flatten)]
    sink: SinkFlags,
    #[command(flatten)]
    harness: HarnessFlags,
}

// Every duration flag is parsed by `sink::parse_duration` (humantime or a bare number of seconds),
// the parser of the sink's `?wait=`, so flags, `?wait=` and the Python helper agree.

#[derive(Debug, Args)]
struct HarnessFlags {
    /// Environment ids are 1..=N.
    #[arg(long, env = "EVENTUAL_ENVS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    envs: u32,
    /// Runs executing at once on different environments (default: the number of environments);
    /// with --database, 0 makes a node that only serves the API and the sink.
    #[arg(long, env = "EVENTUAL_WORKERS")]
    workers: Option<usize>,
    /// A test still running after this is terminated (`timed_out`). DURATION: 30s, 500ms, 3m;
    /// a bare number is seconds.
    #[arg(long, env = "EVENTUAL_TEST_TIMEOUT", default_value = "180s", value_name = "DURATION", value_parser = sink::parse_duration)]
    test_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a test's process group is stopped. DURATION: 30s,
    /// 500ms, 3m; a bare number is seconds.
    #[arg(long, env = "EVENTUAL_KILL_GRACE", default_value = "5s", value_name = "DURATION", value_parser = sink::parse_duration)]
    kill_grace: Duration,
    /// Largest test file accepted by upload.
    #[arg(long, env = "EVENTUAL_MAX_UPLOAD", default_value = "10MiB")]
    max_upload: bytesize::ByteSize,
    /// A directory of tests shown beside uploads instead of the sample tests built into the
    /// binary (which are written to DATA_DIR/sample-tests at every start).
    #[arg(long, env = "EVENTUAL_SAMPLE_TESTS")]
    sample_tests: Option<PathBuf>,
    /// The sink tests should use (EVENTUAL_SINK_URL) instead of the built-in one.
    #[arg(long, env = "EVENTUAL_SINK_URL")]
    sink_url: Option<String>,
    /// How long a phased run waits for an announced callback unless the announce says
    /// otherwise. DURATION: 30s, 500ms, 3m; a bare number is seconds.
    #[arg(long, env = "EVENTUAL_AWAIT_TIMEOUT", default_value = "10m", value_name = "DURATION", value_parser = sink::parse_duration)]
    await_timeout: Duration,
    /// Cluster mode (with --database): this node's name, as runs and `GET /api/nodes` show it
    /// (default: HOSTNAME:PORT).
    #[arg(long, env = "EVENTUAL_NODE_NAME")]
    node_name: Option<String>,
    /// Cluster mode: a node silent for longer than this is dead; its running runs end
    /// `interrupted` and their environments go on. DURATION: 30s, 500ms, 3m; a bare number is
    /// seconds.
    #[arg(long, env = "EVENTUAL_NODE_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = sink::parse_duration)]
    node_timeout: Duration,
}

#[derive(Debug, Args)]
struct SinkArgs {
    /// Address to listen on; port 0 picks a free one (printed as `listening on …`).
    #[arg(long, env = "EVENTUAL_BIND", default_value = "127.0.0.1:7700")]
    bind: String,
    /// Keep callbacks (only they: `sink` has no runs) in an append-only log here, so they survive
    /// restarts (default: memory only).
    #[arg(long, env = "EVENTUAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    sink: SinkFlags,
}

#[derive(Debug, Args)]
struct SinkFlags {
    /// Cluster mode: keep the callbacks — and under `serve` the runs, logs, uploads and
    /// environment claims — in this PostgreSQL database, shared by every node started on it
    /// (postgres://user:password@host:port/database). Default: this process only.
    #[arg(
        long,
        env = "EVENTUAL_DATABASE",
        hide_env_values = true,
        value_name = "URL"
    )]
    database: Option<String>,
    /// Largest callback body accepted (413 past it).
    #[arg(long, env = "EVENTUAL_MAX_BODY", default_value = "1MiB")]
    max_body: bytesize::ByteSize,
    /// Capacity in callbacks; past it new ones get 507 (nothing is evicted).
    #[arg(long, env = "EVENTUAL_MAX_CALLBACKS", default_value_t = 1_000_000)]
    max_callbacks: usize,
    /// Forget callbacks older than this (e.g. `1h`); off by default. DURATION: 30s, 500ms, 3m;
    /// a bare number is seconds.
    #[arg(long, env = "EVENTUAL_RETENTION", value_name = "DURATION", value_parser = sink::parse_duration)]
    retention: Option<Duration>,
    /// Header holding the key of `POST /callbacks` (repeatable; replaces the default X-Request-Id).
    #[arg(
        long = "key-header",
        env = "EVENTUAL_KEY_HEADER",
        value_delimiter = ','
    )]
    key_headers: Vec<String>,
    /// JSON pointer to the key in a `POST /callbacks` body (repeatable; replaces the defaults
    /// /request_id, /requestId, /id).
    #[arg(
        long = "key-pointer",
        env = "EVENTUAL_KEY_POINTER",
        value_delimiter = ','
    )]
    key_pointers: Vec<String>,
    /// Require `Authorization: Bearer SECRET` to read or delete callbacks (needed to bind beyond
    /// loopback with `serve`).
    #[arg(long, env = "EVENTUAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// When the callback log is fsync'd: `always` (before each acknowledgement), a DURATION such
    /// as `1s` (at most that much lost on power loss; nothing on a crash), or `never`. DURATION:
    /// 30s, 500ms, 3m; a bare number is seconds.
    #[arg(
        long,
        env = "EVENTUAL_FSYNC",
        default_value = "1s",
        value_name = "POLICY"
    )]
    fsync: sink::FsyncPolicy,
    /// Close a connection that has not sent a request's whole header within this (slow or silent
    /// clients; also idle keep-alive connections). DURATION: 30s, 500ms, 3m; a bare number is
    /// seconds.
    #[arg(long, env = "EVENTUAL_HEADER_READ_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = sink::parse_duration)]
    header_read_timeout: Duration,
    /// Most requests in flight at once on one HTTP/2 connection (e.g. long-polls sharing it).
    #[arg(long, env = "EVENTUAL_HTTP2_MAX_STREAMS", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    http2_max_streams: u32,
}

#[derive(Debug, Args)]
struct WaitArgs {
    /// The key to wait for.
    key: String,
    /// How long to wait. DURATION: 30s, 500ms, 3m; a bare number is seconds.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = sink::parse_duration)]
    timeout: Duration,
    /// Wait until this many callbacks exist and print them all, in the shape of
    /// `GET /callbacks/KEY/all`: `{"key": …, "callbacks": […]}` (also for `--count 1`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,
    /// The running server.
    #[arg(long, env = "EVENTUAL_URL", default_value = "http://127.0.0.1:7700")]
    url: String,
    /// Bearer token of a server started with --token.
    #[arg(long, env = "EVENTUAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl SinkFlags {
    fn config(self, data_dir: Option<PathBuf>) -> anyhow::Result<sink::Config> {
        let database = self.database.filter(|d| !d.is_empty());
        let mut config = sink::Config {
            data_dir,
            database,
            max_body: usize::try_from(self.max_body.as_u64()).context("--max-body is too large")?,
            max_callbacks: self.max_callbacks,
            retention: self.retention,
            token: self.token.filter(|t| !t.is_empty()),
            fsync: self.fsync,
            ..sink::Config::default()
        };
        config.serving.header_read_timeout = self.header_read_timeout;
        config.serving.http2_max_streams = self.http2_max_streams;
        if !self.key_headers.is_empty() {
            config.key_headers = self.key_headers;
        }
        if !self.key_pointers.is_empty() {
            for p in &self.key_pointers {
                anyhow::ensure!(
                    p.starts_with('/'),
                    "--key-pointer {p:?} is not a JSON pointer: it must start with `/`, e.g. /request_id"
                );
            }
            config.key_pointers = self.key_pointers;
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVENTUAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let mut config = args.sink.config(Some(args.data_dir.clone()))?;
                if config.database.is_some() {
                    // The callbacks live in the database; --data-dir keeps the runs' local files.
                    config.data_dir = None;
                }
                let harness = serve::harness_config(
                    args.harness,
                    args.data_dir,
                    config.token.clone(),
                    config.database.clone(),
                )?;
                serve::run_server(&args.bind, config, Some(harness)).await
            }
            Command::Sink(args) => {
                anyhow::ensure!(
                    args.data_dir.is_none() || args.sink.database.is_none(),
                    "--data-dir and --database both say where the callbacks live: give one of them"
                );
                let config = args.sink.config(args.data_dir)?;
                serve::run_server(&args.bind, config, None).await
            }
            Command::Wait(args) => wait(args).await,
            Command::Run(args) => Ok(cli::run(args).await),
            Command::Upload(args) => Ok(cli::upload(args).await),
            Command::Runs(args) => Ok(cli::runs(args).await),
            Command::Show(args) => Ok(cli::show(args).await),
            Command::Cancel(args) => Ok(cli::cancel(args).await),
            Command::Rerun(args) => Ok(cli::rerun(args).await),
            Command::Logs(args) => Ok(cli::logs(args).await),
            Command::Stub(args) => Ok(cli::stub(args).await),
            Command::Stubs(args) => Ok(cli::stubs(args).await),
            Command::Verify(args) => Ok(cli::verify(args).await),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let mut client = sink::Client::new(args.url.clone());
    if let Some(token) = args.token {
        client = client.with_token(token);
    }
    let timeout = args.timeout;
    let count = args.count.map_or(1, |n| n as usize);
    match client.wait_for_count(&args.key, count, timeout).await {
        Ok(records) => {
            // One shape per form: the record (as `GET /callbacks/KEY` answers), or with --count
            // the API's `/all` object, whatever N is.
            let out = match (args.count, records.last()) {
                (None, Some(latest)) => serde_json::to_string_pretty(latest)?,
                _ => serde_json::to_string_pretty(&serde_json::json!({
                    "key": args.key,
                    "callbacks": records,
                }))?,
            };
            println!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ sink::ClientError::Timeout { .. }) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
        Err(sink::ClientError::Api { code, message, .. }) => {
            eprintln!("error: {code}: {message}");
            Ok(ExitCode::from(2))
        }
        Err(e @ sink::ClientError::Decode { .. }) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(anyhow::anyhow!(
            "{e} (is the server running at {}?)",
            args.url
        )),
    }
}
