//! `eventual serve` and `eventual sink`: the settings the flags make, and serving them — the
//! sink, with the harness beside it under `serve` (alone, or as a node of a cluster).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::{HarnessFlags, stop};

pub(crate) fn harness_config(
    flags: HarnessFlags,
    data_dir: PathBuf,
    token: Option<String>,
    database: Option<String>,
) -> anyhow::Result<harness::Config> {
    let sample_tests = match flags.sample_tests {
        Some(dir) => dir,
        None => harness::samples::write_bundled(&data_dir).with_context(|| {
            format!(
                "failed to write the bundled sample tests under {}",
                data_dir.display()
            )
        })?,
    };
    // Whatever the catalog, the tests it runs can `import eventual` with nothing installed.
    let python_path = harness::samples::write_python_package(&data_dir).with_context(|| {
        format!(
            "failed to write the bundled Python package under {}",
            data_dir.display()
        )
    })?;
    let mut config = harness::Config::new(data_dir);
    config.python_path = Some(python_path);
    config.envs = flags.envs;
    config.workers = flags.workers.unwrap_or(flags.envs as usize);
    if database.is_none() {
        // `--workers 0` is for a cluster node that only serves; a single process must run.
        config.workers = config.workers.max(1);
    }
    config.test_timeout = flags.test_timeout;
    config.kill_grace = flags.kill_grace;
    config.max_upload =
        usize::try_from(flags.max_upload.as_u64()).context("--max-upload is too large")?;
    config.sample_tests = Some(sample_tests);
    // Empty: the built-in sink, on whatever address the server ends up bound to.
    config.sink_url = flags
        .sink_url
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_default();
    config.token = token;
    config.await_timeout = flags.await_timeout;
    config.cluster = database.map(|database| harness::ClusterConfig {
        database,
        // Filled in once the port is known (see `run_server`).
        node_name: flags.node_name.unwrap_or_default(),
        address: String::new(),
        node_timeout: flags.node_timeout,
    });
    Ok(config)
}

pub(crate) async fn run_server(
    bind: &str,
    config: sink::Config,
    harness: Option<harness::Config>,
) -> anyhow::Result<ExitCode> {
    let serve = harness.is_some();
    // Before anything that takes time (replaying a log, opening a database) and long before the
    // port is announced: a SIGTERM from then on is a graceful stop, never the default kill.
    let signals = stop::StopSignals::install().context("failed to install the signal handlers")?;
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("failed to listen on {bind}: is another server using it? pick another with --bind")
    })?;
    let addr: SocketAddr = listener.local_addr()?;
    if !addr.ip().is_loopback() && config.token.is_none() {
        if serve {
            anyhow::bail!(
                "refusing to listen on {addr} without --token: the service runs uploaded tests as code on this host; \
                 bind to 127.0.0.1 or start it with --token SECRET"
            );
        }
        tracing::warn!(%addr, "the sink listens beyond loopback without --token: anyone who reaches it can read and delete callbacks");
    }
    let serving = config.serving.clone();
    let sink = sink::Sink::open(config)
        .await
        .context("failed to open the sink")?;
    let stats = sink.replay_stats();
    if let Some(store) = sink
        .store()
        .filter(|_| stats.frames > 0 || stats.truncated_bytes > 0)
    {
        tracing::info!(
            frames = stats.frames,
            callbacks = store.len(),
            truncated_bytes = stats.truncated_bytes,
            "replayed the callback log"
        );
    }
    let mut router = sink.router();
    let mut harness_handle = None;
    if let Some(mut harness_config) = harness {
        if let Some(cluster) = &mut harness_config.cluster {
            cluster.address = format!("http://{addr}");
            if cluster.node_name.is_empty() {
                cluster.node_name = format!("{}:{}", hostname(), addr.port());
            }
        }
        if harness_config.sink_url.is_empty() && harness_config.cluster.is_some() {
            // Cluster mode: the built-in sink keeps its callbacks in the database, and a phased
            // run waits on it over HTTP like any client (woken across nodes by the database).
            harness_config.sink_url = format!("http://{addr}");
            let mut client = sink::Client::new(harness_config.sink_url.clone());
            if let Some(token) = &harness_config.token {
                client = client.with_token(token.clone());
            }
            harness_config.sink = Some(harness::SinkAccess::Remote(client));
        } else if harness_config.sink_url.is_empty() {
            // The built-in sink: phased runs are woken by its inserts directly.
            harness_config.sink_url = format!("http://{addr}");
            let store = sink
                .store()
                .context("the built-in sink of `serve` keeps its callbacks in this process")?;
            harness_config.sink = Some(harness::SinkAccess::Local(store.clone()));
        } else {
            let mut client = sink::Client::new(harness_config.sink_url.clone());
            if let Some(token) = &harness_config.token {
                client = client.with_token(token.clone());
            }
            harness_config.sink = Some(harness::SinkAccess::Remote(client));
        }
        let harness = harness::Harness::open(harness_config)
            .await
            .context("failed to open the harness")?;
        // One `GET /metrics` (the sink's route): the sink's series, then the harness's.
        sink.add_metrics(std::sync::Arc::new(harness.clone()));
        router = router.merge(harness::router(harness.clone()));
        // One `GET /openapi.json` (the sink's route): the sink's paths, then the harness's.
        sink.add_openapi(harness::openapi::document());
        harness_handle = Some(harness);
    }
    // The first line on stdout, once everything is open: scripts and tests read the port from it.
    println!("listening on http://{addr}");
    // Per-request spans cost the sink ~5 % of its throughput; only pay for them when they print.
    if tracing::enabled!(target: "tower_http::trace::on_request", tracing::Level::DEBUG) {
        router = router.layer(tower_http::trace::TraceLayer::new_for_http());
    }
    let stopping = harness_handle.clone();
    let stop = async move {
        signals.recv().await;
        // Running tests are terminated now (not when the process exits) and their runs end
        // `interrupted`; the harness's streams end so the server is not held open by followers.
        if let Some(h) = stopping {
            h.begin_stop();
        }
    };
    sink::serve(listener, router, sink.shutdown_token(), stop, &serving).await?;
    if let Some(h) = harness_handle {
        h.stop().await;
    }
    tracing::info!("stopped serving; flushing the callback log");
    sink.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// This machine's name (Linux), for the default `--node-name`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
