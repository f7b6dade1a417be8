//! Cluster mode's wake-ups: every change another node must hear of — a run may start, a run or
//! environment changed, a log grew, a cancel, an upload — is a hint on one `NOTIFY` channel,
//! heard by one `LISTEN`ing connection per node. Notifications are hints: one lost while a
//! listener was reconnecting is caught up by [`Hint::Reconnected`] (everything is read again) and
//! by the re-check every [`RECHECK`], a safety net rather than the main path.
//!
//! Hints are sent by one task per node ([`Notifier`]), off the path of the change that caused
//! them, on a connection of its own with `synchronous_commit` off: what queued while one
//! notification was being sent goes as the next one (one hint a line, duplicates once), since
//! `NOTIFY` takes a database-wide lock through its commit and a busy cluster makes thousands of
//! changes a second.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel of the harness's notifications (the sink has its own).
const CHANNEL: &str = "eventual_harness";

/// How often a node looks again without being told: for runs it may start, logs it follows,
/// cancels it was asked for. Notifications normally arrive within a millisecond; this only
/// bounds how late a lost one is noticed.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// How long the listener and the notifier wait before connecting again after losing their
/// connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Largest payload sent (PostgreSQL refuses 8,000 bytes and more).
const MAX_PAYLOAD: usize = 7_900;

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    hints: mpsc::UnboundedSender<Hint>,
}

impl Notifier {
    /// Starts the task that sends hints as node `origin` on its own connection to `config`'s
    /// database, until `shutdown`.
    pub(crate) fn start(
        config: tokio_postgres::Config,
        origin: String,
        shutdown: CancellationToken,
    ) -> Self {
        let (hints, queued) = mpsc::unbounded_channel();
        tokio::spawn(send_hints(config, origin, queued, shutdown));
        Self { hints }
    }

    /// Tells every node (this one included) `hint`, soon; never waits.
    pub(crate) fn send(&self, hint: Hint) {
        let _ = self.hints.send(hint);
    }
}

/// The notifier's task: connect, then send what queued as notifications of one hint a line.
async fn send_hints(
    config: tokio_postgres::Config,
    origin: String,
    mut queued: mpsc::UnboundedReceiver<Hint>,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<Hint> = Vec::new();
    loop {
        let connected = tokio::select! {
            c = config.connect(NoTls) => c,
            () = shutdown.cancelled() => return,
        };
        let client = match connected {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(e) => {
                tracing::warn!(error = %e, "the harness's notifier could not connect; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        if let Err(e) = client.batch_execute("SET synchronous_commit TO off").await {
            tracing::warn!(error = %e, "the harness's notifier could not set up; retrying");
            continue;
        }
        loop {
            if pending.is_empty() {
                let hint = tokio::select! {
                    hint = queued.recv() => hint,
                    () = shutdown.cancelled() => return,
                };
                let Some(hint) = hint else { return };
                pending.push(hint);
            }
            while let Ok(hint) = queued.try_recv() {
                pending.push(hint);
            }
            let mut seen = std::collections::HashSet::new();
            pending.retain(|h| seen.insert(h.clone()));
            let (payload, sent) = take_payload(&pending, &origin);
            match client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
            {
                Ok(_) => {
                    pending.drain(..sent);
                }
                Err(e) => {
                    // Hints only: what could not be sent is dropped; the re-checks catch up.
                    tracing::warn!(error = %e, "the harness's notifier lost its connection; reconnecting");
                    pending.clear();
                    break;
                }
            }
        }
    }
}

/// As many of `pending` as fit in one payload, one a line; and how many that is (at least one).
fn take_payload(pending: &[Hint], origin: &str) -> (String, usize) {
    let mut payload = String::new();
    let mut sent = 0;
    for hint in pending {
        let line = hint.payload(origin);
        if sent > 0 && payload.len() + 1 + line.len() > MAX_PAYLOAD {
            break;
        }
        if sent > 0 {
            payload.push('\n');
        }
        payload.push_str(&line);
        sent += 1;
    }
    (payload, sent)
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
            for line in n.payload().lines() {
                if let Some(hint) = Hint::parse(line, me) {
                    on(hint);
                }
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

    #[test]
    fn a_payload_holds_what_fits_one_hint_a_line_and_always_at_least_one() {
        let pending: Vec<Hint> = (0..2_000).map(Hint::Run).collect();
        let (payload, sent) = take_payload(&pending, "node-a");
        assert!(payload.len() <= MAX_PAYLOAD && sent > 100 && sent < 2_000);
        let lines: Vec<Option<Hint>> = payload.lines().map(|l| Hint::parse(l, "b")).collect();
        assert_eq!(lines.len(), sent);
        assert_eq!(lines[7], Some(Hint::Run(7)));
        let long = "n".repeat(MAX_PAYLOAD);
        assert_eq!(take_payload(&pending, &long).1, 1, "one hint however long");
    }
}
