//! `eventual serve`: the harness beside the sink on one port (SPEC "One process, one port"):
//! `--token` guards the harness routes but not callbacks, tests are told where the sink is, and a
//! bundled sample test talks to that sink.

use anyhow::{Context as _, ensure};
use serde_json::json;

use crate::helpers::{FIXTURE_TESTS, Launch, error_message, read};

/// The repository's `sample-tests/`, what `serve` bundles by default.
const SAMPLE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample-tests");

#[tokio::test]
async fn serve_with_a_token_requires_bearer_on_harness_routes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Launch::serve(dir.path(), FIXTURE_TESTS, &["--token", "s3cret"])
        .spawn()
        .await?;
    let http = server.http();

    for (what, auth) in [
        ("no Authorization", None),
        ("a wrong token", Some("Bearer s3cret-not")),
        ("the token without `Bearer`", Some("s3cret")),
    ] {
        let mut request = http.get(server.at("/api/runs"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let (status, body) = read(request.send().await?).await?;
        ensure!(
            status == 401,
            "GET /api/runs with {what} answered {status}: {body}"
        );
        error_message(&body, "unauthorized")?;
    }
    // Writes are guarded too: this run must not be created.
    let (status, body) = read(
        http.post(server.at("/api/runs"))
            .json(&json!({ "username": "ann", "env_id": 1, "tests": ["pass.sh"] }))
            .send()
            .await?,
    )
    .await?;
    ensure!(
        status == 401,
        "POST /api/runs without a token answered {status}: {body}"
    );
    error_message(&body, "unauthorized")?;

    let (status, body) = read(
        http.get(server.at("/api/runs"))
            .bearer_auth("s3cret")
            .send()
            .await?,
    )
    .await?;
    ensure!(
        status == 200 && body == json!({ "runs": [] }),
        "GET /api/runs with the token answered {status}: {body}"
    );

    // A system under test cannot be told to send a token: callbacks go in without one.
    let (status, body) = server.post_json("job-1", &json!({ "ok": true })).await?;
    ensure!(
        status == 200 && body == json!({ "key": "job-1", "seq": 1 }),
        "POST /callbacks/job-1 without a token answered {status}: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn eventual_sink_url_reaches_tests() -> anyhow::Result<()> {
    // The built-in sink: the address the server listens on, as it printed it.
    let dir = tempfile::tempdir()?;
    let server = Launch::serve(dir.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    ensure!(
        server.listening == server.url,
        "{} vs {}",
        server.listening,
        server.url
    );
    server.create_run("ann", 3, &["env.sh"]).await?;
    let (run, log) = server.wait_run_finished(1).await?;
    ensure!(run["status"] == "passed", "{run}\nlog:\n{log}");
    let want = format!(
        " out run=1 env=3 user=ann sink={} prefix=run-1.",
        server.listening
    );
    ensure!(
        log.lines().any(|l| l.ends_with(&want)),
        "env.sh did not print {want:?}:\n{log}"
    );

    // Another sink named with --sink-url.
    let dir = tempfile::tempdir()?;
    let server = Launch::serve(
        dir.path(),
        FIXTURE_TESTS,
        &["--sink-url", "http://example.invalid:1"],
    )
    .spawn()
    .await?;
    server.create_run("bob", 1, &["env.sh"]).await?;
    let (run, log) = server.wait_run_finished(1).await?;
    ensure!(run["status"] == "passed", "{run}\nlog:\n{log}");
    let want = " out run=1 env=1 user=bob sink=http://example.invalid:1 prefix=run-1.";
    ensure!(
        log.lines().any(|l| l.ends_with(want)),
        "env.sh did not print {want:?}:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn the_sample_sink_roundtrip_test_passes_against_the_built_in_sink() -> anyhow::Result<()> {
    let curl = std::process::Command::new("curl")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status();
    if !curl.is_ok_and(|s| s.success()) {
        eprintln!(
            "skipped: smoke/sink_roundtrip.sh needs curl, which is not installed (e.g. `apt-get install curl`)"
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // A developer's proxy settings must not send the test's requests to 127.0.0.1 elsewhere.
    let server = Launch::serve(dir.path(), SAMPLE_TESTS, &[])
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .spawn()
        .await?;
    server
        .create_run("ann", 1, &["smoke/sink_roundtrip.sh"])
        .await?;
    let (run, log) = server.wait_run_finished(1).await?;
    ensure!(
        run["status"] == "passed" && run["tests"][0]["exit_code"] == 0,
        "smoke/sink_roundtrip.sh should pass: {run}\nlog:\n{log}"
    );
    ensure!(
        log.lines().any(|l| l.ends_with(" out callback received")),
        "the test did not say it received its callback:\n{log}"
    );
    // It really went through this server's sink, under the run's own prefix.
    let records = server.all("run-1.roundtrip").await?;
    let record = records
        .first()
        .context("no callback under run-1.roundtrip")?;
    ensure!(
        records.len() == 1 && record["body"] == json!({ "ok": true }),
        "{records:?}"
    );
    Ok(())
}

#[tokio::test]
async fn serve_started_outside_the_repository_shows_and_runs_the_samples_built_into_it()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere)?;
    // No --sample-tests, started from a directory with no sample-tests/ in it, as an installed
    // binary is: the samples come from the binary itself.
    let server = Launch::new(&["serve", "--data-dir", "data", "--envs", "2"])
        .current_dir(&elsewhere)
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .spawn()
        .await?;
    let (status, list) = server.get("/api/tests").await?;
    ensure!(status == 200, "GET /api/tests answered {status}: {list}");
    let listed = |field: &str, path: &str| {
        list[field].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|t| t["path"] == path && t["uploaded"] == false)
        })
    };
    for test in ["smoke/hello.sh", "async_job/test_job_callback.py"] {
        ensure!(listed("tests", test), "{test} is not listed: {list}");
    }
    for support in ["_lib/demo.py", "_lib/demo_sut.py"] {
        ensure!(
            listed("support", support),
            "{support} is not support: {list}"
        );
    }
    ensure!(
        list["configs"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["dir"] == "with-services" && c["problems"] == json!([]))),
        "the with-services configuration is listed and valid: {list}"
    );
    ensure!(
        elsewhere.join("data/sample-tests/smoke/hello.sh").is_file(),
        "the samples are written under the data dir"
    );
    ensure!(
        elsewhere.join("data/python/eventual/__init__.py").is_file(),
        "the Python package is written under the data dir"
    );
    server.create_run("ann", 1, &["smoke/hello.sh"]).await?;
    let (run, log) = server.wait_run_finished(1).await?;
    ensure!(
        run["status"] == "passed",
        "smoke/hello.sh: {run}\nlog:\n{log}"
    );
    // The services sample finds the demo SUT it ships with (a support file of the samples).
    server
        .create_run(
            "ann",
            2,
            &[
                "with-services/preparation/test_start_job.py",
                "with-services/validation/test_check_result.py",
            ],
        )
        .await?;
    let (run, log) = server.wait_run_finished(2).await?;
    ensure!(
        run["status"] == "passed",
        "with-services: {run}\nlog:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn tests_of_a_server_with_a_token_can_read_their_own_callbacks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Launch::serve(dir.path(), SAMPLE_TESTS, &["--token", "s3cret-42"])
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .spawn()
        .await?;
    let http = server.http();
    let (status, run) = read(
        http.post(server.at("/api/runs"))
            .bearer_auth("s3cret-42")
            .json(&json!({ "username": "ann", "env_id": 1, "tests": ["smoke/sink_roundtrip.sh"] }))
            .send()
            .await?,
    )
    .await?;
    ensure!(status == 201, "POST /api/runs answered {status}: {run}");
    let id = run["id"].as_i64().context("run id")?;
    // The followed log ends when the run does.
    let log = tokio::time::timeout(
        crate::helpers::RUN_TIMEOUT,
        http.get(server.at(&format!("/api/runs/{id}/log?follow=true")))
            .bearer_auth("s3cret-42")
            .send()
            .await?
            .text(),
    )
    .await
    .context("the run ends in time")??;
    let (_, finished) = read(
        http.get(server.at(&format!("/api/runs/{id}")))
            .bearer_auth("s3cret-42")
            .send()
            .await?,
    )
    .await?;
    ensure!(
        finished["status"] == "passed",
        "the sample reads its callback with the token it was handed: {finished}\nlog:\n{log}"
    );
    ensure!(
        !log.contains("s3cret-42"),
        "the token is never logged:\n{log}"
    );
    Ok(())
}
