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

#[utoipa::path(
    get, path = "/callbacks", tag = "sink",
    params(
        ("prefix" = Option<String>, Query, description = "Only keys starting with this (default: every key)"),
        ("after" = Option<String>, Query, description = "The page after this key"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 10000, description = "Keys per page, 1–10000 (default 1000)"),
    ),
    responses((status = 200, description = "The keys, sorted", body = crate::openapi::KeyList), (status = 400, description = "`invalid_limit`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
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
    let keys = state
        .backend()
        .list(&prefix, p.after.as_deref(), limit)
        .await?;
    let next_after = (keys.len() == limit).then(|| keys.last().map(|k| k.key.clone()));
    let body = serde_json::json!({ "keys": keys, "next_after": next_after.flatten() });
    Ok(json_response(StatusCode::OK, body.to_string().into()))
}

#[utoipa::path(
    delete, path = "/callbacks/{key}", tag = "sink",
    params(("key" = String, Path, description = "The key (1–1024 bytes of UTF-8, URL-encoded)")),
    responses((status = 204, description = "Forgotten (a forgotten key starts again at seq 1)"), (status = 400, description = "`invalid_key`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
pub(super) async fn delete_key(
    State(state): State<AppState>,
    Key(key): Key,
) -> Result<StatusCode, ApiError> {
    state.backend().delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/callbacks", tag = "sink",
    params(("prefix" = String, Query, description = "Forget every key under this prefix (`prefix=` is everything)")),
    responses((status = 204, description = "Forgotten"), (status = 400, description = "`missing_prefix`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
pub(super) async fn delete_prefix(
    State(state): State<AppState>,
    p: Params,
) -> Result<StatusCode, ApiError> {
    let prefix = required_prefix(p.prefix, "DELETE /callbacks", "delete every key")?;
    state.backend().delete_prefix(&prefix).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `?prefix=` a route cannot do without (`400 missing_prefix`); `what_empty` says what
/// `?prefix=` does there.
pub(super) fn required_prefix(
    prefix: Option<String>,
    route: &str,
    what_empty: &str,
) -> Result<String, ApiError> {
    prefix.ok_or_else(|| {
        ApiError::param(
            "missing_prefix",
            format!("{route} needs ?prefix=P (use ?prefix= to {what_empty})"),
        )
    })
}
