//! Errors: [`ApiError`] is what HTTP clients see (`{"error":{"code","message"}}`); [`Error`] is
//! what can go wrong starting the sink; [`LogError`] is what can go wrong with its log.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Failure to start or stop the sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory or its log could not be opened or replayed.
    #[error("failed to open the callback log in {dir}: {source}")]
    OpenLog {
        /// The `--data-dir` in use.
        dir: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database (`--database`) could not be opened.
    #[error("failed to open the database: {0}")]
    Database(crate::postgres::OpenError),
    /// A definitions file kept in the data directory (`stubs.json`, `verifiers.json`) could not
    /// be read.
    #[error("failed to load the sink's definitions: {0}")]
    Definitions(#[source] crate::definitions::DefinitionsError),
    /// The log could not be flushed at shutdown.
    #[error("failed to flush the callback log: {0}")]
    Flush(#[source] LogError),
}

/// What can go wrong writing or syncing the callback log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The disk holding the data directory is full (or its quota is used up): nothing of the
    /// frame was left in the log.
    #[error("the disk of the data directory {} is full: {source}", dir.display())]
    StorageFull {
        /// The `--data-dir` in use.
        dir: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A frame could not be written to the log file (an I/O error); nothing of it was left in
    /// the log.
    #[error("the callback log could not be written: {0}")]
    Write(#[source] std::io::Error),
    /// The log file could not be fsync'd.
    #[error("fsync of the callback log failed: {0}")]
    Sync(#[source] std::io::Error),
    /// The fsync that should have made the write durable failed (`--fsync always`): it was cut
    /// off the log again.
    #[error("fsync of the callback log failed: the callback was not stored")]
    SyncFailed,
    /// The syncer thread stopped before the write reached the disk.
    #[error("the log's syncer stopped")]
    SyncerStopped,
    /// The blocking task that flushes the log did not finish (it panicked, or the runtime is
    /// shutting down).
    #[error("{0}")]
    FlushTask(#[source] tokio::task::JoinError),
}

/// An error answered to an HTTP client. Every variant's message says what was wrong and what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A key in the path is empty, too long or not UTF-8.
    #[error("{0}")]
    InvalidKey(String),
    /// `POST /callbacks` found no key in the headers or body it searched.
    #[error("{0}")]
    MissingKey(String),
    /// A query parameter does not parse or is out of range.
    #[error("{message}")]
    InvalidParam {
        /// `invalid_wait`, `invalid_after`, …
        code: &'static str,
        /// What was wrong and the accepted form.
        message: String,
    },
    /// The body is larger than `--max-body`.
    #[error("{0}")]
    BodyTooLarge(String),
    /// Nothing stored under the key (or no such route).
    #[error("{0}")]
    NotFound(String),
    /// A wait ended without the awaited callback(s).
    #[error("{0}")]
    Timeout(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// `--token` is set and the request did not carry it.
    #[error("{0}")]
    Unauthorized(String),
    /// The request carried the token only as the UI's cookie, from another origin.
    #[error("{0}")]
    Forbidden(String),
    /// The sink holds `--max-callbacks` records.
    #[error("{0}")]
    Full(String),
    /// The disk of `--data-dir` is full: the callback was not stored.
    #[error("{0}")]
    StorageFull(String),
    /// The request body could not be read: malformed chunked encoding, or shorter than its
    /// `Content-Length` (the client closed or broke the connection mid-body).
    #[error("{0}")]
    InvalidBody(String),
    /// The log could not be made durable (an fsync failed): the callback was not stored.
    #[error("{0}")]
    StorageFailed(String),
    /// The database (cluster mode) is unreachable or failed: nothing was stored or read.
    #[error("{0}")]
    Unavailable(String),
    /// A definition (a stub, a verifier) failed validation: every problem, by field (`responses[1].status`),
    /// answered at once as `422 invalid_fields` with `"fields": {field: problem}`.
    #[error("{}", .0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    /// A verifier with `reject: true` found the callback's signature invalid (it was recorded).
    #[error("{0}")]
    InvalidSignature(String),
    /// The server is stopping; waits are answered with this.
    #[error("the sink is shutting down; retry against the restarted server")]
    ShuttingDown,
    /// Something failed inside the server; the detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status and the stable `code` of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidKey(_) => (StatusCode::BAD_REQUEST, "invalid_key"),
            Self::MissingKey(_) => (StatusCode::BAD_REQUEST, "missing_key"),
            Self::InvalidParam { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Timeout(_) => (StatusCode::NOT_FOUND, "timeout"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "cross_site"),
            Self::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "sink_full"),
            Self::StorageFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            Self::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::StorageFailed(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_failed"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields"),
            Self::InvalidSignature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub(crate) fn param(code: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidParam {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "the sink failed to handle this request; see its log".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({ "error": { "code": code, "message": message } });
        if let Self::Invalid(fields) = &self {
            // The harness's shape (`harness/src/error.rs`); two problems of one field are joined.
            let mut map = serde_json::Map::new();
            for (field, problem) in fields {
                match map.get_mut(field) {
                    Some(serde_json::Value::String(old)) => *old = format!("{old}; {problem}"),
                    _ => {
                        map.insert(field.clone(), json!(problem));
                    }
                }
            }
            body["error"]["fields"] = map.into();
        }
        (status, Json(body)).into_response()
    }
}

impl From<crate::postgres::Unavailable> for ApiError {
    fn from(e: crate::postgres::Unavailable) -> Self {
        Self::Unavailable(format!(
            "{e}: the sink's database is unavailable, nothing was stored or read; retry shortly"
        ))
    }
}

/// The database's error is in the message already: not also a source (which a `{:#}` chain would
/// print a second time).
impl From<crate::postgres::OpenError> for Error {
    fn from(e: crate::postgres::OpenError) -> Self {
        Self::Database(e)
    }
}
