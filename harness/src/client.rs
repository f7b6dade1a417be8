//! A typed client for a running harness (`eventual run`, `upload`, `runs`, `show`).

use std::path::Path;

use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::model::{EnvState, EnvView, Run};

/// What went wrong talking to the harness.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or its answer read.
    #[error("failed to reach the server at {url}: {source}")]
    Connect {
        /// The server's base URL.
        url: String,
        /// What reqwest said.
        source: reqwest::Error,
    },
    /// The server answered with an error body.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error's `code`.
        code: String,
        /// The error's `message`.
        message: String,
    },
    /// A local file could not be read.
    #[error("failed to read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A JSON answer read as `T`; a shape this client does not understand is a `bad_response`.
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Api {
        status: 200,
        code: "bad_response".into(),
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A client for the harness at `base_url`.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `base_url` (`http://127.0.0.1:7700`), with an optional bearer token.
    pub fn new(base_url: &str, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base_url.trim_end_matches('/').to_owned(),
            token,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = req.send().await.map_err(|source| self.connect(source))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: format!("http_{status}"),
                message: text.chars().take(200).collect(),
            },
        })
    }

    fn connect(&self, source: reqwest::Error) -> ClientError {
        ClientError::Connect {
            url: self.base.clone(),
            source,
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        self.send(req)
            .await?
            .json()
            .await
            .map_err(|source| self.connect(source))
    }

    /// Submits a run on `env_id` (`None`: any environment, the server picks).
    pub async fn create_run(
        &self,
        username: &str,
        env_id: Option<u32>,
        tests: &[String],
    ) -> Result<Run, ClientError> {
        let env: Value = env_id.map_or_else(|| "any".into(), Into::into);
        let body = serde_json::json!({ "username": username, "env_id": env, "tests": tests });
        self.json(self.req(reqwest::Method::POST, "/api/runs").json(&body))
            .await
    }

    /// One run, with `queue_position` while queued.
    pub async fn run(&self, id: i64) -> Result<(Run, Option<u64>), ClientError> {
        let value = self.run_json(id).await?;
        let position = value.get("queue_position").and_then(Value::as_u64);
        Ok((typed(value)?, position))
    }

    /// One run exactly as `GET /api/runs/{id}` answers it (for `--json`: fields this client
    /// does not know are kept).
    pub async fn run_json(&self, id: i64) -> Result<Value, ClientError> {
        self.json(self.req(reqwest::Method::GET, &format!("/api/runs/{id}")))
            .await
    }

    /// Runs, newest first, with the given query string (`env_id=3&status=failed`).
    pub async fn runs(&self, query: &[(&str, String)]) -> Result<Vec<Run>, ClientError> {
        #[derive(Deserialize)]
        struct Runs {
            runs: Vec<Run>,
        }
        let body: Runs = typed(self.runs_json(query).await?)?;
        Ok(body.runs)
    }

    /// `GET /api/runs` exactly as the server answers it: `{"runs": […]}`.
    pub async fn runs_json(&self, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.json(self.req(reqwest::Method::GET, "/api/runs").query(query))
            .await
    }

    /// Every environment.
    pub async fn envs(&self) -> Result<Vec<EnvView>, ClientError> {
        #[derive(Deserialize)]
        struct Env {
            id: u32,
            state: EnvState,
            run_id: Option<i64>,
            since: Option<String>,
            queued: Vec<i64>,
        }
        let envs: Vec<Env> = self
            .json(self.req(reqwest::Method::GET, "/api/envs"))
            .await?;
        Ok(envs
            .into_iter()
            .map(|e| EnvView {
                id: e.id,
                state: e.state,
                run_id: e.run_id,
                username: None,
                since: e.since,
                queued: e.queued,
                node: None,
            })
            .collect())
    }

    /// The run's log; with `follow`, streamed until the run ends.
    pub async fn log(
        &self,
        id: i64,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, ClientError>> + use<>, ClientError> {
        let path = format!(
            "/api/runs/{id}/log{}",
            if follow { "?follow=true" } else { "" }
        );
        let base = self.base.clone();
        let response = self.send(self.req(reqwest::Method::GET, &path)).await?;
        Ok(response.bytes_stream().map(move |chunk| {
            chunk.map_err(|source| ClientError::Connect {
                url: base.clone(),
                source,
            })
        }))
    }

    /// The run as JUnit XML (`GET /api/runs/{id}/junit.xml`).
    pub async fn junit(&self, id: i64) -> Result<String, ClientError> {
        let path = format!("/api/runs/{id}/junit.xml");
        self.send(self.req(reqwest::Method::GET, &path))
            .await?
            .text()
            .await
            .map_err(|source| self.connect(source))
    }

    /// Runs a run again (`failed_only`: just its tests that did not pass).
    pub async fn rerun(&self, id: i64, failed_only: bool) -> Result<Run, ClientError> {
        let mut req = self.req(reqwest::Method::POST, &format!("/api/runs/{id}/rerun"));
        if failed_only {
            req = req.json(&serde_json::json!({ "only": "failed" }));
        }
        self.json(req).await
    }

    /// Cancels a run.
    pub async fn cancel(&self, id: i64) -> Result<Run, ClientError> {
        self.json(self.req(reqwest::Method::POST, &format!("/api/runs/{id}/cancel")))
            .await
    }

    /// Uploads `file` into catalog directory `dir`.
    pub async fn upload(
        &self,
        file: &Path,
        dir: &str,
        overwrite: bool,
    ) -> Result<String, ClientError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| ClientError::File {
                path: file.display().to_string(),
                source,
            })?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            )
            .text("dir", dir.to_owned())
            .text("overwrite", overwrite.to_string());
        let body: Value = self
            .json(
                self.req(reqwest::Method::POST, "/api/tests")
                    .multipart(form),
            )
            .await?;
        Ok(body["path"].as_str().unwrap_or_default().to_owned())
    }
}
