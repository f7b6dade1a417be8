//! The board of script states that every script of a run waits on, and the gate that decides
//! from it whether a script may start.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::model::{ScriptState, ScriptView, now_rfc3339};

use super::RunHost;

/// The shared board of states.
pub(super) struct Board<'a, H> {
    /// Told every change, to record it and tell the run's followers.
    host: &'a H,
    /// Every script's state (and `tests`'), in the run JSON's form.
    views: Mutex<Vec<ScriptView>>,
    /// Bumped on every change. A waiter subscribes *before* it reads the board, so a change
    /// between its read and its wait is not missed.
    changed: watch::Sender<u64>,
    /// Held from taking a snapshot until it is recorded, so that snapshots are recorded in the
    /// order they were taken (two scripts ending at once would otherwise race, and the older
    /// state could be the one that stays — a pool of database connections commits in any order).
    recording: tokio::sync::Mutex<()>,
}

impl<'a, H: RunHost> Board<'a, H> {
    /// A board where every one of `names` is `pending`.
    pub(super) fn new(host: &'a H, names: &[String]) -> Self {
        let views = names
            .iter()
            .map(|n| ScriptView {
                name: n.clone(),
                state: ScriptState::Pending,
                exit_code: None,
                started_at: None,
                finished_at: None,
            })
            .collect();
        Self {
            host,
            views: Mutex::new(views),
            changed: watch::channel(0).0,
            recording: tokio::sync::Mutex::new(()),
        }
    }

    /// A receiver that changes with the board (subscribe, then read).
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every script's state as the run JSON shows it.
    pub(super) fn snapshot(&self) -> Vec<ScriptView> {
        self.views.lock().clone()
    }

    pub(super) async fn set(&self, name: &str, state: ScriptState, exit_code: Option<i32>) {
        let in_order = self.recording.lock().await;
        let snapshot = {
            let mut views = self.views.lock();
            if let Some(v) = views.iter_mut().find(|v| v.name == name) {
                v.state = state;
                if exit_code.is_some() {
                    v.exit_code = exit_code;
                }
                if state == ScriptState::Running && v.started_at.is_none() {
                    v.started_at = Some(now_rfc3339());
                }
                if state.is_final() {
                    v.finished_at = Some(now_rfc3339());
                }
            }
            views.clone()
        };
        self.host.set_scripts(&snapshot).await;
        drop(in_order);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(super) fn states(&self) -> HashMap<String, ScriptState> {
        self.views
            .lock()
            .iter()
            .map(|v| (v.name.clone(), v.state))
            .collect()
    }
}

pub(super) enum Gate {
    Met,
    Never(String),
    Wait,
}

pub(super) fn gate(
    after: &BTreeMap<String, Vec<String>>,
    states: &HashMap<String, ScriptState>,
) -> Gate {
    let mut met = true;
    for (dep, wanted) in after {
        let state = states.get(dep).copied().unwrap_or(ScriptState::Pending);
        if wanted.iter().any(|w| w == state.as_str()) {
            continue;
        }
        met = false;
        if state.is_final() {
            return Gate::Never(format!(
                "{dep} is {}, not {}",
                state.as_str(),
                wanted.join("/")
            ));
        }
    }
    if met { Gate::Met } else { Gate::Wait }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(dep, states)| {
                (
                    (*dep).to_owned(),
                    states.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn states(entries: &[(&str, ScriptState)]) -> HashMap<String, ScriptState> {
        entries.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    #[test]
    fn a_gate_with_nothing_to_wait_for_is_met() {
        assert!(matches!(gate(&after(&[]), &states(&[])), Gate::Met));
    }

    #[test]
    fn entries_combine_with_and_and_the_states_of_one_entry_with_or() {
        let a = after(&[("db", &["ready", "passed"]), ("build", &["passed"])]);
        let both = states(&[("db", ScriptState::Ready), ("build", ScriptState::Passed)]);
        assert!(matches!(gate(&a, &both), Gate::Met));
        let one = states(&[("db", ScriptState::Passed), ("build", ScriptState::Running)]);
        assert!(matches!(gate(&a, &one), Gate::Wait));
        // Not on the board yet counts as pending: wait.
        assert!(matches!(gate(&a, &states(&[])), Gate::Wait));
    }

    #[test]
    fn a_dependency_that_ended_in_another_state_can_never_be_met_and_says_why() {
        let a = after(&[("build", &["passed"])]);
        let failed = states(&[("build", ScriptState::Failed)]);
        match gate(&a, &failed) {
            Gate::Never(why) => assert_eq!(why, "build is failed, not passed"),
            _ => panic!("a failed dependency is never met"),
        }
        // A running one may still get there.
        let running = states(&[("build", ScriptState::Running)]);
        assert!(matches!(gate(&a, &running), Gate::Wait));
    }
}
