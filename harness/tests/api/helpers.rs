//! Shared set-up for the harness's API tests: a real harness on `127.0.0.1:0` over a temporary
//! data directory, the fixture tests of `fixtures/tests/` as its bundled catalog, and helpers
//! that wait on what the server says (log follow streams, SSE, polled state with a deadline)
//! instead of sleeping.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use futures_util::StreamExt;
use harness::{Config, Harness};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

/// How long any single wait in these tests may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The sink URL tests are told about (nothing listens there; `env.sh` only prints it).
pub(crate) const SINK_URL: &str = "http://127.0.0.1:9/test-sink";

/// The fixture tests, bundled into every test app's catalog.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tests")
}

/// A harness served on a free loopback port.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// Owned temporary data directory (absent when the caller owns the directory).
    _dir: Option<tempfile::TempDir>,
}

/// Starts a harness over a new temporary data directory; `tweak` adjusts the test defaults.
pub(crate) async fn spawn_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary data directory");
    let mut app = spawn_app_in(dir.path(), tweak).await;
    app._dir = Some(dir);
    app
}

/// Starts a harness over `data_dir`, which the caller keeps (for restart tests).
pub(crate) async fn spawn_app_in(data_dir: &Path, tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_tracing();
    let mut config = Config::new(data_dir.to_owned());
    config.sample_tests = Some(fixtures());
    config.envs = 4;
    config.workers = 4;
    config.test_timeout = Duration::from_secs(30);
    config.kill_grace = Duration::from_secs(1);
    config.sink_url = SINK_URL.to_owned();
    if on_postgres() {
        config.cluster = Some(harness::ClusterConfig {
            database: database_for(data_dir).await,
            node_name: "api-test".to_owned(),
            address: "http://127.0.0.1:0".to_owned(),
            node_timeout: Duration::from_secs(10),
        });
    }
    tweak(&mut config);
    let harness = Harness::open(config).await.expect("the harness opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    let (shutdown, stop) = oneshot::channel::<()>();
    // The accept loop `eventual serve` uses (HTTP/1.1 and HTTP/2, its limits).
    let server = tokio::spawn(async move {
        sink::serve(
            listener,
            harness::router(harness),
            tokio_util::sync::CancellationToken::new(),
            async {
                let _ = stop.await;
            },
            &sink::ServeOptions::default(),
        )
        .await
        .expect("the server runs");
    });
    TestApp {
        addr,
        data_dir: data_dir.to_owned(),
        http: reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .expect("http client"),
        shutdown: Some(shutdown),
        server: Some(server),
        _dir: None,
    }
}

/// Whether this run tests cluster mode (`EVENTUAL_TEST_BACKEND=postgres`): every app is a
/// single node on a fresh PostgreSQL database (the same one again for a data dir seen before,
/// so restart tests restart the node).
pub(crate) fn on_postgres() -> bool {
    std::env::var("EVENTUAL_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A fresh database of this process's private PostgreSQL, or for a `data_dir` seen before the
/// database it was given then.
async fn database_for(data_dir: &Path) -> String {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock},
    };
    static SERVER: OnceLock<sink::TestPostgres> = OnceLock::new();
    static BY_DIR: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let by_dir = BY_DIR.get_or_init(Mutex::default);
    if let Some(url) = by_dir.lock().unwrap().get(data_dir).cloned() {
        return url;
    }
    let server = tokio::task::spawn_blocking(|| {
        SERVER.get_or_init(|| {
            sink::TestPostgres::start().expect("EVENTUAL_TEST_BACKEND=postgres needs PostgreSQL")
        })
    })
    .await
    .expect("join");
    let url = server
        .fresh_database()
        .await
        .expect("failed to create a test database");
    by_dir
        .lock()
        .unwrap()
        .insert(data_dir.to_owned(), url.clone());
    url
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} reaches the harness: {e}"))
    }

    pub(crate) async fn post(&self, path: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} reaches the harness: {e}"))
    }

    pub(crate) async fn request(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.http
            .request(method.clone(), self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} reaches the harness: {e}"))
    }

    pub(crate) async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, path).await
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} reaches the harness: {e}"))
    }

    /// `GET path`, asserting `200` and a JSON body.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        json_of(self.get(path).await, 200).await
    }

    /// `POST /api/runs`, asserting `201`; returns the run.
    pub(crate) async fn create_run(&self, username: &str, env_id: u32, tests: &[&str]) -> Value {
        let body = json!({ "username": username, "env_id": env_id, "tests": tests });
        json_of(self.post_json("/api/runs", &body).await, 201).await
    }

    /// `GET /api/runs/{id}`.
    pub(crate) async fn run(&self, id: i64) -> Value {
        self.get_json(&format!("/api/runs/{id}")).await
    }

    /// Follows the run's log to its end (the stream ends only once the run has its final
    /// status) and returns the run.
    pub(crate) async fn wait_finished(&self, id: i64) -> Value {
        self.follow_log(id).await;
        let run = self.run(id).await;
        let status = run["status"].as_str().unwrap_or("");
        assert!(
            !matches!(status, "queued" | "running"),
            "the log of run {id} ended but the run is still {status}: {run}"
        );
        run
    }

    /// The whole log of a run, read through `?follow=true` (so it is complete).
    pub(crate) async fn follow_log(&self, id: i64) -> String {
        let path = format!("/api/runs/{id}/log?follow=true");
        let response = self.get(&path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        tokio::time::timeout(PATIENCE, response.text())
            .await
            .unwrap_or_else(|_| panic!("the log of run {id} did not end within {PATIENCE:?}"))
            .expect("the log streams to its end")
    }

    /// The log as it is now (`GET /api/runs/{id}/log` without follow).
    pub(crate) async fn log(&self, id: i64) -> String {
        let response = self.get(&format!("/api/runs/{id}/log")).await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("log text")
    }

    /// Follows the run's log until a line ends with `suffix`; returns the log up to there.
    pub(crate) async fn wait_for_log_line(&self, id: i64, suffix: &str) -> String {
        let response = self.get(&format!("/api/runs/{id}/log?follow=true")).await;
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if text.lines().any(|l| l.ends_with(suffix)) {
                return text;
            }
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(e))) => panic!("reading the log of run {id}: {e}"),
                Ok(None) => panic!(
                    "the log of run {id} ended without a line ending with {suffix:?}:\n{text}"
                ),
                Err(_) => panic!(
                    "no line ending with {suffix:?} in the log of run {id} within {PATIENCE:?}:\n{text}"
                ),
            }
        }
    }

    /// Waits until `done` holds for `GET path`'s JSON, or fails after [`PATIENCE`]: reads it,
    /// and after each read that does not satisfy `done` waits for the next change the harness
    /// announces on `/api/events` (a `run` or `env` event). The stream is open before the first
    /// read, so a change between a read and the wait is never missed; nothing spins.
    pub(crate) async fn wait_json(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut changes = self.sse("/api/events").await;
        loop {
            let value = self.get_json(path).await;
            if done(&value) {
                return value;
            }
            if changes.next().await.is_none() {
                panic!(
                    "the event stream ended before GET {path} reached the expected state; last: {value}"
                );
            }
        }
    }

    /// One environment as `GET /api/envs` shows it.
    pub(crate) async fn env(&self, id: u32) -> Value {
        let envs = self.get_json("/api/envs").await;
        envs.as_array()
            .and_then(|list| list.iter().find(|e| e["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("environment {id} is listed: {envs}"))
    }

    /// `POST /api/tests` with a hand-built multipart body (so names can hold anything).
    pub(crate) async fn upload(&self, parts: &[Part<'_>]) -> reqwest::Response {
        let boundary = "eventual-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for part in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match part {
                Part::Text(name, value) => {
                    body.extend_from_slice(
                        format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                            .as_bytes(),
                    );
                    body.extend_from_slice(value.as_bytes());
                }
                Part::File(filename, contents) => {
                    body.extend_from_slice(
                        format!(
                            "Content-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                             Content-Type: application/octet-stream\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    body.extend_from_slice(contents);
                }
            }
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.http
            .post(self.url("/api/tests"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("POST /api/tests reaches the harness")
    }

    /// Subscribes to a Server-Sent Events route, asserting `200 text/event-stream`.
    pub(crate) async fn sse(&self, path: &str) -> SseStream {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let ct = header(&response, "content-type");
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        SseStream {
            stream: Box::pin(response.bytes_stream()),
            parser: testkit::sse::SseParser::default(),
        }
    }

    /// Stops the server gracefully and waits until it has let go of the harness.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(PATIENCE, server)
                .await
                .expect("the server stops in time")
                .expect("the server task ends cleanly");
        }
    }
}

/// A part of a multipart upload.
pub(crate) enum Part<'a> {
    /// A text field: name, value.
    Text(&'a str, &'a str),
    /// The `file` field: file name, contents.
    File(&'a str, &'a [u8]),
}

/// An open Server-Sent Events stream.
pub(crate) struct SseStream {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: testkit::sse::SseParser,
}

/// One Server-Sent Event.
pub(crate) use testkit::sse::SseEvent;

impl SseStream {
    /// The next event, `None` when the stream ended; fails the test if none comes in time.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.parser.push(&chunk),
                Ok(Some(Err(e))) => panic!("the event stream failed: {e}"),
                Ok(None) => return None,
                Err(_) => panic!(
                    "no event within {PATIENCE:?} (buffered: {:?})",
                    self.parser.pending()
                ),
            }
        }
    }

    /// Events until one matches `done` (included); fails if the stream ends first.
    pub(crate) async fn until(&mut self, done: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended before the awaited event: {seen:?}"));
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
    }
}

/// Asserts `status` and a JSON body; returns the body.
pub(crate) async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.expect("a response body");
    assert_eq!(got, status, "{url} answered {got}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url} answered JSON ({e}): {text}"))
}

/// Asserts `status` and SPEC's error body `{"error": {"code", "message"}}`, with `code`;
/// returns the whole body.
pub(crate) async fn error_of(response: reqwest::Response, status: u16, code: &str) -> Value {
    let ct = header(&response, "content-type");
    let body = json_of(response, status).await;
    assert!(
        ct.starts_with("application/json"),
        "error content type {ct}"
    );
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "the error has a message: {body}");
    body
}

pub(crate) fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The id of a run JSON.
pub(crate) fn id_of(run: &Value) -> i64 {
    run["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a run has an id: {run}"))
}

/// The statuses of a run's tests, in order.
pub(crate) fn test_statuses(run: &Value) -> Vec<String> {
    run["tests"]
        .as_array()
        .unwrap_or_else(|| panic!("a run has tests: {run}"))
        .iter()
        .map(|t| t["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Asserts SPEC's log line shape: `2026-11-23T18:02:11.042Z out|err|--- text`; returns
/// `(tag, text)`.
pub(crate) fn parse_log_line(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        range
            .clone()
            .all(|i| bytes.get(i).is_some_and(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    let timestamp_ok = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19)
        && at(19, b'.')
        && digits(20..23)
        && at(23, b'Z')
        && at(24, b' ');
    assert!(
        timestamp_ok,
        "log line without an RFC 3339 ms timestamp: {line:?}"
    );
    let rest = &line[25..];
    let (tag, text) = rest.split_at(rest.len().min(3));
    assert!(
        matches!(tag, "out" | "err" | "---") && text.starts_with(' '),
        "log line without an out/err/--- tag: {line:?}"
    );
    (tag, &text[1..])
}

/// Whether a process still runs (a zombie has ended).
pub(crate) fn alive(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(testkit::procfs::alive)
}

/// The pids `hang.sh` recorded in its working directory (`<data_dir>/runs/<id>/work/pids`).
pub(crate) fn hang_pids(app: &TestApp, run_id: i64) -> Vec<i32> {
    let file = app
        .data_dir
        .join("runs")
        .join(run_id.to_string())
        .join("work/pids");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("hang.sh wrote {} ({e})", file.display()));
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 4, "self, child, sleep, grandchild: {text:?}");
    pids
}

fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
    }
}
