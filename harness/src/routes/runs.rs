//! The runs routes: create (a typed, validated request), list, read, log, cancel, rerun.

use axum::{
    Json,
    body::Body,
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

pub(super) async fn create_run(
    State(h): State<Harness>,
    RunBody(body): RunBody,
) -> Result<Response, ApiError> {
    let new = NewRun::validate(body, h.config().envs, h.catalog())?;
    let run = h.create_run(&new.username, new.env_id, &new.tests).await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

pub(super) async fn list_runs(
    State(h): State<Harness>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter()?;
    Ok(Json(
        serde_json::json!({ "runs": h.list_runs(&filter).await? }),
    ))
}

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
    let progress = if follow { h.log_progress(id) } else { None };
    let stream = crate::logs::follow_file(h.log_path(id), progress)
        .take_until(h.stopping().cancelled_owned());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

pub(super) async fn cancel_run(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    let run = h.cancel(id).await?;
    Ok(Json(
        serde_json::to_value(run).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

pub(super) async fn rerun(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Response, ApiError> {
    let again = NewRun::again(&h.get_run(id).await?, h.catalog())?;
    let run = h
        .create_run(&again.username, again.env_id, &again.tests)
        .await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}
