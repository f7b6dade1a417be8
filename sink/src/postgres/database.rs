//! Reaching the cluster's PostgreSQL database, for every part of a node that keeps its state
//! there (this crate's callback store, the harness's history and claims): the `--database` URL,
//! a connection pool, and versioned migrations applied under an advisory lock.
//!
//! Each part has its own migrations (refinery, embedded at build time) recorded in its own
//! history table, so the sink and the harness evolve their schemas independently in one
//! database; each checks that the database is not newer than it knows.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use refinery::Runner;
use tokio_postgres::{Client, NoTls};

use super::{OpenError, Unavailable};
pub use super::{listener::listen, notifier::send_batched};

/// How long connecting to the database may take before the attempt fails (the database is
/// down or unreachable: answered at once, not after a wait for a busy pool).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a pooled connection while all are busy. Busy is not down: a
/// burst on one key (its inserts take turns on the key's row) queues here instead of being
/// refused; only a database that stays saturated this long gets `503`.
pub const POOL_WAIT: Duration = Duration::from_secs(30);

/// Parses a `--database` URL, with the settings every connection of a node uses.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, OpenError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        OpenError::Url(format!("{e}; expected postgres://user@host:port/database"))
    })?;
    config.application_name("eventual");
    config.keepalives_idle(Duration::from_secs(10));
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(config)
}

/// A pool of at most `size` connections to `config`'s database; a request for a connection
/// waits at most [`POOL_WAIT`] while all are busy, a new one [`CONNECT_TIMEOUT`].
pub fn pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool, OpenError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| OpenError::Url(e.to_string()))
}

/// One part's migrations: what to run, where refinery records them, and the advisory lock that
/// serialises nodes migrating at once.
pub struct Migrations {
    /// The embedded migrations (`embed_migrations!`'s `migrations::runner()`).
    pub runner: Runner,
    /// The table recording which ran, one per part.
    pub history_table: &'static str,
    /// The advisory lock key, one per part.
    pub lock: i64,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrations")
            .field("newest", &self.newest())
            .field("history_table", &self.history_table)
            .field("lock", &self.lock)
            .finish()
    }
}

impl Migrations {
    /// The newest version among these migrations.
    pub fn newest(&self) -> i64 {
        newest(&self.runner)
    }
}

/// The newest version `runner` holds.
pub(super) fn newest(runner: &Runner) -> i64 {
    runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Brings the database to the newest of `migrations` on a connection of its own, under their
/// advisory lock; refuses a database whose schema (for this part) is newer.
pub async fn migrate(
    config: &tokio_postgres::Config,
    migrations: Migrations,
) -> Result<(), OpenError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(Unavailable::from)?;
    let driver = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&migrations.lock])
        .await
        .map_err(Unavailable::from)?;
    let lock = migrations.lock;
    let migrated = migrate_locked(&mut client, migrations).await;
    // Ending the session releases the lock too; unlocking first lets the next node go at once.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&lock])
        .await;
    drop(client);
    let _ = driver.await;
    migrated
}

async fn migrate_locked(client: &mut Client, mut migrations: Migrations) -> Result<(), OpenError> {
    let known = migrations.newest();
    if let Some(found) = applied_version(client, migrations.history_table).await? {
        if found > known {
            return Err(OpenError::SchemaTooNew { found, known });
        }
    }
    let report = migrations
        .runner
        .set_migration_table_name(migrations.history_table)
        .run_async(client)
        .await
        .map_err(|e| OpenError::Migration(e.to_string()))?;
    for migration in report.applied_migrations() {
        tracing::info!(
            table = migrations.history_table,
            version = migration.version(),
            name = migration.name(),
            "applied a database migration"
        );
    }
    Ok(())
}

/// The newest migration recorded in `table`, if any.
async fn applied_version(client: &Client, table: &str) -> Result<Option<i64>, Unavailable> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(&format!("SELECT max(version)::bigint FROM {table}"), &[])
        .await?;
    Ok(row.get(0))
}
