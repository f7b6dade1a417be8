//! `GET /metrics` (Prometheus), and the layer counting what posted callbacks were answered.

use axum::{
    extract::{Request, State},
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

/// Counts the answers of `POST /callbacks` by their status, whichever gave them: the handler
/// (`200`, `507`, `400`…), the body limit (`413`) or the route itself (`405` to a `PUT` or
/// `PATCH`). Only that route has this layer: `/callbacks/{key}` counts its answers in its
/// handler ([`counted`]), which spares the hot path a boxed future and service per callback.
/// Reads (`GET`, `DELETE`) on the route are not counted.
pub(super) async fn count_callbacks(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_ingest = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    let response = next.run(request).await;
    if is_ingest {
        state
            .metrics()
            .callback_answered(response.status().as_u16());
    }
    response
}

/// `answer` as a response, counted as an answer to a posted callback.
pub(super) fn counted(state: &AppState, answer: Result<Response, ApiError>) -> Response {
    let response = answer.unwrap_or_else(IntoResponse::into_response);
    state
        .metrics()
        .callback_answered(response.status().as_u16());
    response
}
