//! The sink's settings (`eventual sink` / `eventual serve` flags).

use std::{path::PathBuf, time::Duration};

/// Compaction is not worth it below this many bytes of log.
pub(crate) const DEFAULT_COMPACT_MIN: u64 = 64 << 20;

/// When the log is fsync'd (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement (group commit): survives power loss.
    Always,
    /// At most this long after a write: survives a crash of the server, not of the machine.
    Every(Duration),
    /// Never explicitly; the OS writes back when it likes.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Every(Duration::from_secs(1))
    }
}

/// An `--fsync` value that is none of `always`, `never` or a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fsync policy {given:?}: use `always`, `never` or a duration ({})",
    crate::duration::DURATION_FORMS
)]
pub struct InvalidFsyncPolicy {
    /// What was given.
    pub given: String,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = InvalidFsyncPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => crate::duration::parse_duration(other)
                .map(Self::Every)
                .map_err(|_| InvalidFsyncPolicy {
                    given: other.to_owned(),
                }),
        }
    }
}

/// How a sink is configured. [`Config::default`] is an in-memory sink with SPEC's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the callback log lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Cluster mode: the callbacks live in this PostgreSQL database (`--database`), shared by
    /// every node on it; `data_dir` is then not used for them.
    pub database: Option<String>,
    /// Cluster mode: how often a waiter reads the database again without a notification (the
    /// safety net for notifications lost while a node's listener was disconnected).
    pub recheck_interval: Duration,
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
    /// How connections are served: timeouts and limits per connection.
    pub serving: crate::ServeOptions,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            database: None,
            recheck_interval: crate::postgres::RECHECK_INTERVAL,
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
            compact_min_bytes: DEFAULT_COMPACT_MIN,
            serving: crate::ServeOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_words_and_durations() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!(
            "250ms".parse(),
            Ok(FsyncPolicy::Every(Duration::from_millis(250)))
        );
        let err = "sometimes".parse::<FsyncPolicy>().unwrap_err().to_string();
        assert!(err.contains("always"), "{err}");
    }
}
