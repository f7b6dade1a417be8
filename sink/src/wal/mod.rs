//! Durability: an append-only, checksummed log of puts and deletes under `--data-dir`.
//!
//! The log reads and writes frames and knows nothing of the store: opening it hands every
//! frame to a closure (the store replays them), and compaction rewrites it from a snapshot the
//! store hands over.
//!
//! # Design
//! - A put is written to the file *under its key's lock* (so the log's order per key is the
//!   store's) by the request's own thread, with one `write(2)` into the page cache: it survives
//!   `kill -9` of the server before anyone sees `200`. No hand-off to another thread, no wake-up.
//! - `--fsync` decides when the kernel's copy reaches the disk: `always` (before every ack: also
//!   survives power loss), a duration such as `1s` (the default: at most that much is lost on
//!   power loss, nothing on a process crash), or `never` (left to the OS). A syncer thread does
//!   the fsyncs on its own descriptor; with `always`, each request waits ([`WalAck`]) until a
//!   sync that started after its write has finished, so one fsync covers every write before it
//!   (group commit).
//! - Frames are `[len u32][crc32 u32][payload]`. Replay stops at the first frame that is short or
//!   fails its checksum: that tail is cut off with a warning (and kept beside the log for a
//!   post-mortem); everything before it is loaded.
//! - Compaction rewrites the log from a snapshot of the store once the file is more than twice
//!   the live data (deletes and expiry make garbage), on a thread of its own (see
//!   `compaction.rs`).
//!
//! # Layout
//! - `frame.rs` — [`Op`] and its frame encoding; `replay.rs` — reading frames back, torn tails.
//! - `writer.rs` — [`Wal`]: open, append, flush; `shared.rs` — the state they share.
//! - `syncer.rs` — the fsync thread and [`WalAck`]; `compaction.rs` — rewriting from a snapshot.

mod compaction;
mod frame;
mod replay;
mod shared;
mod syncer;
mod writer;

pub(crate) use compaction::Compaction;
pub(crate) use frame::Op;
pub use replay::ReplayStats;
pub(crate) use shared::Outcome;
pub(crate) use syncer::WalAck;
pub(crate) use writer::Wal;
