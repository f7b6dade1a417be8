//! [`AppState`]: what every handler shares.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{backend::Backend, config::Config, metrics::Metrics};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    /// The callbacks, behind the one interface the routes use.
    backend: Backend,
    config: Config,
    /// The series of `GET /metrics` (per sink, not process-global: see `metrics.rs`).
    metrics: Metrics,
    /// Cancelled on SIGINT/SIGTERM: waiters answer `503 shutting_down`, event streams end.
    shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(backend: Backend, config: Config, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(StateInner {
                metrics: Metrics::new(config.max_callbacks),
                backend,
                config,
                shutdown,
            }),
        }
    }

    pub(super) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(super) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}
