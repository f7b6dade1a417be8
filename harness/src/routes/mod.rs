//! HTTP routes of the harness (the README's "HTTP API (harness)"). [`router`] builds them;
//! `eventual serve` merges them with the sink's on one port.
//!
//! # Layout
//! - `catalog.rs` — tests, support files and configurations: list, read, upload, delete.
//! - `runs.rs` — runs: create, list, read, log, cancel, rerun; `new_run.rs` — the typed, validated
//!   run request; `query.rs` — their query parameters.
//! - `junit.rs` — a run as JUnit XML.
//! - `logs.rs` — a run's log by parts: line ranges, follow from a line, download, sections,
//!   search (the whole log and `?follow=true` stay in `runs.rs`).
//! - `events.rs` — Server-Sent Events of one run and of everything.
//! - `envs.rs` — the environments board, pause and resume.
//! - `extract.rs` — extractors whose rejections are the API error body; the `405` answer.
//! - `auth.rs` — `--token`; `ui.rs` — the embedded web UI.

mod auth;
mod catalog;
mod envs;
mod events;
mod extract;
mod junit;
mod logs;
mod new_run;
mod query;
mod runs;
mod ui;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};

use utoipa::OpenApi;

use crate::runner::Harness;

/// The harness's routes, for [`crate::openapi::document`].
#[derive(OpenApi)]
#[openapi(
    paths(
        catalog::list_tests,
        catalog::upload_test,
        catalog::test_source,
        catalog::test_history,
        catalog::delete_test,
        runs::create_run,
        runs::list_runs,
        runs::get_run,
        runs::run_log,
        junit::run_junit,
        logs::sections,
        logs::search,
        events::run_events,
        runs::cancel_run,
        runs::rerun,
        envs::list_envs,
        envs::pause_env,
        envs::resume_env,
        envs::list_nodes,
        events::events,
        ui::ui_index,
        ui::ui_asset,
    ),
    components(schemas(
        crate::Run, crate::RunTest, crate::RunStatus, crate::TestStatus, crate::Phase,
        crate::Awaiting, crate::ScriptView, crate::ScriptState, crate::EnvView, crate::EnvState,
        crate::openapi::RunList, crate::openapi::NewRunRequest, crate::openapi::RerunRequest,
        crate::openapi::Uploaded, crate::openapi::Upload, crate::openapi::Only,
        crate::openapi::EnvChoice, crate::openapi::Any, crate::openapi::TestName,
        crate::nodes::NodeView, crate::nodes::NodeState,
    )),
    tags((name = "harness", description = "Tests, runs and environments"), (name = "ui", description = "The web UI"))
)]
pub(crate) struct HarnessApi;

/// The harness's routes (and the web UI's).
pub fn router(harness: Harness) -> Router {
    let max_upload = harness.config().max_upload;
    let router = Router::new()
        .route(
            "/api/tests",
            get(catalog::list_tests)
                .post(catalog::upload_test)
                .layer(DefaultBodyLimit::max(max_upload + 64 * 1024)),
        )
        .route(
            "/api/tests/{*path}",
            get(catalog::test_source).delete(catalog::delete_test),
        )
        .route(
            "/api/runs",
            get(runs::list_runs)
                .post(runs::create_run)
                .layer(DefaultBodyLimit::max(extract::MAX_RUN_REQUEST)),
        )
        .route("/api/runs/{id}", get(runs::get_run))
        .route("/api/runs/{id}/log", get(runs::run_log))
        .route("/api/runs/{id}/junit.xml", get(junit::run_junit))
        .route("/api/runs/{id}/log/sections", get(logs::sections))
        .route("/api/runs/{id}/log/search", get(logs::search))
        .route("/api/runs/{id}/events", get(events::run_events))
        .route("/api/runs/{id}/cancel", post(runs::cancel_run))
        .route("/api/runs/{id}/rerun", post(runs::rerun))
        .route("/api/envs", get(envs::list_envs))
        .route("/api/envs/{id}/pause", post(envs::pause_env))
        .route("/api/envs/{id}/resume", post(envs::resume_env))
        .route("/api/nodes", get(envs::list_nodes))
        .route("/api/events", get(events::events))
        .method_not_allowed_fallback(extract::method_not_allowed);
    let ui = Router::new()
        .route("/", get(ui::ui_index))
        .route("/ui/{file}", get(ui::ui_asset));
    let router = if harness.config().token.is_some() {
        router.layer(middleware::from_fn_with_state(
            harness.clone(),
            auth::require_token,
        ))
    } else {
        router
    };
    router.with_state(harness).merge(ui)
}
