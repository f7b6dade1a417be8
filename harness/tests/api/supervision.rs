//! Supervised test processes: timeouts and cancels end the whole process tree, SIGTERM-proof
//! tests get SIGKILL, leftovers are killed and reported, and heavy output arrives complete.

use std::time::{Duration, Instant};

use crate::helpers::{
    alive, error_of, hang_pids, id_of, json_of, parse_log_line, spawn_app, test_statuses,
};

#[tokio::test]
async fn a_test_past_the_timeout_is_timed_out_and_its_whole_tree_is_killed() {
    let app = spawn_app(|c| {
        c.test_timeout = Duration::from_millis(1500);
        c.kill_grace = Duration::from_millis(500);
    })
    .await;
    let run = app.create_run("ann", 1, &["hang.sh", "pass.sh"]).await;
    let id = id_of(&run);
    let run = app.wait_finished(id).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(test_statuses(&run), ["timed_out", "passed"]);
    assert!(
        run["tests"][0]["exit_code"].is_null(),
        "killed, no exit code: {run}"
    );

    let log = app.log(id).await;
    assert!(
        log.contains(" out ready\n"),
        "hang.sh had built its tree before the timeout:\n{log}"
    );
    assert!(
        log.lines()
            .map(parse_log_line)
            .any(|(tag, text)| tag == "---" && text.starts_with("timeout: ")),
        "{log}"
    );
    assert!(
        log.contains(" --- end hang.sh timed_out exit=- in "),
        "{log}"
    );
    for pid in hang_pids(&app, id) {
        assert!(
            !alive(pid),
            "process {pid} of hang.sh's tree outlived the timeout"
        );
    }
}

#[tokio::test]
async fn a_test_that_ignores_sigterm_gets_sigkill_after_the_grace_period() {
    let app = spawn_app(|c| {
        c.test_timeout = Duration::from_millis(1000);
        c.kill_grace = Duration::from_millis(200);
    })
    .await;
    let run = app.create_run("ann", 1, &["ignore_term.sh"]).await;
    let id = id_of(&run);
    let run = app.wait_finished(id).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(test_statuses(&run), ["timed_out"]);
    let log = app.log(id).await;
    assert!(log.contains(" out ignoring SIGTERM\n"), "{log}");
    assert!(
        log.lines()
            .map(parse_log_line)
            .any(|(tag, text)| tag == "---" && text.contains("SIGKILL")),
        "the log says SIGKILL was sent:\n{log}"
    );
}

#[tokio::test]
async fn a_leftover_process_is_killed_and_reported_and_the_test_still_passes() {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["leak.sh"]).await;
    let id = id_of(&run);
    let run = app.wait_finished(id).await;
    assert_eq!(run["status"], "passed", "{run}");
    let log = app.log(id).await;
    let lines: Vec<(&str, &str)> = log.lines().map(parse_log_line).collect();
    let pid: i32 = lines
        .iter()
        .find_map(|(tag, text)| {
            (*tag == "out")
                .then(|| text.strip_prefix("leaked"))
                .flatten()
        })
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("leak.sh printed its sleeper's pid:\n{log}"));
    // `sleep 300 &` forks a bash that then execs sleep; leak.sh exits at once, so the harness
    // can find the leftover in the instant before the exec, still named `bash`.
    let report = format!("killed 1 leftover process: {pid} sleep");
    let before_exec = format!("killed 1 leftover process: {pid} bash");
    let at = lines
        .iter()
        .position(|l| *l == ("---", report.as_str()) || *l == ("---", before_exec.as_str()))
        .unwrap_or_else(|| panic!("no `--- {report}` line:\n{log}"));
    let end = lines
        .iter()
        .position(|(tag, text)| *tag == "---" && text.starts_with("end leak.sh passed exit=0"))
        .unwrap_or_else(|| panic!("no end line:\n{log}"));
    assert!(
        at < end,
        "the leftover is reported before the end line:\n{log}"
    );
    assert!(!alive(pid), "the leaked sleeper {pid} was killed");
    eprintln!(
        "FIGURE leftovers: a test that leaks a process passes; its leftover is killed and reported, 0 strays"
    );
}

#[tokio::test]
async fn twenty_thousand_alternating_lines_all_arrive_in_order_with_their_stream() {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["noisy.sh"]).await;
    let id = id_of(&run);
    // Read it live: the follow stream must carry every line too, not just the file.
    let followed = app.follow_log(id).await;
    let run = app.run(id).await;
    assert_eq!(run["status"], "passed", "{run}");
    assert_eq!(
        followed,
        app.log(id).await,
        "the follower saw the whole file"
    );

    // stdout and stderr are two pipes, so how the two streams interleave depends on when the
    // harness reads each; within each stream the order must be exact.
    let mut next = [0u32, 1u32];
    let mut count = 0;
    for (tag, text) in followed.lines().map(parse_log_line) {
        if tag == "---" {
            continue;
        }
        let n: u32 = text
            .strip_prefix("line ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected test output {text:?}"));
        let (expected_tag, slot) = if n % 2 == 0 { ("out", 0) } else { ("err", 1) };
        assert_eq!(tag, expected_tag, "line {n} is on its stream");
        assert_eq!(n, next[slot], "{tag} lines are in order");
        next[slot] += 2;
        count += 1;
    }
    assert_eq!(count, 20_000, "every line arrived once");
}

#[tokio::test]
async fn cancelling_a_running_test_kills_its_tree_and_skips_the_rest() {
    let app = spawn_app(|c| c.kill_grace = Duration::from_secs(5)).await;
    let run = app
        .create_run("ann", 1, &["hang.sh", "pass.sh", "fail.sh"])
        .await;
    let id = id_of(&run);
    app.wait_for_log_line(id, " out ready").await;
    let pids = hang_pids(&app, id);
    assert!(pids.iter().all(|p| alive(*p)), "hang.sh's tree is up");

    let started = Instant::now();
    let response = app.post(&format!("/api/runs/{id}/cancel")).await;
    let run = json_of(response, 200).await;
    let took = started.elapsed();
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(test_statuses(&run), ["cancelled", "skipped", "skipped"]);
    assert!(run["finished_at"].is_string(), "{run}");
    assert!(
        took < Duration::from_secs(3),
        "hang.sh dies on SIGTERM, so the cancel does not wait out the 5 s grace: {took:?}"
    );
    for pid in pids {
        assert!(
            !alive(pid),
            "process {pid} of hang.sh's tree outlived the cancel"
        );
    }
    let log = app.log(id).await;
    assert!(
        !log.contains("start pass.sh"),
        "skipped tests do not start:\n{log}"
    );
    app.wait_json("/api/envs", |envs| envs[0]["state"] == "free")
        .await;
}

#[tokio::test]
async fn cancelling_a_finished_run_is_409_and_an_unknown_one_404() {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["pass.sh"]).await;
    let id = id_of(&run);
    app.wait_finished(id).await;
    error_of(
        app.post(&format!("/api/runs/{id}/cancel")).await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(
        app.run(id).await["status"],
        "passed",
        "a refused cancel changes nothing"
    );
    error_of(app.post("/api/runs/999/cancel").await, 404, "not_found").await;
    error_of(app.post("/api/runs/abc/cancel").await, 404, "not_found").await;
}

#[tokio::test]
async fn cancelling_a_queued_run_skips_its_tests_and_the_queue_goes_on() {
    let app = spawn_app(|_| {}).await;
    let holder = id_of(&app.create_run("ann", 1, &["hang.sh"]).await);
    app.wait_for_log_line(holder, " out ready").await;
    let queued = id_of(&app.create_run("bob", 1, &["pass.sh", "fail.sh"]).await);
    let after = id_of(&app.create_run("cid", 1, &["pass.sh"]).await);
    assert_eq!(
        app.env(1).await["queued"],
        serde_json::json!([queued, after])
    );

    let run = json_of(app.post(&format!("/api/runs/{queued}/cancel")).await, 200).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(test_statuses(&run), ["skipped", "skipped"]);
    assert!(run["started_at"].is_null(), "it never started: {run}");
    let env = app.env(1).await;
    assert_eq!(env["run_id"], holder, "{env}");
    assert_eq!(env["queued"], serde_json::json!([after]), "{env}");
    assert_eq!(app.wait_finished(queued).await["status"], "cancelled");

    json_of(app.post(&format!("/api/runs/{holder}/cancel")).await, 200).await;
    let run = app.wait_finished(after).await;
    assert_eq!(run["status"], "passed", "the queue went on: {run}");
    app.wait_json("/api/envs", |envs| envs[0]["state"] == "free")
        .await;
}
