//! The handle every route holds, its shared state, and what can be read from it.

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Instant,
};

use dashmap::DashMap;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    claims::Claims,
    config::Config,
    error::HarnessError,
    history::{History, RunFilter, TestRun},
    logs::RunLog,
    metrics::RunMetrics,
    model::{EnvView, Run},
};

use super::Event;

/// The harness: shared by every route (cheap to clone).
#[derive(Debug, Clone)]
pub struct Harness {
    pub(super) inner: Arc<Inner>,
}

/// The state behind a [`Harness`]. Which part owns which truth: the history (`db`) owns every
/// run's status; the claims (`envs`) own who holds an environment and who waits; `active` holds
/// the switches of the runs that have not ended.
#[derive(Debug)]
pub(super) struct Inner {
    /// The settings it was opened with (data dir made absolute).
    pub(super) config: Config,
    /// Run history: runs, their tests, phases and scripts (SQLite by default).
    pub(super) history: History,
    /// The tests that can be run: bundled samples and uploads.
    pub(super) catalog: Catalog,
    /// Exclusive environments: holder and FIFO queue of each (`claims.rs` says why it cannot race).
    pub(super) claims: Claims,
    /// `--workers`: runs executing at once (on this node).
    pub(super) workers: Arc<Semaphore>,
    /// Runs that are queued or running, by id: how to cancel them, their log, their end.
    pub(super) active: DashMap<i64, Active>,
    /// Run and environment changes, for SSE followers (`GET /api/events`).
    pub(super) events: broadcast::Sender<Event>,
    /// Set when `python3 -c "import pytest"` has worked once.
    pub(super) pytest_ok: OnceLock<()>,
    /// Held from giving a run its id to queueing it, so that ids are queue order: two concurrent
    /// submissions cannot be numbered in one order and queued in the other. Deletes of uploads
    /// take it too, so a test cannot vanish between a run's admission and its check.
    pub(super) admission: tokio::sync::Mutex<()>,
    /// Cancelled when the server stops: running runs end `interrupted`, nothing new starts, and
    /// streams (events, log follows) end so the server can exit.
    pub(super) stopping: CancellationToken,
    /// Where the lines of recently read logs start, so a range or the tail of a long log is read
    /// without scanning it again (`log_index.rs`).
    pub(super) log_indexes: crate::log_index::LogIndexes,
    /// Its series at `GET /metrics` (this harness's own, not process-global).
    pub(super) metrics: RunMetrics,
    /// Cluster mode: this node's part in it (`cluster.rs`); `None` on a single process.
    pub(super) cluster: Option<super::cluster::Cluster>,
}

/// A live run's switches.
#[derive(Debug)]
pub(super) struct Active {
    /// Cancelled to stop the run (a user's cancel, or the server stopping).
    pub(super) cancel: CancellationToken,
    /// Its log, open while it lives.
    pub(super) log: Arc<RunLog>,
    /// Its environment, to release at its end.
    pub(super) env_id: u32,
    /// Its test paths, so an upload it will run cannot be deleted under it.
    pub(super) tests: Vec<String>,
    /// Becomes true once the run has its final status.
    pub(super) done: watch::Sender<bool>,
    /// When it was queued (admitted in this process), for `eventual_claim_wait_seconds`.
    pub(super) queued_at: Instant,
    /// When it started, for `eventual_run_duration_seconds`; unset while queued.
    pub(super) started_at: OnceLock<Instant>,
    /// Cluster mode: the fencing token of its claim, checked before its results are written.
    pub(super) fence: Option<i64>,
    /// Cluster mode: the task copying its log into the database, awaited before its end is
    /// announced (so that whoever hears of the end can read the whole log on any node).
    pub(super) shipper: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Harness {
    /// The catalog of tests.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The line index of run `id`'s log (refresh it before use).
    pub(crate) fn log_index(
        &self,
        id: i64,
    ) -> Arc<parking_lot::Mutex<crate::log_index::LineIndex>> {
        self.inner.log_indexes.of(id)
    }

    /// A token cancelled when the server begins to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// One run.
    pub async fn get_run(&self, id: i64) -> Result<Run, HarnessError> {
        self.inner
            .history
            .get_run(id)
            .await?
            .ok_or(HarnessError::UnknownRun(id))
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, HarnessError> {
        self.inner.history.list_runs(filter).await
    }

    /// The most recent runs of test `path`, newest first.
    pub async fn test_history(&self, path: &str, limit: u32) -> Result<Vec<TestRun>, HarnessError> {
        self.inner.history.test_history(path, limit).await
    }

    /// Where `run` stands in its environment's queue, if queued.
    pub async fn queue_position(&self, run: &Run) -> Option<usize> {
        self.inner
            .claims
            .position(run.env_id, run.id)
            .await
            .ok()
            .flatten()
    }

    /// Every environment.
    pub async fn envs(&self) -> Result<Vec<EnvView>, HarnessError> {
        self.inner.claims.views().await
    }

    pub(super) async fn env(&self, env: u32) -> Result<EnvView, HarnessError> {
        let claims = &self.inner.claims;
        claims
            .view(env)
            .await?
            .ok_or(HarnessError::UnknownEnv(env, claims.count()))
    }
}

/// Under `eventual serve`, the sink's `GET /metrics` serves the harness's series after its own.
impl sink::MetricsSource for Harness {
    fn encode<'a>(
        &'a self,
        out: &'a mut String,
    ) -> futures_util::future::BoxFuture<'a, fmt::Result> {
        Box::pin(async move {
            // A database that cannot answer leaves the environment series out, not the page.
            let envs = self.inner.claims.views().await.unwrap_or_default();
            self.inner.metrics.encode(&envs, out)
        })
    }
}
