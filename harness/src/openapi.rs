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

/// `POST /api/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewRunRequest {
    /// Who starts it: 1–64 characters.
    pub username: String,
    /// An environment `1..=--envs`, or `"any"`.
    #[schema(value_type = Object)]
    pub env_id: serde_json::Value,
    /// Test paths, directories (`smoke/`) or tags (`tag:preparation`).
    pub tests: Vec<String>,
}

/// `POST /api/runs/{id}/rerun`'s optional body.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerunRequest {
    /// `"failed"`: only the tests that did not pass.
    pub only: Option<String>,
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
    crate::routes::HarnessApi::openapi()
}
