//! Phased runs against a real sink: preparation announces, the run waits on the sink (woken by
//! the in-process store, or long-polling a sink given by URL), validation gets the records.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

fn phased_fixtures() -> std::path::PathBuf {
    fixtures()
        .parent()
        .expect("fixtures/tests has a parent")
        .join("phased")
}

/// A harness whose phased runs wait on `sink` (in-process when `local`, by URL otherwise).
async fn spawn_phased(sink: &sink::TestSink, local: bool) -> TestApp {
    let store = sink.store().clone();
    let client = sink.client().clone();
    let url = sink.url().to_owned();
    spawn_app(move |c| {
        c.sample_tests = Some(phased_fixtures());
        c.sink_url = url;
        c.sink = Some(if local {
            harness::SinkAccess::Local(store)
        } else {
            harness::SinkAccess::Remote(client)
        });
    })
    .await
}

async fn wait_awaiting(app: &TestApp, id: i64) -> Value {
    app.wait_json(&format!("/api/runs/{id}"), |run| {
        run["phase"] == "awaiting" && !run["awaiting"].as_array().is_none_or(Vec::is_empty)
    })
    .await
}

#[tokio::test]
async fn a_phased_run_waits_for_the_callback_and_validation_gets_the_records() {
    for local in [true, false] {
        let sink = sink::TestSink::start().await;
        let app = spawn_phased(&sink, local).await;
        // Given validation first: preparation still runs first.
        let run = app
            .create_run(
                "ann",
                1,
                &["validation/check.sh", "preparation/start_job.sh"],
            )
            .await;
        let id = run["id"].as_i64().expect("id");
        let paths: Vec<&str> = run["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .filter_map(|t| t["path"].as_str())
            .collect();
        assert_eq!(paths, ["preparation/start_job.sh", "validation/check.sh"]);
        let awaiting = wait_awaiting(&app, id).await;
        let key = format!("run-{id}.job");
        assert_eq!(awaiting["awaiting"][0]["key"], key.as_str());
        assert_eq!(awaiting["awaiting"][0]["count"], 1);
        assert_eq!(awaiting["awaiting"][0]["arrived"], 0);
        assert!(
            awaiting["awaiting"][0]["deadline"]
                .as_str()
                .is_some_and(|d| d.ends_with('Z'))
        );
        assert_eq!(
            awaiting["tests"][1]["status"], "pending",
            "validation waits"
        );
        sink.client()
            .post(&key, &json!({"status": "done", "n": 7}))
            .await
            .expect("post");
        let done = app.wait_finished(id).await;
        assert_eq!(done["status"], "passed", "local={local}: {done}");
        assert_eq!(done["phase"], "validation");
        assert_eq!(done["awaiting"][0]["arrived"], 1);
        let log = app.log(id).await;
        assert!(
            log.contains(&format!("--- callback {key} arrived (1/1) after ")),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "out {key}: 1 record(s); first body {{'status': 'done', 'n': 7}}"
            )),
            "{log}"
        );
    }
}

#[tokio::test]
async fn a_callback_that_never_arrives_times_the_run_out_naming_the_key() {
    let sink = sink::TestSink::start().await;
    let app = spawn_phased(&sink, true).await;
    let started = Instant::now();
    let run = app
        .create_run(
            "ann",
            1,
            &["preparation/start_short.sh", "validation/check.sh"],
        )
        .await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timed out within its 300ms (+ slack)"
    );
    assert_eq!(done["status"], "timed_out");
    assert_eq!(done["tests"][1]["status"], "skipped");
    let log = app.log(id).await;
    assert!(
        log.contains(&format!(
            "timed out waiting for callbacks: run-{id}.never (0 of 1 arrived)"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn count_two_waits_for_the_second_callback_and_shows_each_arrival() {
    for local in [true, false] {
        let sink = sink::TestSink::start().await;
        let app = spawn_phased(&sink, local).await;
        let run = app
            .create_run(
                "ann",
                1,
                &["preparation/start_pair.sh", "validation/check.sh"],
            )
            .await;
        let id = run["id"].as_i64().expect("id");
        wait_awaiting(&app, id).await;
        let mut events = app.sse(&format!("/api/runs/{id}/events")).await;
        let key = format!("run-{id}.pair");
        sink.client()
            .post(&key, &json!({"n": 1}))
            .await
            .expect("post");
        // One of two: the run says so in an event (and in its JSON) while it still waits.
        let progress = loop {
            let event = events.next().await.expect("the run's stream goes on");
            if event.event == "run" && event.json()["awaiting"][0]["arrived"] == 1 {
                break event.json();
            }
        };
        assert_eq!(progress["status"], "running", "local={local}: {progress}");
        assert_eq!(progress["phase"], "awaiting");
        let still = app.run(id).await;
        assert_eq!(still["awaiting"][0]["arrived"], 1, "local={local}: {still}");
        assert_eq!(still["awaiting"][0]["count"], 2);
        assert_eq!(still["tests"][1]["status"], "pending");
        sink.client()
            .post(&key, &json!({"n": 2}))
            .await
            .expect("post");
        let done = app.wait_finished(id).await;
        assert_eq!(done["status"], "passed", "local={local}: {done}");
        assert_eq!(done["awaiting"][0]["arrived"], 2);
        let log = app.log(id).await;
        assert!(log.contains(&format!("out {key}: 2 record(s)")), "{log}");
        assert!(
            log.contains(&format!("--- callback {key} arrived (1/2) after ")),
            "{log}"
        );
    }
}

#[tokio::test]
async fn cancel_during_the_await_phase_ends_the_run_at_once_and_frees_the_env() {
    let sink = sink::TestSink::start().await;
    let app = spawn_phased(&sink, true).await;
    let run = app
        .create_run(
            "ann",
            2,
            &["preparation/start_long.sh", "validation/check.sh"],
        )
        .await;
    let id = run["id"].as_i64().expect("id");
    wait_awaiting(&app, id).await;
    let started = Instant::now();
    let cancelled: Value = app
        .post(&format!("/api/runs/{id}/cancel"))
        .await
        .json()
        .await
        .expect("json");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["tests"][1]["status"], "skipped");
    let envs = app.get_json("/api/envs").await;
    assert_eq!(envs[1]["state"], "free", "{envs}");
}

#[tokio::test]
async fn a_failed_preparation_test_skips_the_rest_and_fails_the_run() {
    let sink = sink::TestSink::start().await;
    let app = spawn_phased(&sink, true).await;
    let run = app
        .create_run("ann", 1, &["preparation/fails.sh", "validation/check.sh"])
        .await;
    let done = app.wait_finished(run["id"].as_i64().expect("id")).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["tests"][0]["status"], "failed");
    assert_eq!(done["tests"][1]["status"], "skipped");
}

#[tokio::test]
async fn malformed_announce_lines_are_logged_and_the_run_is_not_wedged() {
    let sink = sink::TestSink::start().await;
    let app = spawn_phased(&sink, true).await;
    let run = app
        .create_run(
            "ann",
            1,
            &["preparation/malformed.sh", "validation/plain.sh"],
        )
        .await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(done["status"], "passed", "{done}");
    let log = app.log(id).await;
    for hint in ["no key given", "count=0", "timeout=soon"] {
        assert!(
            log.contains("ignored a malformed announce line: ") && log.contains(hint),
            "{hint}: {log}"
        );
    }
    assert!(
        log.contains("phase awaiting: no callbacks were announced"),
        "{log}"
    );
}

#[tokio::test]
async fn validation_tests_without_preparation_simply_run_in_order() {
    let sink = sink::TestSink::start().await;
    let app = spawn_phased(&sink, true).await;
    let run = app.create_run("ann", 1, &["validation/plain.sh"]).await;
    let done = app.wait_finished(run["id"].as_i64().expect("id")).await;
    assert_eq!(done["status"], "passed");
    assert_eq!(done["phase"], Value::Null);
    let tests = app.get_json("/api/tests").await;
    let plain = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["path"] == "validation/plain.sh")
        .cloned()
        .expect("listed");
    assert_eq!(plain["tags"], json!(["validation"]));
}

#[tokio::test]
async fn two_phased_runs_on_different_envs_do_not_see_each_others_callbacks() {
    let sink = sink::TestSink::start().await;
    let app = spawn_phased(&sink, true).await;
    let a = app
        .create_run(
            "ann",
            1,
            &["preparation/start_job.sh", "validation/check.sh"],
        )
        .await;
    let b = app
        .create_run(
            "bob",
            2,
            &["preparation/start_short.sh", "validation/check.sh"],
        )
        .await;
    let (a, b) = (a["id"].as_i64().expect("id"), b["id"].as_i64().expect("id"));
    wait_awaiting(&app, a).await;
    sink.client()
        .post(&format!("run-{a}.job"), &json!({"for": "a"}))
        .await
        .expect("post");
    assert_eq!(app.wait_finished(a).await["status"], "passed");
    assert_eq!(
        app.wait_finished(b).await["status"],
        "timed_out",
        "b's key was never posted"
    );
}
