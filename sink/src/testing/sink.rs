//! [`TestSink`]: a sink on a random local port inside a Rust test, in the spirit of an in-memory
//! test backend.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Backend,
    client::{Client, ClientError},
    config::Config,
    record::Record,
    server::Sink,
    serving::serve,
    store::Store,
};

/// An in-memory sink serving on `127.0.0.1:<random port>` until it is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sink::ClientError> {
/// use std::time::Duration;
/// let sink = sink::TestSink::start().await;
/// // Hand `sink.callback_url("job-1")` to the system under test; here we call back ourselves.
/// reqwest::Client::new()
///     .post(sink.callback_url("job-1"))
///     .json(&serde_json::json!({"status": "done"}))
///     .send()
///     .await?;
/// let record = sink.wait_for("job-1", Duration::from_secs(5)).await?;
/// assert_eq!(record.body.unwrap()["status"], "done");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestSink {
    client: Client,
    /// `None` when the sink runs on a database (cluster mode).
    store: Option<Store>,
    backend: Backend,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl TestSink {
    /// Starts a sink with default settings. Panics if no local port can be bound.
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    /// Starts a sink with `config` (its `data_dir` is honoured, so a test can check persistence).
    pub async fn start_with(config: Config) -> Self {
        let serving = config.serving.clone();
        let sink = Sink::open(config)
            .await
            .expect("failed to open the test sink");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("failed to bind a local port for the test sink");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let shutdown = sink.shutdown_token();
        let router = sink.router();
        let store = sink.store().cloned();
        let backend = sink.backend().clone();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let stopped = stop.clone();
            if let Err(e) = serve(
                listener,
                router,
                stop,
                async move { stopped.cancelled().await },
                &serving,
            )
            .await
            {
                tracing::error!(error = %e, "the test sink stopped serving");
            }
            let _ = sink.close().await;
        });
        Self {
            client: Client::new(format!("http://{addr}")),
            store,
            backend,
            shutdown,
            task,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    /// The URL a system under test should call back for `key`.
    pub fn callback_url(&self, key: &str) -> String {
        self.client.callback_url(key)
    }

    /// The embedded store behind it, for in-process waits (e.g. a harness sharing this sink).
    /// Panics in cluster mode, which has none.
    pub fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("a test sink on a database has no embedded store")
    }

    /// A client for this sink.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Waits until `key` has a record (see [`Client::wait_for`]).
    pub async fn wait_for(&self, key: &str, timeout: Duration) -> Result<Record, ClientError> {
        self.client.wait_for(key, timeout).await
    }

    /// Waits until `key` has `count` records (see [`Client::wait_for_count`]).
    pub async fn wait_for_count(
        &self,
        key: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Record>, ClientError> {
        self.client.wait_for_count(key, count, timeout).await
    }

    /// Every record of `key`.
    pub async fn all(&self, key: &str) -> Result<Vec<Record>, ClientError> {
        self.client.all(key).await
    }

    /// Forgets everything received so far.
    pub async fn reset(&self) {
        match &self.store {
            Some(store) => {
                store.clear();
            }
            None => {
                self.backend
                    .delete_prefix("")
                    .await
                    .expect("failed to reset the test sink's database");
            }
        }
    }

    /// Stops serving and waits until the server has finished.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestSink {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
