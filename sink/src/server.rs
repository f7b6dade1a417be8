//! Opening a sink: store, log and expiry task (serving it is `serving.rs`).

use std::{io, path::Path};

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Backend,
    config::Config,
    definitions::Definitions,
    error::Error,
    postgres::PgStore,
    routes::{AppState, router},
    store::Store,
    stubs::StubSet,
    wal::{ReplayStats, Wal},
};

/// An opened sink: its store, its routes and its shutdown switch.
#[derive(Debug)]
pub struct Sink {
    state: AppState,
    /// The embedded store, when the callbacks are not in a database.
    store: Option<Store>,
    shutdown: CancellationToken,
    replay: ReplayStats,
}

impl Sink {
    /// Opens the store — replaying `data_dir`'s log if there is one, or connecting to
    /// `database` and migrating its schema in cluster mode —, loads the stubs and verifiers kept in
    /// the data directory and starts retention expiry. Must be called inside a Tokio runtime.
    pub async fn open(config: Config) -> Result<Self, Error> {
        let shutdown = CancellationToken::new();
        let stubs = match &config.data_dir {
            None => StubSet::in_memory(),
            Some(dir) => StubSet::open(dir).map_err(Error::Definitions)?,
        };
        let verifiers = match &config.data_dir {
            None => Definitions::in_memory(),
            Some(dir) => Definitions::open(dir, "verifiers").map_err(Error::Definitions)?,
        };
        if let Some(url) = &config.database {
            let db = PgStore::open(url, &config, &shutdown).await?;
            // Shared by every node: in the database beside the callbacks.
            let stubs = StubSet::in_database(db.pool())
                .await
                .map_err(Error::Definitions)?;
            let verifiers = Definitions::in_database(db.pool(), "verifiers")
                .await
                .map_err(Error::Definitions)?;
            tokio::spawn(reload_definitions(
                db.clone(),
                stubs.clone(),
                verifiers.clone(),
                config.recheck_interval,
                shutdown.clone(),
            ));
            let state = AppState::new(
                Backend::Postgres(db),
                stubs,
                config,
                shutdown.clone(),
                verifiers,
            );
            return Ok(Self {
                state,
                store: None,
                shutdown,
                replay: ReplayStats::default(),
            });
        }
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
        if config.retention.is_some() {
            tokio::spawn(store.clone().run_expiry(shutdown.clone()));
        }
        let state = AppState::new(
            Backend::Embedded(store.clone()),
            stubs,
            config,
            shutdown.clone(),
            verifiers,
        );
        Ok(Self {
            state,
            store: Some(store),
            shutdown,
            replay,
        })
    }

    /// The sink's routes, ready to be served or merged into a larger router.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The interface the routes reach the callbacks through.
    pub(crate) fn backend(&self) -> &Backend {
        self.state.backend()
    }

    /// Serves `source`'s series at this sink's `GET /metrics` too, after its own.
    pub fn add_metrics(&self, source: std::sync::Arc<dyn crate::MetricsSource>) {
        self.state.metrics().add_source(source);
    }

    /// Documents `other`'s paths and schemas too at this sink's `GET /openapi.json`.
    pub fn add_openapi(&self, other: utoipa::openapi::OpenApi) {
        self.state.add_openapi(other);
    }

    /// The embedded store behind the routes (for in-process use such as the harness's phased
    /// runs); `None` in cluster mode.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
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
        match self.store.as_ref().and_then(Store::wal) {
            Some(wal) => wal.flush().await.map_err(Error::Flush),
            None => Ok(()),
        }
    }
}

/// Opens the log in `dir`, replaying its frames into a new store, then attaches it to the store.
/// Cluster mode: this node's stubs and verifiers follow the database's — read again when another
/// node says it changed them, when the listener reconnects, and every `recheck` (the safety
/// net for a lost notification).
async fn reload_definitions(
    db: PgStore,
    stubs: StubSet,
    verifiers: Definitions<crate::verify::Verifier>,
    recheck: std::time::Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = db.definitions_changed().notified() => {}
            () = tokio::time::sleep(recheck) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = stubs.reload().await {
            tracing::warn!(error = %e, "failed to read the stubs again");
        }
        if let Err(e) = verifiers.reload().await {
            tracing::warn!(error = %e, "failed to read the verifiers again");
        }
    }
}

fn open_logged(config: &Config, dir: &Path) -> io::Result<(Store, ReplayStats)> {
    // Replay into a store without a log (nothing replayed is written again), then attach it.
    let store = Store::new(config.max_callbacks, config.retention, None);
    let (wal, replay) = Wal::open(dir, config.fsync, config.compact_min_bytes, |op| {
        store.replay(op);
    })?;
    Ok((store.with_wal(wal), replay))
}
