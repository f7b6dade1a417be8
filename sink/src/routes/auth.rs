//! `--token`: reading and deleting need the bearer token; posting callbacks and `/healthz` do not.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::state::AppState;
use crate::error::ApiError;

/// With `--token`, everything but posting callbacks and `/healthz` needs the bearer token.
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.config().token.as_deref() else {
        return next.run(request).await;
    };
    // (Only installed when a token is configured; the check above is belt and braces.)
    let is_ingest = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    if is_ingest || request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    if presented_token_matches(request.headers(), token) {
        next.run(request).await
    } else {
        ApiError::Unauthorized(
            "this sink needs `Authorization: Bearer <token>` to read or delete callbacks (the --token it was started with)".into(),
        )
        .into_response()
    }
}

/// Whether the request carries `token`: as `Authorization: Bearer <token>`, or as the
/// `eventual_token` cookie the web UI sets (a browser's EventSource cannot send headers).
pub fn presented_token_matches(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("eventual_token="))
        .and_then(|c| percent_encoding::percent_decode_str(c).decode_utf8().ok());
    bearer.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
        || cookie.is_some_and(|c| constant_time_eq(c.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
