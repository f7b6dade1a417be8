//! A run's log by parts, for the web UI's viewer and for scripts: a range of lines (the tail
//! first), a follow from a line on, the raw file as a download, the test sections, and search.
//! Every part is found with the run's line index (`log_index.rs`), so none reads the whole log
//! except a search (one pass) and the first look at a log (one scan).

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;

use crate::{
    error::ApiError,
    log_index,
    openapi::{LogSearch, LogSections},
    runner::Harness,
};

use super::{
    extract::{ApiQuery, RunId},
    query::SearchQuery,
};

/// The 0-based line the answer starts at (a negative `offset` resolved, clamped to the log).
const LOG_OFFSET: HeaderName = HeaderName::from_static("x-log-offset");
/// Complete lines in the log at the time of the answer.
const LOG_LINES: HeaderName = HeaderName::from_static("x-log-lines");

fn text_plain() -> (HeaderName, HeaderValue) {
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    )
}

/// A file that is not there yet is an empty log (a queued run has none).
fn absent_is_empty<T>(result: std::io::Result<T>, empty: impl FnOnce() -> T) -> std::io::Result<T> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(empty()),
        other => other,
    }
}

/// The 0-based first line for `offset` (negative: from the end) in a log of `lines` lines.
fn first_line(offset: i64, lines: u64) -> u64 {
    if offset >= 0 {
        (offset as u64).min(lines)
    } else {
        lines.saturating_sub(offset.unsigned_abs())
    }
}

/// `limit` lines from `offset`, with `X-Log-Offset` and `X-Log-Lines`.
pub(super) async fn lines(
    h: &Harness,
    id: i64,
    offset: i64,
    limit: u64,
) -> Result<Response, ApiError> {
    let path = h.log_file(id).await?;
    let index = h.log_index(id);
    let (first, lines, text) = tokio::task::spawn_blocking(move || {
        absent_is_empty(
            (|| {
                use std::io::{Read, Seek, SeekFrom};
                let (mut file, index) = log_index::open_indexed(&path, &index)?;
                let first = first_line(offset, index.lines());
                let (start, end) = index.byte_range(&mut file, first, limit)?;
                let lines = index.lines();
                drop(index);
                let mut text = Vec::with_capacity((end - start) as usize);
                file.seek(SeekFrom::Start(start))?;
                file.take(end - start).read_to_end(&mut text)?;
                Ok((first, lines, text))
            })(),
            || (0, 0, Vec::new()),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("reading the log of run {id}: {e}")))?;
    Ok((
        [
            text_plain(),
            (LOG_OFFSET, HeaderValue::from(first)),
            (LOG_LINES, HeaderValue::from(lines)),
        ],
        text,
    )
        .into_response())
}

/// The log from line `offset` on, streamed until the run ends; `X-Log-Offset` says where it
/// starts.
pub(super) async fn follow_from(h: &Harness, id: i64, offset: i64) -> Result<Response, ApiError> {
    let path = h.log_file(id).await?;
    let index = h.log_index(id);
    // Taken before the start is found, so a run that ends meanwhile still ends the stream.
    let progress = h.follow_log(id).await;
    let (first, start) = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            absent_is_empty(
                (|| {
                    let (mut file, index) = log_index::open_indexed(&path, &index)?;
                    let first = first_line(offset, index.lines());
                    Ok((first, index.start_of(&mut file, first)?))
                })(),
                || (0, 0),
            )
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("reading the log of run {id}: {e}")))?
    };
    let stream = crate::logs::follow_file_from(path, progress, start)
        .take_until(h.stopping().cancelled_owned());
    Ok((
        [text_plain(), (LOG_OFFSET, HeaderValue::from(first))],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The raw file as it is now, exactly its bytes, as an attachment (`run-ID.log`).
pub(super) async fn download(h: &Harness, id: i64) -> Result<Response, ApiError> {
    use tokio::io::AsyncReadExt;
    let path = h.log_file(id).await?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"run-{id}.log\""))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (body, len) = match tokio::fs::File::open(&path).await {
        Ok(file) => {
            // The length now: a running test may append meanwhile, and the answer must match
            // the length it declares.
            let len = file
                .metadata()
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .len();
            let stream = tokio_util::io::ReaderStream::new(file.take(len));
            (Body::from_stream(stream), len)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Body::empty(), 0),
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "opening the log of run {id}: {e}"
            )));
        }
    };
    Ok((
        [
            text_plain(),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/runs/{id}/log/sections`: each test's and each script's part of the log, with its
/// status and duration.
#[utoipa::path(
    get, path = "/api/runs/{id}/log/sections", tag = "harness",
    params(("id" = i64, Path, description = "The run id")),
    responses((status = 200, description = "Each test's and each script's part of the log, with its status and duration", body = crate::openapi::LogSections), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn sections(
    State(h): State<Harness>,
    RunId(id): RunId,
) -> Result<Response, ApiError> {
    h.get_run(id).await?;
    let path = h.log_file(id).await?;
    let index = h.log_index(id);
    let value = tokio::task::spawn_blocking(move || {
        absent_is_empty(
            log_index::open_indexed(&path, &index).map(|(_, index)| LogSections {
                lines: index.lines(),
                sections: index.sections().to_vec(),
            }),
            || LogSections {
                lines: 0,
                sections: Vec::new(),
            },
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("reading the log of run {id}: {e}")))?;
    Ok(Json(value).into_response())
}

/// `GET /api/runs/{id}/log/search?q=&limit=&ignore_case=`: the lines holding `q` (byte for byte,
/// or in any case with `ignore_case=true`), one pass over the log's complete lines.
#[utoipa::path(
    get, path = "/api/runs/{id}/log/search", tag = "harness",
    params(("id" = i64, Path, description = "The run id"), ("q" = String, Query, min_length = 1, description = "The text to find (case-sensitive unless `ignore_case=true`)"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Matches listed, 1–10000 (default 1000)"), ("ignore_case" = Option<bool>, Query, description = "Match in any case (Unicode case folding); default false")),
    responses((status = 200, description = "The lines holding `q`", body = crate::openapi::LogSearch), (status = 400, description = "`invalid_query`", body = sink::openapi::ErrorBody), (status = 401, description = "`--token` is set and the request did not carry it (`unauthorized`)", body = sink::openapi::ErrorBody), (status = 404, description = "`not_found`: no such run (or an id that is not a number)", body = sink::openapi::ErrorBody))
)]
pub(super) async fn search(
    State(h): State<Harness>,
    RunId(id): RunId,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Response, ApiError> {
    let super::query::Search {
        q: needle,
        limit,
        ignore_case,
    } = q.parts()?;
    let query = needle.clone();
    h.get_run(id).await?;
    let path = h.log_file(id).await?;
    let index = h.log_index(id);
    let value = tokio::task::spawn_blocking(move || {
        absent_is_empty(
            (|| {
                let (mut file, index) = log_index::open_indexed(&path, &index)?;
                let (lines, end) = (index.lines(), index.bytes());
                // The index is not needed while searching: let readers of ranges go on.
                drop(index);
                let hits = log_index::search(&mut file, end, &needle, ignore_case, limit)?;
                Ok(LogSearch {
                    query: needle,
                    ignore_case,
                    lines,
                    count: hits.count,
                    matches: hits.matches,
                    truncated: hits.truncated,
                })
            })(),
            || LogSearch {
                query,
                ignore_case,
                lines: 0,
                count: 0,
                matches: Vec::new(),
                truncated: false,
            },
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("searching the log of run {id}: {e}")))?;
    Ok(Json(value).into_response())
}
