//! The harness's settings (`eventual serve` flags).

use std::{path::PathBuf, time::Duration};

/// How the harness is configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// State lives here: `history.db`, `tests/` (uploads), `runs/<id>/` (logs, working dirs).
    pub data_dir: PathBuf,
    /// The bundled tests (`eventual serve` writes the samples built into the binary out under the
    /// data dir, see `samples.rs`, unless `--sample-tests` names another directory), if any.
    pub sample_tests: Option<PathBuf>,
    /// The directory holding the `eventual` Python package (`eventual serve` writes the one built
    /// into the binary, see `samples.rs`), put first on every test's `PYTHONPATH`; pytest tests
    /// then also get its plugin (`-p eventual.pytest_plugin`).
    pub python_path: Option<PathBuf>,
    /// Environment ids are `1..=envs`.
    pub envs: u32,
    /// Runs executing at once (on different environments).
    pub workers: usize,
    /// Per-test timeout.
    pub test_timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Largest upload.
    pub max_upload: usize,
    /// Base URL of the sink that tests get as `EVENTUAL_SINK_URL`.
    pub sink_url: String,
    /// When set, every harness route needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Default wait for an announced callback (`--await-timeout`).
    pub await_timeout: Duration,
    /// Where phased runs wait for callbacks: the in-process sink, or another one.
    pub sink: Option<crate::phases::SinkAccess>,
    /// Cluster mode (`--database`): runs, claims and logs shared with the other nodes.
    pub cluster: Option<ClusterConfig>,
}

/// How this node joins a cluster (`serve --database`).
#[derive(Clone)]
pub struct ClusterConfig {
    /// The PostgreSQL URL (it may hold a password: never printed).
    pub database: String,
    /// `--node-name`: how the other nodes, the runs and `GET /api/nodes` name this one.
    pub node_name: String,
    /// Where this node listens (shown by `GET /api/nodes`).
    pub address: String,
    /// `--node-timeout`: a node silent for longer is dead.
    pub node_timeout: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("database", &"<redacted>")
            .field("node_name", &self.node_name)
            .field("address", &self.address)
            .field("node_timeout", &self.node_timeout)
            .finish()
    }
}

impl Config {
    /// SPEC's defaults, with state under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            sample_tests: None,
            python_path: None,
            envs: 100,
            workers: 100,
            test_timeout: Duration::from_secs(180),
            kill_grace: Duration::from_secs(5),
            max_upload: 10 << 20,
            sink_url: "http://127.0.0.1:7700".into(),
            token: None,
            await_timeout: Duration::from_secs(600),
            sink: None,
            cluster: None,
        }
    }
}
