//! Starting the real `eventual` binary and talking to it over HTTP.
//!
//! Every server is started on `127.0.0.1:0`; its address is read from the first line it prints
//! (`listening on http://…`), so no test guesses a port or sleeps while it starts. Its stderr is
//! captured in memory: tests wait on log lines as events ([`Running::wait_for_stderr`]), and a
//! failing test prints it. `TEST_LOG=1` echoes it live as well.

use std::{
    path::Path,
    process::{ExitStatus, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::{Child, Command},
    sync::watch,
};

/// How long a server may take to print its address (generous: CI machines are slow).
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM/SIGINT.
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for things that should happen "at once" (a log line, a 503 on shutdown).
pub(crate) const PROMPTLY: Duration = Duration::from_secs(10);

/// A command line for the binary, with its environment. Inherited `EVENTUAL_*` variables are
/// removed so a developer's shell cannot change what a test means.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    bind: Option<String>,
    cwd: Option<std::path::PathBuf>,
}

impl Launch {
    /// `eventual ARGS… --bind 127.0.0.1:0` (see [`Launch::bind`] to change the address).
    pub(crate) fn new<S: AsRef<str>>(args: &[S]) -> Self {
        Self {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            envs: Vec::new(),
            bind: Some("127.0.0.1:0".to_owned()),
            cwd: None,
        }
    }

    /// Starts the child in `dir` (as a user would, from wherever they are).
    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// A client command (`eventual wait …`): no `--bind` is added.
    pub(crate) fn client<S: AsRef<str>>(args: &[S]) -> Self {
        Self {
            bind: None,
            ..Self::new(args)
        }
    }

    /// Sets an environment variable of the child.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Listens on `addr` instead of `127.0.0.1:0`.
    pub(crate) fn bind(mut self, addr: &str) -> Self {
        self.bind = Some(addr.to_owned());
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventual"));
        cmd.args(&self.args);
        if let Some(bind) = &self.bind {
            cmd.args(["--bind", bind]);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EVENTUAL_") {
                cmd.env_remove(key);
            }
        }
        // Plain log lines: tests search them for words.
        cmd.env("NO_COLOR", "1");
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Starts a server and waits for its `listening on …` line.
    pub(crate) async fn spawn(self) -> anyhow::Result<Running> {
        let mut child = self
            .command()
            .spawn()
            .context("failed to start the eventual binary")?;
        let stderr = Captured::start(child.stderr.take().context("stderr is piped")?);
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line()).await;
        let first = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
                bail!(
                    "eventual {:?} exited before printing its address ({status:?}); stderr:\n{}",
                    self.args,
                    stderr.wait_closed().await
                );
            }
            Ok(Err(e)) => bail!("failed to read eventual's stdout: {e}"),
            Err(_) => bail!(
                "eventual {:?} printed no address within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                self.args,
                stderr.text()
            ),
        };
        let listening = first
            .strip_prefix("listening on ")
            .with_context(|| format!("the first stdout line is not `listening on …`: {first:?}"))?;
        let port = listening
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .with_context(|| format!("no port in {first:?}"))?;
        // Keep draining stdout so that a later print can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Running {
            url: format!("http://127.0.0.1:{port}"),
            listening: listening.to_owned(),
            child,
            stderr,
            http: reqwest::Client::new(),
        })
    }

    /// Runs a command that is expected to exit by itself within `timeout`.
    pub(crate) async fn output(self, timeout: Duration) -> anyhow::Result<Output> {
        let child = self
            .command()
            .spawn()
            .context("failed to start the eventual binary")?;
        tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .with_context(|| format!("eventual {:?} did not exit within {timeout:?}", self.args))?
            .context("failed to wait for eventual")
    }
}

/// `eventual ARGS… --bind 127.0.0.1:0`, started and listening.
pub(crate) async fn spawn_eventual<S: AsRef<str>>(args: &[S]) -> anyhow::Result<Running> {
    Launch::new(args).spawn().await
}

/// A started server. Killed (SIGKILL) when dropped; its stderr is printed if the test failed.
#[derive(Debug)]
pub(crate) struct Running {
    /// Base URL to reach it, always through loopback (`http://127.0.0.1:PORT`).
    pub(crate) url: String,
    /// What it printed after `listening on ` (e.g. `http://0.0.0.0:PORT`).
    pub(crate) listening: String,
    child: Child,
    stderr: Captured,
    http: reqwest::Client,
}

impl Running {
    /// The process id (for sending signals).
    pub(crate) fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .context("the server has already been reaped")
    }

    /// SIGKILL, without waiting.
    pub(crate) fn kill_9(&mut self) -> anyhow::Result<()> {
        self.child
            .start_kill()
            .context("failed to SIGKILL the server")
    }

    /// Sends `signal` (`TERM`, `INT`) with `kill(1)`.
    pub(crate) fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid()?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("failed to run kill(1)")?;
        ensure!(status.success(), "kill -{signal} {pid} failed: {status}");
        Ok(())
    }

    /// Waits for the process to exit.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.context("failed to wait for the server"),
            Err(_) => bail!(
                "the server did not exit within {timeout:?}; stderr:\n{}",
                self.stderr.text()
            ),
        }
    }

    /// SIGTERM, then waits for the exit.
    pub(crate) async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal("TERM")?;
        self.wait_exit(EXIT_TIMEOUT).await
    }

    /// Everything the server wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until a line of stderr satisfies `matches`, and returns that line.
    pub(crate) async fn wait_for_stderr(
        &self,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        self.stderr.wait_for_line(what, matches, PROMPTLY).await
    }

    /// `base + path`.
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The client the helpers use.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Posts `body` as JSON to `/callbacks/{key}`; returns the status and the JSON answer.
    pub(crate) async fn post_json(&self, key: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(self.at(&format!("/callbacks/{key}")))
            .json(body)
            .send()
            .await
            .with_context(|| format!("failed to POST /callbacks/{key}"))?;
        read(response).await
    }

    /// `GET path`; returns the status and the JSON answer.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .get(self.at(path))
            .send()
            .await
            .with_context(|| format!("failed to GET {path}"))?;
        read(response).await
    }

    /// `DELETE path`; returns the status.
    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<u16> {
        let response = self
            .http
            .delete(self.at(path))
            .send()
            .await
            .with_context(|| format!("failed to DELETE {path}"))?;
        Ok(response.status().as_u16())
    }

    /// The records of `key` (`GET /callbacks/{key}/all`), which must answer 200.
    pub(crate) async fn all(&self, key: &str) -> anyhow::Result<Vec<Value>> {
        all_of(&self.http, &self.url, key).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() && !test_log() {
            eprintln!(
                "---- stderr of eventual at {} ----\n{}",
                self.url,
                self.stderr.text()
            );
        }
    }
}

/// `GET {base}/callbacks/{key}/all`, usable from spawned tasks.
pub(crate) async fn all_of(
    http: &reqwest::Client,
    base: &str,
    key: &str,
) -> anyhow::Result<Vec<Value>> {
    let response = http
        .get(format!("{base}/callbacks/{key}/all"))
        .send()
        .await
        .with_context(|| format!("failed to GET /callbacks/{key}/all"))?;
    let (status, body) = read(response).await?;
    ensure!(
        status == 200,
        "GET /callbacks/{key}/all answered {status}: {body}"
    );
    match body.get("callbacks") {
        Some(Value::Array(records)) => Ok(records.clone()),
        _ => bail!("GET /callbacks/{key}/all has no `callbacks` list: {body}"),
    }
}

/// The status and JSON body of a response (`Null` for an empty body).
pub(crate) async fn read(response: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.context("failed to read the body")?;
    if bytes.is_empty() {
        return Ok((status, Value::Null));
    }
    let body = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the {status} answer is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok((status, body))
}

/// Asserts an error body `{"error": {"code": CODE, "message": …}}` and returns the message.
pub(crate) fn error_message(body: &Value, code: &str) -> anyhow::Result<String> {
    ensure!(
        body["error"]["code"] == code,
        "expected error code {code:?}, got {body}"
    );
    match &body["error"]["message"] {
        Value::String(m) if !m.is_empty() => Ok(m.clone()),
        _ => bail!("the error has no message: {body}"),
    }
}

fn test_log() -> bool {
    std::env::var_os("TEST_LOG").is_some_and(|v| v == "1")
}

/// A child's stderr, collected line by line as it arrives.
#[derive(Debug, Clone)]
struct Captured {
    text: Arc<Mutex<String>>,
    /// Bumped after each line; `false` → `true` once the stream has ended.
    changed: watch::Receiver<(u64, bool)>,
}

impl Captured {
    fn start(stream: impl AsyncRead + Unpin + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = watch::channel((0, false));
        let sink = text.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if test_log() {
                    eprintln!("[eventual] {line}");
                }
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
                tx.send_modify(|(n, _)| *n += 1);
            }
            tx.send_modify(|(_, closed)| *closed = true);
        });
        Self { text, changed: rx }
    }

    fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits for the stream to end (the process exited) and returns all of it.
    async fn wait_closed(&self) -> String {
        let mut rx = self.changed.clone();
        let _ = tokio::time::timeout(EXIT_TIMEOUT, rx.wait_for(|(_, closed)| *closed)).await;
        self.text()
    }

    async fn wait_for_line(
        &self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let mut rx = self.changed.clone();
        let found = tokio::time::timeout(timeout, async {
            loop {
                // Marked seen before looking, so a line that lands after the look wakes us.
                let closed = rx.borrow_and_update().1;
                if let Some(line) = self.text().lines().find(|l| matches(l)) {
                    return Some(line.to_owned());
                }
                if closed || rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found {
            Ok(Some(line)) => Ok(line),
            Ok(None) => bail!("stderr ended without {what}; stderr:\n{}", self.text()),
            Err(_) => bail!(
                "no {what} on stderr within {timeout:?}; stderr:\n{}",
                self.text()
            ),
        }
    }
}

// ---- The harness of `eventual serve` ----

/// The fixture test programs (`pass.sh`, `fail.sh`, `hang.sh`, `env.sh`, …), used as the catalog.
pub(crate) const FIXTURE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tests");

/// How long a run of quick fixture tests may take to reach its final status (CI machines are slow).
pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(30);

impl Launch {
    /// `eventual serve` with its state in `data_dir` and `sample_tests` as the bundled catalog,
    /// on four environments, with a test timeout no fixture reaches by accident and a short kill
    /// grace; `extra` flags come last.
    pub(crate) fn serve(data_dir: &Path, sample_tests: &str, extra: &[&str]) -> Self {
        let data_dir = data_dir.to_string_lossy();
        let mut args = vec![
            "serve",
            "--data-dir",
            &data_dir,
            "--sample-tests",
            sample_tests,
            "--envs",
            "4",
            "--test-timeout",
            "120s",
            "--kill-grace",
            "1s",
        ];
        args.extend_from_slice(extra);
        Self::new(&args)
    }
}

impl Running {
    /// `POST /api/runs`, which must answer `201`; returns the run.
    pub(crate) async fn create_run(
        &self,
        username: &str,
        env_id: u32,
        tests: &[&str],
    ) -> anyhow::Result<Value> {
        let body = serde_json::json!({ "username": username, "env_id": env_id, "tests": tests });
        let response = self
            .http
            .post(self.at("/api/runs"))
            .json(&body)
            .send()
            .await
            .context("failed to POST /api/runs")?;
        let (status, run) = read(response).await?;
        ensure!(
            status == 201,
            "POST /api/runs {body} answered {status}: {run}"
        );
        Ok(run)
    }

    /// `GET /api/runs/{id}`, which must answer `200`.
    pub(crate) async fn run(&self, id: i64) -> anyhow::Result<Value> {
        let (status, run) = self.get(&format!("/api/runs/{id}")).await?;
        ensure!(status == 200, "GET /api/runs/{id} answered {status}: {run}");
        Ok(run)
    }

    /// `GET /api/envs`, which must answer `200`; returns environment `id`.
    pub(crate) async fn env_view(&self, id: u32) -> anyhow::Result<Value> {
        let (status, envs) = self.get("/api/envs").await?;
        ensure!(status == 200, "GET /api/envs answered {status}: {envs}");
        envs.as_array()
            .and_then(|envs| envs.iter().find(|e| e["id"] == id))
            .cloned()
            .with_context(|| format!("GET /api/envs has no environment {id}: {envs}"))
    }

    /// Opens `GET /api/runs/{id}/log?follow=true`.
    pub(crate) async fn follow_log(&self, id: i64) -> anyhow::Result<LogFollower> {
        let path = format!("/api/runs/{id}/log?follow=true");
        let response = self
            .http
            .get(self.at(&path))
            .send()
            .await
            .with_context(|| format!("failed to GET {path}"))?;
        let status = response.status().as_u16();
        ensure!(
            status == 200,
            "GET {path} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(LogFollower {
            path,
            response,
            text: String::new(),
        })
    }

    /// Follows run `id`'s log to its end (the run has its final status then) and returns the run
    /// and its whole log.
    pub(crate) async fn wait_run_finished(&self, id: i64) -> anyhow::Result<(Value, String)> {
        let log = self.follow_log(id).await?.until_end(RUN_TIMEOUT).await?;
        let run = self.run(id).await?;
        ensure!(
            !matches!(run["status"].as_str(), Some("queued" | "running")),
            "run {id}'s log ended but the run has not: {run}\nlog:\n{log}"
        );
        Ok((run, log))
    }

    /// Subscribes to a Server-Sent Events route such as `/api/events`; the subscription exists
    /// once this returns (the server has answered its headers).
    pub(crate) async fn sse(&self, path: &str) -> anyhow::Result<SseStream> {
        let response = self
            .http
            .get(self.at(path))
            .send()
            .await
            .with_context(|| format!("failed to GET {path}"))?;
        let status = response.status().as_u16();
        ensure!(status == 200, "GET {path} answered {status}");
        Ok(SseStream {
            path: path.to_owned(),
            response,
            parser: testkit::sse::SseParser::default(),
        })
    }
}

/// A run's log, read as the server streams it (`?follow=true`).
#[derive(Debug)]
pub(crate) struct LogFollower {
    path: String,
    response: reqwest::Response,
    /// Everything read so far.
    text: String,
}

impl LogFollower {
    /// Reads until a whole line satisfies `matches`; returns that line.
    pub(crate) async fn until_line(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let found = tokio::time::timeout(timeout, async {
            let mut looked = 0;
            loop {
                // Only whole lines: the server sends whole lines, but a chunk may split one.
                let whole = self.text.rfind('\n').map_or(0, |end| end + 1);
                if let Some(line) = self.text[looked..whole].lines().find(|l| matches(l)) {
                    return Ok(Some(line.to_owned()));
                }
                looked = whole;
                match self.response.chunk().await? {
                    Some(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                    None => return Ok::<_, reqwest::Error>(None),
                }
            }
        })
        .await;
        match found {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("{} ended without {what}; log:\n{}", self.path, self.text),
            Ok(Err(e)) => bail!(
                "{} failed ({e}) before {what}; log:\n{}",
                self.path,
                self.text
            ),
            Err(_) => bail!(
                "no {what} in {} within {timeout:?}; log:\n{}",
                self.path,
                self.text
            ),
        }
    }

    /// Reads until the server ends the stream (the run has ended); returns the whole log.
    pub(crate) async fn until_end(mut self, timeout: Duration) -> anyhow::Result<String> {
        let ended = tokio::time::timeout(timeout, async {
            while let Some(chunk) = self.response.chunk().await? {
                self.text.push_str(&String::from_utf8_lossy(&chunk));
            }
            Ok::<_, reqwest::Error>(())
        })
        .await;
        match ended {
            Ok(Ok(())) => Ok(self.text),
            Ok(Err(e)) => bail!("{} failed ({e}); log so far:\n{}", self.path, self.text),
            Err(_) => bail!(
                "{} did not end within {timeout:?}; log so far:\n{}",
                self.path,
                self.text
            ),
        }
    }
}

/// An open Server-Sent Events stream.
#[derive(Debug)]
pub(crate) struct SseStream {
    path: String,
    response: reqwest::Response,
    parser: testkit::sse::SseParser,
}

/// One Server-Sent Event.
pub(crate) use testkit::sse::SseEvent;

impl SseStream {
    /// Reads events until one satisfies `done` and returns it.
    pub(crate) async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&SseEvent) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<SseEvent> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(timeout, async {
            loop {
                while let Some(event) = self.parser.next_event() {
                    if done(&event) {
                        return Ok(Some(event));
                    }
                    seen.push(event);
                }
                match self.response.chunk().await? {
                    Some(chunk) => self.parser.push(&chunk),
                    None => return Ok::<_, reqwest::Error>(None),
                }
            }
        })
        .await;
        match found {
            Ok(Ok(Some(event))) => Ok(event),
            Ok(Ok(None)) => bail!("{} ended without {what}; events: {seen:?}", self.path),
            Ok(Err(e)) => bail!("{} failed ({e}) before {what}; events: {seen:?}", self.path),
            Err(_) => bail!(
                "no {what} on {} within {timeout:?}; events: {seen:?}",
                self.path
            ),
        }
    }
}

pub(crate) use testkit::procfs::processes_in;

/// SIGKILLs every process [`processes_in`] `dir` finds, and waits until none is left. They are
/// not our children, so there is no exit to wait on: `/proc` is polled until the deadline.
pub(crate) async fn kill_processes_in(dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = processes_in(dir);
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "processes in {} still alive {timeout:?} after SIGKILL: {left:?}",
            dir.display()
        );
        for (pid, _) in &left {
            // It may have just exited: a failure here is checked by the next scan.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- Client commands ----

/// How long a client command (`eventual run …`) may take.
pub(crate) const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A child's output as text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the client command `eventual ARGS… --url SERVER` to its end.
pub(crate) async fn cli(server: &Running, args: &[&str]) -> anyhow::Result<Output> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--url", &server.url]);
    Launch::client(&all).output(CLI_TIMEOUT).await
}
