//! `--token`: reading, deleting and stubs need the bearer token; posting callbacks and
//! `/healthz` do not.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::state::AppState;
use crate::error::ApiError;

/// What a forged cross-site change is told.
pub const CROSS_SITE: &str = "a change authenticated by the web UI's cookie must come from the UI's \
own origin: scripts send `Authorization: Bearer <token>` instead";

/// With `--token`, everything but posting callbacks and `/healthz` needs the bearer token.
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.config().token.as_deref() else {
        return next.run(request).await;
    };
    // (Only installed when a token is configured; the check above is belt and braces.)
    // `PUT /stubs/{id}`, `PUT /verifiers/{id}` (a secret) are not callbacks: only the `/callbacks` routes take unauthenticated posts.
    let is_ingest = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) && request.uri().path().starts_with("/callbacks");
    if is_ingest || request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    match authorize(request.method(), request.headers(), token) {
        Ok(()) => next.run(request).await,
        Err(AuthRefusal::Missing) => ApiError::Unauthorized(
            "this sink needs `Authorization: Bearer <token>` to read or delete callbacks and to manage stubs (the --token it was started with)".into(),
        )
        .into_response(),
        Err(AuthRefusal::CrossSite) => ApiError::Forbidden(CROSS_SITE.into()).into_response(),
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No token, or a wrong one.
    Missing,
    /// The UI's cookie on a state-changing request from another origin (a page on another port
    /// of this machine can make the browser send it: `SameSite` does not separate ports).
    CrossSite,
}

/// Checks a request against `token`: `Authorization: Bearer <token>` (the scheme in any case)
/// lets anything through; the `eventual_token` cookie the web UI sets (a browser's EventSource
/// cannot send headers) lets reads through, and changes only from the server's own origin —
/// `Sec-Fetch-Site: same-origin`, or an `Origin` naming the `Host` it was sent to (a request
/// with neither is not from a browser page, so not a forged one).
pub fn authorize(method: &Method, headers: &HeaderMap, token: &str) -> Result<(), AuthRefusal> {
    if bearer(headers).is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return Ok(());
    }
    if !cookie(headers).is_some_and(|c| constant_time_eq(c.as_bytes(), token.as_bytes())) {
        return Err(AuthRefusal::Missing);
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || same_origin(headers) {
        Ok(())
    } else {
        Err(AuthRefusal::CrossSite)
    }
}

/// The token of `Authorization: Bearer TOKEN`; HTTP auth schemes are case-insensitive.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("eventual_token="))
        .and_then(|c| percent_encoding::percent_decode_str(c).decode_utf8().ok())
        .map(|c| c.into_owned())
}

/// Whether a browser says the request comes from this server's own pages.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        // `none`: the user opened the URL themselves (typed, bookmarked).
        return site == "same-origin" || site == "none";
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
        // No browser page sent this (browsers add Origin to every cross-origin change).
        (None, _) => true,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        for auth in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            assert_eq!(
                authorize(
                    &Method::DELETE,
                    &headers(&[("authorization", auth)]),
                    "s3cret"
                ),
                Ok(()),
                "{auth}"
            );
        }
        for auth in ["Bearer s3cre", "Basic s3cret", "s3cret", "Bearers3cret"] {
            assert_eq!(
                authorize(&Method::GET, &headers(&[("authorization", auth)]), "s3cret"),
                Err(AuthRefusal::Missing),
                "{auth}"
            );
        }
    }

    #[test]
    fn the_cookie_reads_anywhere_but_changes_only_from_the_own_origin() {
        let cookie = ("cookie", "a=1; eventual_token=s3cret");
        let host = ("host", "127.0.0.1:7700");
        assert_eq!(
            authorize(&Method::GET, &headers(&[cookie]), "s3cret"),
            Ok(())
        );
        for ok in [
            vec![cookie, host, ("origin", "http://127.0.0.1:7700")],
            vec![cookie, host, ("sec-fetch-site", "same-origin")],
            vec![cookie, host],
        ] {
            assert_eq!(
                authorize(&Method::POST, &headers(&ok), "s3cret"),
                Ok(()),
                "{ok:?}"
            );
        }
        for forged in [
            vec![cookie, host, ("origin", "http://127.0.0.1:8000")],
            vec![cookie, host, ("sec-fetch-site", "same-site")],
            vec![
                cookie,
                host,
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://127.0.0.1:7700"),
            ],
        ] {
            assert_eq!(
                authorize(&Method::POST, &headers(&forged), "s3cret"),
                Err(AuthRefusal::CrossSite),
                "{forged:?}"
            );
        }
    }
}
