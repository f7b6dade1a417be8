//! Shared set-up for the sink's API tests: a real sink on `127.0.0.1:0` and a plain HTTP client.
//!
//! The same tests run against either backend: by default the embedded store; with
//! `EVENTUAL_TEST_BACKEND=postgres` every app gets a fresh database of a private PostgreSQL
//! server started for this test process (and an app "restarted" on the same `data_dir` gets the
//! same database back, so the persistence tests check the database's durability; the data
//! directory then holds only the stubs).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use serde_json::Value;
pub(crate) use sink::{Config, TestSink};

pub(crate) struct TestApp {
    pub(crate) sink: TestSink,
    pub(crate) http: reqwest::Client,
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sink.url())
    }

    pub(crate) async fn post_json(&self, key: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.sink.callback_url(key))
            .json(&body)
            .send()
            .await
            .expect("post reaches the sink")
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("get reaches the sink")
    }
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

pub(crate) async fn spawn_app_with(mut config: Config) -> TestApp {
    init_tracing();
    if on_postgres() {
        // The callbacks go to the database; the data directory keeps only the stubs.
        config.database = Some(database_for(config.data_dir.clone()).await);
    }
    TestApp {
        sink: TestSink::start_with(config).await,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

/// Asserts the SPEC error shape and returns `(code, message)`.
pub(crate) async fn error_of(response: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "error content type {ct}"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned();
    assert!(!message.is_empty());
    (code, message)
}

fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
    }
}

/// Whether this run tests the PostgreSQL backend (`EVENTUAL_TEST_BACKEND=postgres`).
pub(crate) fn on_postgres() -> bool {
    std::env::var("EVENTUAL_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The private server of this test process, started on first use.
pub(crate) fn postgres() -> &'static sink::TestPostgres {
    static SERVER: OnceLock<sink::TestPostgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        sink::TestPostgres::start().expect("EVENTUAL_TEST_BACKEND=postgres needs PostgreSQL")
    })
}

/// A fresh database, or for a `data_dir` seen before the database it was given then.
async fn database_for(data_dir: Option<PathBuf>) -> String {
    static BY_DIR: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let by_dir = BY_DIR.get_or_init(Mutex::default);
    if let Some(url) = data_dir
        .as_ref()
        .and_then(|d| by_dir.lock().unwrap().get(d).cloned())
    {
        return url;
    }
    let url = postgres()
        .fresh_database()
        .await
        .expect("failed to create a test database");
    if let Some(dir) = data_dir {
        by_dir.lock().unwrap().insert(dir, url.clone());
    }
    url
}
