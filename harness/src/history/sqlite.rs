//! The embedded history: runs and their tests in SQLite (WAL mode) under `--data-dir`.
//!
//! Statements are short, so one connection behind a mutex is enough; [`super::History`] calls
//! it on the blocking pool, never on an async worker.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Awaiting, Phase, Run, RunStatus, RunTest, ScriptView, TestStatus, now_rfc3339};

use super::{Recovered, RunFilter, TestRun};

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT    NOT NULL,
    env_id      INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
CREATE INDEX runs_by_env ON runs (env_id, id);
CREATE INDEX runs_by_user ON runs (username, id);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE TABLE run_tests (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    position    INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    exit_code   INTEGER,
    duration_ms INTEGER,
    PRIMARY KEY (run_id, position)
);
"#,
    // The process group of a running test, so that a restart after a crash can end what the
    // crashed server left running.
    "ALTER TABLE run_tests ADD COLUMN pgid INTEGER;",
    // Phased runs: how many leading tests are preparation tests, the current phase, and the
    // awaited keys as JSON.
    "ALTER TABLE runs ADD COLUMN prep_count INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN phase TEXT;
     ALTER TABLE runs ADD COLUMN awaiting TEXT;",
    // Services in a run: the states of its eventual.toml scripts, as JSON.
    "ALTER TABLE runs ADD COLUMN scripts TEXT;",
    // A test's history (`GET /api/tests/{path}/history`, `GET /api/runs?test=`).
    "CREATE INDEX run_tests_by_path ON run_tests (path, run_id);",
];

/// The SQLite history database.
#[derive(Debug)]
pub(crate) struct SqliteHistory {
    conn: Mutex<Connection>,
}

/// A database failure; its detail is logged, users get a 500.
pub(crate) type DbResult<T> = Result<T, rusqlite::Error>;

impl SqliteHistory {
    /// Opens (creating and migrating) the database at `path`.
    pub(crate) fn open(path: &Path) -> DbResult<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let db = Self {
            conn: Mutex::new(conn),
        };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&self) -> DbResult<()> {
        let mut conn = self.conn.lock();
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Stores a new queued run and returns it.
    pub(crate) fn insert_run(
        &self,
        username: &str,
        env_id: u32,
        tests: &[String],
        prep_count: usize,
    ) -> DbResult<Run> {
        let created_at = now_rfc3339();
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (username, env_id, status, created_at, prep_count) VALUES (?1, ?2, 'queued', ?3, ?4)",
            params![username, env_id, created_at, prep_count],
        )?;
        let id = tx.last_insert_rowid();
        for (position, path) in tests.iter().enumerate() {
            tx.execute(
                "INSERT INTO run_tests (run_id, position, path, status) VALUES (?1, ?2, ?3, 'pending')",
                params![id, position, path],
            )?;
        }
        tx.commit()?;
        Ok(Run::queued(id, username, env_id, tests, created_at))
    }

    /// How many leading tests of a run are preparation tests (0: not phased).
    pub(crate) fn prep_count(&self, id: i64) -> DbResult<usize> {
        self.conn.lock().query_row(
            "SELECT prep_count FROM runs WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
    }

    /// Records the states of a run's scripts.
    pub(crate) fn set_scripts(&self, id: i64, scripts: &[ScriptView]) -> DbResult<()> {
        let scripts = serde_json::to_string(scripts).unwrap_or_else(|_| "[]".into());
        self.conn.lock().execute(
            "UPDATE runs SET scripts = ?2 WHERE id = ?1",
            params![id, scripts],
        )?;
        Ok(())
    }

    /// Records a phased run's phase and awaited keys.
    pub(crate) fn set_phase(&self, id: i64, phase: Phase, awaiting: &[Awaiting]) -> DbResult<()> {
        let awaiting = serde_json::to_string(awaiting).unwrap_or_else(|_| "[]".into());
        self.conn.lock().execute(
            "UPDATE runs SET phase = ?2, awaiting = ?3 WHERE id = ?1",
            params![id, phase.as_str(), awaiting],
        )?;
        Ok(())
    }

    /// One run, with its tests.
    pub(crate) fn get_run(&self, id: i64) -> DbResult<Option<Run>> {
        let conn = self.conn.lock();
        let run = conn
            .query_row(
                "SELECT id, username, env_id, status, created_at, started_at, finished_at, phase, awaiting, scripts FROM runs WHERE id = ?1",
                params![id],
                row_to_run,
            )
            .optional()?;
        let Some(mut run) = run else { return Ok(None) };
        run.tests = tests_of(&conn, id)?;
        Ok(Some(run))
    }

    /// Runs matching `filter`, newest first.
    pub(crate) fn list_runs(&self, filter: &RunFilter) -> DbResult<Vec<Run>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, username, env_id, status, created_at, started_at, finished_at, phase, awaiting, scripts FROM runs
             WHERE (?1 IS NULL OR env_id = ?1) AND (?2 IS NULL OR username = ?2)
               AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id < ?4)
               AND (?6 IS NULL OR id IN (SELECT run_id FROM run_tests WHERE path = ?6))
             ORDER BY id DESC LIMIT ?5",
        )?;
        let mut runs = stmt
            .query_map(
                params![
                    filter.env_id,
                    filter.username,
                    filter.status.map(RunStatus::as_str),
                    filter.before,
                    filter.limit,
                    filter.test,
                ],
                row_to_run,
            )?
            .collect::<DbResult<Vec<_>>>()?;
        for run in &mut runs {
            run.tests = tests_of(&conn, run.id)?;
        }
        Ok(runs)
    }

    /// The most recent runs of test `path`, newest first: how that test went in each.
    pub(crate) fn test_history(&self, path: &str, limit: u32) -> DbResult<Vec<TestRun>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, t.status, t.exit_code, t.duration_ms, r.env_id, r.username, r.created_at,
                    r.finished_at
             FROM run_tests t JOIN runs r ON r.id = t.run_id
             WHERE t.path = ?1 ORDER BY r.id DESC LIMIT ?2",
        )?;
        stmt.query_map(params![path, limit], |row| {
            let status: String = row.get(1)?;
            Ok(TestRun {
                run_id: row.get(0)?,
                status: TestStatus::parse(&status).unwrap_or(TestStatus::Error),
                exit_code: row.get(2)?,
                duration_ms: row.get(3)?,
                env_id: row.get(4)?,
                username: row.get(5)?,
                created_at: row.get(6)?,
                finished_at: row.get(7)?,
            })
        })?
        .collect()
    }

    /// Sets a run's status, and its start or finish time when it starts or ends.
    pub(crate) fn set_run_status(&self, id: i64, status: RunStatus) -> DbResult<()> {
        let now = now_rfc3339();
        let conn = self.conn.lock();
        match status {
            RunStatus::Running => conn.execute(
                "UPDATE runs SET status = ?2, started_at = ?3 WHERE id = ?1",
                params![id, status.as_str(), now],
            )?,
            s if s.is_finished() => conn.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, status.as_str(), now],
            )?,
            _ => conn.execute(
                "UPDATE runs SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )?,
        };
        Ok(())
    }

    /// Records a test's status (and, once it ended, its exit code and duration).
    pub(crate) fn set_test(
        &self,
        run_id: i64,
        position: usize,
        status: TestStatus,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
    ) -> DbResult<()> {
        self.conn.lock().execute(
            "UPDATE run_tests SET status = ?3, exit_code = ?4, duration_ms = ?5 WHERE run_id = ?1 AND position = ?2",
            params![run_id, position, status.as_str(), exit_code, duration_ms],
        )?;
        Ok(())
    }

    /// Remembers the process group of a running test.
    pub(crate) fn set_test_pgid(&self, run_id: i64, position: usize, pgid: i32) -> DbResult<()> {
        self.conn.lock().execute(
            "UPDATE run_tests SET pgid = ?3 WHERE run_id = ?1 AND position = ?2",
            params![run_id, position, pgid],
        )?;
        Ok(())
    }

    /// Marks every test of a run that has not ended with `status`.
    pub(crate) fn finish_open_tests(&self, run_id: i64, status: TestStatus) -> DbResult<()> {
        self.conn.lock().execute(
            "UPDATE run_tests SET status = ?2 WHERE run_id = ?1 AND status IN ('pending', 'running')",
            params![run_id, status.as_str()],
        )?;
        Ok(())
    }

    /// After a restart: runs that were running become `interrupted` (their running test
    /// `cancelled`, the rest `skipped`). Returns the queued runs, oldest first, to go on.
    pub(crate) fn recover(&self) -> DbResult<Recovered> {
        let interrupted: Vec<(i64, Option<i32>)> = {
            let conn = self.conn.lock();
            let mut stmt = conn.prepare(
                "SELECT id, (SELECT pgid FROM run_tests t WHERE t.run_id = runs.id AND t.status = 'running')
                 FROM runs WHERE status = 'running' ORDER BY id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<DbResult<Vec<_>>>()?
        };
        for (id, _) in &interrupted {
            {
                let conn = self.conn.lock();
                conn.execute(
                    "UPDATE run_tests SET status = 'cancelled' WHERE run_id = ?1 AND status = 'running'",
                    params![id],
                )?;
            }
            self.finish_open_tests(*id, TestStatus::Skipped)?;
            self.set_run_status(*id, RunStatus::Interrupted)?;
        }
        let queued = self.list_runs(&RunFilter {
            status: Some(RunStatus::Queued),
            limit: u32::MAX,
            ..RunFilter::default()
        })?;
        Ok((interrupted, queued.into_iter().rev().collect()))
    }
}

fn row_to_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(3)?;
    Ok(Run {
        id: row.get(0)?,
        username: row.get(1)?,
        env_id: row.get(2)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Error),
        tests: Vec::new(),
        created_at: row.get(4)?,
        started_at: row.get(5)?,
        finished_at: row.get(6)?,
        phase: row
            .get::<_, Option<String>>(7)?
            .and_then(|p| Phase::parse(&p)),
        awaiting: row
            .get::<_, Option<String>>(8)?
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
        scripts: row
            .get::<_, Option<String>>(9)?
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
        node: None,
    })
}

fn tests_of(conn: &Connection, run_id: i64) -> DbResult<Vec<RunTest>> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, status, exit_code, duration_ms FROM run_tests WHERE run_id = ?1 ORDER BY position",
    )?;
    stmt.query_map(params![run_id], |row| {
        let status: String = row.get(1)?;
        Ok(RunTest {
            path: row.get(0)?,
            status: TestStatus::parse(&status).unwrap_or(TestStatus::Error),
            exit_code: row.get(2)?,
            duration_ms: row.get(3)?,
        })
    })?
    .collect()
}
