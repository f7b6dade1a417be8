//! The web UI: three files embedded in the binary, so it works offline with no build step.

use axum::{
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::error::ApiError;

#[utoipa::path(
    get, path = "/", tag = "ui",
    responses((status = 200, description = "The web UI", body = String, content_type = "text/html"))
)]
pub(super) async fn ui_index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        include_str!("../../ui/index.html"),
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/ui/{file}", tag = "ui",
    params(("file" = String, Path, description = "An asset of the web UI")),
    responses((status = 200, description = "The asset", body = String, content_type = "*/*"), (status = 404, description = "No such asset"))
)]
pub(super) async fn ui_asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (
            include_str!("../../ui/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (
            include_str!("../../ui/style.css"),
            "text/css; charset=utf-8",
        ),
        _ => {
            return ApiError::NotFound(format!("there is no UI file {file}")).into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
