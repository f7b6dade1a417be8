//! Helpers for tests of code that uses the sink: [`TestSink`], a sink on a random local port,
//! and [`TestPostgres`], a private PostgreSQL server for tests of cluster mode.

mod postgres;
mod sink;

pub use postgres::{TestPostgres, TestPostgresError};
pub use sink::TestSink;
