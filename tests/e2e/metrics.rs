//! `GET /metrics` (SPEC "Reports and integration"): the sink's series from `eventual sink`, the
//! sink's and the harness's from `eventual serve`, and `--token` guarding them. Each test scrapes
//! its own server process, so the values are exact.

use std::collections::HashMap;

use anyhow::{Context as _, ensure};
use serde_json::json;

use crate::helpers::{FIXTURE_TESTS, Launch, Running, read, spawn_eventual};

/// The samples of one scrape: `name{labels}` (as written) → value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The value of the sample written exactly `series` (`name` or `name{label="v"}`).
    fn value(&self, series: &str) -> anyhow::Result<f64> {
        self.0.get(series).copied().with_context(|| {
            let mut known: Vec<&String> = self.0.keys().collect();
            known.sort();
            format!("no sample {series} in the scrape; it has {known:?}")
        })
    }

    fn expect(&self, series: &str, want: f64) -> anyhow::Result<()> {
        let got = self.value(series)?;
        ensure!(got == want, "{series} is {got}, expected {want}");
        Ok(())
    }

    fn has_family(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|k| k == name || k.starts_with(&format!("{name}{{")))
    }
}

/// `GET /metrics` (with `token` as bearer if given), which must answer 200 in OpenMetrics text.
async fn scrape(server: &Running, token: Option<&str>) -> anyhow::Result<Scrape> {
    let mut request = server.http().get(server.at("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.context("failed to GET /metrics")?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await?;
    ensure!(status == 200, "GET /metrics answered {status}: {text}");
    ensure!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "GET /metrics has content-type {content_type:?}"
    );
    ensure!(
        text.ends_with("# EOF\n"),
        "the exposition does not end with `# EOF`:\n{text}"
    );
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("a sample line without a value: {line:?}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("a sample whose value is no number: {line:?}"))?;
        ensure!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} appears twice in the scrape:\n{text}"
        );
    }
    Ok(Scrape(samples))
}

#[tokio::test]
async fn sink_metrics_count_callbacks_by_answer_and_read_the_store() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink", "--max-callbacks", "2", "--max-body", "100"]).await?;
    for key in ["m-1", "m-2"] {
        let (status, body) = server.post_json(key, &json!({ "ok": true })).await?;
        ensure!(
            status == 200,
            "POST /callbacks/{key} answered {status}: {body}"
        );
    }
    let (status, body) = read(
        server
            .http()
            .post(server.at("/callbacks/m-big"))
            .header("content-type", "text/plain")
            .body("x".repeat(101))
            .send()
            .await?,
    )
    .await?;
    ensure!(status == 413, "a 101-byte body answered {status}: {body}");
    let (status, body) = server.post_json("m-3", &json!({})).await?;
    ensure!(
        status == 507,
        "the third callback answered {status}: {body}"
    );
    // Reads are not callbacks received.
    let (status, _) = server.get("/callbacks/m-1").await?;
    ensure!(status == 200, "GET /callbacks/m-1 answered {status}");

    let metrics = scrape(&server, None).await?;
    metrics.expect("eventual_callbacks_received_total{status=\"200\"}", 2.0)?;
    metrics.expect("eventual_callbacks_received_total{status=\"413\"}", 1.0)?;
    metrics.expect("eventual_callbacks_received_total{status=\"507\"}", 1.0)?;
    metrics.expect("eventual_callbacks_stored", 2.0)?;
    metrics.expect("eventual_callbacks_capacity", 2.0)?;
    metrics.expect("eventual_waiters", 0.0)?;
    ensure!(
        !metrics.has_family("eventual_runs_finished_total"),
        "`eventual sink` has no harness, yet its scrape has run series"
    );
    Ok(())
}

#[tokio::test]
async fn with_a_token_metrics_need_the_bearer_token() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink", "--token", "s3cret"]).await?;
    let (status, body) = read(server.http().get(server.at("/metrics")).send().await?).await?;
    ensure!(
        status == 401,
        "GET /metrics without the token answered {status}: {body}"
    );
    let (status, _) = server.post_json("t-1", &json!({})).await?;
    ensure!(status == 200, "posting a callback answered {status}");
    scrape(&server, Some("s3cret"))
        .await?
        .expect("eventual_callbacks_received_total{status=\"200\"}", 1.0)
}

#[tokio::test]
async fn serve_metrics_add_runs_queues_environments_and_durations() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Launch::serve(dir.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    let (status, _) = server.post_json("s-1", &json!({})).await?;
    ensure!(status == 200, "posting a callback answered {status}");

    let passed = server.create_run("ann", 1, &["pass.sh"]).await?;
    let passed_id = passed["id"].as_i64().context("run without id")?;
    let (run, _) = server.wait_run_finished(passed_id).await?;
    ensure!(run["status"] == "passed", "pass.sh's run ended {run}");

    // Environment 2 held by a test that never ends, one run queued behind it.
    let hang = server.create_run("bob", 2, &["hang.sh"]).await?;
    let hang_id = hang["id"].as_i64().context("run without id")?;
    // Started (its claim wait observed) once its test prints: the run is executed by a task.
    server
        .follow_log(hang_id)
        .await?
        .until_line(
            "hang.sh's first line",
            |l| l.ends_with(" out hanging"),
            crate::helpers::PROMPTLY,
        )
        .await?;
    let queued = server.create_run("bob", 2, &["pass.sh"]).await?;
    ensure!(
        queued["status"] == "queued",
        "the second run on env 2 is {queued}"
    );

    let metrics = scrape(&server, None).await?;
    metrics.expect("eventual_callbacks_received_total{status=\"200\"}", 1.0)?;
    metrics.expect("eventual_runs_finished_total{status=\"passed\"}", 1.0)?;
    metrics.expect("eventual_runs_finished_total{status=\"failed\"}", 0.0)?;
    metrics.expect("eventual_environments", 4.0)?;
    metrics.expect("eventual_environments_busy", 1.0)?;
    metrics.expect("eventual_environments_paused", 0.0)?;
    metrics.expect("eventual_runs_queued{env=\"1\"}", 0.0)?;
    metrics.expect("eventual_runs_queued{env=\"2\"}", 1.0)?;
    metrics.expect("eventual_run_duration_seconds_count", 1.0)?;
    metrics.expect("eventual_run_duration_seconds_bucket{le=\"+Inf\"}", 1.0)?;
    // pass.sh and hang.sh have started; the queued run has not.
    metrics.expect("eventual_claim_wait_seconds_count", 2.0)?;
    ensure!(
        metrics.value("eventual_run_duration_seconds_sum")? > 0.0,
        "a run that ran took no time"
    );

    let (status, body) = read(
        server
            .http()
            .post(server.at(&format!("/api/runs/{hang_id}/cancel")))
            .send()
            .await?,
    )
    .await?;
    ensure!(
        status == 200,
        "cancelling run {hang_id} answered {status}: {body}"
    );
    let queued_id = queued["id"].as_i64().context("run without id")?;
    server.wait_run_finished(queued_id).await?;
    let metrics = scrape(&server, None).await?;
    metrics.expect("eventual_runs_finished_total{status=\"cancelled\"}", 1.0)?;
    metrics.expect("eventual_runs_finished_total{status=\"passed\"}", 2.0)?;
    metrics.expect("eventual_runs_queued{env=\"2\"}", 0.0)?;
    metrics.expect("eventual_environments_busy", 0.0)?;
    metrics.expect("eventual_claim_wait_seconds_count", 3.0)?;
    metrics.expect("eventual_run_duration_seconds_count", 3.0)
}
