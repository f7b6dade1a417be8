//! The nodes of a cluster (cluster mode): each registers and heartbeats in the database; a node
//! silent for longer than `--node-timeout` is dead, and the first live node to notice ends what
//! it was running — its running runs become `interrupted`, their environments go on to the next
//! queued run (a new holder, a new fencing token, so the dead node cannot write over it if it
//! was only cut off and comes back).
//!
//! Time is the database's clock (`now()`), so the nodes' clocks need not agree.

use std::time::Duration;

use deadpool_postgres::Pool;
use sink::Unavailable;

use crate::database::rfc3339;

/// A node as `GET /api/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NodeView {
    /// Its `--node-name`.
    pub(crate) name: String,
    /// Where it listens.
    pub(crate) address: String,
    /// When it (last) started (RFC 3339, UTC, ms).
    pub(crate) started_at: String,
    /// Its last heartbeat.
    pub(crate) last_seen: String,
    /// Runs it executes at once (`--workers`; 0: it only serves the API and the sink).
    pub(crate) workers: u32,
    /// The runs it is executing now, by id.
    pub(crate) running: Vec<i64>,
    /// `alive`; `stopped` once it stopped gracefully; `dead` once silent for longer than
    /// `--node-timeout` without having stopped.
    pub(crate) state: NodeState,
}

/// Whether a node is heartbeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NodeState {
    /// It heartbeat within `--node-timeout`.
    Alive,
    /// Silent for longer than that.
    Dead,
    /// It stopped gracefully (SIGTERM, Ctrl-C): its runs ended `interrupted` and their
    /// environments went on.
    Stopped,
}

/// This node's membership in the cluster.
#[derive(Debug)]
pub(crate) struct Nodes {
    pool: Pool,
    name: String,
    timeout: Duration,
}

impl Nodes {
    /// Registers node `name` at `address` with `workers` (a restart of the same name takes its
    /// row over).
    pub(crate) async fn join(
        pool: Pool,
        name: &str,
        address: &str,
        workers: usize,
        timeout: Duration,
    ) -> Result<Self, Unavailable> {
        let workers = i32::try_from(workers).unwrap_or(i32::MAX);
        pool.get()
            .await?
            .execute(
                "INSERT INTO nodes (name, address, workers) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET address = $2, workers = $3, started_at = now(),
                     heartbeat_at = now(), reaped_at = NULL, stopped_at = NULL",
                &[&name, &address, &workers],
            )
            .await?;
        Ok(Self {
            pool,
            name: name.to_owned(),
            timeout,
        })
    }

    /// How often to heartbeat: a third of the timeout, so two missed beats are not yet death.
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.timeout / 3
    }

    /// Says this node is alive.
    pub(crate) async fn heartbeat(&self) -> Result<(), Unavailable> {
        self.pool
            .get()
            .await?
            .execute(
                "UPDATE nodes SET heartbeat_at = now(), reaped_at = NULL WHERE name = $1",
                &[&self.name],
            )
            .await?;
        Ok(())
    }

    /// This node stopped gracefully (what it ran has ended).
    pub(crate) async fn leave(&self) -> Result<(), Unavailable> {
        self.pool
            .get()
            .await?
            .execute(
                "UPDATE nodes SET stopped_at = now() WHERE name = $1",
                &[&self.name],
            )
            .await?;
        Ok(())
    }

    /// Every node, by name.
    pub(crate) async fn list(&self) -> Result<Vec<NodeView>, Unavailable> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                concat!(
                    "SELECT name, address, ",
                    rfc3339!("started_at"),
                    ", ",
                    rfc3339!("heartbeat_at"),
                    ", ",
                    "heartbeat_at < now() - make_interval(secs => $1), workers, ",
                    "coalesce((SELECT array_agg(r.id ORDER BY r.id) FROM runs r ",
                    "WHERE r.node = nodes.name AND r.status = 'running'), '{}'), ",
                    "stopped_at IS NOT NULL ",
                    "FROM nodes ORDER BY name"
                ),
                &[&self.timeout.as_secs_f64()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeView {
                name: r.get(0),
                address: r.get(1),
                started_at: r.get(2),
                last_seen: r.get(3),
                workers: u32::try_from(r.get::<_, i32>(5)).unwrap_or_default(),
                running: r.get(6),
                state: if r.get(7) {
                    NodeState::Stopped
                } else if r.get(4) {
                    NodeState::Dead
                } else {
                    NodeState::Alive
                },
            })
            .collect())
    }

    /// Claims the dead nodes that nobody has reaped yet (each exactly once, whichever live node
    /// asks first) and answers their names: the caller ends their runs.
    pub(crate) async fn reap_dead(&self) -> Result<Vec<String>, Unavailable> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "UPDATE nodes SET reaped_at = now()
                 WHERE name <> $1 AND reaped_at IS NULL
                   AND heartbeat_at < now() - make_interval(secs => $2)
                 RETURNING name",
                &[&self.name, &self.timeout.as_secs_f64()],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_database;

    async fn pool() -> Option<Pool> {
        let url = fresh_database().await?;
        Some(crate::database::open(&url).await.expect("open"))
    }

    #[tokio::test]
    async fn a_silent_node_is_dead_and_reaped_exactly_once_until_it_heartbeats_again() {
        let Some(pool) = pool().await else { return };
        // A zero timeout: any node that has not heartbeat in this very instant is dead, so the
        // test needs no clock and no waiting.
        let a = Nodes::join(pool.clone(), "a", "127.0.0.1:1", 1, Duration::ZERO)
            .await
            .expect("join a");
        let b = Nodes::join(pool.clone(), "b", "127.0.0.1:2", 1, Duration::ZERO)
            .await
            .expect("join b");
        let patient = Nodes::join(pool, "c", "127.0.0.1:3", 1, Duration::from_secs(3600))
            .await
            .expect("join c");
        let listed = patient.list().await.expect("list");
        assert_eq!(
            listed
                .iter()
                .map(|n| (n.name.as_str(), n.address.as_str(), n.state))
                .collect::<Vec<_>>(),
            vec![
                ("a", "127.0.0.1:1", NodeState::Alive),
                ("b", "127.0.0.1:2", NodeState::Alive),
                ("c", "127.0.0.1:3", NodeState::Alive),
            ],
            "an hour's timeout: everyone is alive"
        );
        assert!(patient.reap_dead().await.expect("reap").is_empty());

        let mut reaped = a.reap_dead().await.expect("reap");
        reaped.sort();
        assert_eq!(reaped, vec!["b", "c"], "never itself");
        assert!(
            b.reap_dead().await.expect("reap") == vec!["a"],
            "b finds only a: c was reaped already"
        );
        assert!(a.reap_dead().await.expect("reap").is_empty(), "once each");

        b.heartbeat().await.expect("beat");
        assert_eq!(
            a.reap_dead().await.expect("reap"),
            vec!["b"],
            "dead again later: reaped again"
        );
        assert!(b.heartbeat_interval() <= b.timeout);
    }

    /// Node a runs run 1 on environment 1 while run 2 waits for it; a stops heartbeating. Node
    /// b reaps it: run 1 is `interrupted` (its running test `cancelled`), environment 1 goes to
    /// run 2 with a new fencing token, and a's token no longer holds it.
    #[tokio::test]
    async fn a_dead_nodes_run_is_interrupted_and_its_environment_goes_to_the_next_run() {
        use crate::{
            claims::{Claim, PgClaims},
            history::{History, Interrupted},
            model::{RunStatus, TestStatus},
        };
        let Some(url) = fresh_database().await else {
            return;
        };
        let history_a = History::open_postgres(&url, "a").await.expect("history a");
        let History::Postgres(history_b) = History::open_postgres(&url, "b").await.expect("b")
        else {
            unreachable!("opened on PostgreSQL")
        };
        let pool = crate::database::open(&url).await.expect("pool");
        let claims = PgClaims::open(pool.clone(), 1).await.expect("claims");
        let a = Nodes::join(pool.clone(), "a", "127.0.0.1:1", 1, Duration::ZERO)
            .await
            .expect("a");
        let b = Nodes::join(pool, "b", "127.0.0.1:2", 1, Duration::ZERO)
            .await
            .expect("b");

        let first = history_a
            .insert_run("ann", 1, &["t.sh".into(), "u.sh".into()], 0)
            .await
            .expect("run");
        let second = history_a
            .insert_run("bob", 1, &["t.sh".into()], 0)
            .await
            .expect("run");
        assert_eq!(
            claims.submit(1, first.id, "ann").await.expect("claim"),
            Some(Claim::Holder)
        );
        assert!(matches!(
            claims.submit(1, second.id, "bob").await.expect("queue"),
            Some(Claim::Queued { .. })
        ));
        let (_, token_of_a) = claims.token(1).await.expect("token").expect("held");
        history_a
            .set_run_status(first.id, RunStatus::Running)
            .await
            .expect("running");
        history_a
            .set_test(first.id, 0, TestStatus::Running, None, None)
            .await
            .expect("test");
        history_a
            .set_test_pgid(first.id, 0, 777)
            .await
            .expect("pgid");
        drop(a); // a goes silent

        assert_eq!(b.reap_dead().await.expect("reap"), vec!["a"]);
        let ended = history_b.interrupt_node("a").await.expect("interrupt");
        assert_eq!(
            ended,
            vec![Interrupted {
                id: first.id,
                env_id: 1,
                pgid: Some(777)
            }]
        );
        for run in &ended {
            assert_eq!(
                claims.release(run.env_id, run.id).await.expect("release"),
                Some(second.id)
            );
        }

        let run = history_b
            .get_run(first.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(run.status, RunStatus::Interrupted);
        assert_eq!(
            run.tests.iter().map(|t| t.status).collect::<Vec<_>>(),
            vec![TestStatus::Cancelled, TestStatus::Skipped]
        );
        assert!(
            !claims.holds(1, first.id, token_of_a).await.expect("holds"),
            "a is fenced off"
        );
        assert_eq!(
            claims.token(1).await.expect("token").map(|(run, _)| run),
            Some(second.id)
        );
        // Node a comes back and tries to record the run's end: refused, the run stays interrupted.
        assert!(
            !history_a
                .finish_run(first.id, RunStatus::Passed, Some((1, token_of_a)))
                .await
                .expect("finish"),
            "a fenced-off node cannot write the run's end"
        );
        let run = history_a
            .get_run(first.id)
            .await
            .expect("get")
            .expect("run");
        assert_eq!(run.status, RunStatus::Interrupted);
        // The holder's own node writes it.
        let (_, token_now) = claims.token(1).await.expect("token").expect("held");
        assert!(
            history_a
                .finish_run(second.id, RunStatus::Passed, Some((1, token_now)))
                .await
                .expect("finish")
        );
    }
}
