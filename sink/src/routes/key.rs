//! [`Key`]: the `{key}` path segment as an extractor whose rejection is `400 invalid_key`.

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
};

use crate::error::ApiError;

/// Longest key accepted, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 1024;

/// The key of a `/callbacks/{key}…` route: percent-decoded, UTF-8, non-empty and at most
/// [`MAX_KEY_LEN`] bytes. A handler that takes one never sees a bad key.
#[derive(Debug)]
pub(super) struct Key(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(key) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::InvalidKey(format!(
                    "the key in the path is not valid UTF-8 once percent-decoded ({e}): keys are UTF-8 strings, URL-encoded in paths"
                ))
            })?;
        check_key(&key)?;
        Ok(Self(key))
    }
}

/// Checks a key from anywhere (path, header, body) against the same rules.
pub(super) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::InvalidKey(
            "the key is empty: give a non-empty key".into(),
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::InvalidKey(format!(
            "the key is {} bytes long; keys are at most {MAX_KEY_LEN} bytes",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, routing::get};
    use tower::ServiceExt as _;

    use super::*;

    async fn extract(path: &str) -> (u16, String) {
        let app = Router::new().route("/callbacks/{key}", get(|Key(key): Key| async move { key }));
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.unwrap_or_else(|e| match e {});
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_key_is_percent_decoded_and_bad_keys_are_rejected_as_invalid_key() {
        assert_eq!(extract("/callbacks/a%2Fb%20c").await, (200, "a/b c".into()));
        let long = format!("/callbacks/{}", "k".repeat(MAX_KEY_LEN + 1));
        for path in ["/callbacks/%FF", long.as_str()] {
            let (status, body) = extract(path).await;
            assert_eq!(status, 400, "{path}: {body}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
            assert_eq!(body["error"]["code"], "invalid_key", "{path}: {body}");
        }
    }
}
