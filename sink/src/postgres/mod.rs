//! The callback store of cluster mode: several nodes share their callbacks through one
//! PostgreSQL database (`--database postgres://…`).
//!
//! # Design
//! - **Acknowledged means committed.** A callback is one statement (its own transaction): the
//!   key's row in `callback_keys` is inserted or bumped (`ON CONFLICT DO UPDATE`), which gives the
//!   next `seq` under that row's lock — unique per key cluster-wide —, the record is inserted with
//!   its `seq` spliced into the JSON encoded on arrival, and the usage counter is bumped; the
//!   handler answers only after the commit. The other nodes are told afterwards, off the commit
//!   path, by one batching notifier per node (`notifier.rs`).
//! - **Prefixes by index.** Keys are `bytea`, ordered byte by byte like the embedded store; a
//!   prefix is a range of the primary key (`[prefix, successor(prefix))`), so listing or deleting
//!   one never scans other keys.
//! - **Capacity cluster-wide.** `--max-callbacks` is checked against the sum of a few counter rows
//!   inside the inserting statement (spread so that concurrent inserts do not queue on one row).
//!   Concurrent inserts each see the total before the others commit, so the cap can be passed by
//!   at most the number of inserts in flight at that moment; it is never passed further.
//! - **Retention cluster-wide.** Reads ignore records older than `--retention`; every node purges
//!   them in the background (`retention.rs`), which only reclaims space.
//! - **Wake-ups by `LISTEN/NOTIFY`** (`wakeups.rs`), treated as hints: a waiter registers, then
//!   reads the database, then sleeps until a notification for its key, a reconnection of the
//!   listener (after which every waiter reads again) or [`RECHECK_INTERVAL`], whichever comes first.
//! - **Schema** (`schema.rs`): versioned migrations (refinery) applied at start under an advisory
//!   lock, so nodes may start at once; a database newer than this build is refused.
//!
//! # Layout
//! - `mod.rs` — [`PgStore`]: opening the store; `database.rs` — the URL, pools and migrations
//!   (shared with the harness); `records.rs` — insert, reads, listing,
//!   deletion, waits; `notifier.rs` — telling the other nodes, batched; `listener.rs` — one
//!   listening connection, reconnected (both shared with the harness through `database`);
//!   `wakeups.rs` — the local waiters by key, woken by the listener; `schema.rs` — migrations; `retention.rs` — the purge
//!   task; `watch.rs` — `GET /watch`: the records under a prefix in commit (xid) order.

pub mod database;
mod listener;
mod notifier;
mod records;
mod retention;
mod schema;
mod wakeups;
mod watch;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

pub(crate) use records::PgInsertError;
pub use schema::schema_version;
use wakeups::Wakeups;
pub(crate) use watch::PgWatcher;

/// How often a waiter reads the database again although no notification came, by default: the
/// safety net for a notification lost while the listening connection was down. Not the main
/// path: a callback wakes its waiters by `NOTIFY` within milliseconds.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Connections per node.
const POOL_SIZE: usize = 32;

/// The `NOTIFY` channel of stored callbacks; the payload is keys, hex-encoded, joined by `,`.
pub(crate) const CHANNEL: &str = "eventual_callbacks";

/// The payload on [`CHANNEL`] that says stubs or verifiers changed (never a hex key: odd length).
pub(crate) const DEFINITIONS_CHANGED: &str = "definitions";

/// Why the database could not answer: it is down, restarting or unreachable, or refused the
/// statement.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub(crate) String);

impl From<tokio_postgres::Error> for Unavailable {
    fn from(e: tokio_postgres::Error) -> Self {
        Self(match e.as_db_error() {
            Some(db) => format!("the database refused a statement: {}", db.message()),
            // tokio-postgres says "error connecting to server"; the cause (refused, timed
            // out, no such host) is its source.
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("the database is unreachable: {e}: {cause}"),
                None => format!("the database is unreachable: {e}"),
            },
        })
    }
}

impl From<deadpool_postgres::PoolError> for Unavailable {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self(format!("no database connection: {e}"))
    }
}

/// Failure to open the PostgreSQL store at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The `--database` URL does not parse.
    #[error("invalid --database URL: {0}")]
    Url(String),
    /// The database could not be reached or refused us.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The database's schema is newer than this build knows.
    #[error(
        "the database's schema is at version {found}, newer than this eventual knows (version {known}): upgrade eventual on this node to the version the other nodes run"
    )]
    SchemaTooNew {
        /// What the database holds.
        found: i64,
        /// The newest this build has.
        known: i64,
    },
    /// A migration failed.
    #[error("failed to migrate the database: {0}")]
    Migration(String),
}

/// Shared handle to the PostgreSQL callback store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Connections for statements (the listener has its own, outside the pool).
    pool: Pool,
    /// `--max-callbacks`, cluster-wide.
    max_callbacks: usize,
    /// `--retention`, cluster-wide: reads ignore older records.
    retention: Option<Duration>,
    /// How often a waiter reads again without a notification ([`RECHECK_INTERVAL`]).
    recheck: Duration,
    /// Keys stored by this node (hex, as notifications carry them), for the notifier to tell the other nodes about.
    notify: tokio::sync::mpsc::UnboundedSender<String>,
    /// This node's waiters by key, woken by the listener.
    wakeups: Arc<Wakeups>,
    /// Requests of this node waiting for a callback right now.
    waiting: AtomicUsize,
}

impl PgStore {
    /// Connects to `url` (with `settings`' capacity, retention and re-check interval), migrates the schema (under an advisory lock) and starts the listener
    /// and, with a retention, the purge task; both stop with `shutdown`.
    pub(crate) async fn open(
        url: &str,
        settings: &crate::config::Config,
        shutdown: &CancellationToken,
    ) -> Result<Self, OpenError> {
        let (max_callbacks, retention) = (settings.max_callbacks, settings.retention);
        let config = database::parse_url(url)?;
        schema::migrate(&config).await?;
        let pool = database::pool(&config, POOL_SIZE)?;
        let wakeups = Arc::new(Wakeups::default());
        let (notify, stored_keys) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(notifier::send_batched(
            config.clone(),
            CHANNEL,
            ',',
            stored_keys,
            shutdown.clone(),
        ));
        tokio::spawn(wakeups::listen(
            config,
            Arc::clone(&wakeups),
            shutdown.clone(),
        ));
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                max_callbacks,
                retention,
                recheck: settings.recheck_interval,
                notify,
                wakeups,
                waiting: AtomicUsize::new(0),
            }),
        };
        if let Some(retention) = retention {
            tokio::spawn(retention::purge(store.clone(), retention, shutdown.clone()));
        }
        Ok(store)
    }

    /// `--max-callbacks`, cluster-wide.
    pub(crate) fn max_callbacks(&self) -> usize {
        self.inner.max_callbacks
    }

    /// The pool, for the stubs and verifiers kept beside the callbacks.
    pub(crate) fn pool(&self) -> Pool {
        self.inner.pool.clone()
    }

    /// Woken when another node changed stubs or verifiers, and when the listener reconnects
    /// (a change may have been missed): read them again.
    pub(crate) fn definitions_changed(&self) -> &tokio::sync::Notify {
        &self.inner.wakeups.definitions
    }

    /// Requests of this node waiting for a callback right now.
    pub(crate) fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Unavailable> {
        Ok(self.inner.pool.get().await?)
    }
}
