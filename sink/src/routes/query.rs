//! Query parameters of the read routes, each parsed by hand for a precise `400` code
//! (`invalid_query`, `invalid_wait`, `invalid_after`, `invalid_count`, `invalid_seq`,
//! `invalid_limit`).

use std::time::Duration;

use axum::{
    extract::{FromRequestParts, Query},
    http::request::Parts,
};
use serde::Deserialize;

use crate::error::ApiError;

/// The read routes' query parameters, as given; an extractor whose rejection is
/// `400 invalid_query`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    pub(super) wait: Option<String>,
    pub(super) after: Option<String>,
    pub(super) count: Option<String>,
    pub(super) seq: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) limit: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Self>::from_request_parts(parts, state)
            .await
            .map(|Query(p)| p)
            .map_err(|e| {
                ApiError::param(
                    "invalid_query",
                    format!("the query string does not parse ({e}): percent-encode its values"),
                )
            })
    }
}

/// `?wait=`: a duration up to `max`, or `None` when absent.
pub(super) fn parse_wait(raw: Option<&str>, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let form = format!(
        "use a duration such as `500ms`, `10s` or `2m` (or plain seconds), at most {}",
        humantime::format_duration(max)
    );
    let wait = crate::duration::parse_duration(raw)
        .map_err(|_| ApiError::param("invalid_wait", format!("invalid `wait={raw}`: {form}")))?;
    if wait > max {
        return Err(ApiError::param(
            "invalid_wait",
            format!("`wait={raw}` is longer than the maximum: {form}; loop for longer waits"),
        ));
    }
    Ok(Some(wait))
}

/// A whole-number parameter `name`, rejected with `code`.
pub(super) fn parse_u64(
    raw: Option<&str>,
    name: &'static str,
    code: &'static str,
) -> Result<Option<u64>, ApiError> {
    raw.map(|r| {
        r.trim().parse::<u64>().map_err(|_| {
            ApiError::param(
                code,
                format!("invalid `{name}={r}`: use a whole number such as `{name}=3`"),
            )
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_accepts_humantime_and_plain_seconds_up_to_the_maximum() {
        let max = Duration::from_secs(300);
        assert_eq!(
            parse_wait(Some("500ms"), max).ok().flatten(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_wait(Some("2.5"), max).ok().flatten(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(parse_wait(Some("5m"), max).ok().flatten(), Some(max));
        for bad in ["abc", "-1", "10 parsecs", "6m", "NaN"] {
            let err = parse_wait(Some(bad), max).expect_err(bad);
            assert_eq!(err.status_and_code().1, "invalid_wait", "{bad}");
            assert!(err.to_string().contains("10s"), "{err}");
        }
    }
}
