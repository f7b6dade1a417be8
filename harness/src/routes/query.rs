//! Query parameters of the runs routes, parsed into what the harness takes; a bad value is
//! `400 invalid_query` naming the parameter and the form it wants.

use serde::Deserialize;

use crate::{error::ApiError, history::RunFilter, model::RunStatus};

/// `GET /api/runs?env_id=&username=&status=&limit=&before=`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    env_id: Option<String>,
    username: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
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

/// `GET /api/runs/{id}/log?follow=true`.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    follow: Option<String>,
}

impl LogQuery {
    /// Whether to stream the log until the run ends.
    pub(super) fn follow(&self) -> bool {
        matches!(self.follow.as_deref(), Some("true" | "1"))
    }
}
