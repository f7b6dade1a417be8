//! The harness's OpenAPI 3.1 document, from the handlers' `#[utoipa::path]` annotations;
//! `eventual serve` merges it into the sink's `GET /openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi as _, ToSchema};

/// `GET /api/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Newest first.
    pub runs: Vec<crate::Run>,
}

/// `GET /api/tests`: what can be run, and what supports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogListing {
    /// Every test, sorted by path.
    pub tests: Vec<crate::catalog::TestInfo>,
    /// Support files (helpers, SUT scripts, data), sorted by path.
    pub support: Vec<crate::catalog::SupportInfo>,
    /// Each directory's `eventual.toml`.
    pub configs: Vec<crate::catalog::ConfigInfo>,
}

/// `GET /api/tests/{path}/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestHistory {
    /// The test.
    pub path: String,
    /// Its recent runs, newest first.
    pub runs: Vec<crate::history::TestRun>,
    /// How many of them ended (not pending or running).
    pub ended: usize,
    /// How many of those passed.
    pub passed: usize,
    /// `passed / ended`, or `null` before any ended.
    pub pass_rate: Option<f64>,
}

/// `GET /api/runs/{id}/log/sections`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogSections {
    /// Complete lines in the log so far.
    pub(crate) lines: u64,
    /// Each test's and each script's part of the log, in the order they started.
    pub(crate) sections: Vec<crate::log_index::Section>,
}

/// `GET /api/runs/{id}/log/search`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogSearch {
    /// What was searched for.
    pub(crate) query: String,
    /// Whether it was matched in any case.
    pub(crate) ignore_case: bool,
    /// Complete lines searched.
    pub(crate) lines: u64,
    /// Lines that hold it, in all.
    pub(crate) count: u64,
    /// The first of them (0-based line numbers), up to `limit`.
    pub(crate) matches: Vec<u64>,
    /// Whether `matches` stops short of `count`.
    pub(crate) truncated: bool,
}

/// `POST /api/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewRunRequest {
    /// Who starts it: 1–64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    /// An environment `1..=--envs`, or `"any"`.
    pub env_id: EnvChoice,
    /// Test paths, directories (`smoke/`) or tags (`tag:preparation`).
    #[schema(min_items = 1, inline)]
    pub tests: Vec<TestName>,
}

/// A test path, directory or tag.
#[derive(Debug, Serialize, ToSchema)]
#[schema(pattern = ".")]
pub struct TestName(String);

/// An environment id, or `"any"`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EnvChoice {
    /// `1..=--envs`.
    Id(u32),
    /// A free environment, else the one with the shortest queue.
    Any(Any),
}

/// `"any"`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Any {
    /// Any environment.
    Any,
}

/// `POST /api/runs/{id}/rerun`'s optional body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// Only the tests that did not pass.
    pub only: Only,
}

/// What a rerun runs again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Only {
    /// The tests that did not pass.
    Failed,
}

/// `POST /api/tests`'s multipart form.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upload {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Its directory in the catalog.
    pub dir: Option<String>,
    /// `true` to replace an existing upload.
    pub overwrite: Option<bool>,
}

/// `201` to `POST /api/tests`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// The catalog path it was stored as.
    pub path: String,
}

/// The harness's routes as an OpenAPI 3.1 document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = crate::routes::HarnessApi::openapi();
    // A rerun's body is optional: none reruns every test.
    sink::openapi::optional_body(&mut doc, "/api/runs/{id}/rerun");
    doc
}
