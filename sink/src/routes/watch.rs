//! `GET /watch?prefix=P`: one SSE stream of every record under a prefix (SPEC "Watching many
//! keys"), in the per-key stream's format with the sink-wide id as the event id.

use std::{collections::VecDeque, convert::Infallible};

use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::Stream;

use super::{
    MAX_KEY_LEN,
    keys::required_prefix,
    query::Params,
    reads::{callback_event, last_event_id},
    state::AppState,
};
use crate::{backend::Stored, error::ApiError};

#[utoipa::path(
    get, path = "/watch", tag = "sink",
    params(
        ("prefix" = String, Query, description = "Every key starting with this (`prefix=` is every key)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume strictly after this id"),
    ),
    responses((status = 200, description = "SSE: event `callback`, `id` = the record's sink-wide id (increasing), data = the record (with its `key`); past then live", body = String, content_type = "text/event-stream"), (status = 400, description = "`missing_prefix`, `invalid_prefix`, `invalid_last_event_id`, `invalid_query`", body = crate::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = crate::openapi::ErrorBody))
)]
pub(super) async fn watch(
    State(state): State<AppState>,
    p: Params,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let prefix = required_prefix(p.prefix, "GET /watch", "watch every key")?;
    if prefix.len() > MAX_KEY_LEN {
        return Err(ApiError::param(
            "invalid_prefix",
            format!(
                "the prefix is {} bytes long, but keys are at most {MAX_KEY_LEN} bytes, so it matches none: use a shorter prefix",
                prefix.len()
            ),
        ));
    }
    let after = last_event_id(&headers, "the id of the last event received")?;
    let watch = state.backend().watch(&prefix, after);
    let stream = futures_util::stream::unfold(
        (state, watch, VecDeque::<Stored>::new()),
        |(state, mut watch, mut pending)| async move {
            loop {
                if let Some(r) = pending.pop_front() {
                    let event = callback_event(r.id, &r);
                    return Some((Ok(event), (state, watch, pending)));
                }
                // One batch at a time, read from the store when the last one has been sent:
                // a slow reader holds a batch, never a backlog. The stream ends on shutdown.
                match watch.next(state.shutdown()).await {
                    Ok(Some(batch)) => pending.extend(batch),
                    Ok(None) => return None,
                    // The client reconnects with Last-Event-ID and misses nothing.
                    Err(e) => {
                        tracing::warn!(error = %e, "ended a watch stream: the database is unavailable");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
