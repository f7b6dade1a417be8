//! Capacity and body limits (`--max-callbacks`, `--max-body`) and their `EVENTUAL_*` variables:
//! a full sink refuses with `507` rather than evicting (SPEC "The sink").

use anyhow::{Context as _, ensure};
use serde_json::json;

use crate::helpers::{Launch, Running, error_message, read, spawn_eventual};

/// Posts `n` callbacks that must all be accepted.
async fn fill(server: &Running, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let (status, answer) = server
            .post_json(&format!("cap-{i}"), &json!({ "i": i }))
            .await?;
        ensure!(
            status == 200,
            "post #{i} of {n} answered {status}: {answer}"
        );
    }
    Ok(())
}

/// Posts a raw body of `len` bytes to `/callbacks/{key}`.
async fn post_bytes(
    server: &Running,
    key: &str,
    len: usize,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = server
        .http()
        .post(server.at(&format!("/callbacks/{key}")))
        .header("content-type", "text/plain")
        .body("x".repeat(len))
        .send()
        .await?;
    read(response).await
}

#[tokio::test]
async fn a_full_sink_refuses_with_507_until_keys_are_deleted() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink", "--max-callbacks", "3"]).await?;
    fill(&server, 3).await?;

    let (status, body) = server.post_json("cap-one-more", &json!({})).await?;
    ensure!(status == 507, "the 4th callback answered {status}: {body}");
    let message = error_message(&body, "sink_full")?;
    ensure!(
        message.contains("--max-callbacks"),
        "the message does not say how to raise the capacity: {message}"
    );
    // Nothing was evicted to make room.
    for i in 0..3 {
        let (status, _) = server.get(&format!("/callbacks/cap-{i}")).await?;
        ensure!(
            status == 200,
            "cap-{i} is gone after a refused post ({status})"
        );
    }

    ensure!(
        server.delete("/callbacks?prefix=").await? == 204,
        "DELETE ?prefix= did not answer 204"
    );
    let (status, answer) = server.post_json("after-delete", &json!({})).await?;
    ensure!(
        status == 200,
        "a post after deleting everything answered {status}: {answer}"
    );
    Ok(())
}

#[tokio::test]
async fn a_body_over_max_body_gets_413_and_one_at_the_limit_is_stored() -> anyhow::Result<()> {
    let server = spawn_eventual(&["sink", "--max-body", "1KiB"]).await?;

    let (status, body) = post_bytes(&server, "big", 2048).await?;
    ensure!(status == 413, "a 2 KiB body answered {status}: {body}");
    let message = error_message(&body, "body_too_large")?;
    ensure!(
        message.contains("--max-body"),
        "the message does not name --max-body: {message}"
    );

    let (status, body) = post_bytes(&server, "exact", 1024).await?;
    ensure!(
        status == 200,
        "a body of exactly 1 KiB answered {status}: {body}"
    );
    let (status, latest) = server.get("/callbacks/exact").await?;
    ensure!(
        status == 200 && latest["size"] == 1024,
        "the 1 KiB body was not stored whole: {status} {latest}"
    );
    Ok(())
}

#[tokio::test]
async fn eventual_max_callbacks_in_the_environment_works_like_the_flag() -> anyhow::Result<()> {
    let server = Launch::new(&["sink"])
        .env("EVENTUAL_MAX_CALLBACKS", "2")
        .spawn()
        .await?;
    fill(&server, 2).await?;
    let (status, body) = server.post_json("one-too-many", &json!({})).await?;
    ensure!(status == 507, "the 3rd callback answered {status}: {body}");
    error_message(&body, "sink_full")?;
    Ok(())
}

#[tokio::test]
async fn eventual_max_body_in_the_environment_works_like_the_flag() -> anyhow::Result<()> {
    let server = Launch::new(&["sink"])
        .env("EVENTUAL_MAX_BODY", "1KiB")
        .spawn()
        .await?;
    let (status, body) = post_bytes(&server, "big", 2048).await?;
    ensure!(status == 413, "a 2 KiB body answered {status}: {body}");
    error_message(&body, "body_too_large")?;
    Ok(())
}

#[tokio::test]
async fn a_flag_overrides_its_environment_variable() -> anyhow::Result<()> {
    let server = Launch::new(&["sink", "--max-callbacks", "1"])
        .env("EVENTUAL_MAX_CALLBACKS", "5")
        .spawn()
        .await?;
    fill(&server, 1).await?;
    let (status, body) = server.post_json("second", &json!({})).await?;
    ensure!(
        status == 507,
        "the 2nd callback answered {status} despite --max-callbacks 1: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn callbacks_replayed_from_the_log_count_against_the_capacity() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    let args = ["sink", "--data-dir", &data_dir, "--max-callbacks", "3"];
    let mut server = spawn_eventual(&args).await?;
    fill(&server, 3).await?;
    ensure!(
        server.terminate().await?.success(),
        "the sink did not exit 0"
    );

    let server = spawn_eventual(&args).await?;
    let (status, body) = server.post_json("after-restart", &json!({})).await?;
    ensure!(
        status == 507,
        "a full sink accepted a callback after a restart: {status} {body}"
    );
    error_message(&body, "sink_full")?;
    Ok(())
}
