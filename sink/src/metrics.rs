//! `GET /metrics`: the sink's series in the OpenMetrics text format Prometheus scrapes, and
//! [`MetricsSource`], how a server built around the sink (the harness, in `eventual serve`) adds
//! its own series to the same answer.
//!
//! Why `prometheus-client` rather than the `metrics` facade: its registry is a plain value, so
//! each sink owns its series — several servers in one test process never share a counter through
//! a process-global recorder — and gauges are read from the store when scraped instead of being
//! kept in step with it.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// The `Content-Type` of the answer: OpenMetrics 1.0 text, which Prometheus negotiates first.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// More series for `GET /metrics`, rendered after the sink's own.
pub trait MetricsSource: Send + Sync + fmt::Debug {
    /// Appends this source's metric families to `out` in the OpenMetrics text format, without
    /// the closing `# EOF` (the sink writes it once, after every source).
    fn encode<'a>(&'a self, out: &'a mut String) -> BoxFuture<'a, fmt::Result>;
}

/// The labels of `eventual_callbacks_received_total`: the status the sink answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    status: u16,
}

/// The sink's series (SPEC "Reports and integration").
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Callbacks posted, by the status answered (`200` stored; `413`, `507`, `400`… refused).
    received: Family<Answer, Counter>,
    /// The `200` series of `received`, kept once it exists: counting the common answer then takes
    /// no lock and no hash (the family's map is behind an `RwLock` every worker thread touches).
    /// Filled at the first `200`, so a sink that stored nothing still shows no `200` series.
    stored_ok: OnceLock<Counter>,
    /// Records held now, read from the store at each scrape.
    stored: Gauge,
    /// Requests waiting for a callback now (long-polls and event streams), read at each scrape.
    waiters: Gauge,
    /// What else is served at `/metrics` (the harness under `serve`). Cloned out before
    /// encoding: the lock is never held across an `.await`.
    sources: Mutex<Vec<Arc<dyn MetricsSource>>>,
}

impl Metrics {
    pub(crate) fn new(max_callbacks: usize) -> Self {
        let mut registry = Registry::with_prefix("eventual");
        let received = Family::<Answer, Counter>::default();
        registry.register(
            "callbacks_received",
            "Callbacks posted to the sink, by the HTTP status it answered (200 stored; 413 too large, 507 full, 400 no key or a bad one)",
            received.clone(),
        );
        let stored = Gauge::default();
        registry.register(
            "callbacks_stored",
            "Callback records held by the sink now",
            stored.clone(),
        );
        let capacity = Gauge::<i64>::default();
        capacity.set(saturating_i64(max_callbacks));
        registry.register(
            "callbacks_capacity",
            "Callback records the sink holds at most (--max-callbacks); past it callbacks are refused with 507",
            capacity.clone(),
        );
        let waiters = Gauge::default();
        registry.register(
            "waiters",
            "Requests waiting for a callback now (long-polls and event streams)",
            waiters.clone(),
        );
        Self {
            registry,
            received,
            stored_ok: OnceLock::new(),
            stored,
            waiters,
            sources: Mutex::new(Vec::new()),
        }
    }

    /// A posted callback was answered `status`.
    pub(crate) fn callback_answered(&self, status: u16) {
        if status == 200 {
            self.stored_ok
                .get_or_init(|| self.received.get_or_create(&Answer { status }).clone())
                .inc();
            return;
        }
        self.received.get_or_create(&Answer { status }).inc();
    }

    /// Serves `source`'s series at `/metrics` too.
    pub(crate) fn add_source(&self, source: Arc<dyn MetricsSource>) {
        self.sources.lock().push(source);
    }

    /// The whole exposition: the sink's series with `stored`/`waiters` as they are now, then
    /// every added source's, then `# EOF`.
    pub(crate) async fn render(&self, stored: usize, waiters: usize) -> Result<String, fmt::Error> {
        self.stored.set(saturating_i64(stored));
        self.waiters.set(saturating_i64(waiters));
        let mut out = String::with_capacity(4096);
        text::encode_registry(&mut out, &self.registry)?;
        let sources = self.sources.lock().clone();
        for source in sources {
            source.encode(&mut out).await?;
        }
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// `n` as a gauge value (nothing here counts past `i64::MAX`, but say so safely).
fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Extra;

    impl MetricsSource for Extra {
        fn encode<'a>(&'a self, out: &'a mut String) -> BoxFuture<'a, fmt::Result> {
            Box::pin(async move {
                out.push_str("# TYPE extra gauge\nextra 1\n");
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn the_exposition_has_the_sink_series_then_each_source_then_one_eof() {
        let metrics = Metrics::new(10);
        metrics.callback_answered(200);
        metrics.callback_answered(200);
        metrics.callback_answered(507);
        metrics.add_source(Arc::new(Extra));
        let text = metrics.render(3, 1).await.expect("render");
        for line in [
            "# TYPE eventual_callbacks_received counter",
            "eventual_callbacks_received_total{status=\"200\"} 2",
            "eventual_callbacks_received_total{status=\"507\"} 1",
            "eventual_callbacks_stored 3",
            "eventual_callbacks_capacity 10",
            "eventual_waiters 1",
            "extra 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(text.ends_with("extra 1\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
