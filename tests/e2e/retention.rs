//! `--retention`: callbacks older than the TTL are forgotten, and stay forgotten after a restart.
//!
//! The server's expiry timer is not observable except through the API, so these tests poll it
//! with a deadline: a bounded wait on observable state, not a sleep that hopes to be long enough.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::json;

use crate::helpers::{Running, error_message, spawn_eventual};

/// Far longer than the 300 ms TTL, so only a real failure to expire hits it.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Polls `GET /callbacks/{key}` until it answers 404, within [`EXPIRY_DEADLINE`].
async fn wait_until_gone(server: &Running, key: &str) -> anyhow::Result<Duration> {
    let started = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(POLL_EVERY);
    loop {
        poll.tick().await;
        let (status, body) = server.get(&format!("/callbacks/{key}")).await?;
        match status {
            404 => {
                error_message(&body, "not_found")?;
                return Ok(started.elapsed());
            }
            200 => {}
            other => bail!("GET /callbacks/{key} answered {other}: {body}"),
        }
        if started.elapsed() > EXPIRY_DEADLINE {
            bail!(
                "{key} was still there {EXPIRY_DEADLINE:?} after it was posted with --retention 300ms"
            );
        }
    }
}

#[tokio::test]
async fn a_callback_is_gone_once_its_retention_has_passed() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink", "--retention", "300ms"]).await?;
    let (status, answer) = server
        .post_json("short-lived", &json!({ "ok": true }))
        .await?;
    ensure!(status == 200, "post answered {status}: {answer}");
    let (status, latest) = server.get("/callbacks/short-lived").await?;
    ensure!(
        status == 200,
        "the callback was not readable right after it was posted: {status} {latest}"
    );

    let took = wait_until_gone(&server, "short-lived").await?;
    eprintln!("expired after {took:?}");
    let (status, listing) = server.get("/callbacks?prefix=short").await?;
    ensure!(
        status == 200 && listing["keys"] == json!([]),
        "the expired key is still listed: {status} {listing}"
    );
    let records = server.all("short-lived").await?;
    ensure!(
        records.is_empty(),
        "/all still holds expired records: {records:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_callback_does_not_come_back_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    let args = ["sink", "--data-dir", &data_dir, "--retention", "300ms"];

    let mut server = spawn_eventual(&args).await?;
    let (status, answer) = server.post_json("expiring", &json!(1)).await?;
    ensure!(status == 200, "post answered {status}: {answer}");
    wait_until_gone(&server, "expiring").await?;
    ensure!(
        server.terminate().await?.success(),
        "the sink did not exit 0"
    );

    let server = spawn_eventual(&args).await?;
    let (status, body) = server.get("/callbacks/expiring").await?;
    ensure!(
        status == 404,
        "the expired callback came back after a restart: {status} {body}"
    );
    Ok(())
}
