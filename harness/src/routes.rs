//! HTTP routes of the harness (SPEC "The harness"). `router()` builds them; `eventual serve`
//! merges them with the sink's on one port.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{
        DefaultBodyLimit, Multipart, OriginalUri, Path, Query, Request, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    catalog::{TestPath, UploadError},
    db::RunFilter,
    error::ApiError,
    model::RunStatus,
    runner::{Event, Harness},
};

/// Longest username.
const MAX_USERNAME: usize = 64;

/// The harness's routes.
pub fn router(harness: Harness) -> Router {
    let max_upload = harness.config().max_upload;
    let router = Router::new()
        .route(
            "/api/tests",
            get(list_tests)
                .post(upload_test)
                .layer(DefaultBodyLimit::max(max_upload + 64 * 1024)),
        )
        .route("/api/tests/{*path}", get(test_source).delete(delete_test))
        .route("/api/runs", get(list_runs).post(create_run))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/log", get(run_log))
        .route("/api/runs/{id}/events", get(run_events))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/runs/{id}/rerun", post(rerun))
        .route("/api/envs", get(list_envs))
        .route("/api/envs/{id}/pause", post(pause_env))
        .route("/api/envs/{id}/resume", post(resume_env))
        .route("/api/events", get(events))
        .method_not_allowed_fallback(method_not_allowed);
    // The web UI: three embedded files, so the binary works offline and needs no build step.
    let ui = Router::new()
        .route("/", get(ui_index))
        .route("/ui/{file}", get(ui_asset));
    let router = if harness.config().token.is_some() {
        router.layer(middleware::from_fn_with_state(
            harness.clone(),
            require_token,
        ))
    } else {
        router
    };
    router.with_state(harness).merge(ui)
}

async fn ui_index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        include_str!("../ui/index.html"),
    )
        .into_response()
}

async fn ui_asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (
            include_str!("../ui/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (include_str!("../ui/style.css"), "text/css; charset=utf-8"),
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

async fn method_not_allowed(method: Method, uri: OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}: see the HTTP API table in README.md",
        uri.path()
    ))
}

async fn require_token(State(h): State<Harness>, request: Request, next: Next) -> Response {
    let Some(token) = h.config().token.as_deref() else {
        return next.run(request).await;
    };
    if sink::presented_token_matches(request.headers(), token) {
        next.run(request).await
    } else {
        ApiError::Unauthorized(
            "this server needs `Authorization: Bearer <token>` (the --token it was started with); \
             the web UI asks for it once and keeps it in a cookie"
                .into(),
        )
        .into_response()
    }
}

async fn list_tests(State(h): State<Harness>) -> Json<Value> {
    let (tests, support) = h.catalog().listing();
    Json(serde_json::json!({
        "tests": tests,
        "support": support,
        "configs": h.catalog().configs(),
    }))
}

async fn test_source(
    State(h): State<Harness>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let test = TestPath::parse(&path).map_err(ApiError::InvalidPath)?;
    let file = h.catalog().resolve_file(&test).ok_or_else(|| {
        ApiError::NotFound(format!(
            "there is no test {path}: GET /api/tests lists them"
        ))
    })?;
    let text = tokio::fs::read(&file)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {}: {e}", file.display())))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// `DELETE /api/tests/{path}`: an upload (test, support file or `eventual.toml`) → `204`.
async fn delete_test(
    State(h): State<Harness>,
    Path(path): Path<String>,
) -> Result<StatusCode, ApiError> {
    let test = TestPath::parse(&path).map_err(ApiError::InvalidPath)?;
    tokio::task::spawn_blocking(move || h.delete_upload(&test))
        .await
        .map_err(|e| ApiError::Internal(format!("the delete task failed: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}

async fn upload_test(
    State(h): State<Harness>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest {
        code: "invalid_multipart",
        message: format!(
            "send multipart/form-data with fields `file`, `dir` and optionally `overwrite` ({e})"
        ),
    })?;
    let max = h.config().max_upload;
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut dir = String::new();
    let mut overwrite = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(max)),
            Err(e) => {
                return Err(ApiError::BadRequest {
                    code: "invalid_multipart",
                    message: format!("the multipart body does not parse: {e}"),
                });
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().unwrap_or("").to_owned();
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large(max)
                    } else {
                        ApiError::BadRequest {
                            code: "invalid_multipart",
                            message: format!("reading `file`: {e}"),
                        }
                    }
                })?;
                if bytes.len() > max {
                    return Err(too_large(max));
                }
                file = Some((filename, bytes.to_vec()));
            }
            "dir" => dir = field.text().await.unwrap_or_default(),
            "overwrite" => {
                overwrite = matches!(
                    field.text().await.unwrap_or_default().trim(),
                    "true" | "1" | "on" | "yes"
                )
            }
            _ => {}
        }
    }
    let (filename, bytes) = file.ok_or_else(|| {
        ApiError::Invalid(vec![(
            "file".into(),
            "missing: send the test as a multipart field named `file`".into(),
        )])
    })?;
    if filename.is_empty() {
        return Err(ApiError::Invalid(vec![(
            "file".into(),
            "the `file` field has no file name".into(),
        )]));
    }
    if bytes.is_empty() {
        return Err(ApiError::Invalid(vec![(
            "file".into(),
            format!("{filename} is empty"),
        )]));
    }
    let catalog = h.catalog().clone();
    let stored =
        tokio::task::spawn_blocking(move || catalog.upload(&dir, &filename, &bytes, overwrite))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    match stored {
        Ok(path) => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "path": path.as_str() })),
        )
            .into_response()),
        Err(UploadError::InvalidPath(m)) => Err(ApiError::InvalidPath(m)),
        Err(UploadError::Unsupported(m)) => Err(ApiError::Unsupported(m)),
        Err(UploadError::Exists(m)) => Err(ApiError::Conflict(m)),
        Err(UploadError::InvalidConfig(problems)) => Err(ApiError::InvalidConfig(problems)),
        Err(UploadError::Io(e)) => Err(ApiError::Internal(e.to_string())),
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "the upload is larger than {max} bytes: split it, or start the server with a larger --max-upload"
    ))
}

async fn create_run(
    State(h): State<Harness>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::Unsupported(
            "send the run as JSON with `Content-Type: application/json`".into(),
        ),
        other => ApiError::BadRequest {
            code: "invalid_json",
            message: format!("the body is not valid JSON ({other}): send {{\"username\", \"env_id\", \"tests\": [paths]}}"),
        },
    })?;
    let (username, env_id, tests) = validate_run(&h, &body)?;
    let run = h.create_run(&username, env_id, &tests)?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

/// Checks every field of a create request, collecting every problem.
fn validate_run(h: &Harness, body: &Value) -> Result<(String, u32, Vec<String>), ApiError> {
    let mut problems = Vec::new();
    let envs = h.config().envs;
    let username = match body.get("username") {
        Some(Value::String(u)) if u.trim().is_empty() => {
            problems.push(("username".into(), "must not be empty".into()));
            None
        }
        Some(Value::String(u)) if u.chars().count() > MAX_USERNAME => {
            problems.push((
                "username".into(),
                format!("is longer than {MAX_USERNAME} characters"),
            ));
            None
        }
        Some(Value::String(u)) if u.chars().any(char::is_control) => {
            problems.push((
                "username".into(),
                "must not contain control characters".into(),
            ));
            None
        }
        Some(Value::String(u)) => Some(u.trim().to_owned()),
        Some(_) => {
            problems.push(("username".into(), "must be a string".into()));
            None
        }
        None => {
            problems.push(("username".into(), "is required".into()));
            None
        }
    };
    let env_id = match body.get("env_id") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(id) if (1..=u64::from(envs)).contains(&id) => Some(id as u32),
            _ => {
                problems.push((
                    "env_id".into(),
                    format!("must be a whole number from 1 to {envs}"),
                ));
                None
            }
        },
        Some(_) => {
            problems.push((
                "env_id".into(),
                format!("must be a number from 1 to {envs}, not a string"),
            ));
            None
        }
        None => {
            problems.push(("env_id".into(), format!("is required (1 to {envs})")));
            None
        }
    };
    let mut tests = Vec::new();
    match body.get("tests") {
        Some(Value::Array(list)) if list.is_empty() => {
            problems.push((
                "tests".into(),
                "name at least one test (GET /api/tests lists them)".into(),
            ));
        }
        Some(Value::Array(list)) => {
            let mut bad = Vec::new();
            for item in list {
                match item.as_str() {
                    Some(p) => match TestPath::parse(p) {
                        Ok(tp) if tp.is_support() => bad.push(format!(
                            "{p} is a support file (its name or a directory starts with `_`, or \
                             it is conftest.py): it is not run as a test; run the tests that use it"
                        )),
                        Ok(tp) if h.catalog().resolve(&tp).is_some() => {
                            if tests.contains(&tp.as_str().to_owned()) {
                                bad.push(format!("{p} is listed twice"));
                            } else {
                                tests.push(tp.as_str().to_owned());
                            }
                        }
                        Ok(_) => bad.push(format!("unknown test {p}")),
                        Err(e) => bad.push(e),
                    },
                    None => bad.push(format!("{item} is not a path")),
                }
            }
            if !bad.is_empty() {
                problems.push(("tests".into(), bad.join("; ")));
            }
        }
        Some(_) => problems.push(("tests".into(), "must be a list of test paths".into())),
        None => problems.push(("tests".into(), "is required: a list of test paths".into())),
    }
    match (username, env_id, problems.is_empty()) {
        (Some(u), Some(e), true) => Ok((u, e, tests)),
        _ => Err(ApiError::Invalid(problems)),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    env_id: Option<String>,
    username: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn list_runs(
    State(h): State<Harness>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest {
        code: "invalid_query",
        message: e.to_string(),
    })?;
    let bad = |name: &str, form: &str| ApiError::BadRequest {
        code: "invalid_query",
        message: format!("invalid `{name}`: {form}"),
    };
    let filter = RunFilter {
        env_id: q.env_id.map(|v| v.parse().map_err(|_| bad("env_id", "a whole number"))).transpose()?,
        username: q.username,
        status: q
            .status
            .map(|s| RunStatus::parse(&s).ok_or_else(|| bad("status", "one of queued, running, passed, failed, timed_out, cancelled, error, interrupted")))
            .transpose()?,
        before: q.before.map(|v| v.parse().map_err(|_| bad("before", "a run id"))).transpose()?,
        limit: q
            .limit
            .map(|v| v.parse::<u32>().ok().filter(|l| (1..=1000).contains(l)).ok_or_else(|| bad("limit", "1 to 1000")))
            .transpose()?
            .unwrap_or(50),
    };
    Ok(Json(serde_json::json!({ "runs": h.list_runs(&filter)? })))
}

fn run_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("there is no run {raw:?}: run ids are numbers")))
}

async fn get_run(State(h): State<Harness>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = h.get_run(run_id(&id)?)?;
    let mut value = serde_json::to_value(&run).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(position) = h.queue_position(&run) {
        value["queue_position"] = position.into();
    }
    Ok(Json(value).into_response())
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    follow: Option<String>,
}

async fn run_log(
    State(h): State<Harness>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    h.get_run(id)?;
    let follow = matches!(q.follow.as_deref(), Some("true" | "1"));
    let progress = if follow { h.log_progress(id) } else { None };
    let stream = crate::logs::follow_file(h.log_path(id), progress)
        .take_until(h.stopping().cancelled_owned());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn run_events(
    State(h): State<Harness>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = run_id(&id)?;
    let events = h.subscribe();
    let run = h.get_run(id)?;
    let first = SseEvent::default().event("run").json_data(&run).ok();
    let finished = run.status.is_finished();
    let log_lines = crate::logs::follow_file(h.log_path(id), h.log_progress(id))
        .flat_map(|chunk| {
            let lines: Vec<String> = chunk
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .lines()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            futures_util::stream::iter(lines)
        })
        .map(|line| Ok(SseEvent::default().event("log").data(line)));
    // Intermediate changes (a test starts or ends) interleave with the log lines. The stream
    // ends once the log is complete — which happens only after the final status is stored — and
    // then closes with that final `run` event.
    let done = h.done_signal(id);
    let until_done = async move {
        if let Some(mut done) = done {
            let _ = done.wait_for(|d| *d).await;
        }
    };
    let run_changes = tokio_stream::wrappers::BroadcastStream::new(events)
        .filter_map(move |e| async move {
            match e {
                Ok(Event::Run(run)) if run.id == id && !run.status.is_finished() => {
                    SseEvent::default()
                        .event("run")
                        .json_data(&run)
                        .ok()
                        .map(Ok)
                }
                _ => None,
            }
        })
        .take_until(until_done);
    let stopping = h.stopping();
    let last = futures_util::stream::once(async move {
        let run = h.get_run(id).ok();
        run.and_then(|r| SseEvent::default().event("run").json_data(&r).ok())
    })
    .filter_map(|e| async move { e.map(Ok) });
    let head = futures_util::stream::iter(first.map(Ok));
    let live: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        if finished {
            Box::pin(log_lines)
        } else {
            Box::pin(futures_util::stream::select(log_lines, run_changes).chain(last))
        };
    let stream = head.chain(live).take_until(stopping.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn cancel_run(
    State(h): State<Harness>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = h.cancel(run_id(&id)?).await?;
    Ok(Json(
        serde_json::to_value(run).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

async fn rerun(State(h): State<Harness>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let old = h.get_run(run_id(&id)?)?;
    let tests: Vec<String> = old.tests.iter().map(|t| t.path.clone()).collect();
    let body =
        serde_json::json!({ "username": old.username, "env_id": old.env_id, "tests": tests });
    let (username, env_id, tests) = validate_run(&h, &body)?;
    let run = h.create_run(&username, env_id, &tests)?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

async fn list_envs(State(h): State<Harness>) -> Json<Value> {
    Json(serde_json::to_value(h.envs()).unwrap_or_default())
}

fn env_id(raw: &str, h: &Harness) -> Result<u32, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::NotFound(format!(
            "there is no environment {raw:?}: environments are 1..={}",
            h.config().envs
        ))
    })
}

async fn pause_env(
    State(h): State<Harness>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = h.pause(env_id(&id, &h)?)?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

async fn resume_env(
    State(h): State<Harness>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = h.resume(env_id(&id, &h)?)?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

async fn events(State(h): State<Harness>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stopping = h.stopping();
    let stream =
        tokio_stream::wrappers::BroadcastStream::new(h.subscribe()).filter_map(|e| async move {
            match e {
                Ok(Event::Run(run)) => SseEvent::default()
                    .event("run")
                    .json_data(&run)
                    .ok()
                    .map(Ok),
                Ok(Event::Env(env)) => SseEvent::default()
                    .event("env")
                    .json_data(&env)
                    .ok()
                    .map(Ok),
                // A slow client missed events; it keeps the stream and catches up on the next ones.
                Err(_) => None,
            }
        });
    Sse::new(stream.take_until(stopping.cancelled_owned())).keep_alive(KeepAlive::default())
}
