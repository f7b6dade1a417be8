//! Query parameters of the runs routes, parsed into what the harness takes; a bad value is
//! `400 invalid_query` naming the parameter and the form it wants.

use serde::Deserialize;

use crate::{error::ApiError, history::RunFilter, model::RunStatus};

/// `GET /api/runs?env_id=&username=&status=&limit=&before=&test=`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    env_id: Option<String>,
    username: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    test: Option<String>,
}

impl ListQuery {
    /// The filter these parameters ask for.
    pub(super) fn filter(self) -> Result<RunFilter, ApiError> {
        let bad = |name: &str, form: &str| ApiError::BadRequest {
            code: "invalid_query",
            message: format!("invalid `{name}`: {form}"),
        };
        Ok(RunFilter {
            env_id: self
                .env_id
                .map(|v| v.parse().map_err(|_| bad("env_id", "a whole number")))
                .transpose()?,
            username: self.username,
            test: self.test,
            status: self
                .status
                .map(|s| {
                    RunStatus::parse(&s).ok_or_else(|| {
                        bad(
                            "status",
                            "one of queued, running, passed, failed, timed_out, cancelled, error, interrupted",
                        )
                    })
                })
                .transpose()?,
            before: self
                .before
                .map(|v| v.parse().map_err(|_| bad("before", "a run id")))
                .transpose()?,
            limit: self
                .limit
                .map(|v| {
                    v.parse::<u32>()
                        .ok()
                        .filter(|l| (1..=1000).contains(l))
                        .ok_or_else(|| bad("limit", "1 to 1000"))
                })
                .transpose()?
                .unwrap_or(50),
        })
    }
}

/// `GET /api/runs/{id}/log?follow=&offset=&limit=&download=`.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    follow: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
    download: Option<String>,
}

/// Most lines one range answer holds.
pub(super) const MAX_LOG_LINES: u64 = 10_000;

/// What a log request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogRequest {
    /// The whole log as it is now; with `follow`, streamed until the run ends (no range given).
    Whole { follow: bool },
    /// `limit` lines from 0-based line `offset` (from the end when negative).
    Lines { offset: i64, limit: u64 },
    /// Streamed from 0-based line `offset` (from the end when negative) until the run ends.
    FollowFrom { offset: i64 },
    /// The raw file, as an attachment.
    Download,
}

fn bad(name: &str, form: &str) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message: format!("invalid `{name}`: {form}"),
    }
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(bad(name, "true or false")),
    }
}

impl LogQuery {
    /// The request these parameters make, or `400 invalid_query`.
    pub(super) fn request(&self) -> Result<LogRequest, ApiError> {
        // As before ranges existed: `true`/`1` follow, any other value does not.
        let follow = matches!(self.follow.as_deref(), Some("true" | "1"));
        let download = flag("download", self.download.as_deref())?;
        let offset = self
            .offset
            .as_deref()
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    bad(
                        "offset",
                        "a whole number of lines to skip (negative: counted from the end)",
                    )
                })
            })
            .transpose()?;
        let limit = self
            .limit
            .as_deref()
            .map(|v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|l| (1..=MAX_LOG_LINES).contains(l))
                    .ok_or_else(|| bad("limit", "1 to 10000 lines"))
            })
            .transpose()?;
        if download {
            if follow || offset.is_some() || limit.is_some() {
                return Err(bad(
                    "download",
                    "the whole file only: give it without follow, offset or limit",
                ));
            }
            return Ok(LogRequest::Download);
        }
        Ok(match (follow, offset, limit) {
            (_, None, None) => LogRequest::Whole { follow },
            (true, _, Some(_)) => {
                return Err(bad(
                    "limit",
                    "not with follow=true (a followed log ends with the run): drop one",
                ));
            }
            (true, Some(offset), None) => LogRequest::FollowFrom { offset },
            (false, offset, limit) => LogRequest::Lines {
                offset: offset.unwrap_or(0),
                limit: limit.unwrap_or(1000),
            },
        })
    }
}

/// `GET /api/runs/{id}/log/search?q=&limit=&ignore_case=`.
#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    limit: Option<String>,
    ignore_case: Option<String>,
}

/// What a search asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Search {
    /// The text to find.
    pub(super) q: String,
    /// How many matching lines to list.
    pub(super) limit: usize,
    /// Match in any case (`ignore_case=true`); byte for byte otherwise.
    pub(super) ignore_case: bool,
}

impl SearchQuery {
    /// What this search asks for, or `400 invalid_query`.
    pub(super) fn parts(self) -> Result<Search, ApiError> {
        let ignore_case = flag("ignore_case", self.ignore_case.as_deref())?;
        let q = self
            .q
            .filter(|q| !q.is_empty())
            .ok_or_else(|| bad("q", "the text to find (not empty)"))?;
        if q.len() > 1000 {
            return Err(bad("q", "at most 1000 bytes"));
        }
        let limit = self
            .limit
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| bad("limit", "1 to 10000 matches"))
            })
            .transpose()?
            .unwrap_or(1000);
        Ok(Search {
            q,
            limit,
            ignore_case,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        follow: Option<&str>,
        offset: Option<&str>,
        limit: Option<&str>,
        download: Option<&str>,
    ) -> Result<LogRequest, ApiError> {
        LogQuery {
            follow: follow.map(String::from),
            offset: offset.map(String::from),
            limit: limit.map(String::from),
            download: download.map(String::from),
        }
        .request()
    }

    #[test]
    fn log_parameters_make_the_request_they_name() {
        assert_eq!(
            query(None, None, None, None).ok(),
            Some(LogRequest::Whole { follow: false })
        );
        assert_eq!(
            query(Some("true"), None, None, None).ok(),
            Some(LogRequest::Whole { follow: true })
        );
        assert_eq!(
            query(None, Some("-50"), None, None).ok(),
            Some(LogRequest::Lines {
                offset: -50,
                limit: 1000
            })
        );
        assert_eq!(
            query(None, None, Some("5"), None).ok(),
            Some(LogRequest::Lines {
                offset: 0,
                limit: 5
            })
        );
        assert_eq!(
            query(Some("true"), Some("7"), None, None).ok(),
            Some(LogRequest::FollowFrom { offset: 7 })
        );
        assert_eq!(
            query(None, None, None, Some("true")).ok(),
            Some(LogRequest::Download)
        );
        for (f, o, l, d) in [
            (None, Some("x"), None, None),
            (None, Some("1.5"), None, None),
            (None, None, Some("0"), None),
            (None, None, Some("10001"), None),
            (None, None, Some("-1"), None),
            (None, None, None, Some("yes")),
            (Some("true"), None, Some("10"), None),
            (None, Some("1"), None, Some("true")),
        ] {
            assert!(query(f, o, l, d).is_err(), "{f:?} {o:?} {l:?} {d:?}");
        }
    }
}

/// `GET /api/tests/{path}/history?limit=`.
#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<String>,
}

impl HistoryQuery {
    /// How many runs to list (1–1000, default 50).
    pub(super) fn limit(&self) -> Result<u32, ApiError> {
        self.limit.as_deref().map_or(Ok(50), |v| {
            v.parse::<u32>()
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| ApiError::BadRequest {
                    code: "invalid_query",
                    message: "invalid `limit`: 1 to 1000".into(),
                })
        })
    }
}
