//! The sink's settings (`eventual sink` / `eventual serve` flags).

use std::{path::PathBuf, time::Duration};

pub use crate::wal::FsyncPolicy;

/// How a sink is configured. [`Config::default`] is an in-memory sink with SPEC's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the callback log lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Largest accepted callback body (`--max-body`, default 1 MiB); larger ones get `413`.
    pub max_body: usize,
    /// Capacity in records (`--max-callbacks`); past it new callbacks get `507`, nothing is evicted.
    pub max_callbacks: usize,
    /// Records older than this are forgotten (`--retention`); off by default.
    pub retention: Option<Duration>,
    /// Headers searched for the key of `POST /callbacks`, in order (`--key-header`).
    pub key_headers: Vec<String>,
    /// JSON pointers searched in the body after the headers (`--key-pointer`).
    pub key_pointers: Vec<String>,
    /// When set, reading and deleting need `Authorization: Bearer <token>`; posting callbacks does
    /// not, because a system under test cannot be asked to send it.
    pub token: Option<String>,
    /// When the log reaches the disk (`--fsync`).
    pub fsync: FsyncPolicy,
    /// Longest `?wait=` a reader may ask for.
    pub max_wait: Duration,
    /// Log size below which compaction is not attempted.
    pub compact_min_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            max_body: 1 << 20,
            max_callbacks: 1_000_000,
            retention: None,
            key_headers: vec!["X-Request-Id".to_owned()],
            key_pointers: ["/request_id", "/requestId", "/id"]
                .map(String::from)
                .to_vec(),
            token: None,
            fsync: FsyncPolicy::default(),
            max_wait: Duration::from_secs(300),
            compact_min_bytes: crate::wal::DEFAULT_COMPACT_MIN,
        }
    }
}
