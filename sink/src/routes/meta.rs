//! Outside the callback API proper: `/healthz`, the JSON 404/405 fallbacks, the empty key, and
//! the JSON response every route answers with.

use axum::{
    body::Bytes,
    extract::{OriginalUri, State},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::state::AppState;
use crate::error::ApiError;

#[utoipa::path(
    get, path = "/healthz", tag = "sink",
    responses((status = 200, description = "The sink is up", body = crate::openapi::Health))
)]
pub(super) async fn healthz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let callbacks = state.backend().len().await?;
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "callbacks": callbacks,
            "waiting": state.backend().waiting(),
        })
        .to_string()
        .into(),
    ))
}

/// The OpenAPI 3.1 document of every route this server answers.
#[utoipa::path(
    get, path = "/openapi.json", tag = "sink",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
pub(super) async fn openapi_json(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, state.openapi_json())
}

pub(super) async fn route_not_found(uri: OriginalUri) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {}: see the API table in README.md (keys in paths must be URL-encoded)",
        uri.path()
    ))
}

pub(super) async fn method_not_allowed(method: Method, uri: OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}: see the API table in README.md",
        uri.path()
    ))
}

pub(super) async fn empty_key() -> ApiError {
    ApiError::InvalidKey("the key is empty: use /callbacks/{key} with a non-empty key".into())
}

/// `body` (already JSON) with `Content-Type: application/json`.
pub(super) fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
