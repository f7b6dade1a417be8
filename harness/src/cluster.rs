//! Cluster mode's wake-ups: every change another node must hear of — a run may start, a run or
//! environment changed, a log grew, a cancel, an upload — is a hint on one `NOTIFY` channel,
//! heard by one `LISTEN`ing connection per node. Notifications are hints: one lost while a
//! listener was reconnecting is caught up by [`Hint::Reconnected`] (everything is read again) and
//! by the re-check every [`RECHECK`], a safety net rather than the main path.
//!
//! Hints are sent by one task per node ([`Notifier`], the sink's batching notifier on this
//! channel), off the path of the change that caused them: what queued while one notification
//! was being sent goes as the next one (one hint a line, duplicates once), since `NOTIFY` takes a
//! database-wide lock through its commit and a busy cluster makes thousands of changes a second.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The channel of the harness's notifications (the sink has its own).
const CHANNEL: &str = "eventual_harness";

/// How often a node looks again without being told: for runs it may start, logs it follows,
/// cancels it was asked for. Notifications normally arrive within a millisecond; this only
/// bounds how late a lost one is noticed.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hint {
    /// A run holds its environment and no node executes it yet: a node with a free worker
    /// takes it.
    Claims,
    /// A run changed (status, tests, phase).
    Run(i64),
    /// An environment changed (holder, queue, pause).
    Env(u32),
    /// A run's log grew.
    Log(i64),
    /// A run should stop: its executor cancels it.
    Cancel(i64),
    /// An upload was stored or deleted: every node's mirror looks.
    Uploads,
    /// The listener (re)connected: anything may have been missed.
    Reconnected,
}

impl Hint {
    fn payload(&self, origin: &str) -> String {
        match self {
            Self::Claims | Self::Reconnected => format!("claims {origin}"),
            Self::Uploads => format!("uploads 0 {origin}"),
            Self::Run(id) => format!("run {id} {origin}"),
            Self::Env(id) => format!("env {id} {origin}"),
            Self::Log(id) => format!("log {id} {origin}"),
            Self::Cancel(id) => format!("cancel {id} {origin}"),
        }
    }

    /// Reads a payload; `None` for an unknown one, and for the run, environment and log hints
    /// this node sent itself (it told its own followers already).
    fn parse(payload: &str, me: &str) -> Option<Self> {
        let (kind, rest) = payload.split_once(' ')?;
        if kind == "claims" {
            return Some(Self::Claims);
        }
        let (id, origin) = rest.split_once(' ')?;
        let own = origin == me;
        match kind {
            "run" if !own => id.parse().ok().map(Self::Run),
            "env" if !own => id.parse().ok().map(Self::Env),
            "log" if !own => id.parse().ok().map(Self::Log),
            "cancel" => id.parse().ok().map(Self::Cancel),
            "uploads" if !own => Some(Self::Uploads),
            _ => None,
        }
    }
}

/// Where this node's hints go to be sent (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    hints: mpsc::UnboundedSender<String>,
    origin: String,
}

impl Notifier {
    /// Starts the task that sends hints as node `origin` on its own connection to `config`'s
    /// database, until `shutdown` (the sink's batching notifier, on this channel).
    pub(crate) fn start(
        config: tokio_postgres::Config,
        origin: String,
        shutdown: CancellationToken,
    ) -> Self {
        let (hints, queued) = mpsc::unbounded_channel();
        tokio::spawn(sink::database::send_batched(
            config, CHANNEL, '\n', queued, shutdown,
        ));
        Self { hints, origin }
    }

    /// Tells every node (this one included) `hint`, soon; never waits.
    pub(crate) fn send(&self, hint: Hint) {
        let _ = self.hints.send(hint.payload(&self.origin));
    }
}

/// Listens as node `me` until `shutdown`, reconnecting whenever the connection is lost; hands
/// every hint to `on` (which must not block), and [`Hint::Reconnected`] each time listening
/// (re)starts.
pub(crate) async fn listen(
    config: tokio_postgres::Config,
    me: String,
    on: impl Fn(Hint),
    shutdown: CancellationToken,
) {
    sink::database::listen(
        config,
        CHANNEL,
        |payload| {
            for line in payload.lines() {
                if let Some(hint) = Hint::parse(line, &me) {
                    on(hint);
                }
            }
        },
        || on(Hint::Reconnected),
        shutdown,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_and_a_nodes_own_changes_are_not_heard_twice() {
        for hint in [
            Hint::Claims,
            Hint::Run(7),
            Hint::Env(3),
            Hint::Log(9),
            Hint::Cancel(12),
            Hint::Uploads,
        ] {
            assert_eq!(
                Hint::parse(&hint.payload("node a"), "b"),
                Some(hint.clone()),
                "{hint:?} from another node"
            );
        }
        assert_eq!(Hint::parse(&Hint::Run(7).payload("b"), "b"), None);
        assert_eq!(Hint::parse(&Hint::Log(7).payload("b"), "b"), None);
        assert_eq!(
            Hint::parse(&Hint::Cancel(7).payload("b"), "b"),
            Some(Hint::Cancel(7)),
            "a cancel reaches the executor whoever asked"
        );
        assert_eq!(Hint::parse("run x b", "a"), None);
        assert_eq!(Hint::parse("nonsense", "a"), None);
    }
}
