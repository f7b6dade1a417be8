//! Telling the other nodes that a callback was stored, off the commit path.
//!
//! `NOTIFY` takes a database-wide lock held through its transaction's commit (the WAL flush
//! included), so a `NOTIFY` inside every insert turns concurrent commits into a queue (measured:
//! the insert statement at 0.43× its rate without it, `bench/cluster.sh`). Instead an insert
//! commits alone and hands its key to this task, which sends the keys that queued up meanwhile
//! as one notification (hex keys joined by `,`, within PostgreSQL's 8,000-byte payload limit), on
//! its own connection with `synchronous_commit` off: notifications are hints, and a lost one
//! is caught up by the waiters' re-check. The notification still follows the commit, so a
//! woken waiter always finds the record.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::CHANNEL;

/// Largest payload sent (PostgreSQL refuses 8,000 bytes and more).
const MAX_PAYLOAD: usize = 7_900;

/// How long the notifier waits before connecting again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Sends the keys it receives as notifications until `shutdown`.
pub(super) async fn run(
    config: tokio_postgres::Config,
    mut keys: mpsc::UnboundedReceiver<Vec<u8>>,
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
                tracing::warn!(error = %e, "the notifier could not connect to the database; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let driver = tokio::spawn(connection);
        if let Err(e) = client.batch_execute("SET synchronous_commit TO off").await {
            tracing::warn!(error = %e, "the notifier could not set up its connection; retrying");
            continue;
        }
        loop {
            if pending.is_empty() {
                let key = tokio::select! {
                    key = keys.recv() => key,
                    () = shutdown.cancelled() => return,
                };
                let Some(key) = key else { return };
                pending.push(hex(&key));
            }
            while let Ok(key) = keys.try_recv() {
                pending.push(hex(&key));
            }
            pending.sort_unstable();
            pending.dedup();
            let (payload, sent) = take_payload(&pending);
            match client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
            {
                Ok(_) => {
                    pending.drain(..sent);
                }
                Err(e) => {
                    // Hints only: what could not be sent is dropped; waiters re-check.
                    tracing::warn!(error = %e, "the notifier lost its connection; reconnecting");
                    pending.clear();
                    break;
                }
            }
        }
        driver.abort();
    }
}

/// The payload of the first keys of `pending` that fit, and how many it holds (at least one:
/// a key is at most 2,048 hex characters).
fn take_payload(pending: &[String]) -> (String, usize) {
    let mut payload = String::new();
    let mut taken = 0;
    for key in pending {
        if taken > 0 && payload.len() + 1 + key.len() > MAX_PAYLOAD {
            break;
        }
        if taken > 0 {
            payload.push(',');
        }
        payload.push_str(key);
        taken += 1;
    }
    (payload, taken)
}

fn hex(key: &[u8]) -> String {
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
    fn keys_are_sent_as_many_as_fit_in_one_payload() {
        assert_eq!(hex(b"job-42"), "6a6f622d3432");
        let keys: Vec<String> = (0..1000)
            .map(|i| hex(format!("key-{i:04}").as_bytes()))
            .collect();
        let (payload, taken) = take_payload(&keys);
        assert!(payload.len() <= MAX_PAYLOAD && taken > 1 && taken < keys.len());
        assert_eq!(payload.split(',').count(), taken);
        let (rest, _) = take_payload(&keys[taken..]);
        assert!(
            rest.starts_with(&keys[taken]),
            "the next payload goes on where it stopped"
        );
    }
}
