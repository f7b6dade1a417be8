//! Eventual's callback sink: a mock callback receiver for testing asynchronous systems.
//!
//! Systems under test send callbacks keyed by request ID; tests read them by key or *wait* for
//! them (long-poll, Server-Sent Events) without sleeping. The store is indexed by key, isolated by
//! prefix, bounded (`507` rather than eviction) and, with a data directory, persistent: a callback
//! is in the log before it is acknowledged.
//!
//! Use it as a server (`eventual sink`), through [`Client`] against a running one, or in-process
//! in a Rust test with [`TestSink`].
//!
//! # Layout
//! - `record.rs` — the record envelope: encoded once on arrival, JSON bodies kept verbatim.
//! - `store/` — keyed store: `records.rs` ([`Store`]: insert, read, delete, replay, compaction
//!   snapshot), `waiters.rs`, `slot.rs`, `index.rs` (ordered keys), `expiry.rs` (retention).
//! - `wal/` — append-only checksummed log of frames, knowing nothing of the store: `frame.rs`,
//!   `replay.rs` (torn-tail repair), `writer.rs`, `syncer.rs` (group commit), `compaction.rs`.
//! - `backend.rs` — the one interface the routes reach the callbacks through: an enum of
//!   backends (today only the embedded store + log), statically dispatched.
//! - `routes/` — the HTTP API: `mod.rs` (`router()`), `ingest.rs`, `reads.rs` (latest, all, raw,
//!   long-poll, SSE), `keys.rs` (listing, deletion), `auth.rs`, `query.rs`, `key.rs` (the `{key}`
//!   extractor), `state.rs`, `meta.rs` (`/healthz`, 404/405).
//! - `server.rs` — opening (replaying the log into the store) and serving a [`Sink`].
//! - `definitions.rs` — named definitions (stubs, verifiers) in memory and, with a data
//!   directory, in one JSON file per kind, replaced atomically.
//! - `config.rs` — [`Config`], [`FsyncPolicy`]; `duration.rs` — [`parse_duration`]: humantime or
//!   bare seconds, for `?wait=` and every flag.
//! - `error.rs` — [`ApiError`] (`{"error":{"code","message"}}`), startup [`Error`], [`LogError`].
//! - `metrics.rs` — the series of `GET /metrics` (per sink, prometheus-client) and
//!   [`MetricsSource`], through which the harness adds its own.
//! - `verify/` — signature verifiers (`/verifiers/{id}`): definition, validation, selection by
//!   longest prefix, and the schemes (`schemes.rs`).
//! - `client.rs` — [`Client`]; `testing.rs` — [`TestSink`].

mod backend;
mod client;
mod config;
mod definitions;
mod duration;
mod error;
mod metrics;
pub mod openapi;
mod record;
mod routes;
mod server;
mod store;
mod testing;
mod verify;
mod wal;

pub use client::{Ack, Client, ClientError, NewVerifier, encode_key};
pub use config::{Config, FsyncPolicy, InvalidFsyncPolicy};
pub use definitions::DefinitionsError;
pub use duration::{DURATION_FORMS, InvalidDuration, parse_duration};
pub use error::{ApiError, Error, LogError};
pub use metrics::MetricsSource;
pub use record::Record;
pub use routes::{AppState, AuthRefusal, CROSS_SITE, authorize, router};
pub use server::{Sink, serve};
pub use store::{CountWait, InsertError, KeySummary, Store};
pub use testing::TestSink;
pub use verify::Signature;
pub use wal::ReplayStats;
