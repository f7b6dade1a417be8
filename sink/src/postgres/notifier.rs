//! Sending notifications off the commit path, batched: used by the callback store (a stored
//! callback's key) and by the harness (its hints), each on its own channel.
//!
//! `NOTIFY` takes a database-wide lock held through its transaction's commit (the WAL flush
//! included), so a `NOTIFY` inside every insert turns concurrent commits into a queue (measured:
//! the insert statement at 0.43× its rate without it, `bench/cluster.sh`). Instead an insert
//! commits alone and hands its item to this task, which sends the items that queued up meanwhile
//! as one notification (deduplicated, joined by a separator, within PostgreSQL's 8,000-byte
//! payload limit), on its own connection with `synchronous_commit` off: notifications are hints,
//! and a lost one is caught up by the receivers' re-check. The notification still follows the
//! commit, so a woken waiter always finds the record.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// Largest payload sent (PostgreSQL refuses 8,000 bytes and more).
const MAX_PAYLOAD: usize = 7_900;

/// How long the notifier waits before connecting again after losing its connection (nothing
/// signals that the database is back: it is tried again).
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Sends the items it receives as notifications on `channel` until `shutdown` (or until every
/// sender is gone): what queued while one was being sent goes as the next, each item once,
/// joined by `separator` (which no item may contain).
pub async fn send_batched(
    config: tokio_postgres::Config,
    channel: &'static str,
    separator: char,
    mut items: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<String> = Vec::new();
    loop {
        let connected = tokio::select! {
            c = config.connect(NoTls) => c,
            () = shutdown.cancelled() => return,
        };
        let (client, connection) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, channel, "the notifier could not connect to the database; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let driver = tokio::spawn(connection);
        if let Err(e) = client.batch_execute("SET synchronous_commit TO off").await {
            tracing::warn!(error = %e, channel, "the notifier could not set up its connection; retrying");
            driver.abort();
            continue;
        }
        loop {
            if pending.is_empty() {
                let item = tokio::select! {
                    item = items.recv() => item,
                    () = shutdown.cancelled() => return,
                };
                let Some(item) = item else { return };
                pending.push(item);
            }
            while let Ok(item) = items.try_recv() {
                pending.push(item);
            }
            pending.sort_unstable();
            pending.dedup();
            let (payload, sent) = take_payload(&pending, separator);
            match client
                .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                .await
            {
                Ok(_) => {
                    pending.drain(..sent);
                }
                Err(e) => {
                    // Hints only: what could not be sent is dropped; receivers re-check.
                    tracing::warn!(error = %e, channel, "the notifier lost its connection; reconnecting");
                    pending.clear();
                    break;
                }
            }
        }
        driver.abort();
    }
}

/// The payload of the first items of `pending` that fit, and how many it holds (at least one,
/// however long: a key is at most 2,048 hex characters, a hint a few dozen).
fn take_payload(pending: &[String], separator: char) -> (String, usize) {
    let mut payload = String::new();
    let mut taken = 0;
    for item in pending {
        if taken > 0 && payload.len() + separator.len_utf8() + item.len() > MAX_PAYLOAD {
            break;
        }
        if taken > 0 {
            payload.push(separator);
        }
        payload.push_str(item);
        taken += 1;
    }
    (payload, taken)
}

/// A key as a notification carries it.
pub(super) fn hex(key: &[u8]) -> String {
    use std::fmt::Write as _;
    key.iter()
        .fold(String::with_capacity(key.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_sent_as_many_as_fit_in_one_payload() {
        assert_eq!(hex(b"job-42"), "6a6f622d3432");
        let keys: Vec<String> = (0..1000)
            .map(|i| hex(format!("key-{i:04}").as_bytes()))
            .collect();
        let (payload, taken) = take_payload(&keys, ',');
        assert!(payload.len() <= MAX_PAYLOAD && taken > 1 && taken < keys.len());
        assert_eq!(payload.split(',').count(), taken);
        let (rest, _) = take_payload(&keys[taken..], ',');
        assert!(
            rest.starts_with(&keys[taken]),
            "the next payload goes on where it stopped"
        );
        let long = vec!["n".repeat(MAX_PAYLOAD + 10), "m".into()];
        assert_eq!(take_payload(&long, '\n').1, 1, "one item however long");
    }
}
