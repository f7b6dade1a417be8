//! The client commands CI scripts rely on: `eventual run` (streamed log, summary, exit codes),
//! `upload`, `runs`, `show` — against a real `eventual serve`.

use anyhow::ensure;
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

use crate::helpers::{CLI_TIMEOUT, FIXTURE_TESTS, Launch, cli, text};

#[tokio::test]
async fn run_streams_the_log_prints_a_summary_and_exits_0_only_when_the_run_passed()
-> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;

    let passed = cli(&server, &["run", "--user", "ci", "--env", "1", "pass.sh"]).await?;
    let (out, err) = (text(&passed.stdout), text(&passed.stderr));
    ensure!(
        passed.status.code() == Some(0),
        "exit {:?}\n{out}\n{err}",
        passed.status
    );
    ensure!(
        out.contains(" --- start pass.sh (1/1)") && out.contains(" out hello from 1 on env 1"),
        "{out}"
    );
    ensure!(out.contains("run 1 on env 1 by ci: passed"), "{out}");
    ensure!(err.contains("run 1 submitted on env 1"), "{err}");

    let failed = cli(
        &server,
        &["run", "--user", "ci", "--env", "1", "pass.sh", "fail.sh"],
    )
    .await?;
    let out = text(&failed.stdout);
    ensure!(
        failed.status.code() == Some(1),
        "a failed run exits 1: {:?}\n{}",
        failed.status,
        text(&failed.stderr)
    );
    ensure!(
        out.contains("failed") && out.contains("fail.sh"),
        "per-test summary: {out}"
    );

    let bad = cli(&server, &["run", "--user", "", "--env", "0", "nope.sh"]).await?;
    let err = text(&bad.stderr);
    ensure!(
        bad.status.code() == Some(2),
        "usage errors exit 2: {:?}",
        bad.status
    );
    ensure!(
        err.lines().count() == 1 && err.starts_with("error: invalid_fields: "),
        "one readable line, not a JSON dump: {err}"
    );

    let unreachable = Launch::client(&["runs", "--url", "http://127.0.0.1:1"])
        .output(CLI_TIMEOUT)
        .await?;
    ensure!(
        unreachable.status.code() == Some(2),
        "connection errors exit 2"
    );
    ensure!(text(&unreachable.stderr).contains("failed to reach the server at http://127.0.0.1:1"));
    Ok(())
}

#[tokio::test]
async fn run_says_where_a_queued_run_waits() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    server
        .http()
        .post(server.at("/api/envs/3/pause"))
        .send()
        .await?;
    let holder = server.create_run("ann", 3, &["pass.sh"]).await?;
    ensure!(holder["status"] == "queued");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventual"))
        .args([
            "run",
            "--user",
            "bob",
            "--env",
            "3",
            "pass.sh",
            "--url",
            &server.url,
        ])
        .env_remove("EVENTUAL_URL")
        .env_remove("EVENTUAL_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    let queued = tokio::time::timeout(CLI_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("queued on env") {
                return Ok::<_, anyhow::Error>(line);
            }
        }
        anyhow::bail!("the CLI never said where the run waits")
    })
    .await??;
    ensure!(
        queued == "queued on env 3 behind run 1 (position 2, paused)",
        "{queued}"
    );
    // Only now let the environment go: the run then starts and passes.
    server
        .http()
        .post(server.at("/api/envs/3/resume"))
        .send()
        .await?;
    let status = tokio::time::timeout(CLI_TIMEOUT, child.wait()).await??;
    ensure!(status.code() == Some(0), "{status}");
    Ok(())
}

#[tokio::test]
async fn upload_runs_and_show_work_for_scripts() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    let file = data.path().join("nightly.sh");
    std::fs::write(&file, "echo nightly\n")?;
    let file = file.to_string_lossy().into_owned();

    let up = cli(&server, &["upload", &file, "--dir", "team/nightly"]).await?;
    ensure!(
        up.status.code() == Some(0) && text(&up.stdout).trim() == "team/nightly/nightly.sh",
        "{}",
        text(&up.stderr)
    );
    let again = cli(&server, &["upload", &file, "--dir", "team/nightly"]).await?;
    ensure!(again.status.code() == Some(2));
    ensure!(
        text(&again.stderr).starts_with("error: conflict: "),
        "{}",
        text(&again.stderr)
    );
    let over = cli(
        &server,
        &["upload", &file, "--dir", "team/nightly", "--overwrite"],
    )
    .await?;
    ensure!(over.status.code() == Some(0));

    let ran = cli(
        &server,
        &[
            "run",
            "--user",
            "ci",
            "--env",
            "2",
            "team/nightly/nightly.sh",
        ],
    )
    .await?;
    ensure!(ran.status.code() == Some(0), "{}", text(&ran.stderr));

    let listed = cli(&server, &["runs", "--json", "--user", "ci"]).await?;
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    let runs = listed["runs"].as_array().cloned().unwrap_or_default();
    ensure!(runs.len() == 1 && runs[0]["status"] == "passed", "{listed}");
    let table = cli(&server, &["runs"]).await?;
    ensure!(text(&table.stdout).contains("team/nightly/nightly.sh"));

    let shown = cli(&server, &["show", "1", "--log"]).await?;
    ensure!(shown.status.code() == Some(0));
    ensure!(
        text(&shown.stdout).contains(" out nightly"),
        "{}",
        text(&shown.stdout)
    );
    let missing = cli(&server, &["show", "99"]).await?;
    ensure!(missing.status.code() == Some(2));
    ensure!(text(&missing.stderr).starts_with("error: not_found: "));
    Ok(())
}

#[tokio::test]
async fn run_env_any_rerun_failed_cancel_and_logs_work_as_ci_scripts_use_them() -> anyhow::Result<()>
{
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;

    // --env any: the first free environment.
    let first = cli(
        &server,
        &["run", "--user", "ci", "--env", "any", "pass.sh", "fail.sh"],
    )
    .await?;
    let out = text(&first.stdout);
    ensure!(
        first.status.code() == Some(1),
        "{out}{}",
        text(&first.stderr)
    );
    ensure!(out.contains("run 1 on env 1 by ci: failed"), "{out}");
    let bad_env = cli(
        &server,
        &["run", "--user", "ci", "--env", "some", "pass.sh"],
    )
    .await?;
    ensure!(
        bad_env.status.code() == Some(2),
        "{}",
        text(&bad_env.stderr)
    );
    ensure!(text(&bad_env.stderr).contains("give its number, or `any`"));

    // rerun --failed: only fail.sh again, printed on stdout.
    let again = cli(&server, &["rerun", "1", "--failed"]).await?;
    let (out, err) = (text(&again.stdout), text(&again.stderr));
    ensure!(again.status.code() == Some(0), "{out}{err}");
    ensure!(
        err.contains("run 2 submitted on env 1 (a rerun of 1)"),
        "{err}"
    );
    ensure!(
        out.contains("run 2 on env 1 by ci") && out.contains("fail.sh"),
        "{out}"
    );
    ensure!(!out.contains("pass.sh"), "only what failed: {out}");
    let json = cli(&server, &["rerun", "1", "--json"]).await?;
    let run: Value = serde_json::from_slice(&json.stdout)?;
    ensure!(run["tests"].as_array().map(Vec::len) == Some(2), "{run}");

    // cancel: a run queued behind a paused environment; logs prints its log.
    let paused = server
        .http()
        .post(server.at("/api/envs/4/pause"))
        .send()
        .await?;
    ensure!(paused.status() == 200, "pause: {}", paused.status());
    let queued = server.create_run("ci", 4, &["pass.sh"]).await?;
    let id = queued["id"].as_i64().unwrap_or_default().to_string();
    let cancelled = cli(&server, &["cancel", &id]).await?;
    let out = text(&cancelled.stdout);
    ensure!(
        cancelled.status.code() == Some(0),
        "{out}{}",
        text(&cancelled.stderr)
    );
    ensure!(
        out.contains(&format!("run {id} on env 4 by ci: cancelled")),
        "{out}"
    );
    let again = cli(&server, &["cancel", &id]).await?;
    ensure!(
        again.status.code() == Some(2),
        "a finished run cannot be cancelled"
    );
    ensure!(
        text(&again.stderr).starts_with("error: conflict: "),
        "{}",
        text(&again.stderr)
    );
    let logs = cli(&server, &["logs", &id, "--follow"]).await?;
    ensure!(logs.status.code() == Some(0));
    ensure!(
        text(&logs.stdout).contains("--- cancelled while queued"),
        "{}",
        text(&logs.stdout)
    );
    Ok(())
}
