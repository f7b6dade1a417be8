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
//!   backends (the embedded store + log, or PostgreSQL), statically dispatched.
//! - `postgres/` — the callback store of cluster mode (`--database`): one committed statement
//!   per callback, prefixes as key ranges, wake-ups by `LISTEN/NOTIFY`, migrations.
//! - `routes/` — the HTTP API: `mod.rs` (`router()`), `ingest.rs`, `reads.rs` (latest, all, raw,
//!   long-poll, SSE), `keys.rs` (listing, deletion), `auth.rs`, `query.rs`, `key.rs` (the `{key}`
//!   extractor), `state.rs`, `meta.rs` (`/healthz`, 404/405).
//! - `server.rs` — opening a [`Sink`] (replaying the log into the store).
//! - `serving.rs` — [`serve`]: accepting connections for both servers, HTTP/1.1 and HTTP/2 with
//!   prior knowledge on one port, per-connection limits ([`ServeOptions`]), graceful shutdown.
//! - `stubs/` — scripted answers (`/stubs/{id}`): types and validation, matching a key to a
//!   stub, the seq → response plan, the delayed or dropped answer.
//! - `annotate.rs` — the one hook of an insert (`seq` → the record's `"response"` field).
//! - `definitions.rs` — named definitions (stubs, verifiers) in memory and, with a data
//!   directory, in one JSON file per kind, replaced atomically.
//! - `config.rs` — [`Config`], [`FsyncPolicy`]; `duration.rs` — [`parse_duration`]: humantime or
//!   bare seconds, for `?wait=` and every flag.
//! - `error.rs` — [`ApiError`] (`{"error":{"code","message"}}`), startup [`Error`], [`LogError`].
//! - `metrics.rs` — the series of `GET /metrics` (per sink, prometheus-client) and
//!   [`MetricsSource`], through which the harness adds its own.
//! - `verify/` — signature verifiers (`/verifiers/{id}`): definition, validation, selection by
//!   longest prefix, and the schemes (`schemes.rs`).
//! - `client.rs` — [`Client`]; `testing/` — [`TestSink`], [`TestPostgres`].

mod annotate;
mod backend;
mod client;
mod config;
mod definitions;
mod duration;
mod error;
mod metrics;
pub mod openapi;
mod postgres;
mod record;
mod routes;
mod server;
mod serving;
mod store;
mod stubs;
mod testing;
mod verify;
mod wal;

pub use client::{Ack, Client, ClientError, NewVerifier, WatchStream, Watched, encode_key};
pub use config::{Config, FsyncPolicy, InvalidFsyncPolicy};
pub use definitions::DefinitionsError;
pub use duration::{DURATION_FORMS, InvalidDuration, parse_duration};
pub use error::{ApiError, Error, LogError};
pub use metrics::MetricsSource;
pub use postgres::{
    OpenError as DatabaseError, RECHECK_INTERVAL, Unavailable, database, schema_version,
};
pub use record::Record;
pub use routes::{AppState, AuthRefusal, CROSS_SITE, authorize, router};
pub use server::Sink;
pub use serving::{ServeOptions, serve};
pub use store::{CountWait, InsertError, KeySummary, Store};
pub use stubs::{MAX_DELAY, Responded, Stub, StubInfo, StubResponse, Then};
pub use testing::{TestPostgres, TestPostgresError, TestSink};
pub use verify::Signature;
pub use wal::ReplayStats;
