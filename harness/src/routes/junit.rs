//! `GET /api/runs/{id}/junit.xml`: the run as JUnit XML (see `junit/`). A run that has not ended
//! is answered as far as it has got — tests not yet ended are `skipped` with a message saying so
//! — rather than `409`, so a dashboard can show progress; `eventual run --junit` asks only once
//! the run has ended.

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, runner::Harness};

use super::extract::RunId;

#[utoipa::path(
    get, path = "/api/runs/{id}/junit.xml", tag = "harness",
    params(("id" = i64, Path, description = "The run id")),
    responses((status = 200, description = "The run as JUnit XML (so far, if it has not ended)", body = String, content_type = "application/xml"), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn run_junit(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Response, ApiError> {
    let run = h.get_run(id).await?;
    let log = h.log_file(id).await?;
    let pytest_xml = (0..run.tests.len())
        .map(|i| h.junit_path(id, i))
        .collect::<Vec<_>>();
    let xml = tokio::task::spawn_blocking(move || crate::junit::render(&run, &log, &pytest_xml))
        .await
        .map_err(|e| ApiError::Internal(format!("the JUnit report of run {id} failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("failed to read the log of run {id}: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        )],
        xml,
    )
        .into_response())
}
