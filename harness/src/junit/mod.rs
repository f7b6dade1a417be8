//! A run as JUnit XML (`GET /api/runs/{id}/junit.xml`, `eventual run --junit FILE`), the way
//! Jenkins, GitLab and GitHub's test reporters read it: one `<testsuites>` holding one
//! `<testsuite>`, a `<testcase>` per test of the run — and per pytest case for pytest files, read
//! from the XML pytest wrote with `--junitxml` — with `failure`/`error`/`skipped` and each
//! test's own log lines in `system-out`.
//!
//! # Layout
//! - `sections.rs` — the run log cut into each test's section (between its `--- start` and
//!   `--- end` lines), bounded.
//! - `pytest.rs` — the cases of one pytest file, from the XML pytest wrote.
//! - `report.rs` — the report: statuses mapped as CI tools expect, the XML written (quick-xml,
//!   every text escaped, characters XML cannot carry spelled out).

mod pytest;
mod report;
mod sections;

pub(crate) use report::render;
