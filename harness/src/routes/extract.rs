//! Extractors whose rejections are the API's error body: a run id, an environment id, query
//! parameters, a run request; and the answer to a method a route does not take.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, rejection::JsonRejection,
    },
    http::{Method, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{error::ApiError, runner::Harness};

use super::new_run::NewRunBody;

/// A run id from the path (`/api/runs/{id}/…`); anything but a number is `404`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunId(pub(super) i64);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::NotFound(format!("no run id in the path: {e}")))?;
        raw.parse().map(Self).map_err(|_| {
            ApiError::NotFound(format!("there is no run {raw:?}: run ids are numbers"))
        })
    }
}

/// An environment id from the path (`/api/envs/{id}/…`); anything but a number is `404`.
#[derive(Debug, Clone, Copy)]
pub(super) struct EnvId(pub(super) u32);

impl FromRequestParts<Harness> for EnvId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, h: &Harness) -> Result<Self, ApiError> {
        let envs = h.config().envs;
        let Path(raw) = Path::<String>::from_request_parts(parts, h)
            .await
            .map_err(|e| ApiError::NotFound(format!("no environment id in the path: {e}")))?;
        raw.parse().map(Self).map_err(|_| {
            ApiError::NotFound(format!(
                "there is no environment {raw:?}: environments are 1..={envs}"
            ))
        })
    }
}

/// Query parameters; a malformed or repeated one is `400 invalid_query`, not axum's plain text.
#[derive(Debug)]
pub(super) struct ApiQuery<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| ApiError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "{}: give each parameter once, as the HTTP API table in README.md says",
                    e.body_text()
                ),
            })
    }
}

/// The JSON body of `POST /api/runs`: `415` unless it is JSON, `400 invalid_json` unless it
/// parses. Its fields are checked by [`NewRun::validate`](super::new_run::NewRun::validate).
#[derive(Debug)]
pub(super) struct RunBody(pub(super) NewRunBody);

/// Largest run request (the route's body limit): a run names its tests, it does not carry them.
pub(super) const MAX_RUN_REQUEST: usize = 1 << 20;

fn run_request_too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "the run request is larger than {MAX_RUN_REQUEST} bytes: name the tests by path (GET \
         /api/tests lists them), and split a very long list into several runs"
    ))
}

impl<S: Send + Sync> FromRequest<S> for RunBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // A declared length over the limit is refused before reading (so a client that sent
        // `Expect: 100-continue` is told at once, without sending the body).
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_RUN_REQUEST as u64) {
            return Err(run_request_too_large());
        }
        let Json(value) = Json::<Value>::from_request(request, state)
            .await
            .map_err(|e| match e {
                JsonRejection::MissingJsonContentType(_) => ApiError::Unsupported(
                    "send the run as JSON with `Content-Type: application/json`".into(),
                ),
                e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => run_request_too_large(),
                other => ApiError::BadRequest {
                    code: "invalid_json",
                    message: format!(
                        "the body is not valid JSON ({other}): send {{\"username\", \"env_id\", \"tests\": [paths]}}"
                    ),
                },
            })?;
        // Every field takes any JSON value (a wrong one is reported by `validate`), so only a
        // body that is not an object fails here: then every field is missing.
        Ok(Self(serde_json::from_value(value).unwrap_or_default()))
    }
}

/// The answer to a method a route does not take: `405` with the error body.
pub(super) async fn method_not_allowed(method: Method, uri: OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}: see the HTTP API table in README.md",
        uri.path()
    ))
}
