//! Stubs: `PUT|GET|DELETE /stubs/{id}`, `GET /stubs`, `DELETE /stubs?prefix=P` (see `stubs/`).
//! Like reads and deletes, they need the bearer token when the sink has one.

use axum::{
    body::Bytes,
    extract::{FromRequestParts, Path, State, rejection::BytesRejection},
    http::{StatusCode, request::Parts},
    response::Response,
};
use serde_json::json;

use super::{meta::json_response, query::Params, state::AppState};
use crate::{definitions::DefinitionsError, error::ApiError, stubs};

/// Longest stub id, in bytes.
const MAX_ID_LEN: usize = 256;

/// The `{id}` of `/stubs/{id}`: percent-decoded UTF-8, 1–256 bytes; else `400 invalid_id`.
#[derive(Debug)]
pub(super) struct StubId(String);

impl<S: Send + Sync> FromRequestParts<S> for StubId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::param(
                    "invalid_id",
                    format!("the stub id is not valid UTF-8 once percent-decoded ({e})"),
                )
            })?;
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(ApiError::param(
                "invalid_id",
                format!("a stub id is 1 to {MAX_ID_LEN} bytes long"),
            ));
        }
        Ok(Self(id))
    }
}

/// `/stubs/` (an empty id), for any method.
pub(super) async fn empty_id() -> ApiError {
    ApiError::param(
        "invalid_id",
        "the stub id is empty: use /stubs/{id} with a non-empty id",
    )
}

fn persist_error(e: DefinitionsError) -> ApiError {
    ApiError::Internal(format!("the stubs could not be saved: {e}"))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no stub {id:?}: GET /stubs lists them; PUT /stubs/{{id}} sets one"
    ))
}

#[utoipa::path(
    put, path = "/stubs/{id}", tag = "stubs",
    params(("id" = String, Path, description = "The stub's id (1–256 bytes, URL-encoded)")),
    request_body(content = crate::Stub, description = "`key` or `prefix`, `responses`, `then`"),
    responses(
        (status = 201, description = "Created", body = crate::StubInfo),
        (status = 200, description = "Replaced (its hits start again from 0)", body = crate::StubInfo),
        (status = 400, description = "`invalid_id`, `invalid_body` (not JSON)", body = crate::openapi::ErrorBody),
        (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_fields`: every problem, in `fields`", body = crate::openapi::ErrorBody),
    )
)]
pub(super) async fn put(
    State(state): State<AppState>,
    StubId(id): StubId,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = raw.map_err(|e| ApiError::InvalidBody(format!("the body could not be read: {e}")))?;
    let body: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::InvalidBody(format!(
            "the body is not JSON ({e}): send a stub such as {{\"key\": \"job-42\", \"responses\": [{{\"status\": 503}}]}}"
        ))
    })?;
    let stub = stubs::parse(&body).map_err(ApiError::Invalid)?;
    let replaced = state.stubs().put(&id, stub).await.map_err(persist_error)?;
    let info = state.stubs().get(&id).ok_or_else(|| not_found(&id))?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(status, json!(info).to_string().into()))
}

#[utoipa::path(
    get, path = "/stubs/{id}", tag = "stubs",
    params(("id" = String, Path, description = "The stub's id")),
    responses(
        (status = 200, description = "The stub and its `hits` (callbacks it answered since the sink started or it was put)", body = crate::StubInfo),
        (status = 400, description = "`invalid_id`", body = crate::openapi::ErrorBody),
        (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::openapi::ErrorBody),
    )
)]
pub(super) async fn get(
    State(state): State<AppState>,
    StubId(id): StubId,
) -> Result<Response, ApiError> {
    let info = state.stubs().get(&id).ok_or_else(|| not_found(&id))?;
    Ok(json_response(
        StatusCode::OK,
        json!(info).to_string().into(),
    ))
}

#[utoipa::path(
    delete, path = "/stubs/{id}", tag = "stubs",
    params(("id" = String, Path, description = "The stub's id")),
    responses(
        (status = 204, description = "Deleted: its key's callbacks get the usual answer again"),
        (status = 400, description = "`invalid_id`", body = crate::openapi::ErrorBody),
        (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::openapi::ErrorBody),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    StubId(id): StubId,
) -> Result<StatusCode, ApiError> {
    let gone = state
        .stubs()
        .remove_where(|other, _| other == id)
        .await
        .map_err(persist_error)?;
    if gone.is_empty() {
        return Err(not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/stubs", tag = "stubs",
    responses(
        (status = 200, description = "Every stub, by id", body = crate::openapi::StubList),
        (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody),
    )
)]
pub(super) async fn list(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        json!({ "stubs": state.stubs().list() }).to_string().into(),
    )
}

#[utoipa::path(
    delete, path = "/stubs", tag = "stubs",
    params(("prefix" = String, Query, description = "Delete every stub whose key or prefix starts with this (`prefix=` is every stub)")),
    responses(
        (status = 200, description = "The ids deleted", body = crate::openapi::StubsDeleted),
        (status = 400, description = "`missing_prefix`, `invalid_query`", body = crate::openapi::ErrorBody),
        (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody),
    )
)]
pub(super) async fn delete_prefix(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let prefix = p.prefix.ok_or_else(|| {
        ApiError::param(
            "missing_prefix",
            "DELETE /stubs needs ?prefix=P (use ?prefix= to delete every stub)",
        )
    })?;
    let deleted = state
        .stubs()
        .remove_where(|_, stub| stub.is_under(&prefix))
        .await
        .map_err(persist_error)?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "deleted": deleted }).to_string().into(),
    ))
}
