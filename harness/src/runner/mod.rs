//! The harness core: a run from its creation to its end.
//!
//! # Layout
//! - `harness.rs` — [`Harness`], the handle every route holds, and its shared state (each field
//!   says why it exists); reads of runs and environments.
//! - `admission.rs` — create and admit (ids are queue order), start when the environment is the
//!   run's own, release and retire at its end, cancel, pause/resume; deleting uploads.
//! - `execute.rs` — executing a run: its scripts (via `services.rs`) around its tests, the tests
//!   one after another, the await phase (`phases.rs`) between preparation and validation.
//! - `launch.rs` — a test's command, environment and directories, built in one place.
//! - `recovery.rs` — opening: runs a dead server left running become `interrupted`, what they
//!   left running is killed, their cleanup runs, queued runs go on.
//! - `events.rs` — run and environment changes for SSE followers.
//! - `cluster.rs` — cluster mode: connecting, submission under the environment's row lock,
//!   hints, cancels of runs on other nodes, uploads, nodes; `cluster_logs.rs` — logs copied to
//!   and from the database, followed on any node; `cluster_work.rs` — the worker loop taking
//!   runs, fencing, heartbeats and dead nodes.
//!
//! Imports run one way: routes → runner → services / phases / exec → db / logs / claims /
//! catalog → model.

mod admission;
mod cluster;
mod cluster_logs;
mod cluster_work;
mod events;
mod execute;
mod harness;
mod launch;
mod recovery;

pub use events::Event;
pub use harness::Harness;
