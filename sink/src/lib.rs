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
//! - `store.rs` — keyed store, ordered key index, waiters, capacity, retention.
//! - `wal.rs` — append-only checksummed log: group commit, replay, torn-tail repair, compaction.
//! - `routes.rs` — the HTTP API (`router()`); `server.rs` — opening and serving a [`Sink`].
//! - `duration.rs` — [`parse_duration`]: humantime or bare seconds, for `?wait=` and every flag.
//! - `error.rs` — [`ApiError`] (`{"error":{"code","message"}}`) and startup [`Error`].
//! - `client.rs` — [`Client`]; `testing.rs` — [`TestSink`].

mod client;
mod config;
mod duration;
mod error;
mod record;
mod routes;
mod server;
mod store;
mod testing;
mod wal;

pub use client::{Ack, Client, ClientError, encode_key};
pub use config::{Config, FsyncPolicy};
pub use duration::{DURATION_FORMS, InvalidDuration, parse_duration};
pub use error::{ApiError, Error};
pub use record::Record;
pub use routes::{AppState, presented_token_matches, router};
pub use server::{Sink, serve};
pub use store::{CountWait, InsertError, KeySummary, Store};
pub use testing::TestSink;
pub use wal::ReplayStats;
