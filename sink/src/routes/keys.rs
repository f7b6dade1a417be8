//! Keys: listing by prefix (paged), deleting one key or a prefix.

use axum::{extract::State, http::StatusCode, response::Response};

use super::{
    key::Key,
    meta::json_response,
    query::{Params, parse_u64},
    state::AppState,
};
use crate::error::ApiError;

/// Default and largest page of `GET /callbacks?prefix=`.
const DEFAULT_LIST_LIMIT: usize = 1000;
const MAX_LIST_LIMIT: usize = 10_000;

pub(super) async fn list(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let limit = parse_u64(p.limit.as_deref(), "limit", "invalid_limit")?
        .map_or(DEFAULT_LIST_LIMIT, |l| l as usize);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::param(
            "invalid_limit",
            format!("`limit` must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let prefix = p.prefix.unwrap_or_default();
    let keys = state.backend().list(&prefix, p.after.as_deref(), limit);
    let next_after = (keys.len() == limit).then(|| keys.last().map(|k| k.key.clone()));
    let body = serde_json::json!({ "keys": keys, "next_after": next_after.flatten() });
    Ok(json_response(StatusCode::OK, body.to_string().into()))
}

pub(super) async fn delete_key(
    State(state): State<AppState>,
    Key(key): Key,
) -> Result<StatusCode, ApiError> {
    state.backend().delete(&key);
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_prefix(
    State(state): State<AppState>,
    p: Params,
) -> Result<StatusCode, ApiError> {
    let prefix = p.prefix.ok_or_else(|| {
        ApiError::param(
            "missing_prefix",
            "DELETE /callbacks needs ?prefix=P (use ?prefix= to delete every key)",
        )
    })?;
    state.backend().delete_prefix(&prefix);
    Ok(StatusCode::NO_CONTENT)
}
