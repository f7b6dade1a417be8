//! HTTP routes of the sink (SPEC "The sink"). `router()` builds them; serving is in `server.rs`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{
        DefaultBodyLimit, OriginalUri, Path, Query, Request, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{any, get},
};
use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    error::ApiError,
    record::{Encoded, Incoming, raw_body, write_json_str},
    store::{InsertError, Store, WaitEnd},
};

/// Longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 1024;
/// Default and largest page of `GET /callbacks?prefix=`.
const DEFAULT_LIST_LIMIT: usize = 1000;
const MAX_LIST_LIMIT: usize = 10_000;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    store: Store,
    config: Config,
    /// Cancelled on SIGINT/SIGTERM: waiters answer `503 shutting_down`, event streams end.
    shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(store: Store, config: Config, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(StateInner {
                store,
                config,
                shutdown,
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// The sink's routes with their body limit, auth and JSON 404/405 fallbacks.
pub fn router(state: AppState) -> Router {
    let max_body = state.inner.config.max_body;
    let has_token = state.inner.config.token.is_some();
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/callbacks",
            get(list).delete(delete_prefix).post(record_by_lookup),
        )
        .route("/callbacks/", any(empty_key))
        .route(
            "/callbacks/{key}",
            get(latest)
                .delete(delete_key)
                .post(record_keyed)
                .put(record_keyed)
                .patch(record_keyed),
        )
        .route("/callbacks/{key}/all", get(all))
        .route("/callbacks/{key}/raw", get(raw))
        .route("/callbacks/{key}/events", get(events))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Only pay for the auth layer (a boxed future per request) when there is a token to check.
    let router = if has_token {
        router.layer(middleware::from_fn_with_state(state.clone(), require_token))
    } else {
        router
    };
    router
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "callbacks": state.store().len(),
            "waiting": state.store().waiting(),
        })
        .to_string()
        .into(),
    )
}

async fn route_not_found(uri: OriginalUri) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {}: see the API table in README.md (keys in paths must be URL-encoded)",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}: see the API table in README.md",
        uri.path()
    ))
}

async fn empty_key() -> ApiError {
    ApiError::InvalidKey("the key is empty: use /callbacks/{key} with a non-empty key".into())
}

/// With `--token`, everything but posting callbacks and `/healthz` needs the bearer token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = state.inner.config.token.as_deref() else {
        return next.run(request).await;
    };
    // (Only installed when a token is configured; the check above is belt and braces.)
    let is_ingest = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    if is_ingest || request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    if presented_token_matches(request.headers(), token) {
        next.run(request).await
    } else {
        ApiError::Unauthorized(
            "this sink needs `Authorization: Bearer <token>` to read or delete callbacks (the --token it was started with)".into(),
        )
        .into_response()
    }
}

/// Whether the request carries `token`: as `Authorization: Bearer <token>`, or as the
/// `eventual_token` cookie the web UI sets (a browser's EventSource cannot send headers).
pub fn presented_token_matches(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("eventual_token="))
        .and_then(|c| percent_encoding::percent_decode_str(c).decode_utf8().ok());
    bearer.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
        || cookie.is_some_and(|c| constant_time_eq(c.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Query parameters of the read routes; each is parsed by hand for a precise error.
#[derive(Debug, Default, Deserialize)]
struct Params {
    wait: Option<String>,
    after: Option<String>,
    count: Option<String>,
    seq: Option<String>,
    prefix: Option<String>,
    limit: Option<String>,
}

fn params(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query.map(|Query(p)| p).map_err(|e| {
        ApiError::param(
            "invalid_query",
            format!("the query string does not parse ({e}): percent-encode its values"),
        )
    })
}

fn key(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| {
        ApiError::InvalidKey(format!(
            "the key in the path is not valid UTF-8 once percent-decoded ({e}): keys are UTF-8 strings, URL-encoded in paths"
        ))
    })?;
    check_key(&key)?;
    Ok(key)
}

fn check_key(key: &str) -> Result<(), ApiError> {
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

fn parse_wait(raw: Option<&str>, max: Duration) -> Result<Option<Duration>, ApiError> {
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

fn parse_u64(
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

fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn body(body: Result<Bytes, BytesRejection>, max: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge(format!(
                "the body is larger than the sink's limit of {max} bytes: start the sink with a larger --max-body"
            ))
        } else {
            ApiError::Internal(format!("failed to read the request body: {e}"))
        }
    })
}

async fn record_keyed(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = key(path)?;
    let body = body(raw, state.inner.config.max_body)?;
    store_callback(&state, key, &method, &uri, &headers, &body).await
}

async fn record_by_lookup(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let config = &state.inner.config;
    let body = body(raw, config.max_body)?;
    let key = find_key(config, &headers, &body)?;
    store_callback(&state, key, &method, &uri, &headers, &body).await
}

/// Headers first, then JSON pointers into the body (strings and numbers count).
fn find_key(config: &Config, headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    for name in &config.key_headers {
        if let Some(value) = headers.get(name.as_str()) {
            let value = value.to_str().map_err(|_| {
                ApiError::InvalidKey(format!("the {name} header is not valid UTF-8 text"))
            })?;
            if !value.trim().is_empty() {
                check_key(value.trim())?;
                return Ok(value.trim().to_owned());
            }
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        for pointer in &config.key_pointers {
            let found = match json.pointer(pointer) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let Some(key) = found {
                check_key(&key)?;
                return Ok(key);
            }
        }
    }
    Err(ApiError::MissingKey(format!(
        "no key found: looked in the header(s) {} and the JSON body at {}; send one of them, or POST to /callbacks/{{key}}",
        config.key_headers.join(", "),
        config.key_pointers.join(", "),
    )))
}

async fn store_callback(
    state: &AppState,
    key: String,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let incoming = Incoming {
        method,
        path: uri.path(),
        query: uri.query(),
        headers,
        body,
    };
    let encoded = Encoded::new(&key, &incoming, std::time::SystemTime::now());
    let (seq, ack) = state.store().insert(&key, &encoded).map_err(|e| match e {
        InsertError::Full(max) => ApiError::Full(format!(
            "the sink is full: it holds {max} callbacks; delete keys you no longer need (DELETE /callbacks?prefix=…) or restart it with a larger --max-callbacks"
        )),
        InsertError::Persist(e) => ApiError::Internal(e.to_string()),
    })?;
    ack.wait()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = Vec::with_capacity(key.len() + 32);
    out.extend_from_slice(b"{\"key\":");
    write_json_str(&mut out, &key);
    out.extend_from_slice(format!(",\"seq\":{seq}}}").as_bytes());
    Ok(json_response(StatusCode::OK, out.into()))
}

async fn latest(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = key(path)?;
    let p = params(query)?;
    let after = parse_u64(p.after.as_deref(), "after", "invalid_after")?.unwrap_or(0);
    let wait = parse_wait(p.wait.as_deref(), state.inner.config.max_wait)?;
    let store = state.store();
    let Some(wait) = wait else {
        return store
            .latest_after(&key, after)
            .map(|json| json_response(StatusCode::OK, json))
            .ok_or_else(|| nothing_for(&key, after));
    };
    let deadline = tokio::time::Instant::now() + wait;
    match store
        .wait_latest_after(&key, after, deadline, &state.inner.shutdown)
        .await
    {
        WaitEnd::Ready(json) => Ok(json_response(StatusCode::OK, json)),
        WaitEnd::TimedOut => Err(ApiError::Timeout(format!(
            "no callback {}for key {key:?} arrived within {}",
            if after > 0 {
                format!("newer than seq {after} ")
            } else {
                String::new()
            },
            humantime::format_duration(wait)
        ))),
        WaitEnd::ShuttingDown => Err(ApiError::ShuttingDown),
    }
}

fn nothing_for(key: &str, after: u64) -> ApiError {
    if after > 0 {
        ApiError::NotFound(format!(
            "no callback newer than seq {after} for key {key:?}; add ?wait=30s to wait for one"
        ))
    } else {
        ApiError::NotFound(format!(
            "no callback for key {key:?} yet; add ?wait=30s to wait for one"
        ))
    }
}

async fn all(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = key(path)?;
    let p = params(query)?;
    let wait = parse_wait(p.wait.as_deref(), state.inner.config.max_wait)?;
    let count = parse_u64(p.count.as_deref(), "count", "invalid_count")?;
    if count == Some(0) {
        return Err(ApiError::param(
            "invalid_count",
            "`count=0` is always satisfied: use a count of 1 or more",
        ));
    }
    let store = state.store();
    let records = match (wait, count) {
        (None, _) => store.all(&key),
        (Some(wait), count) => {
            let need = count.unwrap_or(1) as usize;
            let deadline = tokio::time::Instant::now() + wait;
            match store
                .wait_all(&key, need, deadline, &state.inner.shutdown)
                .await
            {
                WaitEnd::Ready(records) => records,
                WaitEnd::TimedOut => {
                    return Err(ApiError::Timeout(format!(
                        "only {} of {need} callbacks for key {key:?} arrived within {}",
                        store.count(&key),
                        humantime::format_duration(wait)
                    )));
                }
                WaitEnd::ShuttingDown => return Err(ApiError::ShuttingDown),
            }
        }
    };
    let size: usize = records.iter().map(|r| r.len() + 1).sum();
    let mut out = Vec::with_capacity(size + key.len() + 32);
    out.extend_from_slice(b"{\"key\":");
    write_json_str(&mut out, &key);
    out.extend_from_slice(b",\"callbacks\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, out.into()))
}

async fn raw(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = key(path)?;
    let p = params(query)?;
    let seq = parse_u64(p.seq.as_deref(), "seq", "invalid_seq")?;
    let json = state.store().get_seq(&key, seq).ok_or_else(|| match seq {
        Some(seq) => ApiError::NotFound(format!("key {key:?} has no record with seq {seq}")),
        None => nothing_for(&key, 0),
    })?;
    let (bytes, content_type) = raw_body(&json)
        .ok_or_else(|| ApiError::Internal("a stored record does not decode".into()))?;
    let content_type = content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from(bytes)).into_response())
}

async fn events(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let key = key(path)?;
    let last = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::param(
                    "invalid_last_event_id",
                    "Last-Event-ID must be the seq of the last record received, a whole number",
                )
            })?,
    };
    let stream = futures_util::stream::unfold(
        (state, key, last, std::collections::VecDeque::new()),
        |(state, key, mut last, mut pending)| async move {
            loop {
                if let Some(r) = pending.pop_front() {
                    let r: crate::store::Stored = r;
                    last = r.seq;
                    let event = Event::default()
                        .event("callback")
                        .id(r.seq.to_string())
                        .data(String::from_utf8_lossy(&r.json));
                    return Some((Ok(event), (state, key, last, pending)));
                }
                // Past records first, then wait for new ones; the stream ends on shutdown.
                let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
                match state
                    .store()
                    .wait_newer(&key, last, far, &state.inner.shutdown)
                    .await
                {
                    WaitEnd::Ready(newer) => pending.extend(newer),
                    WaitEnd::TimedOut => continue,
                    WaitEnd::ShuttingDown => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn delete_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = key(path)?;
    state.store().delete(&key);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_prefix(
    State(state): State<AppState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let p = params(query)?;
    let prefix = p.prefix.ok_or_else(|| {
        ApiError::param(
            "missing_prefix",
            "DELETE /callbacks needs ?prefix=P (use ?prefix= to delete every key)",
        )
    })?;
    state.store().delete_prefix(&prefix);
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = params(query)?;
    let limit = parse_u64(p.limit.as_deref(), "limit", "invalid_limit")?
        .map_or(DEFAULT_LIST_LIMIT, |l| l as usize);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::param(
            "invalid_limit",
            format!("`limit` must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let prefix = p.prefix.unwrap_or_default();
    let keys = state.store().list(&prefix, p.after.as_deref(), limit);
    let next_after = (keys.len() == limit).then(|| keys.last().map(|k| k.key.clone()));
    let body = serde_json::json!({ "keys": keys, "next_after": next_after.flatten() });
    Ok(json_response(StatusCode::OK, body.to_string().into()))
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
