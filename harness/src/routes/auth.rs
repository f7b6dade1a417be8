//! `--token`: every harness route needs the bearer token (or the UI's cookie holding it).

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, runner::Harness};

pub(super) async fn require_token(
    State(h): State<Harness>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = h.config().token.as_deref() else {
        return next.run(request).await;
    };
    match sink::authorize(request.method(), request.headers(), token) {
        Ok(()) => next.run(request).await,
        Err(sink::AuthRefusal::Missing) => ApiError::Unauthorized(
            "this server needs `Authorization: Bearer <token>` (the --token it was started with); \
             the web UI asks for it once and keeps it in a cookie"
                .into(),
        )
        .into_response(),
        Err(sink::AuthRefusal::CrossSite) => {
            ApiError::Forbidden(sink::CROSS_SITE.into()).into_response()
        }
    }
}
