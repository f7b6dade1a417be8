//! Recording callbacks: `POST|PUT|PATCH /callbacks/{key}`, and `POST /callbacks` with the key
//! found in a header or the JSON body. The hot path: route → backend → store → waiter.

use std::{collections::HashMap, io::Write as _};

use axum::{
    body::Bytes,
    extract::{FromRequest as _, OriginalUri, Request, State, rejection::BytesRejection},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
};

use serde_json::value::RawValue;

use super::{
    key::{Key, check_key},
    meta::json_response,
    state::AppState,
};
use crate::{
    backend::InsertError,
    config::Config,
    error::{ApiError, LogError},
    record::{Encoded, Incoming, write_json_str},
};

#[utoipa::path(
    method(post, put, patch), path = "/callbacks/{key}", tag = "sink",
    params(("key" = String, Path, description = "The key (1–1024 bytes of UTF-8, URL-encoded)")),
    request_body(description = "Any body of any content type", content((serde_json::Value = "application/json"), (String = "text/plain"))),
    responses((status = 200, description = "Recorded", body = crate::openapi::Stored), (status = 400, description = "`invalid_key`, `invalid_body`", body = crate::openapi::ErrorBody), (status = 401, description = "`invalid_signature`: a verifier with `reject` found the signature invalid (the callback was recorded)", body = crate::openapi::ErrorBody), (status = 413, description = "`body_too_large`: over `--max-body`", body = crate::openapi::ErrorBody), (status = 507, description = "`sink_full` at `--max-callbacks`, `storage_full`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn record_keyed(
    State(state): State<AppState>,
    key: Result<Key, ApiError>,
    request: Request,
) -> Response {
    let answer = async {
        let Key(key) = key?;
        let (parts, raw) = split(request).await;
        let body = body(raw, state.config().max_body)?;
        store_callback(&state, key, &parts, &body).await
    }
    .await;
    // Counted here rather than by a layer (no boxed future and service per callback); the key's
    // refusal is taken as a `Result` above so that it is counted too.
    super::metrics::counted(&state, answer)
}

#[utoipa::path(
    post, path = "/callbacks", tag = "sink",
    params(("X-Request-Id" = Option<String>, Header, description = "The key (or the `--key-header`s); else the body's `/request_id`, `/requestId`, `/id`")),
    request_body(description = "Any body of any content type", content((serde_json::Value = "application/json"), (String = "text/plain"))),
    responses((status = 200, description = "Recorded", body = crate::openapi::Stored), (status = 400, description = "`missing_key`, `invalid_key`, `invalid_body`", body = crate::openapi::ErrorBody), (status = 401, description = "`invalid_signature`: a verifier with `reject` found the signature invalid (the callback was recorded)", body = crate::openapi::ErrorBody), (status = 413, description = "`body_too_large`: over `--max-body`", body = crate::openapi::ErrorBody), (status = 507, description = "`sink_full` at `--max-callbacks`, `storage_full`", body = crate::openapi::ErrorBody))
)]
pub(super) async fn record_by_lookup(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    // Counted by the `count_callbacks` layer on this route (which also sees its `405`s).
    let config = state.config();
    let (parts, raw) = split(request).await;
    let body = body(raw, config.max_body)?;
    let key = find_key(config, &parts.headers, &body)?;
    store_callback(&state, key, &parts, &body).await
}

/// A request's head, taken as it is (an extractor per part would clone the headers), and its
/// body buffered under the route's body limit (`413` past `--max-body`, as the `Bytes` extractor).
async fn split(request: Request) -> (Head, Result<Bytes, BytesRejection>) {
    let (mut parts, body) = request.into_parts();
    // The path as received, also if this router is ever nested.
    let uri = match parts.extensions.remove::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri,
        None => parts.uri,
    };
    // The body limit travels in the extensions.
    let mut limited = Request::new(body);
    *limited.extensions_mut() = parts.extensions;
    let raw = Bytes::from_request(limited, &()).await;
    let head = Head {
        method: parts.method,
        uri,
        headers: parts.headers,
    };
    (head, raw)
}

/// What an ingest route keeps of a request's head.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn body(body: Result<Bytes, BytesRejection>, max: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge(format!(
                "the body is larger than the sink's limit of {max} bytes: start the sink with a larger --max-body"
            ))
        } else if client_broke_body(&e) {
            ApiError::InvalidBody(format!(
                "the request body could not be read ({e}: {}); send a body that matches its Content-Length or a well-formed chunked body, and keep the connection open until it is sent",
                root_cause(&e)
            ))
        } else {
            ApiError::Internal(format!("failed to read the request body: {e}"))
        }
    })
}

/// Whether a body failed to buffer because of what the client sent or did not send: the
/// connection's HTTP/1 decoder (hyper) reports malformed chunked encoding, an oversized chunk
/// length and a body cut short as its errors; only a misuse of hyper by the server itself is
/// the server's failure.
fn client_broke_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            return !hyper.is_user();
        }
        cause = err.source();
    }
    false
}

/// The innermost error of a chain (hyper's "invalid chunk size line", "unexpected EOF"…).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
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
    for pointer in &config.key_pointers {
        let Some(raw) = raw_at(body, pointer) else {
            continue;
        };
        let text = raw.get().trim();
        let found = if text.starts_with('"') {
            serde_json::from_str::<String>(text)
                .ok()
                .filter(|s| !s.is_empty())
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            // A number is the key as it was written (`1e3` stays `1e3`, `1.50` stays `1.50`).
            Some(text.to_owned())
        } else {
            None
        };
        if let Some(key) = found {
            check_key(&key)?;
            return Ok(key);
        }
    }
    Err(ApiError::MissingKey(format!(
        "no key found: looked in the header(s) {} and the JSON body at {}; send one of them, or POST to /callbacks/{{key}}",
        config.key_headers.join(", "),
        config.key_pointers.join(", "),
    )))
}

/// The exact text of the JSON value at `pointer` (RFC 6901) in `body`, if there is one: walked
/// through borrowed raw values, so nothing on the way is re-serialised.
fn raw_at<'a>(body: &'a [u8], pointer: &str) -> Option<&'a RawValue> {
    let mut at: &RawValue = serde_json::from_slice(body).ok()?;
    if pointer.is_empty() {
        return Some(at);
    }
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = at.get().trim_start();
        at = if text.starts_with('{') {
            let fields: HashMap<String, &RawValue> = serde_json::from_str(at.get()).ok()?;
            fields.get(&token).copied()?
        } else if text.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(at.get()).ok()?;
            items.get(token.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
    }
    Some(at)
}

async fn store_callback(
    state: &AppState,
    key: String,
    head: &Head,
    body: &[u8],
) -> Result<Response, ApiError> {
    let headers = &head.headers;
    let incoming = Incoming {
        method: &head.method,
        path: head.uri.path(),
        query: head.uri.query(),
        headers,
        body,
    };
    // Verified on the raw bytes before encoding: the outcome is part of the record.
    let verifiers = state.verifiers();
    let checked = if verifiers.is_empty() {
        None
    } else {
        verifiers.read(|map| crate::verify::verify(map, &key, headers, body))
    };
    let (signature, refuse) = checked.map_or((None, false), |(s, r)| (Some(s), r));
    let encoded = Encoded::signed(
        &key,
        &incoming,
        std::time::SystemTime::now(),
        signature.as_ref(),
    );
    // A stub is chosen by key before the insert; its response by seq, inside it (the hook). A
    // callback a verifier rejects is answered 401, not by a stub (its record has no response).
    let plan = if refuse {
        None
    } else {
        state.stubs().plan(&key)
    };
    let inserted = match &plan {
        Some(plan) => {
            state
                .backend()
                .insert(&key, &encoded, |seq| plan.annotate(seq))
                .await
        }
        None => state
            .backend()
            .insert_plain(&key, &encoded)
            .await
            .map(|seq| (seq, None)),
    };
    let (seq, answer) = inserted.map_err(|e| match e {
            InsertError::Full(max) => ApiError::Full(format!(
                "the sink is full: it holds {max} callbacks; delete keys you no longer need (DELETE /callbacks?prefix=…) or restart it with a larger --max-callbacks"
            )),
            InsertError::Persist(LogError::StorageFull { dir, .. }) => ApiError::StorageFull(format!(
                "the disk holding the sink's data directory {} is full: this callback was not stored; free space on that disk (the sink accepts callbacks again by itself) and retry",
                dir.display()
            )),
            InsertError::Persist(LogError::SyncFailed) => ApiError::StorageFailed(
                "the disk of the sink's data directory failed to make this callback durable (fsync failed): it was not stored; retry, and check that disk (the sink's log says more)".into(),
            ),
            InsertError::Persist(e) => ApiError::Internal(e.to_string()),
            InsertError::Unavailable(e) => ApiError::from(e),
        })?;
    if let (true, Some(sig)) = (refuse, &signature) {
        return Err(ApiError::InvalidSignature(format!(
            "the callback was recorded as {key:?} seq {seq}, but its signature is invalid for verifier {:?} ({}): {}",
            sig.verifier,
            sig.scheme,
            sig.reason.as_deref().unwrap_or("invalid")
        )));
    }
    if let Some(answer) = answer {
        // Stored and durable, every lock released: now the scripted answer (maybe delayed).
        state.stubs().hit(answer.stub_id());
        return Ok(answer.respond(&key, seq, state.shutdown()).await);
    }
    let mut out = Vec::with_capacity(key.len() + 32);
    out.extend_from_slice(b"{\"key\":");
    write_json_str(&mut out, &key);
    let _ = write!(out, ",\"seq\":{seq}}}");
    Ok(json_response(StatusCode::OK, out.into()))
}
