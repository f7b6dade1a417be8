//! `GET /metrics` (Prometheus), and the layer counting what posted callbacks were answered.

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::state::AppState;
use crate::{error::ApiError, metrics::CONTENT_TYPE};

/// The sink's series (and the harness's, under `serve`) in the OpenMetrics text format.
#[utoipa::path(
    get, path = "/metrics", tag = "sink",
    responses((status = 200, description = "The series in the OpenMetrics text format", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
pub(super) async fn scrape(State(state): State<AppState>) -> Response {
    let backend = state.backend();
    let stored = match backend.len().await {
        Ok(stored) => stored,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match state.metrics().render(stored, backend.waiting()).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("failed to encode the metrics: {e}")).into_response(),
    }
}

/// Counts every answer to a posted callback by its status, whichever layer gave it: the handler
/// (`200`, `507`, `400`), the body limit (`413`) or, being outermost, authentication. Routes are
/// told apart by their pattern, so reads and unknown paths are not counted.
pub(super) async fn count_callbacks(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_ingest = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) && request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| matches!(p.as_str(), "/callbacks" | "/callbacks/{key}"));
    let response = next.run(request).await;
    if is_ingest {
        state
            .metrics()
            .callback_answered(response.status().as_u16());
    }
    response
}
