//! Shared set-up for the sink's API tests: a real sink on `127.0.0.1:0` and a plain HTTP client.

use std::time::Duration;

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

pub(crate) async fn spawn_app_with(config: Config) -> TestApp {
    init_tracing();
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
