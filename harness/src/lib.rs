//! Eventual's test-runner service: a catalog of tests, runs on exclusive numbered environments,
//! every test a supervised process with its output streamed to disk, and history in SQLite.
//!
//! # Layout
//! - `model.rs` — runs, tests, statuses, environments as the API shows them.
//! - `catalog.rs` — the test tree (bundled + uploads), path confinement, kinds, tags, support files.
//! - `samples.rs` — the sample tests embedded in the binary, written out under the data dir.
//! - `claims.rs` — exclusive environments: atomic claim, FIFO queue, pause (why it cannot race).
//! - `runner.rs` — the core: create, start, execute, cancel, recover after a restart.
//! - `exec.rs` — one supervised test process: process group, timeout, leftovers.
//! - `phases.rs` — phased runs: announce lines, waiting on the sink, the callbacks file.
//! - `scripts.rs` — `eventual.toml`: scripts beside the tests, parsed and validated whole.
//! - `services.rs` — running those scripts around the tests: dependency graph, probes, ending.
//! - `logs.rs` — per-run log files and followers woken as they grow.
//! - `db.rs` — SQLite history (WAL, migrations).
//! - `routes.rs` — the HTTP API (`router()`); `error.rs` — its error body.
//! - `client.rs` — a typed client for the command line (`eventual run`, `upload`, `runs`, `show`).

mod catalog;
mod claims;
pub mod client;
mod config;
mod db;
mod error;
mod exec;
mod logs;
mod model;
mod phases;
mod routes;
mod runner;
pub mod samples;
mod scripts;
mod services;

pub use catalog::{Catalog, ConfigInfo, DeleteError, Kind, SupportInfo, TestInfo, TestPath};
pub use claims::{Claim, Envs};
pub use config::Config;
pub use db::RunFilter;
pub use error::{ApiError, HarnessError};
pub use model::{
    Awaiting, EnvState, EnvView, Phase, Run, RunStatus, RunTest, ScriptState, ScriptView,
    TestStatus,
};
pub use phases::SinkAccess;
pub use routes::router;
pub use runner::{Event, Harness};
pub use scripts::{Probe, RunConfig, Script};
