//! [`AppState`]: what every handler shares.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Backend, config::Config, definitions::Definitions, metrics::Metrics, stubs::StubSet,
    verify::Verifier,
};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    /// The callbacks, behind the one interface the routes use.
    backend: Backend,
    /// The scripted answers (`/stubs`), consulted on every callback.
    stubs: StubSet,
    config: Config,
    /// The series of `GET /metrics` (per sink, not process-global: see `metrics.rs`).
    metrics: Metrics,
    /// Cancelled on SIGINT/SIGTERM: waiters answer `503 shutting_down`, event streams end.
    shutdown: CancellationToken,
    /// `PUT /verifiers/{id}`: signature verifiers by id.
    verifiers: Definitions<Verifier>,
    /// `GET /openapi.json`: the sink's document, merged with what [`AppState::add_openapi`] added.
    openapi: RwLock<Document>,
}

impl AppState {
    pub(crate) fn new(
        backend: Backend,
        stubs: StubSet,
        config: Config,
        shutdown: CancellationToken,
        verifiers: Definitions<Verifier>,
    ) -> Self {
        Self {
            inner: Arc::new(StateInner {
                metrics: Metrics::new(config.max_callbacks),
                backend,
                stubs,
                config,
                shutdown,
                verifiers,
                openapi: RwLock::new(with_json(crate::openapi::document())),
            }),
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(super) fn stubs(&self) -> &StubSet {
        &self.inner.stubs
    }

    pub(super) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(super) fn verifiers(&self) -> &Definitions<Verifier> {
        &self.inner.verifiers
    }

    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}

impl AppState {
    /// Documents `other`'s paths and schemas too in `GET /openapi.json`.
    pub(crate) fn add_openapi(&self, other: utoipa::openapi::OpenApi) {
        let mut doc = self.inner.openapi.write();
        let mut merged = doc.0.clone();
        merged.merge(other);
        *doc = with_json(merged);
    }

    pub(super) fn openapi_json(&self) -> Bytes {
        self.inner.openapi.read().1.clone()
    }
}

/// The document and its JSON, serialised once.
struct Document(utoipa::openapi::OpenApi, Bytes);

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("bytes", &self.1.len())
            .finish()
    }
}

fn with_json(doc: utoipa::openapi::OpenApi) -> Document {
    let json = serde_json::to_vec(&doc).expect("an OpenAPI document serialises");
    Document(doc, json.into())
}
