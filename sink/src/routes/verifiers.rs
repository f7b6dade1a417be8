//! Signature verifiers: `PUT|GET|DELETE /verifiers/{id}`, `GET /verifiers`,
//! `DELETE /verifiers?prefix=P`. Every route needs the `--token` (a verifier holds a secret);
//! the secret is never answered (`"secret": "***"`).

use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{query::Params, state::AppState};
use crate::{error::ApiError, verify::Verifier};

/// Longest verifier id.
const MAX_ID: usize = 256;

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(ApiError::Invalid(vec![(
            "id".into(),
            format!("must be 1 to {MAX_ID} bytes without control characters"),
        )]));
    }
    Ok(())
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no verifier {id:?}: GET /verifiers lists them, PUT /verifiers/{{id}} sets one"
    ))
}

fn saved(e: crate::definitions::DefinitionsError) -> ApiError {
    ApiError::Internal(format!("the verifiers could not be saved: {e}"))
}

#[utoipa::path(
    put, path = "/verifiers/{id}", tag = "verifiers",
    params(("id" = String, Path, description = "The verifier's id")),
    request_body(content = crate::openapi::VerifierBody, description = "The verifier"),
    responses((status = 200, description = "Replaced an existing verifier", body = crate::openapi::VerifierView), (status = 201, description = "Created", body = crate::openapi::VerifierView), (status = 401, description = "`unauthorized`", body = crate::openapi::ErrorBody), (status = 422, description = "`invalid_fields`: every problem in `error.fields`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let Json(body) = body.map_err(|e| {
        ApiError::Invalid(vec![("body".into(), format!("must be a JSON object: {e}"))])
    })?;
    let verifier = Verifier::validate(&body).map_err(ApiError::Invalid)?;
    let view = verifier.redacted(&id);
    let replaced = state.verifiers().put(&id, verifier).await.map_err(saved)?;
    tracing::info!(verifier = %id, "verifier set");
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)).into_response())
}

#[utoipa::path(
    get, path = "/verifiers", tag = "verifiers",
    responses((status = 200, description = "Every verifier, by id, secrets redacted", body = crate::openapi::VerifierList), (status = 401, description = "`unauthorized`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn list(State(state): State<AppState>) -> Json<Value> {
    let all: Vec<Value> = state
        .verifiers()
        .read(|map| map.iter().map(|(id, v)| v.redacted(id)).collect());
    Json(json!({ "verifiers": all }))
}

#[utoipa::path(
    get, path = "/verifiers/{id}", tag = "verifiers",
    params(("id" = String, Path, description = "The verifier's id")),
    responses((status = 200, description = "The verifier, secret redacted", body = crate::openapi::VerifierView), (status = 401, description = "`unauthorized`", body = crate::openapi::ErrorBody), (status = 404, description = "`not_found`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = state.verifiers().get(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(v.redacted(&id)))
}

#[utoipa::path(
    delete, path = "/verifiers/{id}", tag = "verifiers",
    params(("id" = String, Path, description = "The verifier's id")),
    responses((status = 204, description = "Removed"), (status = 401, description = "`unauthorized`", body = crate::openapi::ErrorBody), (status = 404, description = "`not_found`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn delete_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gone = state
        .verifiers()
        .remove_where(|v, _| v == id)
        .await
        .map_err(saved)?;
    if gone.is_empty() {
        return Err(not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/verifiers", tag = "verifiers",
    params(("prefix" = String, Query, description = "Remove every verifier whose prefix starts with this (`prefix=` is all)")),
    responses((status = 200, description = "The ids removed", body = crate::openapi::Removed), (status = 400, description = "`missing_prefix`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`unauthorized`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn delete_prefix(
    State(state): State<AppState>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let prefix = p.prefix.ok_or_else(|| {
        ApiError::param(
            "missing_prefix",
            "DELETE /verifiers needs ?prefix=P (use ?prefix= to delete every verifier)",
        )
    })?;
    let gone = state
        .verifiers()
        .remove_where(|_, v| v.prefix.starts_with(&prefix))
        .await
        .map_err(saved)?;
    Ok(Json(json!({ "removed": gone })))
}
