//! End-to-end tests of the real `eventual` binary: each test starts it on `127.0.0.1:0` and talks
//! to it over HTTP or runs its client commands, waiting on outputs and events rather than sleeping.
//!
//! # Layout
//! - `helpers.rs` — [`helpers::spawn_eventual`] / [`helpers::Launch`] start the binary; `Running`
//!   talks to it, signals it and captures its stderr; `Launch::serve`, `LogFollower` (`?follow=true`),
//!   `SseStream` and `processes_in` (a run's test processes, by working directory) serve the harness.
//! - `sink_durability.rs` — `kill -9` mid-stream and a torn log tail lose no acknowledged callback.
//! - `full_disk.rs` — a real full disk (a 2 MiB tmpfs; skipped with a message where mounting is
//!   refused): `507 storage_full`, refused callbacks never visible, recovery, nothing acked lost.
//! - `shutdown.rs` — SIGTERM/SIGINT: waiters get `503 shutting_down`, exit 0, the log is flushed.
//! - `limits.rs` — `--max-callbacks`, `--max-body` and their `EVENTUAL_*` variables.
//! - `retention.rs` — `--retention` forgets callbacks, also across a restart.
//! - `cli.rs` — `serve`'s bind rule, `eventual wait`'s output and exit codes, duration flags, help.
//! - `cli_output.rs` — each client command's answer on stdout, progress on stderr, JSON in the
//!   API's shapes.
//! - `harness_restart.rs` — `serve` killed with `kill -9` mid-run or stopped with SIGTERM: the
//!   run is `interrupted`, its environment freed, the queue goes on; history and logs survive.
//! - `harness_serve.rs` — `--token` on harness routes, `EVENTUAL_SINK_URL`, a bundled sample test.
//! - `phased.rs` — phased runs with the demo SUT (`fixtures/demo_sut.py`): the sample pair passes,
//!   a callback that never comes times the run out, `count=2`, cancel while awaiting, isolation of
//!   runs, the pytest samples of `async_job` (one through the `eventual_sink` fixture, with nothing
//!   installed); a relative `--data-dir` (ignored: a known bug).
//! - `junit.rs` — `eventual run --junit FILE`: a testcase per pytest case, the exit code kept, an
//!   unwritable path refused before a run is submitted.
//! - `metrics.rs` — `GET /metrics`: the sink's series (`sink`), the harness's too (`serve`),
//!   `--token`.
//! - `openapi.rs` — `GET /openapi.json`: OpenAPI 3.1 listing every route of `sink`, and of
//!   `serve` (sink + harness), with the error body.
//! - `readme.rs` — the README's tours, extracted from `README.md` and run as written with bash;
//!   the README and `docs/` stand alone (nothing outside the repository, no dead relative links).

mod cli;
mod cli_output;
mod cli_runs;
mod cluster;
mod cluster_runs;
mod full_disk;
mod harness_restart;
mod harness_serve;
mod harness_stop;
mod helpers;
mod junit;
mod limits;
mod metrics;
mod openapi;
mod phased;
mod readme;
mod retention;
mod services_restart;
mod shutdown;
mod sink_durability;
