//! The environments routes: the board, pause and resume.

use axum::{Json, extract::State};
use serde_json::Value;

use crate::{error::ApiError, runner::Harness};

use super::extract::EnvId;

#[utoipa::path(
    get, path = "/api/envs", tag = "harness",
    responses((status = 200, description = "The environments", body = Vec<crate::EnvView>), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn list_envs(State(h): State<Harness>) -> Json<Value> {
    Json(serde_json::to_value(h.envs().await).unwrap_or_default())
}

#[utoipa::path(
    post, path = "/api/envs/{id}/pause", tag = "harness",
    params(("id" = u32, Path, description = "The environment, 1..=--envs")),
    responses((status = 200, description = "The environment, paused", body = crate::EnvView), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such environment", body = sink::openapi::ErrorBody))
)]
pub(super) async fn pause_env(
    State(h): State<Harness>,
    EnvId(id): EnvId,
) -> Result<Json<Value>, ApiError> {
    let view = h.pause(id).await?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

#[utoipa::path(
    post, path = "/api/envs/{id}/resume", tag = "harness",
    params(("id" = u32, Path, description = "The environment, 1..=--envs")),
    responses((status = 200, description = "The environment, resumed", body = crate::EnvView), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such environment", body = sink::openapi::ErrorBody))
)]
pub(super) async fn resume_env(
    State(h): State<Harness>,
    EnvId(id): EnvId,
) -> Result<Json<Value>, ApiError> {
    let view = h.resume(id).await?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}
