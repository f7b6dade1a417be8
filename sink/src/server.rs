//! Opening a sink (store + log + expiry task) and serving it with graceful shutdown.

use std::{future::Future, io, path::Path};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Backend,
    config::Config,
    definitions::Definitions,
    error::Error,
    routes::{AppState, router},
    store::Store,
    wal::{ReplayStats, Wal},
};

/// An opened sink: its store, its routes and its shutdown switch.
#[derive(Debug)]
pub struct Sink {
    state: AppState,
    store: Store,
    shutdown: CancellationToken,
    replay: ReplayStats,
}

impl Sink {
    /// Opens the store (replaying `data_dir`'s log if there is one) and starts retention expiry.
    /// Must be called inside a Tokio runtime.
    pub fn open(config: Config) -> Result<Self, Error> {
        let (store, replay) = match &config.data_dir {
            None => (
                Store::new(config.max_callbacks, config.retention, None),
                ReplayStats::default(),
            ),
            Some(dir) => open_logged(&config, dir).map_err(|source| Error::OpenLog {
                dir: dir.clone(),
                source,
            })?,
        };
        let verifiers = match &config.data_dir {
            None => Definitions::in_memory(),
            Some(dir) => Definitions::open(dir, "verifiers")?,
        };
        let shutdown = CancellationToken::new();
        if config.retention.is_some() {
            tokio::spawn(store.clone().run_expiry(shutdown.clone()));
        }
        let state = AppState::new(
            Backend::Embedded(store.clone()),
            config,
            shutdown.clone(),
            verifiers,
        );
        Ok(Self {
            state,
            store,
            shutdown,
            replay,
        })
    }

    /// The sink's routes, ready to be served or merged into a larger router.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves `source`'s series at this sink's `GET /metrics` too, after its own.
    pub fn add_metrics(&self, source: std::sync::Arc<dyn crate::MetricsSource>) {
        self.state.metrics().add_source(source);
    }

    /// Documents `other`'s paths and schemas too at this sink's `GET /openapi.json`.
    pub fn add_openapi(&self, other: utoipa::openapi::OpenApi) {
        self.state.add_openapi(other);
    }

    /// The store behind the routes (for in-process use such as the test helper).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Cancelling this answers every waiter `503 shutting_down` and ends event streams.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// What replaying the log found at open.
    pub fn replay_stats(&self) -> ReplayStats {
        self.replay
    }

    /// Flushes the log to disk. Call after serving has stopped.
    pub async fn close(self) -> Result<(), Error> {
        self.shutdown.cancel();
        match self.store.wal() {
            Some(wal) => wal.flush().await.map_err(Error::Flush),
            None => Ok(()),
        }
    }
}

/// Opens the log in `dir`, replaying its frames into a new store, then attaches it to the store.
fn open_logged(config: &Config, dir: &Path) -> io::Result<(Store, ReplayStats)> {
    // Replay into a store without a log (nothing replayed is written again), then attach it.
    let store = Store::new(config.max_callbacks, config.retention, None);
    let (wal, replay) = Wal::open(dir, config.fsync, config.compact_min_bytes, |op| {
        store.replay(op);
    })?;
    Ok((store.with_wal(wal), replay))
}

/// Serves `router` on `listener` until `stop` resolves; in-flight requests then finish, and
/// `shutdown` is cancelled first so long-polls answer at once instead of holding the exit.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let token = shutdown.clone();
    axum::serve(nodelay(listener), router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = stop => token.cancel(),
                () = token.cancelled() => {}
            }
        })
        .await
}

/// Accepts connections with `TCP_NODELAY` set. Without it, the last small write of a streamed
/// answer (a log being followed, an SSE event, the end of a chunked body) waits for the peer's
/// delayed ACK: about 40 ms per request on Linux.
fn nodelay(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "failed to set TCP_NODELAY");
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut listener = nodelay(listener);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (stream, _) = listener.accept().await;
        assert!(
            stream.nodelay().expect("getsockopt"),
            "TCP_NODELAY must be on"
        );
        client.await.expect("join").expect("connect");
    }
}
