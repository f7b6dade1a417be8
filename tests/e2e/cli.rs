//! The command line (SPEC "Command line", "One process, one port"): `serve`'s refusal to bind
//! beyond loopback without `--token`, `eventual wait`'s output and exit codes, duration flags
//! that take bare seconds, and what `--help` says.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::helpers::{Launch, Running, error_message, spawn_eventual};

/// How long a client command may take beyond its own `--timeout`.
const CLIENT_SLACK: Duration = Duration::from_secs(20);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn serve_refuses_to_bind_beyond_loopback_without_a_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?;
    let out = Launch::new(&["serve", "--data-dir", data_dir])
        .bind("0.0.0.0:0")
        .output(CLIENT_SLACK)
        .await?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure!(
        !out.status.success(),
        "serve on 0.0.0.0 without --token exited with {}; stdout: {stdout}",
        out.status
    );
    ensure!(
        !stdout.contains("listening on"),
        "serve claimed to listen although it refused: {stdout}"
    );
    ensure!(
        stderr.contains("--token") && stderr.contains("127.0.0.1"),
        "stderr does not explain the refusal (name --token and the loopback alternative):\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn serve_binds_beyond_loopback_with_a_token_and_guards_reads_with_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?;
    let server = Launch::new(&["serve", "--data-dir", data_dir, "--token", "s3cret"])
        .bind("0.0.0.0:0")
        .spawn()
        .await?;
    ensure!(
        server.listening.starts_with("http://0.0.0.0:"),
        "serve listens on {} rather than 0.0.0.0",
        server.listening
    );
    let (status, answer) = server.post_json("guarded", &json!({ "ok": true })).await?;
    ensure!(
        status == 200,
        "posting a callback answered {status}: {answer}"
    );

    let (status, body) = server.get("/callbacks/guarded").await?;
    ensure!(
        status == 401,
        "a read without the token answered {status}: {body}"
    );
    error_message(&body, "unauthorized")?;
    let response = server
        .http()
        .get(server.at("/callbacks/guarded"))
        .bearer_auth("s3cret")
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "a read with the token answered {}",
        response.status()
    );
    Ok(())
}

/// `eventual wait ARGS… --url URL`.
fn wait_command(server_url: &str, args: &[&str]) -> Launch {
    let mut all = vec!["wait"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", server_url]);
    Launch::client(&all)
}

/// The record `eventual wait` printed, checked to be one JSON document.
fn printed_record(stdout: &[u8]) -> anyhow::Result<Value> {
    serde_json::from_slice(stdout)
        .with_context(|| format!("eventual wait printed no JSON record: {:?}", text(stdout)))
}

#[tokio::test]
async fn wait_exits_1_with_a_readable_error_when_nothing_arrives() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink"]).await?;
    let out = wait_command(&server.url, &["nothing-here", "--timeout", "300ms"])
        .output(CLIENT_SLACK)
        .await?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "wait exited with {} on a timeout; stderr: {stderr}",
        out.status
    );
    ensure!(
        out.stdout.is_empty(),
        "wait printed {:?} on a timeout",
        text(&out.stdout)
    );
    ensure!(
        stderr.starts_with("error:")
            && stderr.contains("nothing-here")
            && stderr.contains("300ms")
            && stderr.lines().count() == 1,
        "the timeout error should be one line naming the key and the wait:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn wait_prints_the_record_when_a_callback_arrives_while_it_waits() -> anyhow::Result<()> {
    // The server's request log shows when the long-poll is waiting, so the post lands after it.
    let server = Launch::new(&["sink"])
        .env("EVENTUAL_LOG", "info,tower_http=debug")
        .spawn()
        .await?;
    let waiting = tokio::spawn(
        wait_command(&server.url, &["job-7", "--timeout", "30s"]).output(CLIENT_SLACK * 3),
    );
    server
        .wait_for_stderr("the wait's long-poll reaching the server", |line| {
            line.contains("/callbacks/job-7/all?wait=")
                && line.contains("started processing request")
        })
        .await?;
    post_result(&server, "job-7").await?;

    let out = waiting.await??;
    ensure!(
        out.status.success(),
        "wait exited with {}; stderr: {}",
        out.status,
        text(&out.stderr)
    );
    check_record(&printed_record(&out.stdout)?, "job-7")
}

#[tokio::test]
async fn wait_prints_a_record_that_arrived_before_it_started() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink"]).await?;
    post_result(&server, "job-8").await?;
    let out = wait_command(&server.url, &["job-8", "--timeout", "30s"])
        .output(CLIENT_SLACK * 3)
        .await?;
    ensure!(
        out.status.success(),
        "wait exited with {}; stderr: {}",
        out.status,
        text(&out.stderr)
    );
    check_record(&printed_record(&out.stdout)?, "job-8")
}

#[tokio::test]
async fn wait_prints_the_body_with_its_key_order_and_numbers_as_sent() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink"]).await?;
    let sent = r#"{"zeta":1,"alpha":2,"big":123456789012345678901234567890,"price":1.50}"#;
    let response = server
        .http()
        .post(server.at("/callbacks/ordered"))
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "post answered {}",
        response.status()
    );

    // The server itself keeps the body verbatim inside the record…
    let stored = server
        .http()
        .get(server.at("/callbacks/ordered"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        stored.contains(sent),
        "GET does not hold the body as sent: {stored}"
    );

    // …and so must what `eventual wait` prints (pretty-printed whitespace aside), also in the
    // `/all` shape of --count.
    for extra in [&[][..], &["--count", "1"][..]] {
        let mut args = vec!["ordered", "--timeout", "5s"];
        args.extend_from_slice(extra);
        let out = wait_command(&server.url, &args)
            .output(CLIENT_SLACK)
            .await?;
        ensure!(
            out.status.success(),
            "wait {args:?} exited with {}",
            out.status
        );
        let printed: String = text(&out.stdout).split_whitespace().collect();
        ensure!(
            printed.contains(sent),
            "eventual wait {args:?} printed the body as\n{}\nrather than as sent:\n{sent}",
            text(&out.stdout)
        );
    }
    Ok(())
}

#[tokio::test]
async fn wait_prints_a_record_whose_body_nests_deeper_than_128_levels() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink"]).await?;
    let depth = 2000;
    let sent = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let response = server
        .http()
        .post(server.at("/callbacks/deep"))
        .header("content-type", "application/json")
        .body(sent.clone())
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "post answered {}",
        response.status()
    );
    let out = wait_command(&server.url, &["deep", "--timeout", "5s"])
        .output(CLIENT_SLACK)
        .await?;
    ensure!(
        out.status.success(),
        "wait exited with {}; stderr: {}",
        out.status,
        text(&out.stderr)
    );
    let printed: String = text(&out.stdout).split_whitespace().collect();
    ensure!(
        printed.contains(&sent),
        "the body as sent, {depth} levels deep"
    );
    Ok(())
}

#[tokio::test]
async fn wait_exits_2_when_the_server_is_unreachable() -> anyhow::Result<()> {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = wait_command(&url, &["k", "--timeout", "5s"])
        .output(CLIENT_SLACK)
        .await?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "wait exited with {} against an unreachable server; stderr: {stderr}",
        out.status
    );
    ensure!(
        stderr.starts_with("error:") && stderr.contains(&url),
        "the error should name the URL it could not reach:\n{stderr}"
    );
    Ok(())
}

async fn post_result(server: &Running, key: &str) -> anyhow::Result<()> {
    let (status, answer) = server
        .post_json(key, &json!({ "status": "done", "result": [1, 2, 3] }))
        .await?;
    ensure!(status == 200, "post answered {status}: {answer}");
    Ok(())
}

fn check_record(record: &Value, key: &str) -> anyhow::Result<()> {
    ensure!(
        record["key"] == key
            && record["seq"] == 1
            && record["method"] == "POST"
            && record["body"] == json!({ "status": "done", "result": [1, 2, 3] }),
        "eventual wait printed an unexpected record: {record}"
    );
    Ok(())
}

#[tokio::test]
async fn wait_takes_a_bare_number_of_seconds_as_its_timeout() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink"]).await?;
    let out = wait_command(&server.url, &["nothing-yet", "--timeout", "1"])
        .output(CLIENT_SLACK)
        .await?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "`--timeout 1` should wait one second and time out (exit 1), not be refused; exit {}:\n{stderr}",
        out.status
    );
    ensure!(
        stderr.starts_with("error:") && stderr.contains("1s") && out.stdout.is_empty(),
        "the timeout error should say it waited 1s:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn every_duration_flag_of_serve_and_sink_takes_a_bare_number_of_seconds() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?;
    let _serve = Launch::new(&[
        "serve",
        "--data-dir",
        data_dir,
        "--test-timeout",
        "120",
        "--kill-grace",
        "1",
        "--retention",
        "3600",
        "--await-timeout",
        "600",
        "--fsync",
        "2",
    ])
    .spawn()
    .await
    .context("serve refused bare seconds as durations")?;
    let _sink = Launch::new(&["sink", "--retention", "60"])
        .env("EVENTUAL_FSYNC", "0.5")
        .spawn()
        .await
        .context("sink refused bare seconds as durations")?;
    Ok(())
}

#[tokio::test]
async fn a_bare_number_for_test_timeout_means_seconds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?;
    let server = Launch::new(&[
        "serve",
        "--data-dir",
        data_dir,
        "--sample-tests",
        crate::helpers::FIXTURE_TESTS,
        "--envs",
        "1",
        "--test-timeout",
        "1",
        "--kill-grace",
        "1",
    ])
    .spawn()
    .await?;
    let run = server.create_run("ci", 1, &["hang.sh"]).await?;
    let (run, log) = server
        .wait_run_finished(run["id"].as_i64().context("id")?)
        .await?;
    ensure!(
        run["status"] == "timed_out",
        "hang.sh with --test-timeout 1 should time out after a second: {run}\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn help_says_a_bare_number_is_seconds_for_duration_flags() -> anyhow::Result<()> {
    for command in ["wait", "serve", "sink"] {
        let out = Launch::client(&[command, "--help"])
            .output(CLIENT_SLACK)
            .await?;
        let help = text(&out.stdout);
        ensure!(
            out.status.success(),
            "{command} --help exited {}",
            out.status
        );
        ensure!(
            help.contains("a bare number is seconds"),
            "`eventual {command} --help` does not say durations take bare seconds:\n{help}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn serve_help_describes_the_sink_harness_and_web_ui_on_one_port() -> anyhow::Result<()> {
    let top = Launch::client(&["--help"]).output(CLIENT_SLACK).await?;
    let serve = Launch::client(&["serve", "--help"])
        .output(CLIENT_SLACK)
        .await?;
    let sink = Launch::client(&["sink", "--help"])
        .output(CLIENT_SLACK)
        .await?;
    let (top, serve, sink) = (text(&top.stdout), text(&serve.stdout), text(&sink.stdout));
    for (what, help) in [("eventual --help", &top), ("eventual serve --help", &serve)] {
        ensure!(
            !help.contains("today:") && !help.contains("join it"),
            "`{what}` still says the harness and web UI will join later:\n{help}"
        );
        ensure!(
            help.contains("harness") && help.contains("web UI"),
            "`{what}` does not say serve runs the harness and the web UI:\n{help}"
        );
    }
    ensure!(
        !serve.contains("the sink's callback log")
            && serve.contains("run history")
            && serve.contains("uploaded tests"),
        "serve's --data-dir help should say it holds callbacks, run history, logs and uploads:\n{serve}"
    );
    ensure!(
        sink.contains("callbacks") && !sink.contains("run history"),
        "sink's --data-dir holds only callbacks:\n{sink}"
    );
    Ok(())
}
