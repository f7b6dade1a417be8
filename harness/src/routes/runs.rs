//! The runs routes: create (a typed, validated request), list, read, log, cancel, rerun.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde_json::Value;

use crate::{error::ApiError, runner::Harness};

use super::{
    extract::{ApiQuery, RunBody, RunId},
    new_run::NewRun,
    query::{ListQuery, LogQuery, LogRequest},
};

#[utoipa::path(
    post, path = "/api/runs", tag = "harness",
    request_body(content = crate::openapi::NewRunRequest, content_type = "application/json"),
    responses((status = 201, description = "The run", body = crate::Run), (status = 400, description = "`invalid_json`", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 409, description = "`conflict`: every environment is paused", body = sink::openapi::ErrorBody), (status = 413, description = "`too_large`: over 1 MiB", body = sink::openapi::ErrorBody), (status = 415, description = "`unsupported_kind`: not JSON", body = sink::openapi::ErrorBody), (status = 422, description = "`invalid_fields`, with `fields`", body = sink::openapi::ErrorBody))
)]
pub(super) async fn create_run(
    State(h): State<Harness>,
    RunBody(body): RunBody,
) -> Result<Response, ApiError> {
    h.refresh_catalog().await;
    let new = NewRun::validate(body, h.config().envs, h.catalog())?;
    let run = h.create_run(&new.username, new.env_id, &new.tests).await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

#[utoipa::path(
    get, path = "/api/runs", tag = "harness",
    params(
        ("env_id" = Option<u32>, Query, maximum = 4294967295.0, description = "Runs on this environment"),
        ("username" = Option<String>, Query, description = "Runs by this user"),
        ("status" = Option<crate::RunStatus>, Query, description = "Runs with this status"),
        ("test" = Option<String>, Query, description = "Runs of this test"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Runs per page, 1–1000 (default 50)"),
        ("before" = Option<i64>, Query, description = "A run id: the page after it"),
    ),
    responses((status = 200, description = "The runs, newest first", body = crate::openapi::RunList), (status = 400, description = "`invalid_query`", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn list_runs(
    State(h): State<Harness>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter()?;
    Ok(Json(
        serde_json::json!({ "runs": h.list_runs(&filter).await? }),
    ))
}

#[utoipa::path(
    get, path = "/api/runs/{id}", tag = "harness",
    params(("id" = i64, Path, description = "The run id")),
    responses((status = 200, description = "The run (plus `queue_position` while queued)", body = crate::Run), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn get_run(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Response, ApiError> {
    let run = h.get_run(id).await?;
    let mut value = serde_json::to_value(&run).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(position) = h.queue_position(&run).await {
        value["queue_position"] = position.into();
    }
    Ok(Json(value).into_response())
}

#[utoipa::path(
    get, path = "/api/runs/{id}/log", tag = "harness",
    params(
        ("id" = i64, Path, description = "The run id"),
        ("follow" = Option<bool>, Query, description = "Stream until the run ends"),
        ("offset" = Option<i64>, Query, description = "Lines to skip (negative: from the end)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Lines, 1–10000 (default 1000)"),
        ("download" = Option<bool>, Query, description = "The raw file as an attachment"),
    ),
    responses((status = 200, description = "The log (or its lines; `X-Log-Offset`, `X-Log-Lines` with a range)", body = String, content_type = "text/plain"), (status = 400, description = "`invalid_query`", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn run_log(
    State(h): State<Harness>,
    RunId(id): RunId,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let request = q.request()?;
    h.get_run(id).await?;
    let follow = match request {
        LogRequest::Whole { follow } => follow,
        LogRequest::Lines { offset, limit } => {
            return super::logs::lines(&h, id, offset, limit).await;
        }
        LogRequest::FollowFrom { offset } => return super::logs::follow_from(&h, id, offset).await,
        LogRequest::Download => return super::logs::download(&h, id).await,
    };
    let path = h.log_file(id).await?;
    let progress = if follow { h.follow_log(id).await } else { None };
    let stream =
        crate::logs::follow_file(path, progress).take_until(h.stopping().cancelled_owned());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(
    post, path = "/api/runs/{id}/cancel", tag = "harness",
    params(("id" = i64, Path, description = "The run id")),
    responses((status = 200, description = "The run, now `cancelled`", body = crate::Run), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody), (status = 409, description = "`conflict`: finished", body = sink::openapi::ErrorBody))
)]
pub(super) async fn cancel_run(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    let run = h.cancel(id).await?;
    Ok(Json(
        serde_json::to_value(run).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

/// `POST /api/runs/{id}/rerun`, optionally with `{"only": "failed"}`: the run again, or just
/// its tests that did not pass.
#[utoipa::path(
    post, path = "/api/runs/{id}/rerun", tag = "harness",
    params(("id" = i64, Path, description = "The run id")),
    request_body(content = crate::openapi::RerunRequest, content_type = "application/json", description = "Optional: `{\"only\": \"failed\"}`"),
    responses((status = 201, description = "A new run with the same username, env and tests", body = crate::Run), (status = 400, description = "`invalid_json`", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody), (status = 422, description = "every test passed, or another body", body = sink::openapi::ErrorBody))
)]
pub(super) async fn rerun(
    State(h): State<Harness>,
    RunId(id): RunId,
    body: Bytes,
) -> Result<Response, ApiError> {
    let failed_only = rerun_only_failed(&body)?;
    h.refresh_catalog().await;
    let again = NewRun::again(&h.get_run(id).await?, failed_only, h.catalog())?;
    let run = h
        .create_run(&again.username, again.env_id, &again.tests)
        .await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

/// Reads a rerun's optional body: nothing (every test), or `{"only": "failed"}`.
fn rerun_only_failed(body: &[u8]) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        message: format!(
            "the rerun body is not JSON ({e}): send nothing, or {{\"only\": \"failed\"}}"
        ),
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::Invalid(vec![(
            "body".into(),
            "must be an object: send nothing, or {\"only\": \"failed\"}".into(),
        )]));
    };
    let mut problems = Vec::new();
    let mut failed_only = false;
    for (name, v) in fields {
        match (name.as_str(), v.as_str()) {
            ("only", Some("failed")) => failed_only = true,
            ("only", _) => problems.push((
                name,
                format!("{v} is not a choice: the one choice is \"failed\""),
            )),
            _ => problems.push((
                name,
                "is not a field of a rerun: the one field is only".into(),
            )),
        }
    }
    if problems.is_empty() {
        Ok(failed_only)
    } else {
        Err(ApiError::Invalid(problems))
    }
}
