//! Reading and waiting: the latest record (optionally long-polled), all records (optionally
//! waiting for a count), the raw body, and the SSE stream of a key.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::Stream;

use super::{
    key::Key,
    meta::json_response,
    query::{Params, parse_u64, parse_wait},
    state::AppState,
};
use crate::{
    backend::{Stored, WaitEnd},
    error::ApiError,
    record::{raw_body, write_json_str},
};

#[utoipa::path(
    get, path = "/callbacks/{key}", tag = "sink",
    params(
        ("key" = String, Path, description = "The key (1–1024 bytes of UTF-8, URL-encoded)"),
        ("wait" = Option<String>, Query, description = "Long-poll up to this long, e.g. `10s` (≤ 5m)"),
        ("after" = Option<u64>, Query, description = "Want a record newer than this seq"),
    ),
    responses((status = 200, description = "The latest record", body = crate::Record), (status = 400, description = "`invalid_key`, `invalid_wait`, `invalid_after`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody), (status = 404, description = "`not_found`: none yet; `timeout`: none within `wait`", body = crate::openapi::ErrorBody), (status = 503, description = "`shutting_down` while waiting", body = crate::openapi::ErrorBody))
)]
pub(super) async fn latest(
    State(state): State<AppState>,
    Key(key): Key,
    p: Params,
) -> Result<Response, ApiError> {
    let after = parse_u64(p.after.as_deref(), "after", "invalid_after")?.unwrap_or(0);
    let wait = parse_wait(p.wait.as_deref(), state.config().max_wait)?;
    let backend = state.backend();
    let Some(wait) = wait else {
        return backend
            .latest_after(&key, after)
            .await?
            .map(|json| json_response(StatusCode::OK, json))
            .ok_or_else(|| nothing_for(&key, after));
    };
    let deadline = tokio::time::Instant::now() + wait;
    match backend
        .wait_latest_after(&key, after, deadline, state.shutdown())
        .await?
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

#[utoipa::path(
    get, path = "/callbacks/{key}/all", tag = "sink",
    params(
        ("key" = String, Path, description = "The key (1–1024 bytes of UTF-8, URL-encoded)"),
        ("wait" = Option<String>, Query, description = "Wait up to this long, e.g. `10s` (≤ 5m)"),
        ("count" = Option<u64>, Query, description = "With `wait`: until this many exist"),
    ),
    responses((status = 200, description = "Every record, oldest first (empty if none)", body = crate::openapi::Callbacks), (status = 400, description = "`invalid_key`, `invalid_wait`, `invalid_count`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody), (status = 404, description = "`timeout`: fewer than `count` within `wait`", body = crate::openapi::ErrorBody), (status = 503, description = "`shutting_down` while waiting", body = crate::openapi::ErrorBody))
)]
pub(super) async fn all(
    State(state): State<AppState>,
    Key(key): Key,
    p: Params,
) -> Result<Response, ApiError> {
    let wait = parse_wait(p.wait.as_deref(), state.config().max_wait)?;
    let count = parse_u64(p.count.as_deref(), "count", "invalid_count")?;
    if count == Some(0) {
        return Err(ApiError::param(
            "invalid_count",
            "`count=0` is always satisfied: use a count of 1 or more",
        ));
    }
    let backend = state.backend();
    let records = match (wait, count) {
        (None, _) => backend.all(&key).await?,
        (Some(wait), count) => {
            let need = count.unwrap_or(1) as usize;
            let deadline = tokio::time::Instant::now() + wait;
            match backend
                .wait_all(&key, need, deadline, state.shutdown())
                .await?
            {
                WaitEnd::Ready(records) => records,
                WaitEnd::TimedOut => {
                    return Err(ApiError::Timeout(format!(
                        "only {} of {need} callbacks for key {key:?} arrived within {}",
                        backend.count(&key).await?,
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

#[utoipa::path(
    get, path = "/callbacks/{key}/raw", tag = "sink",
    params(("key" = String, Path, description = "The key (1–1024 bytes of UTF-8, URL-encoded)"), ("seq" = Option<u64>, Query, description = "This record instead of the latest")),
    responses((status = 200, description = "The body's exact bytes with its original `Content-Type` (any)"), (status = 400, description = "`invalid_key`, `invalid_seq`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody), (status = 404, description = "`not_found`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn raw(
    State(state): State<AppState>,
    Key(key): Key,
    p: Params,
) -> Result<Response, ApiError> {
    let seq = parse_u64(p.seq.as_deref(), "seq", "invalid_seq")?;
    let json = state
        .backend()
        .get_seq(&key, seq)
        .await?
        .ok_or_else(|| match seq {
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

#[utoipa::path(
    get, path = "/callbacks/{key}/events", tag = "sink",
    params(("key" = String, Path, description = "The key (1–1024 bytes of UTF-8, URL-encoded)"), ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq")),
    responses((status = 200, description = "SSE: event `callback`, `id` = seq, data = the record; past then live", body = String, content_type = "text/event-stream"), (status = 400, description = "`invalid_key`, `invalid_last_event_id`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
pub(super) async fn events(
    State(state): State<AppState>,
    Key(key): Key,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = last_event_id(&headers, "the seq of the last record received")?;
    let stream = futures_util::stream::unfold(
        (state, key, last, VecDeque::new()),
        |(state, key, mut last, mut pending)| async move {
            loop {
                if let Some(r) = pending.pop_front() {
                    let r: Stored = r;
                    last = r.seq;
                    let event = callback_event(r.seq, &r);
                    return Some((Ok(event), (state, key, last, pending)));
                }
                // Past records first, then wait for new ones; the stream ends on shutdown.
                let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
                match state
                    .backend()
                    .wait_newer(&key, last, far, state.shutdown())
                    .await
                {
                    Ok(WaitEnd::Ready(newer)) => pending.extend(newer),
                    Ok(WaitEnd::TimedOut) => continue,
                    Ok(WaitEnd::ShuttingDown) => return None,
                    // The database stayed down for the whole wait: end the stream; the client
                    // reconnects with Last-Event-ID and misses nothing.
                    Err(e) => {
                        tracing::warn!(error = %e, "ended an event stream: the database is unavailable");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The `Last-Event-ID` of a reconnecting event stream (0 when absent); `what` says what the id
/// is on this route.
pub(super) fn last_event_id(headers: &HeaderMap, what: &str) -> Result<u64, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(0);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::param(
                "invalid_last_event_id",
                format!("Last-Event-ID must be {what}, a whole number"),
            )
        })
}

/// A record as an SSE event `callback` with this `id`.
pub(super) fn callback_event(id: u64, r: &Stored) -> Event {
    Event::default()
        .event("callback")
        .id(id.to_string())
        .data(String::from_utf8_lossy(&r.json))
}
