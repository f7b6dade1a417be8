//! Environments: their state, pause and resume, and FIFO queues.

use serde_json::json;

use crate::helpers::{TestApp, error_of, id_of, json_of, spawn_app};

/// `(env, run, start ns, end ns)` lines that `times.sh` appended to `<data_dir>/times.log`.
pub(crate) fn times(app: &TestApp) -> Vec<(u32, i64, u128, u128)> {
    let text = std::fs::read_to_string(app.data_dir.join("times.log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "times.sh line {line:?}");
            let parse = |s: &str| -> u128 { s.parse().unwrap_or_else(|_| panic!("{line:?}")) };
            (
                parse(f[0]) as u32,
                parse(f[1]) as i64,
                parse(f[2]),
                parse(f[3]),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_env_list_shows_every_environment_free_in_id_order() {
    let app = spawn_app(|c| c.envs = 3).await;
    let envs = app.get_json("/api/envs").await;
    let list = envs.as_array().expect("a JSON array");
    assert_eq!(list.len(), 3, "{envs}");
    for (i, env) in list.iter().enumerate() {
        assert_eq!(env["id"], i + 1, "{env}");
        assert_eq!(env["state"], "free", "{env}");
        assert!(env["run_id"].is_null(), "{env}");
        assert_eq!(env["queued"], json!([]), "{env}");
    }
}

#[tokio::test]
async fn an_env_is_busy_with_its_run_while_it_runs_and_free_after() {
    let app = spawn_app(|_| {}).await;
    let id = id_of(&app.create_run("ann", 2, &["hang.sh"]).await);
    app.wait_for_log_line(id, " out ready").await;
    let env = app.env(2).await;
    assert_eq!(env["state"], "busy", "{env}");
    assert_eq!(env["run_id"], id, "{env}");
    assert_eq!(app.run(id).await["status"], "running");
    assert_eq!(
        app.env(1).await["state"],
        "free",
        "other environments stay free"
    );

    json_of(app.post(&format!("/api/runs/{id}/cancel")).await, 200).await;
    let envs = app
        .wait_json("/api/envs", |envs| envs[1]["state"] == "free")
        .await;
    assert!(envs[1]["run_id"].is_null(), "{envs}");
}

#[tokio::test]
async fn a_paused_env_holds_its_queue_until_resumed() {
    let app = spawn_app(|_| {}).await;
    let paused = json_of(app.post("/api/envs/3/pause").await, 200).await;
    assert_eq!(paused["id"], 3);
    assert_eq!(paused["state"], "paused");

    let a = id_of(&app.create_run("ann", 3, &["pass.sh"]).await);
    let b = id_of(&app.create_run("bob", 3, &["pass.sh"]).await);
    let run = app.run(a).await;
    assert_eq!(run["status"], "queued", "{run}");
    assert_eq!(run["queue_position"], 1, "{run}");
    assert_eq!(app.run(b).await["queue_position"], 2);
    let env = app.env(3).await;
    assert_eq!(env["state"], "paused", "{env}");
    assert_eq!(env["queued"], json!([a, b]), "{env}");
    // Other environments are not held.
    let other = app.create_run("cid", 1, &["pass.sh"]).await;
    assert_eq!(app.wait_finished(id_of(&other)).await["status"], "passed");
    assert_eq!(app.run(a).await["status"], "queued");

    let resumed = json_of(app.post("/api/envs/3/resume").await, 200).await;
    assert_eq!(resumed["id"], 3);
    assert_ne!(resumed["state"], "paused", "{resumed}");
    assert_eq!(app.wait_finished(a).await["status"], "passed");
    assert_eq!(app.wait_finished(b).await["status"], "passed");
}

#[tokio::test]
async fn pausing_a_busy_env_lets_its_run_finish_but_holds_the_next() {
    let app = spawn_app(|_| {}).await;
    let holder = id_of(&app.create_run("ann", 1, &["hang.sh"]).await);
    app.wait_for_log_line(holder, " out ready").await;
    let next = id_of(&app.create_run("bob", 1, &["pass.sh"]).await);
    let env = json_of(app.post("/api/envs/1/pause").await, 200).await;
    assert_eq!(env["state"], "paused", "{env}");
    assert_eq!(env["run_id"], holder, "the holder keeps the env: {env}");

    json_of(app.post(&format!("/api/runs/{holder}/cancel")).await, 200).await;
    let envs = app
        .wait_json("/api/envs", |envs| envs[0]["run_id"].is_null())
        .await;
    assert_eq!(envs[0]["state"], "paused", "{envs}");
    assert_eq!(envs[0]["queued"], json!([next]), "{envs}");
    assert_eq!(app.run(next).await["status"], "queued");

    json_of(app.post("/api/envs/1/resume").await, 200).await;
    assert_eq!(app.wait_finished(next).await["status"], "passed");
}

#[tokio::test]
async fn pausing_or_resuming_an_unknown_env_is_404() {
    let app = spawn_app(|c| c.envs = 4).await;
    for id in ["0", "5", "abc", "-1"] {
        for action in ["pause", "resume"] {
            let response = app.post(&format!("/api/envs/{id}/{action}")).await;
            error_of(response, 404, "not_found").await;
        }
    }
}

#[tokio::test]
async fn runs_on_one_env_start_in_submission_order_one_at_a_time() {
    let app = spawn_app(|_| {}).await;
    json_of(app.post("/api/envs/2/pause").await, 200).await;
    let mut ids = Vec::new();
    for user in ["a", "b", "c", "d", "e", "f"] {
        ids.push(id_of(&app.create_run(user, 2, &["times.sh"]).await));
    }
    assert_eq!(app.env(2).await["queued"], json!(ids));
    json_of(app.post("/api/envs/2/resume").await, 200).await;
    for id in &ids {
        assert_eq!(app.wait_finished(*id).await["status"], "passed");
    }
    let mut recorded = times(&app);
    recorded.sort_by_key(|t| t.2);
    let order: Vec<i64> = recorded.iter().map(|t| t.1).collect();
    assert_eq!(order, ids, "start order is submission order");
    for pair in recorded.windows(2) {
        assert!(
            pair[0].3 <= pair[1].2,
            "run {} started before run {} ended: {recorded:?}",
            pair[1].1,
            pair[0].1
        );
    }
}

#[tokio::test]
async fn workers_bound_how_many_runs_execute_at_once_across_envs() {
    let app = spawn_app(|c| c.workers = 1).await;
    let first = id_of(&app.create_run("ann", 1, &["hang.sh"]).await);
    app.wait_for_log_line(first, " out ready").await;
    let waiting = id_of(&app.create_run("bob", 2, &["pass.sh"]).await);
    let cancelled = id_of(&app.create_run("cid", 3, &["pass.sh"]).await);
    // No worker is free, so both wait although their environments are not held by anyone else.
    assert_eq!(app.run(waiting).await["status"], "queued");
    let run = json_of(
        app.post(&format!("/api/runs/{cancelled}/cancel")).await,
        200,
    )
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["tests"][0]["status"], "skipped", "{run}");

    json_of(app.post(&format!("/api/runs/{first}/cancel")).await, 200).await;
    assert_eq!(app.wait_finished(waiting).await["status"], "passed");
    app.wait_json("/api/envs", |envs| {
        envs.as_array()
            .is_some_and(|l| l.iter().all(|e| e["state"] == "free"))
    })
    .await;
}
