//! A full disk under `--data-dir` (a real one: a 2 MiB tmpfs) loses no acknowledged callback:
//! refused callbacks answer `507 storage_full`, are never visible and never wake a waiter, the
//! log takes no partial frame, and once space is back the sink stores callbacks again by itself
//! and a restart brings back every acknowledged one. Needs `mount` (root); elsewhere it skips
//! with a message saying so.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::helpers::{PROMPTLY, Running, error_message, spawn_eventual};

/// Frames of ~20 KB: larger than the space freed below, so the first refused write is a
/// partial one (what tore the log before).
fn body(marker: usize) -> Value {
    json!({ "marker": marker, "pad": "x".repeat(20_000) })
}

const KEYS: usize = 5;

fn acked_key(i: usize) -> String {
    format!("acked-{}", i % KEYS)
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after printing why) where this machine does not let the test mount.
    fn mount(size: &str) -> anyhow::Result<Option<Self>> {
        let dir = tempfile::tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(Some(Self { dir })),
            Ok(out) => {
                eprintln!(
                    "SKIPPED full_disk: cannot mount a tmpfs here ({}); run as root to test a full disk",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                Ok(None)
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED full_disk: cannot run mount ({e}); run as root to test a full disk"
                );
                Ok(None)
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `path` to the last byte; answers how much it wrote.
fn fill(path: &Path) -> anyhow::Result<u64> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 4096];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(written)
}

#[tokio::test]
async fn a_full_disk_refuses_with_507_and_loses_no_acknowledged_callback() -> anyhow::Result<()> {
    full_disk_episode("1s").await
}

#[tokio::test]
async fn with_fsync_always_a_full_disk_refuses_with_507_and_loses_no_acknowledged_callback()
-> anyhow::Result<()> {
    full_disk_episode("always").await
}

/// The whole episode with `--fsync FSYNC`.
async fn full_disk_episode(fsync: &str) -> anyhow::Result<()> {
    let Some(tmpfs) = Tmpfs::mount("2m")? else {
        return Ok(());
    };
    let data_dir: PathBuf = tmpfs.path().join("data");
    let filler = tmpfs.path().join("filler");
    let data = data_dir.to_str().context("utf-8 path")?.to_owned();
    let args = ["sink", "--data-dir", &data, "--fsync", fsync];
    let mut server = spawn_eventual(&args).await?;

    let mut acked = BTreeSet::new();
    let mut next = 0;
    for _ in 0..20 {
        let (status, answer) = server.post_json(&acked_key(next), &body(next)).await?;
        ensure!(status == 200, "post #{next} answered {status}: {answer}");
        acked.insert(next);
        next += 1;
    }

    // Fill the disk, then free a few KiB: less than one frame.
    fill(&filler)?;
    let filled = std::fs::metadata(&filler)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)?
        .set_len(filled.saturating_sub(8192))?;

    // A waiter on a key that only refused callbacks will be posted to, registered first.
    let waiter = {
        let (http, url) = (server.http().clone(), server.url.clone());
        tokio::spawn(async move {
            let response = http
                .get(format!("{url}/callbacks/refused-0?wait=60s"))
                .send()
                .await?;
            crate::helpers::read(response).await
        })
    };
    wait_until_waiting(&server, 1).await?;

    let mut refused = Vec::new();
    for k in 0..3 {
        let key = format!("refused-{k}");
        let (status, answer) = server.post_json(&key, &body(1000 + k)).await?;
        ensure!(
            status == 507,
            "a post to a full disk answered {status}: {answer}"
        );
        let message = error_message(&answer, "storage_full")?;
        ensure!(
            message.contains(&data) && message.contains("full") && message.contains("not stored"),
            "the message should say which disk filled and that nothing was stored: {message}"
        );
        refused.push(key);
    }
    // An existing key: its refused record must not take a seq either.
    let (status, answer) = server.post_json(&acked_key(0), &body(2000)).await?;
    ensure!(
        status == 507,
        "a post to a full disk answered {status}: {answer}"
    );
    for key in &refused {
        let (status, answer) = server.get(&format!("/callbacks/{key}")).await?;
        ensure!(
            status == 404,
            "the refused callback of {key} is readable: {status} {answer}"
        );
    }
    ensure!(!waiter.is_finished(), "a refused callback woke the waiter");
    let (status, answer) = server.get(&format!("/callbacks/{}", acked_key(1))).await?;
    ensure!(
        status == 200,
        "reads must go on while the disk is full: {status} {answer}"
    );
    server
        .wait_for_stderr("an error line saying the disk is full", |line| {
            line.contains("ERROR") && line.contains("full")
        })
        .await?;

    // Space is back: the sink stores callbacks again by itself.
    std::fs::remove_file(&filler)?;
    for _ in 0..40 {
        let (status, answer) = server.post_json(&acked_key(next), &body(next)).await?;
        ensure!(
            status == 200,
            "post #{next} after space was freed answered {status}: {answer}"
        );
        acked.insert(next);
        next += 1;
    }
    server
        .wait_for_stderr("a log line saying writes succeed again", |line| {
            line.contains("accepts writes again")
        })
        .await?;
    let (status, answer) = server.post_json("refused-0", &body(3000)).await?;
    ensure!(status == 200, "post answered {status}: {answer}");
    acked.insert(3000);
    let (status, woken) = tokio::time::timeout(PROMPTLY, waiter)
        .await
        .context("the waiter was not woken by the stored callback")???;
    ensure!(
        status == 200 && woken["body"]["marker"] == 3000 && woken["seq"] == 1,
        "the waiter should get the first stored callback of refused-0 (seq 1): {status} {woken}"
    );

    server.kill_9()?;
    server.wait_exit(PROMPTLY).await?;
    let server = spawn_eventual(&args).await?;
    let stderr = server
        .wait_for_stderr("the replay summary", |line| {
            line.contains("replayed the callback log")
        })
        .await?;
    ensure!(
        !server.stderr().contains("torn"),
        "the log had a torn frame after the full-disk episode: {stderr}\n{}",
        server.stderr()
    );
    let mut found = BTreeSet::new();
    let keys = (0..KEYS)
        .map(acked_key)
        .chain(std::iter::once("refused-0".into()));
    for key in keys {
        let records = server.all(&key).await?;
        let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
        let expected: Vec<u64> = (1..=records.len() as u64).collect();
        ensure!(
            seqs == expected,
            "{key} has seqs {seqs:?} after the restart"
        );
        for r in records {
            let marker = r["body"]["marker"].as_u64().context("a marker")? as usize;
            ensure!(found.insert(marker), "marker {marker} stored twice");
        }
    }
    for key in &refused[1..] {
        let (status, _) = server.get(&format!("/callbacks/{key}")).await?;
        ensure!(
            status == 404,
            "the refused callback of {key} is back after the restart"
        );
    }
    eprintln!(
        "FIGURE full disk (--fsync {fsync}): {} acknowledged, {} recovered after the restart, 4 refused",
        acked.len(),
        found.len()
    );
    ensure!(
        found == acked,
        "after the restart {} of {} acknowledged callbacks are back; missing {:?}, unexpected {:?}",
        found.len(),
        acked.len(),
        acked.difference(&found).collect::<Vec<_>>(),
        found.difference(&acked).collect::<Vec<_>>()
    );
    Ok(())
}

/// Waits (one `/healthz` round trip at a time) until `n` requests are waiting.
async fn wait_until_waiting(server: &Running, n: u64) -> anyhow::Result<()> {
    tokio::time::timeout(PROMPTLY, async {
        loop {
            let (_, health) = server.get("/healthz").await?;
            if health["waiting"].as_u64() >= Some(n) {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .context("the waiter never registered")?
}
