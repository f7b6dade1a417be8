//! Run history: runs, their tests, phases and scripts — the truth for everything the API shows
//! about a run. Every change of a run or test status is written through at once; memory holds
//! only what is live (queues, cancel switches, log followers).
//!
//! [`History`] is the one way in, with one variant per backend: the embedded SQLite database
//! (`sqlite.rs`, the default) and the cluster's PostgreSQL database (`postgres.rs`, with the run
//! logs in chunks beside it in `log_chunks.rs`). Its methods are async; the SQLite
//! backend runs each statement on Tokio's blocking pool, so a slow disk never stalls the async
//! workers that serve requests.

mod log_chunks;
mod postgres;
mod sqlite;

use std::{path::Path, sync::Arc};

use crate::{
    error::HarnessError,
    model::{Awaiting, Phase, Run, RunStatus, ScriptView, TestStatus},
};

pub(crate) use log_chunks::{AppendError, PgLogChunks, first_in as first_log_chunk_in};
#[cfg(test)]
pub(crate) use postgres::Interrupted;
pub(crate) use postgres::{PgHistory, insert_run_in};
use sqlite::SqliteHistory;

/// Filters of `GET /api/runs`.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    /// Only this environment.
    pub env_id: Option<u32>,
    /// Only this user.
    pub username: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only runs older than this id (the next page).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
    /// Only runs of this test (a catalog path).
    pub test: Option<String>,
}

/// How one test went in one run (`GET /api/tests/{path}/history`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TestRun {
    /// The run.
    pub run_id: i64,
    /// The test's status in it.
    pub status: TestStatus,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: Option<u64>,
    /// Where.
    pub env_id: u32,
    /// Who started the run.
    pub username: String,
    /// When the run was submitted.
    pub created_at: String,
    /// When the run ended.
    pub finished_at: Option<String>,
}

/// What a restart found: runs that were running (with the process group of their running test,
/// if any), and queued runs, oldest first.
pub(crate) type Recovered = (Vec<(i64, Option<i32>)>, Vec<Run>);

/// Where runs are remembered.
#[derive(Debug, Clone)]
pub(crate) enum History {
    /// SQLite under `--data-dir` (the default: one process, no server to run).
    Sqlite(Arc<SqliteHistory>),
    /// The cluster's PostgreSQL database (cluster mode: every node sees every run).
    Postgres(Arc<PgHistory>),
}

/// Runs `f` on the SQLite backend, on the blocking pool.
async fn on_sqlite<T, F>(db: &Arc<SqliteHistory>, f: F) -> Result<T, HarnessError>
where
    T: Send + 'static,
    F: FnOnce(&SqliteHistory) -> rusqlite::Result<T> + Send + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || f(&db))
        .await
        .map_err(|e| {
            HarnessError::Io(std::io::Error::other(format!("a history task failed: {e}")))
        })?
        .map_err(HarnessError::Db)
}

impl History {
    /// Opens (creating and migrating) the SQLite history at `path`.
    pub(crate) fn open_sqlite(path: &Path) -> Result<Self, HarnessError> {
        Ok(Self::Sqlite(Arc::new(SqliteHistory::open(path)?)))
    }

    /// Connects to the cluster's database at `url` (migrating the harness's schema) as node
    /// `node`.
    #[cfg(test)]
    pub(crate) async fn open_postgres(url: &str, node: &str) -> Result<Self, sink::DatabaseError> {
        let pool = crate::database::open(url).await?;
        Ok(Self::Postgres(Arc::new(PgHistory::new(pool, node))))
    }

    /// The cluster's history, in cluster mode.
    pub(crate) fn postgres(&self) -> Option<&PgHistory> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(db) => Some(db),
        }
    }

    /// Stores a new queued run and returns it.
    pub(crate) async fn insert_run(
        &self,
        username: &str,
        env_id: u32,
        tests: &[String],
        prep_count: usize,
    ) -> Result<Run, HarnessError> {
        match self {
            Self::Sqlite(db) => {
                let (username, tests) = (username.to_owned(), tests.to_vec());
                on_sqlite(db, move |db| {
                    db.insert_run(&username, env_id, &tests, prep_count)
                })
                .await
            }
            Self::Postgres(db) => Ok(db.insert_run(username, env_id, tests, prep_count).await?),
        }
    }

    /// How many leading tests of a run are preparation tests (0: not phased).
    pub(crate) async fn prep_count(&self, id: i64) -> Result<usize, HarnessError> {
        match self {
            Self::Sqlite(db) => on_sqlite(db, move |db| db.prep_count(id)).await,
            Self::Postgres(db) => Ok(db.prep_count(id).await?),
        }
    }

    /// Records the states of a run's scripts.
    pub(crate) async fn set_scripts(
        &self,
        id: i64,
        scripts: &[ScriptView],
    ) -> Result<(), HarnessError> {
        match self {
            Self::Sqlite(db) => {
                let scripts = scripts.to_vec();
                on_sqlite(db, move |db| db.set_scripts(id, &scripts)).await
            }
            Self::Postgres(db) => Ok(db.set_scripts(id, scripts).await?),
        }
    }

    /// Records a phased run's phase and awaited keys.
    pub(crate) async fn set_phase(
        &self,
        id: i64,
        phase: Phase,
        awaiting: &[Awaiting],
    ) -> Result<(), HarnessError> {
        match self {
            Self::Sqlite(db) => {
                let awaiting = awaiting.to_vec();
                on_sqlite(db, move |db| db.set_phase(id, phase, &awaiting)).await
            }
            Self::Postgres(db) => Ok(db.set_phase(id, phase, awaiting).await?),
        }
    }

    /// One run, with its tests.
    pub(crate) async fn get_run(&self, id: i64) -> Result<Option<Run>, HarnessError> {
        match self {
            Self::Sqlite(db) => on_sqlite(db, move |db| db.get_run(id)).await,
            Self::Postgres(db) => Ok(db.get_run(id).await?),
        }
    }

    /// Runs matching `filter`, newest first.
    pub(crate) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, HarnessError> {
        match self {
            Self::Sqlite(db) => {
                let filter = filter.clone();
                on_sqlite(db, move |db| db.list_runs(&filter)).await
            }
            Self::Postgres(db) => Ok(db.list_runs(filter).await?),
        }
    }

    /// The most recent runs of test `path`, newest first.
    pub(crate) async fn test_history(
        &self,
        path: &str,
        limit: u32,
    ) -> Result<Vec<TestRun>, HarnessError> {
        match self {
            Self::Sqlite(db) => {
                let path = path.to_owned();
                on_sqlite(db, move |db| db.test_history(&path, limit)).await
            }
            Self::Postgres(db) => Ok(db.test_history(path, limit).await?),
        }
    }

    /// Sets a run's status (and its start or end time).
    pub(crate) async fn set_run_status(
        &self,
        id: i64,
        status: RunStatus,
    ) -> Result<(), HarnessError> {
        match self {
            Self::Sqlite(db) => on_sqlite(db, move |db| db.set_run_status(id, status)).await,
            Self::Postgres(db) => Ok(db.set_run_status(id, status).await?),
        }
    }

    /// Sets a run's final status unless `fence` — cluster mode: its environment and its claim's
    /// fencing token — says the run lost its claim; answers whether it was written. One
    /// statement, so no hand-over on another node can come between the check and the write.
    pub(crate) async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        fence: Option<(u32, i64)>,
    ) -> Result<bool, HarnessError> {
        match (self, fence) {
            (Self::Postgres(db), Some(fence)) => {
                Ok(db.finish_run_fenced(id, status, fence).await?)
            }
            _ => self.set_run_status(id, status).await.map(|()| true),
        }
    }

    /// Sets one test's status, exit code and duration.
    pub(crate) async fn set_test(
        &self,
        run_id: i64,
        position: usize,
        status: TestStatus,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
    ) -> Result<(), HarnessError> {
        match self {
            Self::Sqlite(db) => {
                on_sqlite(db, move |db| {
                    db.set_test(run_id, position, status, exit_code, duration_ms)
                })
                .await
            }
            Self::Postgres(db) => Ok(db
                .set_test(run_id, position, status, exit_code, duration_ms)
                .await?),
        }
    }

    /// Records the process group of a running test.
    pub(crate) async fn set_test_pgid(
        &self,
        run_id: i64,
        position: usize,
        pgid: i32,
    ) -> Result<(), HarnessError> {
        match self {
            Self::Sqlite(db) => {
                on_sqlite(db, move |db| db.set_test_pgid(run_id, position, pgid)).await
            }
            Self::Postgres(db) => Ok(db.set_test_pgid(run_id, position, pgid).await?),
        }
    }

    /// Gives every test of a run that has not ended `status`.
    pub(crate) async fn finish_open_tests(
        &self,
        run_id: i64,
        status: TestStatus,
    ) -> Result<(), HarnessError> {
        match self {
            Self::Sqlite(db) => on_sqlite(db, move |db| db.finish_open_tests(run_id, status)).await,
            Self::Postgres(db) => Ok(db.finish_open_tests(run_id, status).await?),
        }
    }

    /// After a restart: runs that were running (on this node) become `interrupted`; returns
    /// them and the queued runs, oldest first, to go on.
    pub(crate) async fn recover(&self) -> Result<Recovered, HarnessError> {
        match self {
            Self::Sqlite(db) => on_sqlite(db, SqliteHistory::recover).await,
            Self::Postgres(db) => Ok(db.recover().await?),
        }
    }
}

#[cfg(test)]
mod tests;
