//! The run history of cluster mode: runs and their tests in the cluster's PostgreSQL database
//! (`--database`), so every node lists, shows and follows the same runs.
//!
//! The schema (`harness/migrations/`) is the SQLite one with the database's types — times are
//! `timestamptz` from the database's clock, one clock for every node; phases' awaited keys and
//! scripts are `jsonb` — plus the node that executes each run: after a restart a node
//! interrupts only the runs *it* left running, never another node's. Statements are short and
//! each is its own transaction, except a new run and its tests, which commit together.

use deadpool_postgres::Pool;
use sink::Unavailable;
use tokio_postgres::{Row, types::Json};

use crate::{
    database::rfc3339,
    model::{Awaiting, Phase, Run, RunStatus, RunTest, ScriptView, TestStatus},
};

use super::{Recovered, RunFilter, TestRun};

/// The columns [`row_to_run`] reads, in its order.
const RUN_COLUMNS: &str = concat!(
    "id, username, env_id, status, ",
    rfc3339!("created_at"),
    ", ",
    rfc3339!("started_at"),
    ", ",
    rfc3339!("finished_at"),
    ", phase, awaiting, scripts, node"
);

/// The PostgreSQL history of one node.
#[derive(Debug)]
pub(crate) struct PgHistory {
    pool: Pool,
    /// This node's name: recorded on the runs it starts, and what a restart interrupts.
    node: String,
}

impl PgHistory {
    /// The history of node `node` in the database behind `pool` (migrated by
    /// [`crate::database::open`]).
    pub(crate) fn new(pool: Pool, node: &str) -> Self {
        Self {
            pool,
            node: node.to_owned(),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Unavailable> {
        Ok(self.pool.get().await?)
    }

    /// Stores a new queued run with its tests (one transaction) and returns it.
    pub(crate) async fn insert_run(
        &self,
        username: &str,
        env_id: u32,
        tests: &[String],
        prep_count: usize,
    ) -> Result<Run, Unavailable> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let run = insert_run_in(&tx, username, env_id, tests, prep_count).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// How many leading tests of a run are preparation tests (0: not phased, or no such run).
    pub(crate) async fn prep_count(&self, id: i64) -> Result<usize, Unavailable> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT prep_count FROM runs WHERE id = $1", &[&id])
            .await?;
        Ok(row.map_or(0, |r| from_i32(r.get(0))))
    }

    /// Records the states of a run's scripts.
    pub(crate) async fn set_scripts(
        &self,
        id: i64,
        scripts: &[ScriptView],
    ) -> Result<(), Unavailable> {
        self.client()
            .await?
            .execute(
                "UPDATE runs SET scripts = $2 WHERE id = $1",
                &[&id, &Json(scripts)],
            )
            .await?;
        Ok(())
    }

    /// Records a phased run's phase and awaited keys.
    pub(crate) async fn set_phase(
        &self,
        id: i64,
        phase: Phase,
        awaiting: &[Awaiting],
    ) -> Result<(), Unavailable> {
        self.client()
            .await?
            .execute(
                "UPDATE runs SET phase = $2, awaiting = $3 WHERE id = $1",
                &[&id, &phase.as_str(), &Json(awaiting)],
            )
            .await?;
        Ok(())
    }

    /// One run, with its tests.
    pub(crate) async fn get_run(&self, id: i64) -> Result<Option<Run>, Unavailable> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut runs = vec![row_to_run(&row)];
        attach_tests(&client, &mut runs).await?;
        Ok(runs.pop())
    }

    /// Runs matching `filter`, newest first.
    pub(crate) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, Unavailable> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs
                     WHERE ($1::integer IS NULL OR env_id = $1) AND ($2::text IS NULL OR username = $2)
                       AND ($3::text IS NULL OR status = $3) AND ($4::bigint IS NULL OR id < $4)
                       AND ($6::text IS NULL OR id IN (SELECT run_id FROM run_tests WHERE path = $6))
                     ORDER BY id DESC LIMIT $5"
                ),
                &[
                    &filter.env_id.map(to_i32),
                    &filter.username,
                    &filter.status.map(RunStatus::as_str),
                    &filter.before,
                    &i64::from(filter.limit),
                    &filter.test,
                ],
            )
            .await?;
        let mut runs: Vec<Run> = rows.iter().map(row_to_run).collect();
        attach_tests(&client, &mut runs).await?;
        Ok(runs)
    }

    /// The most recent runs of test `path`, newest first: how that test went in each.
    pub(crate) async fn test_history(
        &self,
        path: &str,
        limit: u32,
    ) -> Result<Vec<TestRun>, Unavailable> {
        let rows = self
            .client()
            .await?
            .query(
                concat!(
                    "SELECT r.id, t.status, t.exit_code, t.duration_ms, r.env_id, r.username, ",
                    rfc3339!("r.created_at"),
                    ", ",
                    rfc3339!("r.finished_at"),
                    " FROM run_tests t JOIN runs r ON r.id = t.run_id
                      WHERE t.path = $1 ORDER BY r.id DESC LIMIT $2"
                ),
                &[&path, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| TestRun {
                run_id: row.get(0),
                status: test_status(row.get(1)),
                exit_code: row.get(2),
                duration_ms: row.get::<_, Option<i64>>(3).map(from_i64),
                env_id: from_i32(row.get(4)),
                username: row.get(5),
                created_at: row.get(6),
                finished_at: row.get(7),
            })
            .collect())
    }

    /// Sets a run's status, and its start time (and this node as its executor) when it starts,
    /// its finish time when it ends.
    pub(crate) async fn set_run_status(
        &self,
        id: i64,
        status: RunStatus,
    ) -> Result<(), Unavailable> {
        let client = self.client().await?;
        let status_text = status.as_str();
        match status {
            RunStatus::Running => {
                client
                    .execute(
                        "UPDATE runs SET status = $2, started_at = now(), node = $3 WHERE id = $1",
                        &[&id, &status_text, &self.node],
                    )
                    .await?
            }
            s if s.is_finished() => {
                client
                    .execute(
                        "UPDATE runs SET status = $2, finished_at = now() WHERE id = $1",
                        &[&id, &status_text],
                    )
                    .await?
            }
            _ => {
                client
                    .execute(
                        "UPDATE runs SET status = $2 WHERE id = $1",
                        &[&id, &status_text],
                    )
                    .await?
            }
        };
        Ok(())
    }

    /// Sets run `id`'s final status if its environment `fence.0` is still held by it under
    /// token `fence.1`; answers whether it was.
    pub(crate) async fn finish_run_fenced(
        &self,
        id: i64,
        status: RunStatus,
        (env, token): (u32, i64),
    ) -> Result<bool, Unavailable> {
        let written = self
            .client()
            .await?
            .execute(
                "UPDATE runs SET status = $2, finished_at = now() WHERE id = $1
                   AND EXISTS (SELECT 1 FROM environments WHERE id = $3 AND holder = $1 AND token = $4)",
                &[&id, &status.as_str(), &to_i32(env), &token],
            )
            .await?;
        Ok(written == 1)
    }

    /// Records a test's status (and, once it ended, its exit code and duration).
    pub(crate) async fn set_test(
        &self,
        run_id: i64,
        position: usize,
        status: TestStatus,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
    ) -> Result<(), Unavailable> {
        self.client()
            .await?
            .execute(
                "UPDATE run_tests SET status = $3, exit_code = $4, duration_ms = $5
                 WHERE run_id = $1 AND position = $2",
                &[
                    &run_id,
                    &to_i32(position),
                    &status.as_str(),
                    &exit_code,
                    &duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
                ],
            )
            .await?;
        Ok(())
    }

    /// Remembers the process group of a running test.
    pub(crate) async fn set_test_pgid(
        &self,
        run_id: i64,
        position: usize,
        pgid: i32,
    ) -> Result<(), Unavailable> {
        self.client()
            .await?
            .execute(
                "UPDATE run_tests SET pgid = $3 WHERE run_id = $1 AND position = $2",
                &[&run_id, &to_i32(position), &pgid],
            )
            .await?;
        Ok(())
    }

    /// Marks every test of a run that has not ended with `status`.
    pub(crate) async fn finish_open_tests(
        &self,
        run_id: i64,
        status: TestStatus,
    ) -> Result<(), Unavailable> {
        self.client()
            .await?
            .execute(
                "UPDATE run_tests SET status = $2 WHERE run_id = $1 AND status IN ('pending', 'running')",
                &[&run_id, &status.as_str()],
            )
            .await?;
        Ok(())
    }

    /// After a restart of this node: the runs *it* left running become `interrupted` (their
    /// running test `cancelled`, the rest `skipped`); returns them with the process group of
    /// their running test, and the queued runs, oldest first.
    pub(crate) async fn recover(&self) -> Result<Recovered, Unavailable> {
        let interrupted = self
            .interrupt_node(&self.node)
            .await?
            .into_iter()
            .map(|run| (run.id, run.pgid))
            .collect();
        let mut queued = self
            .list_runs(&RunFilter {
                status: Some(RunStatus::Queued),
                limit: u32::MAX,
                ..RunFilter::default()
            })
            .await?;
        queued.reverse();
        Ok((interrupted, queued))
    }

    /// Node `node` is gone (restarted, or dead): its running runs — and those it had taken to
    /// start but not started yet — become `interrupted` (their
    /// running test `cancelled`, the rest `skipped`), in one transaction; returns each, oldest
    /// first, so that its environment can go on.
    pub(crate) async fn interrupt_node(&self, node: &str) -> Result<Vec<Interrupted>, Unavailable> {
        self.interrupt_where("status IN ('queued', 'running') AND node = $1", &[], node)
            .await
    }

    /// The runs the history says this node is running.
    pub(crate) async fn running_here(&self) -> Result<Vec<i64>, Unavailable> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id FROM runs WHERE status = 'running' AND node = $1",
                &[&self.node],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Runs `lost` of this node (the history says running, but this node no longer executes
    /// them: their end could not be recorded) become `interrupted` as [`Self::interrupt_node`]
    /// does — those still `running`.
    pub(crate) async fn interrupt_lost(
        &self,
        lost: &[i64],
    ) -> Result<Vec<Interrupted>, Unavailable> {
        self.interrupt_where(
            "status = 'running' AND node = $1 AND id = ANY($2)",
            lost,
            &self.node,
        )
        .await
    }

    async fn interrupt_where(
        &self,
        condition: &str,
        live: &[i64],
        node: &str,
    ) -> Result<Vec<Interrupted>, Unavailable> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let select = format!(
            "SELECT id, env_id,
                    (SELECT pgid FROM run_tests t WHERE t.run_id = runs.id AND t.status = 'running')
             FROM runs WHERE {condition} AND $2::bigint[] IS NOT NULL ORDER BY id FOR UPDATE"
        );
        let interrupted: Vec<Interrupted> = tx
            .query(&select, &[&node, &live])
            .await?
            .iter()
            .map(|r| Interrupted {
                id: r.get(0),
                env_id: from_i32(r.get(1)),
                pgid: r.get(2),
            })
            .collect();
        let ids: Vec<i64> = interrupted.iter().map(|run| run.id).collect();
        tx.execute(
            "UPDATE run_tests SET status = CASE status WHEN 'running' THEN 'cancelled' ELSE 'skipped' END
             WHERE run_id = ANY($1) AND status IN ('pending', 'running')",
            &[&ids],
        )
        .await?;
        tx.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = now() WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
        tx.commit().await?;
        Ok(interrupted)
    }
}

/// Stores a new queued run with its tests in transaction `tx` (cluster mode creates it under its
/// environment's row lock: `PgClaims::submit_new`).
pub(crate) async fn insert_run_in(
    tx: &deadpool_postgres::Transaction<'_>,
    username: &str,
    env_id: u32,
    tests: &[String],
    prep_count: usize,
) -> Result<Run, Unavailable> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO runs (username, env_id, status, prep_count)
                 VALUES ($1, $2, 'queued', $3) RETURNING id, {}",
                rfc3339!("created_at")
            ),
            &[&username, &to_i32(env_id), &to_i32(prep_count)],
        )
        .await?;
    let id: i64 = row.get(0);
    let positions: Vec<i32> = (0..tests.len()).map(to_i32).collect();
    tx.execute(
        "INSERT INTO run_tests (run_id, position, path, status)
         SELECT $1, position, path, 'pending' FROM unnest($2::integer[], $3::text[]) AS t (position, path)",
        &[&id, &positions, &tests],
    )
    .await?;
    Ok(Run::queued(id, username, env_id, tests, row.get(1)))
}

/// A run a node left running, now `interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interrupted {
    /// The run.
    pub(crate) id: i64,
    /// The environment it held.
    pub(crate) env_id: u32,
    /// The process group of its running test, on that node.
    pub(crate) pgid: Option<i32>,
}

fn row_to_run(row: &Row) -> Run {
    Run {
        id: row.get(0),
        username: row.get(1),
        env_id: from_i32(row.get(2)),
        status: RunStatus::parse(row.get(3)).unwrap_or(RunStatus::Error),
        tests: Vec::new(),
        created_at: row.get(4),
        started_at: row.get(5),
        finished_at: row.get(6),
        phase: row.get::<_, Option<&str>>(7).and_then(Phase::parse),
        awaiting: row
            .get::<_, Option<Json<Vec<Awaiting>>>>(8)
            .map(|Json(a)| a)
            .unwrap_or_default(),
        scripts: row
            .get::<_, Option<Json<Vec<ScriptView>>>>(9)
            .map(|Json(s)| s)
            .unwrap_or_default(),
        node: row.get(10),
    }
}

/// Fills in the tests of `runs`, with one query for all of them.
async fn attach_tests(
    client: &deadpool_postgres::Object,
    runs: &mut [Run],
) -> Result<(), Unavailable> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let rows = client
        .query(
            "SELECT run_id, path, status, exit_code, duration_ms FROM run_tests
             WHERE run_id = ANY($1) ORDER BY run_id, position",
            &[&ids],
        )
        .await?;
    for row in &rows {
        let run_id: i64 = row.get(0);
        if let Some(run) = runs.iter_mut().find(|r| r.id == run_id) {
            run.tests.push(RunTest {
                path: row.get(1),
                status: test_status(row.get(2)),
                exit_code: row.get(3),
                duration_ms: row.get::<_, Option<i64>>(4).map(from_i64),
            });
        }
    }
    Ok(())
}

fn test_status(text: &str) -> TestStatus {
    TestStatus::parse(text).unwrap_or(TestStatus::Error)
}

/// Environment ids, positions and counts are small; PostgreSQL's `integer` holds them.
fn to_i32<T: TryInto<i32>>(n: T) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

fn from_i32<T: TryFrom<i32> + Default>(n: i32) -> T {
    T::try_from(n).unwrap_or_default()
}

fn from_i64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}
