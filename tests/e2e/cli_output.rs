//! What each client command prints where (issue 10): its answer on stdout, progress and
//! diagnostics on stderr, so `eventual show 14 | grep failed` and `eventual run … | tee` work; and
//! its JSON in the API's shape (`runs --json` is `GET /api/runs`, `show --json` is
//! `GET /api/runs/{id}`, `wait --count N` is `GET /callbacks/{key}/all`).

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::helpers::{CLI_TIMEOUT, FIXTURE_TESTS, Launch, Running, cli, spawn_eventual, text};

/// stdout parsed as one JSON document.
fn json_of(out: &std::process::Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "stdout is not one JSON document:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// A per-test summary line (`  failed         3    0.012s  fail.sh`), as `grep` would find it.
fn has_summary_line(out: &str, status: &str, path: &str) -> bool {
    out.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.first() == Some(&status) && words.last() == Some(&path)
    })
}

async fn serve() -> anyhow::Result<(tempfile::TempDir, Running)> {
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    Ok((data, server))
}

#[tokio::test]
async fn run_prints_its_log_and_summary_on_stdout_and_its_progress_on_stderr() -> anyhow::Result<()>
{
    let (_data, server) = serve().await?;
    let ran = cli(
        &server,
        &["run", "--user", "ci", "--env", "1", "pass.sh", "fail.sh"],
    )
    .await?;
    let (out, err) = (text(&ran.stdout), text(&ran.stderr));
    ensure!(
        ran.status.code() == Some(1),
        "exit {:?}\n{out}\n{err}",
        ran.status
    );
    ensure!(
        out.contains(" --- start pass.sh (1/2)") && out.contains(" out hello from 1 on env 1"),
        "the streamed log belongs on stdout:\nstdout:\n{out}\nstderr:\n{err}"
    );
    ensure!(
        out.contains("run 1 on env 1 by ci: failed")
            && has_summary_line(&out, "passed", "pass.sh")
            && has_summary_line(&out, "failed", "fail.sh"),
        "the final summary belongs on stdout:\nstdout:\n{out}\nstderr:\n{err}"
    );
    ensure!(
        err.contains("run 1 submitted on env 1") && !out.contains("submitted"),
        "`run N submitted` is progress, for stderr only:\nstdout:\n{out}\nstderr:\n{err}"
    );
    ensure!(
        !err.contains("by ci: failed") && !has_summary_line(&err, "failed", "fail.sh"),
        "the summary is not printed twice:\nstderr:\n{err}"
    );
    Ok(())
}

#[tokio::test]
async fn show_prints_its_summary_on_stdout_so_grep_finds_it() -> anyhow::Result<()> {
    let (_data, server) = serve().await?;
    let run = server.create_run("ci", 1, &["pass.sh", "fail.sh"]).await?;
    server
        .wait_run_finished(run["id"].as_i64().context("id")?)
        .await?;

    let shown = cli(&server, &["show", "1"]).await?;
    let (out, err) = (text(&shown.stdout), text(&shown.stderr));
    ensure!(
        shown.status.code() == Some(1),
        "a failed run's show exits 1: {:?}",
        shown.status
    );
    ensure!(
        out.contains("run 1 on env 1 by ci: failed") && has_summary_line(&out, "failed", "fail.sh"),
        "`eventual show 1 | grep failed` finds nothing:\nstdout:\n{out}\nstderr:\n{err}"
    );
    ensure!(
        err.is_empty(),
        "show wrote to stderr without an error:\n{err}"
    );

    let with_log = cli(&server, &["show", "1", "--log"]).await?;
    let out = text(&with_log.stdout);
    ensure!(
        has_summary_line(&out, "failed", "fail.sh") && out.contains(" out about to fail"),
        "show --log prints the summary and then the log, both on stdout:\n{out}"
    );
    ensure!(with_log.stderr.is_empty(), "{}", text(&with_log.stderr));
    Ok(())
}

#[tokio::test]
async fn show_json_with_log_prints_one_json_object_holding_the_log() -> anyhow::Result<()> {
    let (_data, server) = serve().await?;
    let run = server.create_run("ci", 2, &["pass.sh"]).await?;
    let (_, log) = server
        .wait_run_finished(run["id"].as_i64().context("id")?)
        .await?;

    let shown = cli(&server, &["show", "1", "--json", "--log"]).await?;
    ensure!(
        shown.status.code() == Some(0),
        "exit {:?}: {}",
        shown.status,
        text(&shown.stderr)
    );
    let mut printed = json_of(&shown)?;
    let printed_log = printed
        .as_object_mut()
        .and_then(|o| o.remove("log"))
        .with_context(|| format!("no `log` field in {printed}"))?;
    ensure!(
        printed_log == Value::String(log.clone()),
        "the `log` field is not the run's log:\n{printed_log}\nlog:\n{log}"
    );
    let api = server.run(1).await?;
    ensure!(
        printed == api,
        "beside `log`, show --json --log is not GET /api/runs/1:\n{printed}\n{api}"
    );
    Ok(())
}

#[tokio::test]
async fn show_json_prints_the_api_run_object_unchanged() -> anyhow::Result<()> {
    let (_data, server) = serve().await?;
    // A queued run: the API adds `queue_position`, which the CLI must not drop.
    let paused = server
        .http()
        .post(server.at("/api/envs/3/pause"))
        .send()
        .await?;
    ensure!(paused.status() == 200, "pause answered {}", paused.status());
    server.create_run("ann", 3, &["pass.sh"]).await?;
    server.create_run("bob", 3, &["pass.sh"]).await?;

    let shown = cli(&server, &["show", "2", "--json"]).await?;
    ensure!(
        shown.status.code() == Some(0),
        "exit {:?}: {}",
        shown.status,
        text(&shown.stderr)
    );
    let printed = json_of(&shown)?;
    let api = server.run(2).await?;
    ensure!(
        api.get("queue_position").is_some(),
        "the API shows no queue position: {api}"
    );
    ensure!(
        printed == api,
        "show --json is not GET /api/runs/2:\nCLI: {printed}\nAPI: {api}"
    );
    ensure!(shown.stderr.is_empty(), "{}", text(&shown.stderr));
    Ok(())
}

#[tokio::test]
async fn runs_json_prints_the_api_shape_a_runs_list_in_an_object() -> anyhow::Result<()> {
    let (_data, server) = serve().await?;
    let run = server.create_run("ci", 1, &["pass.sh"]).await?;
    server
        .wait_run_finished(run["id"].as_i64().context("id")?)
        .await?;
    server.create_run("other", 2, &["pass.sh"]).await?;

    let listed = cli(&server, &["runs", "--json", "--user", "ci"]).await?;
    ensure!(
        listed.status.code() == Some(0),
        "exit {:?}: {}",
        listed.status,
        text(&listed.stderr)
    );
    let printed = json_of(&listed)?;
    let (status, api) = server.get("/api/runs?username=ci&limit=20").await?;
    ensure!(status == 200, "GET /api/runs answered {status}: {api}");
    ensure!(
        printed == api,
        "runs --json is not GET /api/runs:\nCLI: {printed}\nAPI: {api}"
    );
    ensure!(
        printed["runs"].as_array().is_some_and(|r| r.len() == 1),
        "expected {{\"runs\": [one run]}}: {printed}"
    );
    Ok(())
}

#[tokio::test]
async fn wait_with_count_prints_the_all_shape_whatever_the_count() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink"]).await?;
    for n in 1..=2 {
        let (status, ack) = server.post_json("job-9", &json!({ "n": n })).await?;
        ensure!(status == 200, "post answered {status}: {ack}");
    }
    let (_, all) = server.get("/callbacks/job-9/all").await?;
    let (_, latest) = server.get("/callbacks/job-9").await?;

    for count in ["1", "2"] {
        let out = Launch::client(&["wait", "job-9", "--count", count, "--url", &server.url])
            .output(CLI_TIMEOUT)
            .await?;
        ensure!(
            out.status.success(),
            "wait --count {count}: {}",
            text(&out.stderr)
        );
        let printed = json_of(&out)?;
        ensure!(
            printed == all,
            "wait --count {count} is not GET /callbacks/job-9/all:\nCLI: {printed}\nAPI: {all}"
        );
    }

    // Without --count: the record, as SPEC says.
    let out = Launch::client(&["wait", "job-9", "--url", &server.url])
        .output(CLI_TIMEOUT)
        .await?;
    ensure!(out.status.success(), "wait: {}", text(&out.stderr));
    let printed = json_of(&out)?;
    ensure!(
        printed == latest,
        "wait without --count is not the record:\nCLI: {printed}\nAPI: {latest}"
    );
    Ok(())
}

#[tokio::test]
async fn upload_of_an_existing_test_tells_the_user_to_pass_overwrite() -> anyhow::Result<()> {
    let (data, server) = serve().await?;
    let file = data.path().join("x.sh");
    std::fs::write(&file, "echo x\n")?;
    let file = file.to_string_lossy().into_owned();
    let first = cli(&server, &["upload", &file, "--dir", "team-a"]).await?;
    ensure!(first.status.code() == Some(0), "{}", text(&first.stderr));
    ensure!(
        text(&first.stdout) == "team-a/x.sh\n",
        "{}",
        text(&first.stdout)
    );

    let again = cli(&server, &["upload", &file, "--dir", "team-a"]).await?;
    let (out, err) = (text(&again.stdout), text(&again.stderr));
    ensure!(
        again.status.code() == Some(2),
        "exit {:?}: {err}",
        again.status
    );
    ensure!(out.is_empty(), "a refused upload printed on stdout: {out}");
    ensure!(
        err == "error: conflict: team-a/x.sh exists already; pass --overwrite to replace it\n",
        "the CLI should name its own flag, not the form field:\n{err}"
    );
    Ok(())
}
