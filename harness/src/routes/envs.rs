//! The environments routes: the board, pause and resume; the cluster's nodes.

use axum::{Json, extract::State};
use serde_json::Value;

use crate::{error::ApiError, runner::Harness};

use super::extract::EnvId;

#[utoipa::path(
    get, path = "/api/envs", tag = "harness",
    responses((status = 200, description = "The environments", body = Vec<crate::EnvView>), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn list_envs(State(h): State<Harness>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(h.envs().await?).unwrap_or_default(),
    ))
}

#[utoipa::path(
    get, path = "/api/nodes", tag = "harness",
    responses((status = 200, description = "Cluster mode: every node with its heartbeat, workers and the runs it executes; `[]` on a single process", body = Vec<crate::nodes::NodeView>), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 503, description = "`database_unavailable`: the cluster's database cannot answer", body = sink::openapi::ErrorBody))
)]
pub(super) async fn list_nodes(State(h): State<Harness>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(h.nodes().await?).unwrap_or_default(),
    ))
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
