//! Test support: one private PostgreSQL server per test process (from the system's binaries;
//! skipped where PostgreSQL is not installed unless `EVENTUAL_REQUIRE_POSTGRES` is set, as
//! `scripts/test.sh` sets it), a fresh database per test.

use std::sync::OnceLock;

use sink::TestPostgres;

fn server() -> Option<&'static TestPostgres> {
    static SERVER: OnceLock<Option<TestPostgres>> = OnceLock::new();
    SERVER
        .get_or_init(|| TestPostgres::start_or_skip("the harness's PostgreSQL backends"))
        .as_ref()
}

/// The URL of a new, empty database, or `None` where PostgreSQL is not installed.
pub(crate) async fn fresh_database() -> Option<String> {
    let server = tokio::task::spawn_blocking(server).await.expect("join")?;
    Some(server.fresh_database().await.expect("fresh database"))
}
