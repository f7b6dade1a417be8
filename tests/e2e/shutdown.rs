//! SIGTERM and SIGINT stop the sink gracefully (SPEC "One process, one port"): waiters are
//! answered `503 shutting_down` at once, the process exits 0, the log is flushed.

use anyhow::{Context as _, ensure};
use serde_json::json;

use crate::helpers::{EXIT_TIMEOUT, Launch, PROMPTLY, error_message, read, spawn_eventual};

#[tokio::test]
async fn sigterm_answers_a_long_poll_with_503_shutting_down_and_exits_0() -> anyhow::Result<()> {
    // tower_http's debug line tells us when the long-poll is inside the server, so the signal
    // is sent only once it is waiting (no sleep, no race with the accept loop).
    let mut server = Launch::new(&["sink"])
        .env("EVENTUAL_LOG", "info,tower_http=debug")
        .spawn()
        .await?;
    let waiter = tokio::spawn({
        let (http, url) = (server.http().clone(), server.at("/callbacks/x?wait=60s"));
        async move { read(http.get(url).send().await?).await }
    });
    server
        .wait_for_stderr("the long-poll reaching the server", |line| {
            line.contains("/callbacks/x?wait=60s") && line.contains("started processing request")
        })
        .await?;

    server.signal("TERM")?;
    let (status, body) = tokio::time::timeout(PROMPTLY, waiter)
        .await
        .context("the long-poll was not answered promptly after SIGTERM")???;
    ensure!(status == 503, "the waiter got {status}: {body}");
    error_message(&body, "shutting_down")?;
    let exit = server.wait_exit(EXIT_TIMEOUT).await?;
    ensure!(exit.success(), "the sink exited with {exit} after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn sigint_stops_the_sink_with_exit_0() -> anyhow::Result<()> {
    let mut server = spawn_eventual(&["sink"]).await?;
    let (status, _) = server.get("/healthz").await?;
    ensure!(status == 200, "healthz answered {status}");
    server.signal("INT")?;
    let exit = server.wait_exit(EXIT_TIMEOUT).await?;
    ensure!(exit.success(), "the sink exited with {exit} after SIGINT");
    Ok(())
}

/// The handlers are in place before the port is announced: a supervisor that stops the sink the
/// moment it is up gets the graceful stop (exit 0), never the default kill by the signal. The
/// window this guards was a few microseconds wide, so the test tries it many times.
#[tokio::test]
async fn a_signal_as_soon_as_the_port_is_announced_is_a_graceful_stop() -> anyhow::Result<()> {
    for (attempt, signal) in ["TERM", "INT"].into_iter().cycle().take(20).enumerate() {
        let mut server = spawn_eventual(&["sink"]).await?;
        server.signal(signal)?;
        let exit = server.wait_exit(EXIT_TIMEOUT).await?;
        ensure!(
            exit.success(),
            "attempt {attempt}: the sink exited with {exit} after SIG{signal} right at startup"
        );
    }
    Ok(())
}

#[tokio::test]
async fn callbacks_posted_before_sigterm_are_there_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    let args = ["sink", "--data-dir", &data_dir];
    let mut server = spawn_eventual(&args).await?;
    for i in 1..=5 {
        let (status, answer) = server.post_json("order-1", &json!({ "step": i })).await?;
        ensure!(
            status == 200 && answer["seq"] == i,
            "post {i}: {status} {answer}"
        );
    }
    let (status, _) = server.post_json("order-2", &json!("text")).await?;
    ensure!(status == 200, "post to order-2 answered {status}");
    let exit = server.terminate().await?;
    ensure!(exit.success(), "the sink exited with {exit} after SIGTERM");

    let server = spawn_eventual(&args).await?;
    let records = server.all("order-1").await?;
    let steps: Vec<_> = records
        .iter()
        .map(|r| (r["seq"].clone(), r["body"]["step"].clone()))
        .collect();
    let expected: Vec<_> = (1..=5).map(|i| (json!(i), json!(i))).collect();
    ensure!(steps == expected, "order-1 after the restart: {records:?}");
    let (status, latest) = server.get("/callbacks/order-2").await?;
    ensure!(
        status == 200 && latest["body"] == "text" && latest["seq"] == 1,
        "order-2 after the restart: {status} {latest}"
    );
    Ok(())
}
