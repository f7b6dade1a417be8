//! HTTP routes of the sink (SPEC "The sink"). `router()` builds them; serving is in `server.rs`.
//! Handlers reach the callbacks only through [`Backend`](crate::backend::Backend).
//!
//! # Layout
//! - `ingest.rs` — recording callbacks (`POST|PUT|PATCH /callbacks/{key}`, `POST /callbacks`).
//! - `reads.rs` — latest, all, raw, long-poll (`?wait=`) and SSE (`/events`).
//! - `keys.rs` — listing keys by prefix, deleting a key or a prefix.
//! - `watch.rs` — `GET /watch?prefix=`: one SSE stream of every key under a prefix.
//! - `auth.rs` — `--token`; `query.rs` — query parameters and their specific `400` codes.
//! - `key.rs` — the `{key}` extractor (`400 invalid_key`); `state.rs` — [`AppState`].
//! - `meta.rs` — `/healthz`, `/openapi.json`, the JSON 404/405 fallbacks, the JSON response helper.
//! - `verifiers.rs` — signature verifiers (`/verifiers`, `/verifiers/{id}`).
//! - `metrics.rs` — `GET /metrics` and the layer counting the answers to posted callbacks.
//! - `stubs.rs` — scripted answers: `/stubs`, `/stubs/{id}` (the logic is in `crate::stubs`).

mod auth;
mod ingest;
mod key;
pub(crate) use key::MAX_KEY_LEN;
mod keys;
mod meta;
mod metrics;
mod query;
mod reads;
mod state;
mod stubs;
mod verifiers;
mod watch;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{any, get},
};
use utoipa::OpenApi;

pub use auth::{AuthRefusal, CROSS_SITE, authorize};

use crate::openapi::{
    Callbacks, ErrorBody, ErrorDetail, Health, KeyList, Removed, Stored, StubList, StubsDeleted,
    VerifierBody, VerifierList, VerifierView,
};

/// The sink's routes, for [`crate::openapi::document`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eventual",
        description = "The callback sink (and, under `eventual serve`, the test-runner harness). Every error is `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        meta::openapi_json,
        meta::healthz,
        metrics::scrape,
        keys::list,
        keys::delete_prefix,
        ingest::record_by_lookup,
        reads::latest,
        keys::delete_key,
        ingest::record_keyed,
        reads::all,
        reads::raw,
        reads::events,
        watch::watch,
        stubs::list,
        stubs::delete_prefix,
        stubs::put,
        stubs::get,
        stubs::delete,
        verifiers::list,
        verifiers::delete_prefix,
        verifiers::get_one,
        verifiers::put,
        verifiers::delete_one,
    ),
    components(schemas(ErrorBody, ErrorDetail, Stored, Health, Callbacks, KeyList, StubList, StubsDeleted, crate::Record, crate::KeySummary, crate::Stub, crate::StubResponse, crate::Then, crate::StubInfo, crate::Responded, crate::Signature, VerifierBody, VerifierView, VerifierList, Removed)),
    tags((name = "sink", description = "Callbacks: record, read, wait, list, delete"), (name = "stubs", description = "Scripted answers to callbacks: status, delay, body, dropped connection"), (name = "verifiers", description = "Signature verification of callbacks by key prefix"))
)]
pub(crate) struct SinkApi;

pub use state::AppState;

/// The sink's routes with their body limit, auth and JSON 404/405 fallbacks.
pub fn router(state: AppState) -> Router {
    let max_body = state.config().max_body;
    let has_token = state.config().token.is_some();
    let router = Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(metrics::scrape))
        .route("/openapi.json", get(meta::openapi_json))
        .route(
            "/callbacks",
            get(keys::list)
                .delete(keys::delete_prefix)
                .post(ingest::record_by_lookup)
                // Set here, not by the router's `method_not_allowed_fallback` below (which would
                // replace it unlayered), so that the layer counts this route's 405s too.
                .fallback(meta::method_not_allowed)
                // Counts this route's answers to posts (see `metrics.rs`); `/callbacks/{key}`
                // counts its own in the handler.
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    metrics::count_callbacks,
                )),
        )
        .route("/callbacks/", any(meta::empty_key))
        .route(
            "/callbacks/{key}",
            get(reads::latest)
                .delete(keys::delete_key)
                .post(ingest::record_keyed)
                .put(ingest::record_keyed)
                .patch(ingest::record_keyed),
        )
        .route("/callbacks/{key}/all", get(reads::all))
        .route("/callbacks/{key}/raw", get(reads::raw))
        .route("/callbacks/{key}/events", get(reads::events))
        .route("/watch", get(watch::watch))
        .route("/stubs", get(stubs::list).delete(stubs::delete_prefix))
        .route("/stubs/", any(stubs::empty_id))
        .route(
            "/stubs/{id}",
            get(stubs::get).put(stubs::put).delete(stubs::delete),
        )
        .route(
            "/verifiers",
            get(verifiers::list).delete(verifiers::delete_prefix),
        )
        .route(
            "/verifiers/{id}",
            get(verifiers::get_one)
                .put(verifiers::put)
                .delete(verifiers::delete_one),
        )
        .fallback(meta::route_not_found)
        .method_not_allowed_fallback(meta::method_not_allowed);
    // Only pay for the auth layer (a boxed future per request) when there is a token to check.
    let router = if has_token {
        router.layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
    } else {
        router
    };
    // No layer counts answers here: one on the whole router cost every request a boxed future
    // and service (the ingest routes count their own; see `metrics.rs`). Auth never refuses a
    // posted callback, so nothing outside them answers one.
    router
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}
