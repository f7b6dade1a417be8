//! The database schema: versioned migrations (`sink/migrations/V<n>__<name>.sql`, embedded at
//! build time by refinery) applied at start under an advisory lock, so several nodes starting
//! at once on an empty database run each migration exactly once and all come up.

use tokio_postgres::{Client, NoTls};

use super::{OpenError, Unavailable};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Where refinery records the applied migrations.
const HISTORY_TABLE: &str = "eventual_schema_history";

/// The advisory lock held while migrating (an arbitrary constant: "eventual" in ASCII).
const MIGRATION_LOCK: i64 = 0x6576_656e_7475_616c;

/// The newest schema version of the database this build knows (cluster mode).
pub fn schema_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Brings the database to [`schema_version`] on a connection of its own, under the advisory
/// lock; refuses a database whose schema is newer.
pub(super) async fn migrate(config: &tokio_postgres::Config) -> Result<(), OpenError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(Unavailable::from)?;
    let driver = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(Unavailable::from)?;
    let migrated = migrate_locked(&mut client).await;
    // Ending the session releases the lock too; unlocking first lets the next node go at once.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = driver.await;
    migrated
}

async fn migrate_locked(client: &mut Client) -> Result<(), OpenError> {
    let known = schema_version();
    if let Some(found) = applied_version(client).await? {
        if found > known {
            return Err(OpenError::SchemaTooNew { found, known });
        }
    }
    let report = embedded::migrations::runner()
        .set_migration_table_name(HISTORY_TABLE)
        .run_async(client)
        .await
        .map_err(|e| OpenError::Migration(e.to_string()))?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "applied a database migration"
        );
    }
    Ok(())
}

/// The newest migration applied to the database, if any.
async fn applied_version(client: &Client) -> Result<Option<i64>, Unavailable> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1::text) IS NOT NULL",
            &[&HISTORY_TABLE],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            &format!("SELECT max(version)::bigint FROM {HISTORY_TABLE}"),
            &[],
        )
        .await?;
    Ok(row.get(0))
}
