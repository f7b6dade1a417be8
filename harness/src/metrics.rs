//! The harness's series at `GET /metrics` (`eventual serve`; the sink's own come first): runs by
//! final status, runs queued per environment, busy environments, and how long runs took and
//! waited. Per harness, like the sink's (see `sink/src/metrics.rs` for why prometheus-client).
//!
//! Counters and histograms are updated as runs end and start; the environment gauges are read
//! from the claims at each scrape ([`RunMetrics::encode`]), so they cannot drift from them.

use std::{fmt, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::model::{EnvView, RunStatus};

/// Bucket bounds of `eventual_run_duration_seconds`: a quick fixture to `--test-timeout`s of
/// long suites.
const RUN_BUCKETS: [f64; 13] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Bucket bounds of `eventual_claim_wait_seconds`: an environment free at once to one held by a
/// queue of long runs.
const WAIT_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Every status a run can end with, so each series exists (at 0) from the first scrape.
const FINAL: [RunStatus; 6] = [
    RunStatus::Passed,
    RunStatus::Failed,
    RunStatus::TimedOut,
    RunStatus::Cancelled,
    RunStatus::Error,
    RunStatus::Interrupted,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvLabel {
    env: u32,
}

/// The harness's series.
#[derive(Debug)]
pub(crate) struct RunMetrics {
    registry: Registry,
    /// Runs that ended in this process, by final status.
    finished: Family<StatusLabel, Counter>,
    /// Started → ended, of runs that started.
    run_duration: Histogram,
    /// Queued → started (the environment claimed and a worker free).
    claim_wait: Histogram,
    /// Runs waiting in each environment's queue, set from the claims at each scrape.
    queued: Family<EnvLabel, Gauge>,
    /// Environments held by a run, set at each scrape.
    busy: Gauge,
    /// Environments paused for maintenance, set at each scrape.
    paused: Gauge,
}

impl RunMetrics {
    pub(crate) fn new(envs: u32) -> Self {
        let mut registry = Registry::with_prefix("eventual");
        let finished = Family::<StatusLabel, Counter>::default();
        for status in FINAL {
            // Creating the series is the point; the guard it answers is dropped at once.
            let _ = finished.get_or_create(&StatusLabel {
                status: status.as_str(),
            });
        }
        registry.register(
            "runs_finished",
            "Runs that ended since the server started, by final status",
            finished.clone(),
        );
        let run_duration = Histogram::new(RUN_BUCKETS);
        registry.register_with_unit(
            "run_duration",
            "How long runs ran, from starting to their final status",
            Unit::Seconds,
            run_duration.clone(),
        );
        let claim_wait = Histogram::new(WAIT_BUCKETS);
        registry.register_with_unit(
            "claim_wait",
            "How long runs waited from being queued to starting (their environment and a worker free)",
            Unit::Seconds,
            claim_wait.clone(),
        );
        let queued = Family::<EnvLabel, Gauge>::default();
        registry.register(
            "runs_queued",
            "Runs waiting for each environment",
            queued.clone(),
        );
        let busy = Gauge::default();
        registry.register(
            "environments_busy",
            "Environments held by a run",
            busy.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "environments_paused",
            "Environments paused: their queues wait",
            paused.clone(),
        );
        let total = Gauge::<i64>::default();
        total.set(i64::from(envs));
        registry.register("environments", "Environments (--envs)", total);
        Self {
            registry,
            finished,
            run_duration,
            claim_wait,
            queued,
            busy,
            paused,
        }
    }

    /// A run started after waiting `waited` since it was queued.
    pub(crate) fn started(&self, waited: Duration) {
        self.claim_wait.observe(waited.as_secs_f64());
    }

    /// A run ended with `status`, after running for `ran` (`None`: it never started).
    pub(crate) fn finished(&self, status: RunStatus, ran: Option<Duration>) {
        self.finished
            .get_or_create(&StatusLabel {
                status: status.as_str(),
            })
            .inc();
        if let Some(ran) = ran {
            self.run_duration.observe(ran.as_secs_f64());
        }
    }

    /// Appends the series (OpenMetrics text, no `# EOF`), the gauges set from `envs` first.
    pub(crate) fn encode(&self, envs: &[EnvView], out: &mut String) -> fmt::Result {
        let count = |f: fn(&EnvView) -> bool| {
            i64::try_from(envs.iter().filter(|v| f(v)).count()).unwrap_or(i64::MAX)
        };
        self.busy.set(count(|v| v.run_id.is_some()));
        self.paused
            .set(count(|v| v.state == crate::model::EnvState::Paused));
        for view in envs {
            self.queued
                .get_or_create(&EnvLabel { env: view.id })
                .set(i64::try_from(view.queued.len()).unwrap_or(i64::MAX));
        }
        text::encode_registry(out, &self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EnvState;

    fn env(id: u32, run_id: Option<i64>, queued: Vec<i64>, state: EnvState) -> EnvView {
        EnvView {
            id,
            state,
            run_id,
            username: None,
            since: None,
            queued,
            node: None,
        }
    }

    #[test]
    fn gauges_come_from_the_claims_and_every_final_status_is_there_from_the_start() {
        let metrics = RunMetrics::new(3);
        metrics.started(Duration::from_millis(20));
        metrics.finished(RunStatus::Passed, Some(Duration::from_secs(2)));
        metrics.finished(RunStatus::Cancelled, None);
        let envs = [
            env(1, Some(7), vec![8, 9], EnvState::Busy),
            env(2, None, vec![], EnvState::Free),
            env(3, Some(5), vec![6], EnvState::Paused),
        ];
        let mut text = String::new();
        metrics.encode(&envs, &mut text).expect("encode");
        for line in [
            "eventual_runs_finished_total{status=\"passed\"} 1",
            "eventual_runs_finished_total{status=\"cancelled\"} 1",
            "eventual_runs_finished_total{status=\"timed_out\"} 0",
            "eventual_runs_queued{env=\"1\"} 2",
            "eventual_runs_queued{env=\"2\"} 0",
            "eventual_runs_queued{env=\"3\"} 1",
            "eventual_environments_busy 2",
            "eventual_environments_paused 1",
            "eventual_environments 3",
            "# TYPE eventual_run_duration_seconds histogram",
            "# UNIT eventual_run_duration_seconds seconds",
            "eventual_run_duration_seconds_count 1",
            "eventual_run_duration_seconds_bucket{le=\"2.5\"} 1",
            "eventual_run_duration_seconds_bucket{le=\"1.0\"} 0",
            "eventual_claim_wait_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
