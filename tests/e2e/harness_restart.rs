//! History survives a restart of `eventual serve` on the same data directory (SPEC "The harness":
//! "On start, runs that were running become `interrupted`, their environments are freed, queued
//! runs go on"), whether the server was killed with SIGKILL mid-run or stopped with SIGTERM.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::helpers::{
    EXIT_TIMEOUT, FIXTURE_TESTS, Launch, PROMPTLY, Running, kill_processes_in, processes_in,
};

/// `<data-dir>/runs/<id>/work`: the working directory of run `id`'s test processes.
fn work_dir(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join("runs").join(id.to_string()).join("work")
}

/// Kills what a test left running in a working directory when the test ends, even by a failed
/// assertion: `hang.sh` and its sleepers would otherwise outlive the test by minutes.
#[derive(Debug)]
struct KillLeftovers(PathBuf);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for (pid, _) in processes_in(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Starts run 1 = `hang.sh` on environment 1 and waits until the test prints its first line
/// (it is running; its process group exists).
async fn hang_on_env_1(server: &Running, then: &[&str]) -> anyhow::Result<()> {
    let mut tests = vec!["hang.sh"];
    tests.extend_from_slice(then);
    let run = server.create_run("ann", 1, &tests).await?;
    ensure!(
        run["id"] == 1,
        "the first run of a fresh data dir is 1: {run}"
    );
    server
        .follow_log(1)
        .await?
        .until_line(
            "hang.sh's first line",
            |l| l.ends_with(" out hanging"),
            PROMPTLY,
        )
        .await?;
    Ok(())
}

fn test_statuses(run: &Value) -> Vec<&str> {
    run["tests"]
        .as_array()
        .map(|tests| tests.iter().filter_map(|t| t["status"].as_str()).collect())
        .unwrap_or_default()
}

fn timestamp<'a>(run: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    run[field]
        .as_str()
        .with_context(|| format!("run {} has no {field}: {run}", run["id"]))
}

#[tokio::test]
async fn kill_9_of_the_server_mid_run_marks_it_interrupted_frees_the_env_and_the_queue_goes_on()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().canonicalize()?;
    let _leftovers = KillLeftovers(work_dir(&data_dir, 1));
    let mut server = Launch::serve(&data_dir, FIXTURE_TESTS, &[]).spawn().await?;

    hang_on_env_1(&server, &["pass.sh"]).await?;
    for (id, user) in [(2, "bob"), (3, "cy")] {
        let run = server.create_run(user, 1, &["pass.sh"]).await?;
        ensure!(run["id"] == id, "expected run {id}: {run}");
        ensure!(run["status"] == "queued", "env 1 is held by run 1: {run}");
    }
    let env = server.env_view(1).await?;
    ensure!(
        env["state"] == "busy" && env["run_id"] == 1 && env["queued"] == json!([2, 3]),
        "env 1 should be busy by run 1 with [2, 3] queued: {env}"
    );
    let run = server.run(1).await?;
    ensure!(
        run["status"] == "running" && test_statuses(&run) == ["running", "pending"],
        "run 1 should be running hang.sh: {run}"
    );

    server.kill_9()?;
    server.wait_exit(EXIT_TIMEOUT).await?;
    drop(server);
    // hang.sh's process group lost its supervisor: only the next server can end it.
    let work = work_dir(&data_dir, 1);
    let orphans = processes_in(&work);
    ensure!(
        !orphans.is_empty(),
        "hang.sh should have outlived the kill -9 of its server (what else stopped it?)"
    );

    let server = Launch::serve(&data_dir, FIXTURE_TESTS, &[]).spawn().await?;
    let run = server.run(1).await?;
    ensure!(
        run["status"] == "interrupted" && test_statuses(&run) == ["cancelled", "skipped"],
        "run 1 should be interrupted, hang.sh cancelled and pass.sh skipped: {run}"
    );
    ensure!(
        timestamp(&run, "started_at")? <= timestamp(&run, "finished_at")?,
        "{run}"
    );
    // A follower of a run that ended in a previous life gets the log and an end at once.
    let log = server.follow_log(1).await?.until_end(PROMPTLY).await?;
    ensure!(
        log.lines().any(|l| l.ends_with(" out hanging")),
        "run 1's log lost what hang.sh printed:\n{log}"
    );
    ensure!(
        log.lines()
            .any(|l| l.contains(" --- killed ") && l.contains("the stopped server left running")),
        "run 1's log does not say which orphaned processes (some of {orphans:?}) the restart \
         killed:\n{log}"
    );
    // SIGKILLed by the restart, but not our children: poll `/proc` until they are gone.
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while !processes_in(&work).is_empty() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{PROMPTLY:?} after the restart run 1's processes still run: {:?}",
            processes_in(&work)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = log.lines().last().unwrap_or_default();
    ensure!(
        last.contains(" --- ") && last.contains("interrupted") && last.contains("server stopped"),
        "run 1's log should end saying the server stopped under it, not {last:?}; log:\n{log}"
    );
    let (_, interrupted) = server.get("/api/runs?status=interrupted").await?;
    ensure!(
        interrupted["runs"].as_array().map(Vec::len) == Some(1) && interrupted["runs"][0] == run,
        "GET /api/runs?status=interrupted should list run 1 alone: {interrupted}"
    );

    let (second, log2) = server.wait_run_finished(2).await?;
    let (third, log3) = server.wait_run_finished(3).await?;
    for (run, log) in [(&second, &log2), (&third, &log3)] {
        let id = &run["id"];
        ensure!(
            run["status"] == "passed",
            "run {id} should pass after the restart: {run}\nlog:\n{log}"
        );
        ensure!(
            log.lines()
                .any(|l| l.ends_with(&format!(" out hello from {id} on env 1"))),
            "run {id}'s log has no output of pass.sh:\n{log}"
        );
    }
    ensure!(
        timestamp(&second, "finished_at")? <= timestamp(&third, "started_at")?,
        "run 3 started before run 2 had finished on the same environment: {second} / {third}"
    );

    // Run 3's log ends before it hands env 1 back: wait for the env event, subscribed first.
    let mut events = server.sse("/api/events").await?;
    if server.env_view(1).await?["state"] != "free" {
        events
            .until(
                "env 1 becoming free",
                |e| {
                    e.event == "env"
                        && serde_json::from_str::<Value>(&e.data)
                            .is_ok_and(|env| env["id"] == 1 && env["state"] == "free")
                },
                PROMPTLY,
            )
            .await?;
    }
    let env = server.env_view(1).await?;
    ensure!(
        env["state"] == "free" && env["run_id"].is_null() && env["queued"] == json!([]),
        "env 1 should end free with nobody waiting: {env}"
    );
    Ok(())
}

#[tokio::test]
async fn a_restart_kills_no_process_group_that_merely_reuses_a_recorded_pgid() -> anyhow::Result<()>
{
    if !std::process::Command::new("sqlite3")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: this test needs the sqlite3 command (e.g. `apt-get install sqlite3`)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().canonicalize()?;
    let work = work_dir(&data_dir, 1);
    let _leftovers = KillLeftovers(work.clone());
    let mut server = Launch::serve(&data_dir, FIXTURE_TESTS, &[]).spawn().await?;
    hang_on_env_1(&server, &[]).await?;
    server.kill_9()?;
    server.wait_exit(EXIT_TIMEOUT).await?;
    drop(server);

    // Simulate a reboot (or pid wrap-around) before the restart: the test's processes are gone
    // and an unrelated process group now has the pgid the dead server recorded for it.
    kill_processes_in(&work, PROMPTLY).await?;
    let mut innocent = tokio::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("failed to start sleep")?;
    let pgid = innocent.id().context("sleep has a pid")?;
    let db = data_dir.join("history.db");
    let update = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "UPDATE run_tests SET pgid = {pgid} WHERE run_id = 1 AND status = 'running'"
        ))
        .output()?;
    ensure!(
        update.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&update.stderr)
    );

    let server = Launch::serve(&data_dir, FIXTURE_TESTS, &[]).spawn().await?;
    let run = server.run(1).await?;
    ensure!(run["status"] == "interrupted", "{run}");
    let log = server.follow_log(1).await?.until_end(PROMPTLY).await?;
    ensure!(
        !log.contains(&format!("{pgid} sleep")),
        "the restart killed process group {pgid}, which was not run 1's:\n{log}"
    );
    ensure!(
        innocent.try_wait()?.is_none(),
        "the restart killed process group {pgid}, which was not run 1's"
    );
    Ok(())
}

#[tokio::test]
async fn a_clean_restart_keeps_history_and_logs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().canonicalize()?;
    let mut server = Launch::serve(&data_dir, FIXTURE_TESTS, &[]).spawn().await?;
    let created = server.create_run("ann", 2, &["pass.sh", "fail.sh"]).await?;
    ensure!(created["id"] == 1, "{created}");
    let (run, log) = server.wait_run_finished(1).await?;
    ensure!(run["status"] == "failed", "fail.sh exits 3: {run}");
    let tests = &run["tests"];
    ensure!(
        tests[0]["path"] == "pass.sh"
            && tests[0]["status"] == "passed"
            && tests[0]["exit_code"] == 0
            && tests[0]["duration_ms"].is_u64(),
        "pass.sh: {run}"
    );
    ensure!(
        tests[1]["path"] == "fail.sh"
            && tests[1]["status"] == "failed"
            && tests[1]["exit_code"] == 3
            && tests[1]["duration_ms"].is_u64(),
        "fail.sh: {run}"
    );
    // Every line in its place. pass.sh writes stdout, then stderr: two pipes read side by side,
    // so those two may land in either order (in the same millisecond), both inside the test.
    let expected: [&[&str]; 7] = [
        &[" --- start pass.sh (1/2)"],
        &[" out hello from 1 on env 2", " err a warning"],
        &[" --- end pass.sh passed exit=0 in "],
        &[" --- start fail.sh (2/2)"],
        &[" out about to fail"],
        &[" --- end fail.sh failed exit=3 in "],
        &[" --- run 1 failed"],
    ];
    let lines: Vec<&str> = log.lines().collect();
    ensure!(lines.len() == 8, "the log should have 8 lines:\n{log}");
    let mut at = 0;
    for group in expected {
        let mut got: Vec<&str> = lines[at..at + group.len()].to_vec();
        got.sort_unstable_by_key(|l| group.iter().position(|w| l.contains(w)));
        ensure!(
            got.iter().zip(group).all(|(l, w)| l.contains(w)),
            "line {} of the log should be {group:?}:\n{log}",
            at + 1
        );
        at += group.len();
    }

    let exit = server.terminate().await?;
    ensure!(exit.success(), "serve exited with {exit} after SIGTERM");
    drop(server);

    let server = Launch::serve(&data_dir, FIXTURE_TESTS, &[]).spawn().await?;
    let (status, list) = server.get("/api/runs").await?;
    ensure!(
        status == 200 && list["runs"] == json!([run]),
        "GET /api/runs after the restart should list the run as it was:\nbefore: {run}\nafter: {list}"
    );
    let again = server.run(1).await?;
    ensure!(
        again == run,
        "run 1 changed over the restart:\nbefore: {run}\nafter: {again}"
    );
    let (_, log_again) = server.wait_run_finished(1).await?;
    ensure!(
        log_again == log,
        "run 1's log changed over the restart:\nbefore:\n{log}\nafter:\n{log_again}"
    );

    // A new run continues the numbering: it cannot append to run 1's log.
    let next = server.create_run("ann", 2, &["pass.sh"]).await?;
    ensure!(
        next["id"] == 2,
        "the first run after a restart reused an id: {next}"
    );
    let (next, _) = server.wait_run_finished(2).await?;
    ensure!(next["status"] == "passed", "{next}");
    let response = server
        .http()
        .get(server.at("/api/runs/1/log"))
        .send()
        .await?;
    ensure!(response.status() == 200, "GET /api/runs/1/log");
    ensure!(
        response.text().await? == log,
        "run 1's log changed after run 2"
    );
    Ok(())
}
