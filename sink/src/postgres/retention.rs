//! Reclaiming the space of records older than `--retention`. Reads already ignore them (they
//! compare `received_ms` with the cut-off), so this task only deletes; every node runs it, and
//! concurrent purges simply find less to delete.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::PgStore;

/// How often expired records are deleted, at most.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Purges expired records until `shutdown`.
pub(super) async fn purge(store: PgStore, retention: Duration, shutdown: CancellationToken) {
    let every = PURGE_EVERY.min(retention);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match store.purge_before(now - retention.as_millis() as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(records = n, "purged expired callbacks"),
            Err(e) => tracing::warn!(error = %e, "failed to purge expired callbacks; retrying"),
        }
    }
}
