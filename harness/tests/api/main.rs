//! API tests of the harness: every route of SPEC "The harness", its bad inputs, supervision of
//! real test processes (`fixtures/tests/`), environment claims under stress, and restarts —
//! against a real server on `127.0.0.1:0`. `TEST_LOG=1` shows the harness's tracing.

mod auth;
mod catalog;
mod claims;
mod envs;
mod events;
mod handover;
mod helpers;
mod junit;
mod logs;
mod phased;
mod restart;
mod runs;
mod services;
mod serving;
mod supervision;
