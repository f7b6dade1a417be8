//! The catalog routes: list, read, upload and delete tests, support files and configurations.

use axum::{
    Json,
    extract::{Multipart, Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    catalog::{TestPath, UploadError},
    error::ApiError,
    model::TestStatus,
    openapi::{CatalogListing, TestHistory},
    runner::Harness,
};

use super::{extract::ApiQuery, query::HistoryQuery};

#[utoipa::path(
    get, path = "/api/tests", tag = "harness",
    responses((status = 200, description = "The tests, support files and `eventual.toml`s", body = crate::openapi::CatalogListing), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn list_tests(State(h): State<Harness>) -> Json<CatalogListing> {
    h.refresh_catalog().await;
    let (tests, support) = h.catalog().listing();
    Json(CatalogListing {
        tests,
        support,
        configs: h.catalog().configs(),
    })
}

#[utoipa::path(
    get, path = "/api/tests/{path}", tag = "harness",
    params(("path" = String, Path, description = "A catalog path, e.g. `smoke/hello.sh`")),
    responses((status = 200, description = "The source text of a test, support file or `eventual.toml`", body = String, content_type = "text/plain"), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`", body = sink::openapi::ErrorBody), (status = 422, description = "`invalid_path`: not a catalog path", body = sink::openapi::ErrorBody))
)]
pub(super) async fn test_source(
    State(h): State<Harness>,
    Path(path): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    h.refresh_catalog().await;
    // `{path}/history` (the wildcard takes the whole rest of the URL), unless a file has
    // that very path.
    if let Some(test) = path.strip_suffix("/history") {
        let whole = TestPath::parse(&path).ok();
        if whole.is_none_or(|p| h.catalog().resolve_file(&p).is_none()) {
            return test_history(&h, test, q.limit()?).await;
        }
    }
    let test = TestPath::parse(&path).map_err(ApiError::InvalidPath)?;
    let file = h.catalog().resolve_file(&test).ok_or_else(|| {
        ApiError::NotFound(format!(
            "there is no test {path}: GET /api/tests lists them"
        ))
    })?;
    let text = tokio::fs::read(&file)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {}: {e}", file.display())))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// `DELETE /api/tests/{path}`: an upload (test, support file or `eventual.toml`) → `204`.
#[utoipa::path(
    delete, path = "/api/tests/{path}", tag = "harness",
    params(("path" = String, Path, description = "A catalog path, e.g. `smoke/hello.sh`")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`", body = sink::openapi::ErrorBody), (status = 422, description = "`invalid_path`: not a catalog path", body = sink::openapi::ErrorBody), (status = 409, description = "`conflict`: a bundled file, or a queued or running run names the test", body = sink::openapi::ErrorBody))
)]
pub(super) async fn delete_test(
    State(h): State<Harness>,
    Path(path): Path<String>,
) -> Result<StatusCode, ApiError> {
    h.refresh_catalog().await;
    let test = TestPath::parse(&path).map_err(ApiError::InvalidPath)?;
    h.check_upload_unused(&test).await?;
    let harness = h.clone();
    let deleted = test.clone();
    tokio::task::spawn_blocking(move || harness.delete_upload(&deleted))
        .await
        .map_err(|e| ApiError::Internal(format!("the delete task failed: {e}")))??;
    h.unshare_upload(&test).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/tests", tag = "harness",
    request_body(description = "`file`, `dir` (new or existing, nested), `overwrite=true`", content_type = "multipart/form-data", content = crate::openapi::Upload),
    responses((status = 201, description = "Uploaded", body = crate::openapi::Uploaded), (status = 400, description = "`invalid_multipart`: not multipart", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 409, description = "`conflict`: exists", body = sink::openapi::ErrorBody), (status = 413, description = "`too_large`: over `--max-upload`", body = sink::openapi::ErrorBody), (status = 415, description = "`unsupported_kind`: a test that is not `.py`/`.sh`", body = sink::openapi::ErrorBody), (status = 422, description = "`invalid_path`, `invalid_config` (with `problems`), `invalid_fields` (with `fields`)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn upload_test(
    State(h): State<Harness>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    h.refresh_catalog().await;
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest {
        code: "invalid_multipart",
        message: format!(
            "send multipart/form-data with fields `file`, `dir` and optionally `overwrite` ({e})"
        ),
    })?;
    let max = h.config().max_upload;
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut dir = String::new();
    let mut overwrite = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(max)),
            Err(e) => {
                return Err(ApiError::BadRequest {
                    code: "invalid_multipart",
                    message: format!("the multipart body does not parse: {e}"),
                });
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().unwrap_or("").to_owned();
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large(max)
                    } else {
                        ApiError::BadRequest {
                            code: "invalid_multipart",
                            message: format!("reading `file`: {e}"),
                        }
                    }
                })?;
                if bytes.len() > max {
                    return Err(too_large(max));
                }
                file = Some((filename, bytes.to_vec()));
            }
            "dir" => dir = field.text().await.unwrap_or_default(),
            "overwrite" => {
                overwrite = matches!(
                    field.text().await.unwrap_or_default().trim(),
                    "true" | "1" | "on" | "yes"
                )
            }
            _ => {}
        }
    }
    let (filename, bytes) = file.ok_or_else(|| {
        ApiError::Invalid(vec![(
            "file".into(),
            "missing: send the test as a multipart field named `file`".into(),
        )])
    })?;
    if filename.is_empty() {
        return Err(ApiError::Invalid(vec![(
            "file".into(),
            "the `file` field has no file name".into(),
        )]));
    }
    if bytes.is_empty() {
        return Err(ApiError::Invalid(vec![(
            "file".into(),
            format!("{filename} is empty"),
        )]));
    }
    let catalog = h.catalog().clone();
    let contents = bytes.clone();
    let stored =
        tokio::task::spawn_blocking(move || catalog.upload(&dir, &filename, &bytes, overwrite))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Ok(path) = &stored {
        h.share_upload(path, &contents).await?;
    }
    match stored {
        Ok(path) => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "path": path.as_str() })),
        )
            .into_response()),
        Err(UploadError::InvalidPath(m)) => Err(ApiError::InvalidPath(m)),
        Err(UploadError::Unsupported(m)) => Err(ApiError::Unsupported(m)),
        Err(UploadError::Exists(m)) => Err(ApiError::Conflict(m)),
        Err(UploadError::InvalidConfig(problems)) => Err(ApiError::InvalidConfig(problems)),
        Err(UploadError::Io(e)) => Err(ApiError::Internal(e.to_string())),
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "the upload is larger than {max} bytes: split it, or start the server with a larger --max-upload"
    ))
}

/// `GET /api/tests/{path}/history`: the test's recent runs (newest first), its pass rate among
/// the ended ones. A test no longer in the catalog still has its history.
#[utoipa::path(
    get, path = "/api/tests/{path}/history", tag = "harness",
    params(("path" = String, Path, description = "A catalog path, e.g. `smoke/hello.sh`"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Runs to list, ≤ 1000 (default 50)")),
    responses((status = 200, description = "The test's recent runs, newest first, and its pass rate", body = crate::openapi::TestHistory), (status = 400, description = "`invalid_query`", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: neither the test nor a run of it", body = sink::openapi::ErrorBody), (status = 422, description = "`invalid_path`: not a catalog path", body = sink::openapi::ErrorBody))
)]
pub(super) async fn test_history(
    h: &Harness,
    path: &str,
    limit: u32,
) -> Result<Response, ApiError> {
    let test = TestPath::parse(path).map_err(ApiError::InvalidPath)?;
    let runs = h.test_history(test.as_str(), limit).await?;
    if runs.is_empty() && h.catalog().resolve(&test).is_none() {
        return Err(ApiError::NotFound(format!(
            "there is no test {path} and no run of it: GET /api/tests lists them"
        )));
    }
    let ended: Vec<_> = runs
        .iter()
        .filter(|r| !matches!(r.status, TestStatus::Pending | TestStatus::Running))
        .collect();
    let passed = ended
        .iter()
        .filter(|r| r.status == TestStatus::Passed)
        .count();
    let pass_rate = (!ended.is_empty()).then(|| passed as f64 / ended.len() as f64);
    let ended = ended.len();
    Ok(Json(TestHistory {
        path: test.as_str().to_owned(),
        runs,
        ended,
        passed,
        pass_rate,
    })
    .into_response())
}
