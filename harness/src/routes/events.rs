//! Server-Sent Events: one run (`run` and `log` events, ending after its final `run` event), and
//! every run and environment change for the UI's live pages.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures_util::{Stream, StreamExt};

use crate::{
    error::ApiError,
    runner::{Event, Harness},
};

use super::extract::RunId;

#[utoipa::path(
    get, path = "/api/runs/{id}/events", tag = "harness",
    params(("id" = i64, Path, description = "The run id")),
    responses((status = 200, description = "SSE: `run` at once and on every change, `log` per line; ends after the final `run`", body = String, content_type = "text/event-stream"), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn run_events(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let events = h.subscribe();
    let run = h.get_run(id).await?;
    let first = SseEvent::default().event("run").json_data(&run).ok();
    let finished = run.status.is_finished();
    let log_lines = crate::logs::follow_file(h.log_file(id).await?, h.follow_log(id).await)
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
    let done = h.done_signal(id).await;
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
        let run = h.get_run(id).await.ok();
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

#[utoipa::path(
    get, path = "/api/events", tag = "harness",
    responses((status = 200, description = "SSE: `run` on every create/change, `env` on every environment change", body = String, content_type = "text/event-stream"), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn events(
    State(h): State<Harness>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
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
