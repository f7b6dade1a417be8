//! Exclusive environments: who holds each one, and who waits for it, in order.
//!
//! [`Claims`] is the one way in, with one variant per backend: [`Envs`], the claims of one
//! process (below), and PostgreSQL rows with a fencing token for cluster mode (`postgres.rs`).
//!
//! # Why a claim cannot race
//! Each environment is one entry of a [`DashMap`], and every decision about it — "is it free? then
//! it is mine", "I am done: who is next?", "take me out of the queue", "pause" — reads and writes
//! that entry inside a single `get_mut` guard, i.e. under its shard's write lock. Two submissions
//! to a free environment are therefore serialised: the first sets the holder, the second sees it
//! set and queues. A release hands the environment to the head of the queue in the same step, so
//! there is never a moment where it looks free while someone waits: waiting runs start in
//! submission order, woken by the release itself, never by sleep-and-retry.

mod postgres;

pub(crate) use postgres::{PgClaims, Startable};
use std::collections::VecDeque;

use dashmap::DashMap;

use crate::{
    error::HarnessError,
    model::{EnvState, EnvView, now_rfc3339},
};

#[derive(Debug, Default)]
struct Slot {
    /// The run holding the environment, and since when.
    holder: Option<(i64, String)>,
    /// Who started each run here (holder and queued), for the board.
    users: std::collections::HashMap<i64, String>,
    /// Runs waiting for it, oldest first.
    queue: VecDeque<i64>,
    /// Maintenance: queued runs stay queued; a holder finishes.
    paused: bool,
}

/// The outcome of submitting a run to an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The run holds the environment now: start it.
    Holder,
    /// The run waits; `behind` is the run just ahead of it (or the holder).
    Queued {
        /// 1-based position in the queue.
        position: usize,
        /// The run it waits behind.
        behind: Option<i64>,
    },
}

/// Every environment `1..=N`.
#[derive(Debug)]
pub struct Envs {
    slots: DashMap<u32, Slot>,
    count: u32,
}

impl Envs {
    /// Environments `1..=count`, all free.
    pub fn new(count: u32) -> Self {
        let slots = DashMap::with_capacity(count as usize);
        for id in 1..=count {
            slots.insert(id, Slot::default());
        }
        Self { slots, count }
    }

    /// How many environments there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Claims `env` for `run`, or queues it (one atomic step; see the module docs).
    pub fn submit(&self, env: u32, run: i64) -> Option<Claim> {
        self.submit_by(env, run, "")
    }

    /// [`Envs::submit`], remembering who submitted it.
    pub fn submit_by(&self, env: u32, run: i64, username: &str) -> Option<Claim> {
        let mut slot = self.slots.get_mut(&env)?;
        slot.users.insert(run, username.to_owned());
        if slot.holder.is_none() && !slot.paused && slot.queue.is_empty() {
            slot.holder = Some((run, now_rfc3339()));
            return Some(Claim::Holder);
        }
        let behind = slot
            .queue
            .back()
            .copied()
            .or(slot.holder.as_ref().map(|h| h.0));
        slot.queue.push_back(run);
        Some(Claim::Queued {
            position: slot.queue.len(),
            behind,
        })
    }

    /// `run` is done with `env`: frees it and, unless paused, hands it to the next queued run,
    /// which the caller must start.
    pub fn release(&self, env: u32, run: i64) -> Option<i64> {
        let mut slot = self.slots.get_mut(&env)?;
        if slot.holder.as_ref().map(|h| h.0) != Some(run) {
            return None;
        }
        slot.holder = None;
        slot.users.remove(&run);
        promote(&mut slot)
    }

    /// Removes a queued run (cancel). `false` if it was not queued there (it may hold it).
    pub fn dequeue(&self, env: u32, run: i64) -> bool {
        let Some(mut slot) = self.slots.get_mut(&env) else {
            return false;
        };
        let before = slot.queue.len();
        slot.queue.retain(|r| *r != run);
        let removed = slot.queue.len() != before;
        if removed {
            slot.users.remove(&run);
        }
        removed
    }

    /// Holds the queue of `env`.
    pub fn pause(&self, env: u32) -> bool {
        self.slots
            .get_mut(&env)
            .map(|mut s| s.paused = true)
            .is_some()
    }

    /// Lets the queue of `env` go on; returns a run to start if the environment was free.
    pub fn resume(&self, env: u32) -> Option<Option<i64>> {
        let mut slot = self.slots.get_mut(&env)?;
        slot.paused = false;
        Some(if slot.holder.is_none() {
            promote(&mut slot)
        } else {
            None
        })
    }

    /// Where `run` stands in `env`'s queue (1-based), if queued.
    pub fn position(&self, env: u32, run: i64) -> Option<usize> {
        let slot = self.slots.get(&env)?;
        slot.queue.iter().position(|r| *r == run).map(|p| p + 1)
    }

    /// The state of one environment.
    pub fn view(&self, env: u32) -> Option<EnvView> {
        let slot = self.slots.get(&env)?;
        Some(EnvView {
            id: env,
            state: if slot.paused {
                EnvState::Paused
            } else if slot.holder.is_some() {
                EnvState::Busy
            } else {
                EnvState::Free
            },
            run_id: slot.holder.as_ref().map(|h| h.0),
            username: slot
                .holder
                .as_ref()
                .and_then(|h| slot.users.get(&h.0))
                .filter(|u| !u.is_empty())
                .cloned(),
            since: slot.holder.as_ref().map(|h| h.1.clone()),
            queued: slot.queue.iter().copied().collect(),
            node: None,
        })
    }

    /// Every environment, in id order.
    pub fn views(&self) -> Vec<EnvView> {
        (1..=self.count).filter_map(|id| self.view(id)).collect()
    }

    /// The environment a run with no preference should go to: a free one, else the one with the
    /// shortest queue (lowest id on a tie); never a paused one. A hint, not a claim: the caller
    /// submits to it, serialised with every other submission (the harness's admission lock).
    pub fn least_busy(&self) -> Option<u32> {
        (1..=self.count)
            .filter_map(|id| {
                let slot = self.slots.get(&id)?;
                (!slot.paused).then(|| (slot.holder.is_some(), slot.queue.len(), id))
            })
            .min()
            .map(|(_, _, id)| id)
    }
}

fn promote(slot: &mut Slot) -> Option<i64> {
    if slot.paused {
        return None;
    }
    let next = slot.queue.pop_front()?;
    slot.holder = Some((next, now_rfc3339()));
    Some(next)
}

/// The environment claims, reached the same way whatever keeps them.
#[derive(Debug)]
pub(crate) enum Claims {
    /// In this process: one DashMap entry per environment (see the module's comment).
    Local(Envs),
    /// Cluster mode: a row per environment in the cluster's database (`postgres.rs`).
    Postgres(PgClaims),
}

impl Claims {
    /// How many environments there are (`1..=count`).
    pub(crate) fn count(&self) -> u32 {
        match self {
            Self::Local(envs) => envs.count(),
            Self::Postgres(pg) => pg.count(),
        }
    }

    /// Submits `run` by `username` to `env`: it holds it now, or queues behind the others.
    pub(crate) async fn submit(
        &self,
        env: u32,
        run: i64,
        username: &str,
    ) -> Result<Option<Claim>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.submit_by(env, run, username)),
            Self::Postgres(pg) => Ok(pg.submit(env, run, username).await?),
        }
    }

    /// `run` is done with `env`: hands it to the next queued run (returned), if any.
    pub(crate) async fn release(&self, env: u32, run: i64) -> Result<Option<i64>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.release(env, run)),
            Self::Postgres(pg) => Ok(pg.release(env, run).await?),
        }
    }

    /// Takes a queued `run` out of `env`'s queue; false if it was not queued there.
    pub(crate) async fn dequeue(&self, env: u32, run: i64) -> Result<bool, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.dequeue(env, run)),
            Self::Postgres(pg) => Ok(pg.dequeue(env, run).await?),
        }
    }

    /// Holds `env`'s queue; false if there is no such environment.
    pub(crate) async fn pause(&self, env: u32) -> Result<bool, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.pause(env)),
            Self::Postgres(pg) => Ok(pg.pause(env).await?),
        }
    }

    /// Lets `env`'s queue go on: `None` if there is no such environment, else the run that now
    /// holds it and must start, if any.
    pub(crate) async fn resume(&self, env: u32) -> Result<Option<Option<i64>>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.resume(env)),
            Self::Postgres(pg) => Ok(pg.resume(env).await?),
        }
    }

    /// Where `run` stands in `env`'s queue (1-based), if queued.
    pub(crate) async fn position(&self, env: u32, run: i64) -> Result<Option<usize>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.position(env, run)),
            Self::Postgres(pg) => Ok(pg.position(env, run).await?),
        }
    }

    /// One environment as the board shows it.
    pub(crate) async fn view(&self, env: u32) -> Result<Option<EnvView>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.view(env)),
            Self::Postgres(pg) => Ok(pg.view(env).await?),
        }
    }

    /// A free environment, else the one with the shortest queue; none if all are paused.
    pub(crate) async fn least_busy(&self) -> Result<Option<u32>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.least_busy()),
            Self::Postgres(pg) => Ok(pg.least_busy().await?),
        }
    }

    /// Every environment as the board shows it.
    pub(crate) async fn views(&self) -> Result<Vec<EnvView>, HarnessError> {
        match self {
            Self::Local(envs) => Ok(envs.views()),
            Self::Postgres(pg) => Ok(pg.views().await?),
        }
    }

    /// The cluster's claims, in cluster mode.
    pub(crate) fn postgres(&self) -> Option<&PgClaims> {
        match self {
            Self::Local(_) => None,
            Self::Postgres(pg) => Some(pg),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_first_submission_holds_the_rest_queue_in_order_and_release_hands_over() {
        let envs = Envs::new(2);
        assert_eq!(envs.submit(1, 10), Some(Claim::Holder));
        assert_eq!(
            envs.submit(1, 11),
            Some(Claim::Queued {
                position: 1,
                behind: Some(10)
            })
        );
        assert_eq!(
            envs.submit(1, 12),
            Some(Claim::Queued {
                position: 2,
                behind: Some(11)
            })
        );
        assert_eq!(envs.submit(2, 13), Some(Claim::Holder));
        assert_eq!(envs.submit(3, 14), None, "no environment 3");
        assert_eq!(envs.release(1, 99), None, "only the holder releases");
        assert_eq!(envs.release(1, 10), Some(11));
        assert!(envs.dequeue(1, 12));
        assert_eq!(envs.release(1, 11), None);
        assert_eq!(envs.view(1).map(|v| v.state), Some(EnvState::Free));
    }

    #[test]
    fn pause_holds_the_queue_and_resume_starts_the_next() {
        let envs = Envs::new(1);
        assert!(envs.pause(1));
        assert_eq!(
            envs.submit(1, 1),
            Some(Claim::Queued {
                position: 1,
                behind: None
            })
        );
        assert_eq!(envs.view(1).map(|v| v.state), Some(EnvState::Paused));
        assert_eq!(envs.resume(1), Some(Some(1)));
        assert_eq!(
            envs.view(1).map(|v| (v.state, v.run_id)),
            Some((EnvState::Busy, Some(1)))
        );
    }

    #[test]
    fn concurrent_submissions_never_give_one_environment_two_holders() {
        let envs = Arc::new(Envs::new(1));
        let holders: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let envs = envs.clone();
                    s.spawn(move || {
                        (0..1000)
                            .filter(|i| envs.submit(1, t * 1000 + i) == Some(Claim::Holder))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(holders, 1);
        assert_eq!(envs.view(1).map(|v| v.queued.len()), Some(7999));
    }

    #[test]
    fn least_busy_prefers_a_free_environment_then_the_shortest_queue_and_never_a_paused_one() {
        let envs = Envs::new(3);
        assert_eq!(envs.least_busy(), Some(1));
        envs.submit(1, 10);
        assert_eq!(envs.least_busy(), Some(2), "1 is busy");
        envs.submit(2, 11);
        envs.pause(3);
        envs.submit(1, 12);
        assert_eq!(
            envs.least_busy(),
            Some(2),
            "2's queue is shorter than 1's; 3 is paused"
        );
        envs.pause(1);
        envs.pause(2);
        assert_eq!(envs.least_busy(), None);
    }
}
