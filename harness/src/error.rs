//! The harness's errors: [`HarnessError`] inside, [`ApiError`] on the wire
//! (`{"error":{"code","message"}}`, plus `fields` for validation).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::catalog::DeleteError;

/// What can go wrong inside the harness (the routes turn it into an [`ApiError`]).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No such run.
    #[error("there is no run {0}")]
    UnknownRun(i64),
    /// The run has ended already.
    #[error("run {0} has already finished ({1}); nothing to cancel")]
    Finished(i64, &'static str),
    /// No such environment.
    #[error("there is no environment {0}: environments are 1..={1}")]
    UnknownEnv(u32, u32),
    /// The database failed.
    #[error("history database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The cluster's database is down or refused a statement (cluster mode).
    #[error("{0}")]
    Unavailable(#[from] sink::Unavailable),
    /// The cluster's database could not be opened (cluster mode: unreachable, a bad URL, a
    /// schema newer than this build).
    #[error("{0}")]
    Database(#[from] sink::DatabaseError),
    /// The file system failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A test to delete is named by runs that have not ended.
    #[error(
        "{path} is used by queued or running run(s) {}: delete it once they have ended \
         (or cancel them)",
        .runs.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    )]
    TestInUse {
        /// The test.
        path: String,
        /// The runs naming it, by id.
        runs: Vec<i64>,
    },
    /// A catalog file could not be deleted.
    #[error(transparent)]
    Delete(#[from] crate::catalog::DeleteError),
    /// A run for any environment, but every one is paused.
    #[error(
        "every environment is paused: resume one (POST /api/envs/{{id}}/resume) or name an env_id"
    )]
    AllPaused,
    /// A test of a new run was deleted between validation and admission.
    #[error("unknown test {0}")]
    TestGone(String),
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad query).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// What was wrong and what to do.
        message: String,
    },
    /// Fields failed validation; every problem is listed.
    #[error("{}", .0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    /// An `eventual.toml` that does not validate; every problem is listed.
    #[error("eventual.toml is not valid: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// A bad name or directory on upload.
    #[error("{0}")]
    InvalidPath(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The action conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too big.
    #[error("{0}")]
    TooLarge(String),
    /// Not a kind of file or body we accept.
    #[error("{0}")]
    Unsupported(String),
    /// The route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Missing or wrong bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The UI's cookie on a state-changing request from another origin.
    #[error("{0}")]
    Forbidden(String),
    /// The cluster's database cannot answer now; worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside; logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields"),
            Self::InvalidPath(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_path"),
            Self::InvalidConfig(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_kind"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "cross_site"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<HarnessError> for ApiError {
    fn from(e: HarnessError) -> Self {
        match e {
            HarnessError::UnknownRun(_) | HarnessError::UnknownEnv(..) => {
                Self::NotFound(e.to_string())
            }
            HarnessError::Finished(..)
            | HarnessError::TestInUse { .. }
            | HarnessError::AllPaused => Self::Conflict(e.to_string()),
            HarnessError::Delete(DeleteError::NotFound(_)) => Self::NotFound(e.to_string()),
            HarnessError::Delete(DeleteError::Bundled(_)) => Self::Conflict(e.to_string()),
            HarnessError::Delete(DeleteError::Io(_)) => Self::Internal(e.to_string()),
            HarnessError::TestGone(path) => Self::Invalid(vec![(
                "tests".into(),
                format!("unknown test {path} (it was deleted meanwhile)"),
            )]),
            HarnessError::Unavailable(e) => {
                Self::Unavailable(format!("{e}; retry once the database is back"))
            }
            HarnessError::Db(_) | HarnessError::Io(_) | HarnessError::Database(_) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "the harness failed to handle this request; see its log".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({ "error": { "code": code, "message": message } });
        if let Self::InvalidConfig(problems) = &self {
            body["error"]["problems"] = json!(problems);
        }
        if let Self::Invalid(fields) = &self {
            body["error"]["fields"] = fields
                .iter()
                .map(|(f, m)| (f.clone(), json!(m)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        (status, Json(body)).into_response()
    }
}
