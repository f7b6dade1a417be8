//! Run and environment changes, broadcast to the web UI and other followers.

use tokio::sync::broadcast;

use crate::{
    cluster::Hint,
    model::{EnvView, Run},
};

use super::Harness;

/// A change the UI and followers hear about (`GET /api/events`).
#[derive(Debug, Clone)]
pub enum Event {
    /// A run was created or changed.
    Run(Run),
    /// An environment changed.
    Env(EnvView),
}

impl Harness {
    /// Subscribes to run and environment changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Tells followers (on every node, in cluster mode) that run `id` changed.
    pub(super) async fn emit_run(&self, id: i64) {
        self.hint(Hint::Run(id));
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        if let Ok(Some(run)) = self.inner.history.get_run(id).await {
            self.send_run(run);
        }
    }

    /// Tells followers about a run already read from the history.
    pub(super) fn send_run(&self, run: Run) {
        let _ = self.inner.events.send(Event::Run(run));
    }

    /// Tells followers (on every node, in cluster mode) that environment `env` changed.
    pub(super) async fn emit_env(&self, env: u32) {
        self.hint(Hint::Env(env));
        self.send_env(env).await;
    }
}
