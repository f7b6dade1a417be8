//! The environment claims of cluster mode: a row per environment in the cluster's database,
//! so an environment is held by at most one run across every node.
//!
//! # Why a claim cannot race across nodes
//! Every decision about an environment — claim or queue, release and hand over, dequeue, pause,
//! resume — is one transaction that first locks that environment's row (`SELECT … FOR UPDATE`),
//! the cluster-wide equivalent of the single-process claims' shard lock: two nodes submitting to a
//! free environment are serialised by the row lock, the second sees the holder and queues. A
//! release hands the environment to the lowest queued run id in the same transaction, so it never
//! looks free while a run waits, and waiting runs start in run id order cluster-wide.
//!
//! Each change of holder bumps the row's fencing `token`: the holder's node checks it before it
//! writes results ([`PgClaims::holds`]), so a node that lost its claim — declared dead, the
//! environment handed on — cannot write over the next run's.

use deadpool_postgres::{Pool, Transaction};
use sink::Unavailable;
use tokio_postgres::Row;

use crate::{
    database::rfc3339,
    model::{EnvState, EnvView},
};

use super::Claim;

/// The claims, in the database behind `pool`.
#[derive(Debug)]
pub(crate) struct PgClaims {
    pool: Pool,
    count: u32,
}

impl PgClaims {
    /// Claims on environments `1..=count` (rows added where missing; existing ones kept, with
    /// their holders and queues).
    pub(crate) async fn open(pool: Pool, count: u32) -> Result<Self, Unavailable> {
        pool.get()
            .await?
            .execute(
                "INSERT INTO environments (id) SELECT generate_series(1, $1) ON CONFLICT DO NOTHING",
                &[&to_i32(count)],
            )
            .await?;
        Ok(Self { pool, count })
    }

    /// Runs `f` in a transaction that holds `env`'s row lock; `None` if there is no such
    /// environment.
    async fn with_env<T>(
        &self,
        env: u32,
        f: impl AsyncFnOnce(&Transaction<'_>, &Row) -> Result<T, Unavailable>,
    ) -> Result<Option<T>, Unavailable> {
        if env == 0 || env > self.count {
            return Ok(None);
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT holder, paused FROM environments WHERE id = $1 FOR UPDATE",
                &[&to_i32(env)],
            )
            .await?
        else {
            return Ok(None);
        };
        let out = f(&tx, &row).await?;
        tx.commit().await?;
        Ok(Some(out))
    }

    /// How many environments there are (`1..=count`).
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Claims `env` for `run`, or queues it behind the others.
    pub(crate) async fn submit(
        &self,
        env: u32,
        run: i64,
        username: &str,
    ) -> Result<Option<Claim>, Unavailable> {
        self.with_env(env, async |tx, row| {
            claim_or_queue(tx, to_i32(env), row, run, username).await
        })
        .await
    }

    /// Creates a run with `create` and submits it to `env`, in one transaction under `env`'s
    /// row lock: the run's id is given while no other submission to `env` can be, so ids never
    /// invert queue order across nodes (a run numbered first is queued first). `then` writes
    /// what goes with the outcome (a queued run's first log line) in the same transaction, so
    /// no node can take the run before it is written.
    pub(crate) async fn submit_new<T>(
        &self,
        env: u32,
        username: &str,
        create: impl AsyncFnOnce(&Transaction<'_>) -> Result<(i64, T), Unavailable>,
        then: impl AsyncFnOnce(&Transaction<'_>, i64, &Claim) -> Result<(), Unavailable>,
    ) -> Result<Option<(T, Claim)>, Unavailable> {
        self.with_env(env, async |tx, row| {
            let (run, created) = create(tx).await?;
            let claim = claim_or_queue(tx, to_i32(env), row, run, username).await?;
            then(tx, run, &claim).await?;
            Ok((created, claim))
        })
        .await
    }

    /// `run` is done with `env`: frees it and, unless paused, hands it to the lowest queued
    /// run id, which is returned (the caller starts it).
    pub(crate) async fn release(&self, env: u32, run: i64) -> Result<Option<i64>, Unavailable> {
        let env_id = to_i32(env);
        let next = self
            .with_env(env, async |tx, row| {
                let holder: Option<i64> = row.get(0);
                if holder != Some(run) {
                    return Ok(None);
                }
                let paused: bool = row.get(1);
                Ok(Some(hand_over(tx, env_id, paused).await?))
            })
            .await?;
        Ok(next.flatten().flatten())
    }

    /// Takes a queued `run` out of `env`'s queue; false if it was not queued there.
    pub(crate) async fn dequeue(&self, env: u32, run: i64) -> Result<bool, Unavailable> {
        let env_id = to_i32(env);
        let removed = self
            .with_env(env, async |tx, _| {
                Ok(tx
                    .execute(
                        "DELETE FROM claim_queue WHERE env_id = $1 AND run_id = $2",
                        &[&env_id, &run],
                    )
                    .await?
                    == 1)
            })
            .await?;
        Ok(removed == Some(true))
    }

    /// Holds `env`'s queue.
    pub(crate) async fn pause(&self, env: u32) -> Result<bool, Unavailable> {
        let env_id = to_i32(env);
        let paused = self
            .with_env(env, async |tx, _| {
                tx.execute(
                    "UPDATE environments SET paused = true WHERE id = $1",
                    &[&env_id],
                )
                .await?;
                Ok(())
            })
            .await?;
        Ok(paused.is_some())
    }

    /// Lets `env`'s queue go on: the run that now holds it, if it was free and one waited.
    pub(crate) async fn resume(&self, env: u32) -> Result<Option<Option<i64>>, Unavailable> {
        let env_id = to_i32(env);
        self.with_env(env, async |tx, row| {
            tx.execute(
                "UPDATE environments SET paused = false WHERE id = $1",
                &[&env_id],
            )
            .await?;
            let holder: Option<i64> = row.get(0);
            if holder.is_some() {
                return Ok(None);
            }
            hand_over(tx, env_id, false).await
        })
        .await
    }

    /// Where `run` stands in `env`'s queue (1-based), if queued.
    pub(crate) async fn position(&self, env: u32, run: i64) -> Result<Option<usize>, Unavailable> {
        let row = self
            .pool
            .get()
            .await?
            .query_one(
                "SELECT count(*), bool_or(run_id = $2) FROM claim_queue WHERE env_id = $1 AND run_id <= $2",
                &[&to_i32(env), &run],
            )
            .await?;
        let queued: Option<bool> = row.get(1);
        Ok((queued == Some(true))
            .then(|| usize::try_from(row.get::<_, i64>(0)).unwrap_or(usize::MAX)))
    }

    /// Whether `run` still holds `env` under fencing `token` (it may write its results).
    pub(crate) async fn holds(&self, env: u32, run: i64, token: i64) -> Result<bool, Unavailable> {
        Ok(self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT 1 FROM environments WHERE id = $1 AND holder = $2 AND token = $3",
                &[&to_i32(env), &run, &token],
            )
            .await?
            .is_some())
    }

    /// `env`'s current holder with its fencing token.
    #[cfg(test)]
    pub(crate) async fn token(&self, env: u32) -> Result<Option<(i64, i64)>, Unavailable> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT holder, token FROM environments WHERE id = $1 AND holder IS NOT NULL",
                &[&to_i32(env)],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Takes up to `max` of the oldest runs that hold their environment but that no node
    /// executes yet, for node `node` to start: marks them as `node`'s and answers each with its
    /// environment and fencing token, oldest first. Nodes asking at once each get different runs
    /// (`FOR UPDATE SKIP LOCKED`, as GitLab hands out CI jobs): a run is started by exactly one
    /// node, whichever has a free worker first.
    pub(crate) async fn take_startable(
        &self,
        node: &str,
        max: usize,
    ) -> Result<Vec<Startable>, Unavailable> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "WITH next AS (
                     SELECT r.id, e.id AS env_id, e.token FROM runs r JOIN environments e ON e.holder = r.id
                     WHERE r.node IS NULL AND r.status = 'queued'
                     ORDER BY r.id LIMIT $2 FOR UPDATE OF r SKIP LOCKED
                 )
                 UPDATE runs SET node = $1 FROM next WHERE runs.id = next.id
                 RETURNING next.id, next.env_id, next.token",
                &[&node, &max],
            )
            .await?;
        let mut taken: Vec<Startable> = rows
            .iter()
            .map(|r| Startable {
                run: r.get(0),
                env: u32::try_from(r.get::<_, i32>(1)).unwrap_or_default(),
                token: r.get(2),
            })
            .collect();
        taken.sort_by_key(|s| s.run);
        Ok(taken)
    }

    /// Takes run `run` for node `node` if it holds its environment but no node executes it
    /// yet (to cancel it before it starts); false if a node took it first.
    pub(crate) async fn take(&self, run: i64, node: &str) -> Result<bool, Unavailable> {
        Ok(self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE runs SET node = $2 WHERE id = $1 AND node IS NULL AND status = 'queued'",
                &[&run, &node],
            )
            .await?
            == 1)
    }

    /// Every environment as the board shows it (`only`: just that one).
    async fn load_views(&self, only: Option<u32>) -> Result<Vec<EnvView>, Unavailable> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                concat!(
                    "SELECT e.id, e.holder, e.holder_user, e.paused, ",
                    rfc3339!("e.holder_since"),
                    ", ",
                    "coalesce((SELECT array_agg(q.run_id ORDER BY q.run_id) FROM claim_queue q WHERE q.env_id = e.id), '{}'), ",
                    "(SELECT r.node FROM runs r WHERE r.id = e.holder) ",
                    "FROM environments e WHERE e.id <= $1 AND ($2::integer IS NULL OR e.id = $2) ORDER BY e.id"
                ),
                &[&to_i32(self.count), &only.map(to_i32)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let holder: Option<i64> = row.get(1);
                let paused: bool = row.get(3);
                EnvView {
                    id: u32::try_from(row.get::<_, i32>(0)).unwrap_or_default(),
                    state: if paused {
                        EnvState::Paused
                    } else if holder.is_some() {
                        EnvState::Busy
                    } else {
                        EnvState::Free
                    },
                    run_id: holder,
                    username: holder
                        .and(row.get::<_, Option<String>>(2))
                        .filter(|u| !u.is_empty()),
                    since: holder.and(row.get(4)),
                    queued: row.get(5),
                    node: holder.and(row.get(6)),
                }
            })
            .collect())
    }

    /// One environment as the board shows it.
    pub(crate) async fn view(&self, env: u32) -> Result<Option<EnvView>, Unavailable> {
        Ok(self.load_views(Some(env)).await?.pop())
    }

    /// Every environment, in id order.
    pub(crate) async fn views(&self) -> Result<Vec<EnvView>, Unavailable> {
        self.load_views(None).await
    }

    /// A free environment, else the one with the shortest queue (lowest id on a tie); never a
    /// paused one. A hint, as with the local claims.
    pub(crate) async fn least_busy(&self) -> Result<Option<u32>, Unavailable> {
        let views = self.views().await?;
        Ok(views
            .iter()
            .filter(|v| v.state != EnvState::Paused)
            .map(|v| (v.run_id.is_some(), v.queued.len(), v.id))
            .min()
            .map(|(_, _, id)| id))
    }
}

/// A run a node may start: it holds `env` under fencing `token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Startable {
    /// The run.
    pub(crate) run: i64,
    /// The environment it holds.
    pub(crate) env: u32,
    /// The claim's fencing token: its results may be written while the claim still has it.
    pub(crate) token: i64,
}

/// Under `env_id`'s row lock (`row`: its holder and paused flag): `run` holds the environment
/// if it is free, not paused and nobody queues; else it queues.
async fn claim_or_queue(
    tx: &Transaction<'_>,
    env_id: i32,
    row: &Row,
    run: i64,
    username: &str,
) -> Result<Claim, Unavailable> {
    let holder: Option<i64> = row.get(0);
    let paused: bool = row.get(1);
    let queued: i64 = tx
        .query_one(
            "SELECT count(*) FROM claim_queue WHERE env_id = $1",
            &[&env_id],
        )
        .await?
        .get(0);
    if holder.is_none() && !paused && queued == 0 {
        tx.execute(
            "UPDATE environments SET holder = $2, holder_user = $3, holder_since = now(),
                    token = token + 1 WHERE id = $1",
            &[&env_id, &run, &username],
        )
        .await?;
        return Ok(Claim::Holder);
    }
    tx.execute(
        "INSERT INTO claim_queue (run_id, env_id, username) VALUES ($1, $2, $3)",
        &[&run, &env_id, &username],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT count(*), max(run_id) FILTER (WHERE run_id < $2)
             FROM claim_queue WHERE env_id = $1 AND run_id <= $2",
            &[&env_id, &run],
        )
        .await?;
    let position: i64 = row.get(0);
    let ahead: Option<i64> = row.get(1);
    Ok(Claim::Queued {
        position: usize::try_from(position).unwrap_or(usize::MAX),
        behind: ahead.or(holder),
    })
}

/// Under `env_id`'s row lock: the lowest queued run id becomes the holder (a new token) unless
/// `paused`; else the environment is free. Returns the new holder.
async fn hand_over(
    tx: &Transaction<'_>,
    env_id: i32,
    paused: bool,
) -> Result<Option<i64>, Unavailable> {
    let next = if paused {
        None
    } else {
        tx.query_opt(
            "DELETE FROM claim_queue WHERE run_id =
                 (SELECT run_id FROM claim_queue WHERE env_id = $1 ORDER BY run_id LIMIT 1)
             RETURNING run_id, username",
            &[&env_id],
        )
        .await?
    };
    match next {
        Some(row) => {
            let (run, username): (i64, String) = (row.get(0), row.get(1));
            tx.execute(
                "UPDATE environments SET holder = $2, holder_user = $3, holder_since = now(),
                        token = token + 1 WHERE id = $1",
                &[&env_id, &run, &username],
            )
            .await?;
            Ok(Some(run))
        }
        None => {
            tx.execute(
                "UPDATE environments SET holder = NULL, holder_user = NULL, holder_since = NULL
                 WHERE id = $1",
                &[&env_id],
            )
            .await?;
            Ok(None)
        }
    }
}

/// Environment ids are small; PostgreSQL's `integer` holds them.
fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::fresh_database;

    /// Claims on `count` environments in a fresh database, as `nodes` nodes (each its own pool,
    /// as separate processes would be); `None` without PostgreSQL.
    async fn nodes(count: u32, nodes: usize) -> Option<Vec<Arc<PgClaims>>> {
        let url = fresh_database().await?;
        let mut out = Vec::new();
        for _ in 0..nodes {
            let pool = crate::database::open(&url).await.expect("open");
            out.push(Arc::new(PgClaims::open(pool, count).await.expect("claims")));
        }
        Some(out)
    }

    #[tokio::test]
    async fn the_first_submission_holds_the_rest_queue_in_order_and_release_hands_over() {
        let Some(nodes) = nodes(2, 2).await else {
            return;
        };
        let (a, b) = (&nodes[0], &nodes[1]);
        assert_eq!(a.submit(1, 10, "ann").await.unwrap(), Some(Claim::Holder));
        assert_eq!(
            b.submit(1, 11, "bob").await.unwrap(),
            Some(Claim::Queued {
                position: 1,
                behind: Some(10)
            }),
            "another node sees the holder"
        );
        assert_eq!(
            a.submit(1, 12, "cid").await.unwrap(),
            Some(Claim::Queued {
                position: 2,
                behind: Some(11)
            })
        );
        assert_eq!(b.submit(2, 13, "dan").await.unwrap(), Some(Claim::Holder));
        assert_eq!(
            a.submit(3, 14, "eve").await.unwrap(),
            None,
            "no environment 3"
        );
        assert_eq!(b.position(1, 12).await.unwrap(), Some(2));
        let view = b.view(1).await.unwrap().expect("env 1");
        assert_eq!(
            (
                view.state,
                view.run_id,
                view.username.as_deref(),
                view.queued.clone()
            ),
            (EnvState::Busy, Some(10), Some("ann"), vec![11, 12])
        );
        assert!(view.since.is_some());

        let (_, first_token) = a.token(1).await.unwrap().expect("held");
        assert_eq!(
            a.release(1, 99).await.unwrap(),
            None,
            "only the holder releases"
        );
        assert_eq!(
            b.release(1, 10).await.unwrap(),
            Some(11),
            "any node hands over"
        );
        let (holder, token) = a.token(1).await.unwrap().expect("held");
        assert_eq!(holder, 11);
        assert!(token > first_token, "a new holder gets a new fencing token");
        assert!(
            !a.holds(1, 10, first_token).await.unwrap(),
            "the old holder is fenced off"
        );
        assert!(a.holds(1, 11, token).await.unwrap());

        assert!(a.dequeue(1, 12).await.unwrap());
        assert!(!a.dequeue(1, 12).await.unwrap(), "not queued any more");
        assert_eq!(a.release(1, 11).await.unwrap(), None);
        assert_eq!(
            a.view(1).await.unwrap().map(|v| v.state),
            Some(EnvState::Free)
        );
        assert_eq!(a.views().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn pause_holds_the_queue_and_resume_starts_the_next() {
        let Some(nodes) = nodes(1, 1).await else {
            return;
        };
        let c = &nodes[0];
        assert!(c.pause(1).await.unwrap());
        assert!(!c.pause(2).await.unwrap(), "no environment 2");
        assert_eq!(
            c.submit(1, 1, "ann").await.unwrap(),
            Some(Claim::Queued {
                position: 1,
                behind: None
            })
        );
        assert_eq!(
            c.view(1).await.unwrap().map(|v| v.state),
            Some(EnvState::Paused)
        );
        assert_eq!(
            c.least_busy().await.unwrap(),
            None,
            "paused is never picked"
        );
        assert_eq!(c.resume(1).await.unwrap(), Some(Some(1)));
        assert_eq!(
            c.view(1).await.unwrap().map(|v| (v.state, v.run_id)),
            Some((EnvState::Busy, Some(1)))
        );
        assert_eq!(
            c.resume(1).await.unwrap(),
            Some(None),
            "held: nothing to start"
        );
    }

    /// Three nodes, 300 runs submitted at once to one environment, then each holder releasing
    /// as it ends: never two holders, every run holds it exactly once, in run id order after
    /// the first, and each hand-over bumps the fencing token.
    #[tokio::test]
    async fn three_nodes_racing_for_one_environment_never_share_it_and_hand_over_in_id_order() {
        let Some(nodes) = nodes(1, 3).await else {
            return;
        };
        let submissions = (1..=300i64).map(|run| {
            let node = Arc::clone(&nodes[run as usize % 3]);
            tokio::spawn(async move { (run, node.submit(1, run, "u").await.unwrap()) })
        });
        let mut holders = Vec::new();
        for s in futures_util::future::join_all(submissions).await {
            let (run, claim) = s.expect("join");
            if claim == Some(Claim::Holder) {
                holders.push(run);
            }
        }
        assert_eq!(holders.len(), 1, "one holder: {holders:?}");
        let mut order = vec![holders[0]];
        let mut tokens = vec![nodes[0].token(1).await.unwrap().expect("held").1];
        let mut current = holders[0];
        for i in 0.. {
            let next = nodes[i % 3].release(1, current).await.unwrap();
            let Some(next) = next else { break };
            let (holder, token) = nodes[(i + 1) % 3].token(1).await.unwrap().expect("held");
            assert_eq!(holder, next);
            order.push(next);
            tokens.push(token);
            current = next;
        }
        let mut expected: Vec<i64> = (1..=300).filter(|r| *r != holders[0]).collect();
        expected.insert(0, holders[0]);
        assert_eq!(
            order, expected,
            "each run held it once, the queue in id order"
        );
        assert!(tokens.windows(2).all(|w| w[1] > w[0]), "tokens only grow");
        assert_eq!(
            nodes[2].view(1).await.unwrap().map(|v| v.state),
            Some(EnvState::Free)
        );
    }

    #[tokio::test]
    async fn least_busy_prefers_a_free_environment_then_the_shortest_queue() {
        let Some(nodes) = nodes(3, 1).await else {
            return;
        };
        let c = &nodes[0];
        assert_eq!(c.least_busy().await.unwrap(), Some(1));
        c.submit(1, 10, "a").await.unwrap();
        assert_eq!(c.least_busy().await.unwrap(), Some(2), "1 is busy");
        c.submit(2, 11, "a").await.unwrap();
        c.pause(3).await.unwrap();
        c.submit(1, 12, "a").await.unwrap();
        assert_eq!(
            c.least_busy().await.unwrap(),
            Some(2),
            "2's queue is shorter; 3 is paused"
        );
    }

    /// Three nodes with four workers each take the runs that hold their environments, all at
    /// once: each run is started by exactly one node, and runs still queued behind a holder
    /// are not startable.
    #[tokio::test]
    async fn each_held_run_is_taken_by_exactly_one_node() {
        let Some(url) = fresh_database().await else {
            return;
        };
        let history = crate::history::History::open_postgres(&url, "submitter")
            .await
            .expect("history");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let pool = crate::database::open(&url).await.expect("open");
            nodes.push(Arc::new(PgClaims::open(pool, 60).await.expect("claims")));
        }
        let mut held = Vec::new();
        for env in 1..=60 {
            let run = history
                .insert_run("u", env, &["t.sh".into()], 0)
                .await
                .expect("run")
                .id;
            assert_eq!(
                nodes[0].submit(env, run, "u").await.unwrap(),
                Some(Claim::Holder)
            );
            held.push(run);
            let behind = history
                .insert_run("u", env, &["t.sh".into()], 0)
                .await
                .expect("run")
                .id;
            nodes[0].submit(env, behind, "u").await.unwrap();
        }
        let workers = (0..12).map(|w| {
            let claims = Arc::clone(&nodes[w % 3]);
            tokio::spawn(async move {
                let name = format!("node-{}", w % 3);
                let mut taken = Vec::new();
                // Some ask for one at a time, some for several.
                loop {
                    let batch = claims.take_startable(&name, 1 + w % 4).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for s in batch {
                        assert!(claims.holds(s.env, s.run, s.token).await.unwrap());
                        taken.push(s.run);
                    }
                }
                taken
            })
        });
        let mut taken: Vec<i64> = futures_util::future::join_all(workers)
            .await
            .into_iter()
            .flat_map(|t| t.expect("join"))
            .collect();
        taken.sort_unstable();
        assert_eq!(taken, held, "every holder once, nothing queued");
    }
}
