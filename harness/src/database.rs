//! The harness's part of the cluster's PostgreSQL database (cluster mode): its schema
//! (`harness/migrations/`, recorded apart from the sink's) and the pool its history and claims
//! share.

use deadpool_postgres::Pool;
use sink::{
    DatabaseError,
    database::{self, Migrations},
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Where refinery records the harness's applied migrations (the sink has its own table).
const HISTORY_TABLE: &str = "eventual_harness_schema_history";

/// The advisory lock held while migrating ("harness\0" in ASCII).
const MIGRATION_LOCK: i64 = 0x6861_726e_6573_7300;

/// Connections per node for the harness.
const POOL_SIZE: usize = 16;

/// Connects to `url` and brings the harness's schema up to date (under its advisory lock, so
/// nodes may start at once); refuses a schema newer than this build knows.
pub(crate) async fn open(url: &str) -> Result<Pool, DatabaseError> {
    let config = database::parse_url(url)?;
    database::migrate(
        &config,
        Migrations {
            runner: embedded::migrations::runner(),
            history_table: HISTORY_TABLE,
            lock: MIGRATION_LOCK,
        },
    )
    .await?;
    database::pool(&config, POOL_SIZE)
}

/// A time as the API shows it: RFC 3339 in UTC with milliseconds, as the SQLite history writes.
macro_rules! rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}
pub(crate) use rfc3339;
