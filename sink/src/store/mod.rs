//! The callback store: records indexed by key, an ordered key index, waiters, capacity and
//! retention.
//!
//! # Design
//! - `map` (a [`DashMap`](dashmap::DashMap)) owns every key's slot. Each mutation of a key
//!   happens under that key's shard lock, and so do the three things that must agree with it:
//!   the ordered key index (a lock-free skip list of the keys that hold records, so a prefix is
//!   listed or deleted without scanning every key), the write-ahead log's order, and the key's
//!   watch channel.
//! - Waiting cannot miss a wake-up: a waiter checks the slot *and* subscribes to its watch channel
//!   under the same lock that a writer holds while it appends and sends (see `waiters.rs`).
//! - Every visible record has a sink-wide id, taken under its key's lock as it becomes visible;
//!   a prefix watcher reads the keys under its prefix up to the last id given out before it
//!   began, so it never sends an id past one that could still appear (see `watch.rs`).
//! - Capacity is one atomic counter reserved before the insert; a full sink refuses (`507`) and
//!   never evicts. Retention, when configured, is a FIFO of deadlines drained by one task woken by
//!   a [`Notify`](tokio::sync::Notify) (records all share one TTL, so arrival order is expiry
//!   order).
//! - The log knows nothing of the store: the store writes its frames under the key's lock,
//!   replays them at open ([`Store::replay`]), and when the log asks for a compaction hands it a
//!   snapshot taken behind a gate that blocks logged mutations meanwhile.
//!
//! # Layout
//! - `records.rs` — [`Store`]: insert, read, delete, list, replay, compaction snapshot.
//! - `waiters.rs` — waiting on a key ("register, then check" under the shard lock).
//! - `slot.rs` — one key's records and watch channel; `index.rs` — the ordered key index.
//! - `expiry.rs` — the retention queue and its task.
//! - `watch.rs` — the sink-wide record ids and the prefix watchers of `GET /watch`.

mod expiry;
mod index;
mod records;
mod slot;
mod waiters;
pub(crate) mod watch;

pub use index::KeySummary;
pub use records::{InsertError, Store};
pub(crate) use slot::Stored;
pub use waiters::CountWait;
pub(crate) use waiters::WaitEnd;
pub(crate) use watch::Watcher;
