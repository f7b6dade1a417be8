//! Cluster mode's wake-ups: every change another node must hear of — a run may start, a run or
//! environment changed, a log grew, a cancel — is a `NOTIFY` on one channel, heard by one
//! `LISTEN`ing connection per node. Notifications are hints: one lost while a listener was
//! reconnecting is caught up by [`Hint::Reconnected`] (everything is read again) and by the
//! re-check every [`RECHECK`], a safety net rather than the main path.

use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use sink::Unavailable;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel of the harness's notifications (the sink has its own).
const CHANNEL: &str = "eventual_harness";

/// How often a node looks again without being told: for runs it may start, logs it follows,
/// cancels it was asked for. Notifications normally arrive within a millisecond; this only
/// bounds how late a lost one is noticed.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// How long the listener waits before connecting again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

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

/// Tells every node (this one included) `hint`, as node `origin`.
pub(crate) async fn notify(pool: &Pool, hint: &Hint, origin: &str) -> Result<(), Unavailable> {
    pool.get()
        .await?
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &hint.payload(origin)],
        )
        .await?;
    Ok(())
}

/// Listens as node `me` until `shutdown`, reconnecting whenever the connection is lost; hands
/// every hint to `on` (which must not block).
pub(crate) async fn listen(
    config: tokio_postgres::Config,
    me: String,
    on: impl Fn(Hint),
    shutdown: CancellationToken,
) {
    loop {
        let ended = tokio::select! {
            ended = listen_once(&config, &me, &on) => ended,
            () = shutdown.cancelled() => return,
        };
        match ended {
            Ok(()) => tracing::warn!(
                "the database closed the harness's listening connection; reconnecting"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "the harness's listening connection failed; reconnecting")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One connection's life: `LISTEN`, then a hint per notification until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    me: &str,
    on: &impl Fn(Hint),
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    let handle = |message: AsyncMessage| {
        if let AsyncMessage::Notification(n) = message {
            if let Some(hint) = Hint::parse(n.payload(), me) {
                on(hint);
            }
        }
    };
    loop {
        tokio::select! {
            done = &mut listening => {
                done?;
                break;
            }
            message = messages.next() => match message {
                Some(message) => handle(message?),
                None => return Ok(()),
            }
        }
    }
    // Whatever was notified while nobody listened is caught up by looking again.
    on(Hint::Reconnected);
    while let Some(message) = messages.next().await {
        handle(message?);
    }
    Ok(())
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
