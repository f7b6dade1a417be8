//! The callback store's schema: versioned migrations (`sink/migrations/V<n>__<name>.sql`,
//! embedded at build time by refinery) applied at start under an advisory lock
//! ([`super::database::migrate`]), so several nodes starting at once on an empty database run
//! each migration exactly once and all come up.

use super::{
    OpenError,
    database::{self, Migrations},
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Where refinery records the callback store's applied migrations.
const HISTORY_TABLE: &str = "eventual_schema_history";

/// The advisory lock held while migrating (an arbitrary constant: "eventual" in ASCII).
const MIGRATION_LOCK: i64 = 0x6576_656e_7475_616c;

/// The newest schema version of the callback store this build knows (cluster mode).
pub fn schema_version() -> i64 {
    database::newest(&embedded::migrations::runner())
}

/// Brings the database to [`schema_version`]; refuses a database whose schema is newer.
pub(super) async fn migrate(config: &tokio_postgres::Config) -> Result<(), OpenError> {
    database::migrate(
        config,
        Migrations {
            runner: embedded::migrations::runner(),
            history_table: HISTORY_TABLE,
            lock: MIGRATION_LOCK,
        },
    )
    .await
}
