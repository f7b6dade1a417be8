//! Server-Sent Events: one run's stream and the global stream for the UI.

use std::time::Duration;

use crate::helpers::{id_of, json_of, spawn_app};

#[tokio::test]
async fn a_run_stream_starts_with_the_run_carries_its_log_and_ends_after_the_final_run() {
    let app = spawn_app(|_| {}).await;
    // Hold the run in the queue so the stream is open before anything happens.
    json_of(app.post("/api/envs/1/pause").await, 200).await;
    let id = id_of(&app.create_run("ann", 1, &["pass.sh", "fail.sh"]).await);
    let mut events = app.sse(&format!("/api/runs/{id}/events")).await;
    let first = events.next().await.expect("a first event");
    assert_eq!(first.event, "run", "{first:?}");
    assert_eq!(first.json()["id"], id);
    assert_eq!(first.json()["status"], "queued");

    json_of(app.post("/api/envs/1/resume").await, 200).await;
    let mut seen = vec![first];
    seen.extend(
        events
            .until(|e| e.event == "run" && e.json()["status"] == "failed")
            .await,
    );
    // After the final run event only log lines that were still on their way may follow; then
    // the stream ends.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(event)) => {
                assert_eq!(
                    event.event, "log",
                    "nothing but log lines after the final run event: {event:?}"
                );
                seen.push(event);
            }
            Ok(None) => break,
            Err(_) => panic!("the stream did not end after the final run event: {seen:?}"),
        }
    }
    let logs: Vec<&str> = seen
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data.as_str())
        .collect();
    assert!(
        logs.iter().any(|l| l.ends_with(" --- start pass.sh (1/2)")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.ends_with(" out about to fail")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains(" --- end fail.sh failed exit=3 in ")),
        "{logs:?}"
    );
    assert!(
        seen.iter()
            .filter(|e| e.event == "run")
            .any(|e| e.json()["status"] == "running"),
        "a run event for the start: {seen:?}"
    );
}

#[tokio::test]
async fn a_finished_run_stream_gives_the_run_then_its_whole_log_and_ends() {
    let app = spawn_app(|_| {}).await;
    let id = id_of(&app.create_run("ann", 1, &["pass.sh"]).await);
    let run = app.wait_finished(id).await;
    let log = app.log(id).await;

    let mut events = app.sse(&format!("/api/runs/{id}/events")).await;
    let first = events.next().await.expect("a first event");
    assert_eq!(first.event, "run");
    assert_eq!(first.json(), run);
    let mut lines = Vec::new();
    while let Some(event) = events.next().await {
        assert_eq!(event.event, "log", "{event:?}");
        lines.push(event.data);
    }
    assert_eq!(lines, log.lines().collect::<Vec<_>>());
}

#[tokio::test]
async fn the_global_stream_reports_a_new_run_and_its_environment() {
    let app = spawn_app(|_| {}).await;
    let mut events = app.sse("/api/events").await;
    let id = id_of(&app.create_run("ann", 3, &["pass.sh"]).await);

    // Creating a run emits both; their order is not part of the contract.
    let (mut run, mut env) = (None, None);
    while run.is_none() || env.is_none() {
        let event = events.next().await.expect("the stream stays open");
        let data = event.json();
        match event.event.as_str() {
            "run" if data["id"] == id => run = Some(data),
            "env" if data["id"] == 3 => env = Some(data),
            _ => {}
        }
    }
    let (run, env) = (run.unwrap_or_default(), env.unwrap_or_default());
    assert_eq!(run["username"], "ann", "{run}");
    assert_eq!(run["env_id"], 3, "{run}");
    assert!(
        env["state"].is_string() && env["queued"].is_array(),
        "{env}"
    );

    // The stream keeps reporting the run until it has its final status.
    events
        .until(|e| e.event == "run" && e.json()["id"] == id && e.json()["status"] == "passed")
        .await;
}
