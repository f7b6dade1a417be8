//! Opening the harness: the history is read back, runs the dead server left `running` become
//! `interrupted` (whatever of theirs still runs is killed, their `ignore_abort` cleanup runs),
//! and queued runs go on in order.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    claims::{Claims, Envs},
    config::Config,
    error::HarnessError,
    exec,
    history::History,
    logs::{RunLog, Tag},
    services,
};

use super::{Harness, execute::RunContext, harness::Inner};

impl Harness {
    /// Opens the history, marks runs that were running `interrupted`, and starts queued ones
    /// again in order. Must be called inside a Tokio runtime.
    pub async fn open(mut config: Config) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(&config.data_dir)?;
        // Tests run in `<data-dir>/runs/<id>/work`: every path handed to them (EVENTUAL_CALLBACKS,
        // EVENTUAL_DATA_DIR) must not depend on the server's working directory.
        config.data_dir = std::path::absolute(&config.data_dir)?;
        let catalog = Catalog::new(config.sample_tests.clone(), config.data_dir.join("tests"))?;
        let (history, claims, cluster) = match &config.cluster {
            None => (
                History::open_sqlite(&config.data_dir.join("history.db"))?,
                Claims::Local(Envs::new(config.envs)),
                None,
            ),
            Some(cluster) => {
                let (history, claims, cluster) =
                    super::cluster::connect(cluster, config.envs, config.workers).await?;
                (history, Claims::Postgres(claims), Some(cluster))
            }
        };
        let clustered = cluster.is_some();
        // `--workers 0` makes a cluster node that only serves; a single process must run.
        let workers = if clustered {
            config.workers
        } else {
            config.workers.max(1)
        };
        let harness = Self {
            inner: Arc::new(Inner {
                claims,
                cluster,
                workers: Arc::new(Semaphore::new(workers)),
                history,
                catalog,
                active: DashMap::new(),
                events: broadcast::channel(1024).0,
                pytest_ok: OnceLock::new(),
                admission: tokio::sync::Mutex::new(()),
                stopping: CancellationToken::new(),
                log_indexes: Default::default(),
                metrics: crate::metrics::RunMetrics::new(config.envs),
                config,
            }),
        };
        if clustered {
            harness.start_cluster().await?;
            return Ok(harness);
        }
        let (interrupted, queued) = harness.inner.history.recover().await?;
        for (id, pgid) in interrupted {
            let Ok(log) = RunLog::create(&harness.log_path(id)) else {
                continue;
            };
            // The server died under the run (kill -9, crash): its test and scripts may still be
            // running. They are no children of ours any more, so end them outright.
            let _ = pgid;
            {
                let left = exec::kill_run_processes(id, &harness.data_dir_marker());
                if !left.is_empty() {
                    let list = left
                        .iter()
                        .map(|(pid, name)| format!("{pid} {name}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    log.line(
                        Tag::Harness,
                        &format!(
                            "killed {} leftover {} the stopped server left running: {list}",
                            left.len(),
                            if left.len() == 1 {
                                "process"
                            } else {
                                "processes"
                            }
                        ),
                    );
                }
            }
            log.line(
                Tag::Harness,
                "interrupted: the server stopped while this run was running",
            );
            harness.cleanup_after_crash(id, Arc::new(log)).await;
        }
        for run in queued {
            harness.admit(&run).await?;
        }
        Ok(harness)
    }

    /// After a crash: runs the interrupted run's `ignore_abort` scripts (cleanup) in the
    /// background, as a cancel would have.
    async fn cleanup_after_crash(&self, id: i64, log: Arc<RunLog>) {
        let Ok(run) = self.get_run(id).await else {
            return;
        };
        let Some((_, Ok(config))) = self.inner.catalog.config_for(&run.test_paths()) else {
            return;
        };
        if !config.scripts.values().any(|s| s.ignore_abort) {
            return;
        }
        let harness = self.clone();
        tokio::spawn(async move {
            let work = harness.work_dir(id);
            // Nothing cancels a cleanup; its scripts' own timeouts bound it.
            let never = CancellationToken::new();
            let ctx = RunContext {
                harness: &harness,
                run: &run,
                log: &log,
                cancel: &never,
                work: &work,
            };
            services::cleanup_after_crash(&ctx, &config, &log, &work).await;
        });
    }
}
