//! Eventual's test-runner service: a catalog of tests, runs on exclusive numbered environments,
//! every test a supervised process with its output streamed to disk, and history in SQLite — or,
//! in cluster mode (`serve --database`), all of it shared by several nodes through PostgreSQL.
//!
//! # Layout
//! Imports run one way: `routes` → `runner` → `services` / `phases` / `exec` → `db` / `logs` /
//! `claims` / `catalog` → `model` (with `error` and `config` beside them).
//! - `model.rs` — runs, tests, statuses, phases, script and environment states as the API shows them.
//! - `catalog/` — the test tree (bundled + uploads): path confinement, kinds, tags, support files.
//! - `samples.rs` — the sample tests built into the binary, written out under the data dir.
//! - `claims.rs` — exclusive environments: atomic claim, FIFO queue, pause (why it cannot race);
//!   `claims/postgres.rs` — the same across nodes: a row lock per environment, fencing tokens.
//! - `runner/` — the core, one file per stage: admission and hand-over, execution, test launch,
//!   crash recovery, events; cluster mode's submission, worker loop, logs and heartbeats.
//! - `cluster.rs` — cluster mode's wake-ups: `NOTIFY` hints on one channel, one listener per
//!   node; `nodes.rs` — the nodes table, heartbeats, dead nodes.
//! - `exec.rs` — one supervised process: process group, timeout, leftovers.
//! - `phases.rs` — phased runs: announce lines, the await phase on the sink, the callbacks file.
//! - `scripts.rs` — `eventual.toml`: scripts beside the tests, parsed and validated whole.
//! - `services/` — running those scripts around the tests: board of states, probes, cleanup.
//! - `logs.rs` — per-run log files and followers woken as they grow; `log_index.rs` — where
//!   their lines and test sections are, for ranges and search.
//! - `junit/` — a run as JUnit XML: each test's log section, pytest's own cases, CI's mapping.
//! - `history/` — run history behind one async interface: SQLite (WAL, migrations), and
//!   PostgreSQL for cluster mode; `database.rs` — the harness's schema and pool in that database.
//! - `routes/` — the HTTP API (`router()`) by concern, typed extractors; `error.rs` — the
//!   harness's error and the API error body.
//! - `metrics.rs` — the harness's series at `GET /metrics` (under `serve`, after the sink's).
//! - `client.rs` — a typed client for the command line (`eventual run`, `upload`, `runs`, `show`).

mod catalog;
mod claims;
pub mod client;
mod cluster;
mod config;
mod database;
mod error;
mod exec;
mod history;
mod junit;
mod log_index;
mod logs;
mod metrics;
mod model;
mod nodes;
pub mod openapi;
mod phases;
mod routes;
mod runner;
pub mod samples;
mod scripts;
mod services;
#[cfg(test)]
mod testing;

pub use catalog::{Catalog, ConfigInfo, DeleteError, Kind, SupportInfo, TestInfo, TestPath};
pub use claims::{Claim, Envs};
pub use config::{ClusterConfig, Config};
pub use error::{ApiError, HarnessError};
pub use history::{RunFilter, TestRun};
pub use model::{
    Awaiting, EnvState, EnvView, Phase, Run, RunStatus, RunTest, ScriptState, ScriptView,
    TestStatus,
};
pub use phases::SinkAccess;
pub use routes::router;
pub use runner::{Event, Harness};
pub use scripts::{Probe, RunConfig, Script};
