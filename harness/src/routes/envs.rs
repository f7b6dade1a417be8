//! The environments routes: the board, pause and resume.

use axum::{Json, extract::State};
use serde_json::Value;

use crate::{error::ApiError, runner::Harness};

use super::extract::EnvId;

pub(super) async fn list_envs(State(h): State<Harness>) -> Json<Value> {
    Json(serde_json::to_value(h.envs().await).unwrap_or_default())
}

pub(super) async fn pause_env(
    State(h): State<Harness>,
    EnvId(id): EnvId,
) -> Result<Json<Value>, ApiError> {
    let view = h.pause(id).await?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

pub(super) async fn resume_env(
    State(h): State<Harness>,
    EnvId(id): EnvId,
) -> Result<Json<Value>, ApiError> {
    let view = h.resume(id).await?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}
