//! With `--data-dir`, an acknowledged callback survives the server's death (SPEC "The sink":
//! "acknowledged callbacks survive a restart"), whether it was killed mid-stream or left a torn
//! frame at the end of its log.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use tokio::{sync::Notify, task::JoinSet};

use crate::helpers::{PROMPTLY, Running, all_of, spawn_eventual};

const POSTS: usize = 10_000;
const KEYS: usize = 2_500;
const CONNECTIONS: usize = 16;
const KILL_AFTER_ACKS: usize = 5_000;

/// One `200` the sink gave: the record must be there after any restart.
#[derive(Debug, Clone, Copy)]
struct Acked {
    key: usize,
    seq: u64,
    marker: usize,
}

fn key(i: usize) -> String {
    format!("k-{}", i % KEYS)
}

fn body(marker: usize) -> Value {
    // A nested, non-ASCII body: what comes back must be the same value, not just the marker.
    json!({ "marker": marker, "nested": { "text": format!("callback #{marker} — ✓"), "n": [marker, 1.5] } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_loses_no_acknowledged_callback() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    let mut server = spawn_eventual(&["sink", "--data-dir", &data_dir]).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let half_acked = Arc::new(Notify::new());
    let acked = Arc::new(Mutex::new(Vec::<Acked>::with_capacity(POSTS)));
    let mut workers = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (http, url) = (http.clone(), server.url.clone());
        let (next, acks, half_acked, acked) = (
            next.clone(),
            acks.clone(),
            half_acked.clone(),
            acked.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= POSTS {
                    return Ok::<_, anyhow::Error>(());
                }
                let sent = http
                    .post(format!("{url}/callbacks/{}", key(i)))
                    .json(&body(i))
                    .send()
                    .await;
                // Once the server is dead every request fails to connect or loses its answer:
                // this connection is done. None of those was acknowledged.
                let Ok(response) = sent else { return Ok(()) };
                let status = response.status();
                let Ok(answer) = response.json::<Value>().await else {
                    return Ok(());
                };
                ensure!(status == 200, "post #{i} answered {status}: {answer}");
                let seq = answer["seq"].as_u64().context("the ack has a seq")?;
                ensure!(answer["key"] == key(i), "post #{i} acked {answer}");
                if let Ok(mut acked) = acked.lock() {
                    acked.push(Acked {
                        key: i % KEYS,
                        seq,
                        marker: i,
                    });
                }
                if acks.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                    half_acked.notify_one();
                }
            }
        });
    }

    tokio::time::timeout(PROMPTLY * 6, half_acked.notified())
        .await
        .context("the sink did not acknowledge 5,000 callbacks in time")?;
    server.kill_9()?;
    let killed_at = acks.load(Ordering::SeqCst);
    while let Some(worker) = tokio::time::timeout(PROMPTLY, workers.join_next())
        .await
        .context("a poster hung after the kill")?
    {
        worker??;
    }
    server.wait_exit(PROMPTLY).await?;
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        acked.len() < POSTS,
        "all {POSTS} posts were acknowledged before the kill landed: the test did not kill mid-stream"
    );
    eprintln!(
        "killed after {killed_at} acks; {} acknowledged in all",
        acked.len()
    );

    let server = spawn_eventual(&["sink", "--data-dir", &data_dir]).await?;
    let stored = fetch_all_keys(&server).await?;

    let mut missing = Vec::new();
    for a in &acked {
        let found = stored[a.key].get(&a.seq);
        if found != Some(&body(a.marker)) {
            missing.push(format!(
                "k-{} seq {} (marker {}): found {found:?}",
                a.key, a.seq, a.marker
            ));
        }
    }
    eprintln!(
        "FIGURE kill -9 of the sink under load: {} acknowledged, {} recovered after the restart, {} lost",
        acked.len(),
        acked.len() - missing.len(),
        missing.len()
    );
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged callbacks are missing or changed after the restart, e.g.:\n{}",
        missing.len(),
        acked.len(),
        missing[..missing.len().min(10)].join("\n")
    );
    for (k, records) in stored.iter().enumerate() {
        let seqs: Vec<u64> = records.keys().copied().collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        ensure!(
            seqs == expected,
            "key k-{k} has seqs {seqs:?} after the restart, not 1..={}",
            seqs.len()
        );
    }

    // Posting goes on where each key left off, whether or not it had records.
    for k in [0, 1, KEYS / 2, KEYS - 1] {
        let n = stored[k].len() as u64;
        let (status, answer) = server
            .post_json(&format!("k-{k}"), &body(POSTS + k))
            .await?;
        ensure!(
            status == 200,
            "post after the restart answered {status}: {answer}"
        );
        ensure!(
            answer["seq"] == n + 1,
            "key k-{k} held {n} records after the restart, but the next post got {answer}"
        );
    }
    Ok(())
}

/// Every record of every key `k-0` … `k-2499`, as `seq → body`, in key order.
async fn fetch_all_keys(server: &Running) -> anyhow::Result<Vec<BTreeMap<u64, Value>>> {
    let mut readers = JoinSet::new();
    for reader in 0..CONNECTIONS {
        let (http, url) = (server.http().clone(), server.url.clone());
        readers.spawn(async move {
            let mut out = HashMap::new();
            for k in (reader..KEYS).step_by(CONNECTIONS) {
                let mut records = BTreeMap::new();
                for record in all_of(&http, &url, &format!("k-{k}")).await? {
                    let seq = record["seq"].as_u64().context("a record has a seq")?;
                    ensure!(
                        record["key"] == format!("k-{k}"),
                        "GET /callbacks/k-{k}/all holds {record}"
                    );
                    ensure!(
                        records.insert(seq, record["body"].clone()).is_none(),
                        "key k-{k} holds seq {seq} twice"
                    );
                }
                out.insert(k, records);
            }
            Ok::<_, anyhow::Error>(out)
        });
    }
    let mut by_key = HashMap::new();
    while let Some(part) = readers.join_next().await {
        by_key.extend(part??);
    }
    (0..KEYS)
        .map(|k| by_key.remove(&k).context("every key was read"))
        .collect()
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_with_a_warning_and_every_earlier_record_survives()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    let args = ["sink", "--data-dir", &data_dir];

    let mut server = spawn_eventual(&args).await?;
    for i in 0..30 {
        let (status, answer) = server.post_json(&format!("t-{}", i % 7), &body(i)).await?;
        ensure!(status == 200, "post #{i} answered {status}: {answer}");
    }
    let before = snapshot(&server, 7).await?;
    ensure!(
        server.terminate().await?.success(),
        "the first run did not exit 0"
    );

    // What a write interrupted by a crash leaves: a frame header announcing 64 bytes of
    // payload (with a checksum that cannot match), then only 10 of them.
    let log = dir.path().join("callbacks.log");
    let clean_len = std::fs::metadata(&log)?.len();
    ensure!(clean_len > 0, "the callback log is empty after a clean run");
    let mut torn = Vec::new();
    torn.extend_from_slice(&64u32.to_le_bytes());
    torn.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    torn.extend_from_slice(&[0xab; 10]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)?
        .write_all(&torn)?;

    let mut server = spawn_eventual(&args).await?;
    let warning = server
        .wait_for_stderr("a warning about the torn log tail", |line| {
            line.contains("WARN") && line.contains("torn")
        })
        .await?;
    ensure!(
        warning.contains(&torn.len().to_string()),
        "the warning does not say how many bytes were cut off ({} expected): {warning}",
        torn.len()
    );
    ensure!(
        snapshot(&server, 7).await? == before,
        "records changed across the torn-tail restart"
    );
    let (status, answer) = server.post_json("t-0", &body(100)).await?;
    ensure!(
        status == 200,
        "a post after the repair answered {status}: {answer}"
    );
    let next_seq = before[0].len() as u64 + 1;
    ensure!(
        answer["seq"] == next_seq,
        "t-0 should continue at seq {next_seq}: {answer}"
    );
    let after_repair = snapshot(&server, 7).await?;
    ensure!(
        server.terminate().await?.success(),
        "the second run did not exit 0"
    );

    // The repaired log, with the new record appended after the cut, replays cleanly.
    let server = spawn_eventual(&args).await?;
    server
        .wait_for_stderr("the replay summary", |line| {
            line.contains("replayed the callback log")
        })
        .await?;
    let stderr = server.stderr();
    ensure!(
        !stderr.contains("torn"),
        "the third start found a torn tail again: the repair did not hold\n{stderr}"
    );
    ensure!(
        snapshot(&server, 7).await? == after_repair,
        "records changed across a clean restart after the repair (was the new record written after the garbage?)"
    );
    Ok(())
}

#[tokio::test]
async fn a_deleted_key_stays_deleted_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    let args = ["sink", "--data-dir", &data_dir];
    let mut server = spawn_eventual(&args).await?;
    for key in ["run-1-a", "run-1-b", "run-2-a", "keep"] {
        for i in 0..3 {
            let (status, answer) = server.post_json(key, &body(i)).await?;
            ensure!(status == 200, "post to {key} answered {status}: {answer}");
        }
    }
    ensure!(
        server.delete("/callbacks/keep").await? == 204,
        "DELETE of one key did not answer 204"
    );
    ensure!(
        server.delete("/callbacks?prefix=run-1-").await? == 204,
        "DELETE ?prefix= did not answer 204"
    );
    let (status, answer) = server.post_json("keep", &body(99)).await?;
    ensure!(
        status == 200 && answer["seq"] == 1,
        "a key posted to after its deletion should start again at seq 1: {status} {answer}"
    );
    ensure!(
        server.terminate().await?.success(),
        "the sink did not exit 0"
    );

    let server = spawn_eventual(&args).await?;
    let (status, listing) = server.get("/callbacks?prefix=").await?;
    ensure!(status == 200, "listing answered {status}: {listing}");
    let keys: Vec<_> = listing["keys"]
        .as_array()
        .context("a `keys` list")?
        .iter()
        .map(|k| (k["key"].clone(), k["count"].clone()))
        .collect();
    ensure!(
        keys == [(json!("keep"), json!(1)), (json!("run-2-a"), json!(3))],
        "after the restart the sink holds {listing}"
    );
    let keep = server.all("keep").await?;
    ensure!(
        keep.len() == 1 && keep[0]["body"] == body(99) && keep[0]["seq"] == 1,
        "keep after the restart: {keep:?}"
    );
    Ok(())
}

/// The bodies of `t-0` … `t-{keys-1}`, each as its records' `(seq, body)` in order.
async fn snapshot(server: &Running, keys: usize) -> anyhow::Result<Vec<Vec<(u64, Value)>>> {
    let mut out = Vec::with_capacity(keys);
    for k in 0..keys {
        let records = server.all(&format!("t-{k}")).await?;
        out.push(
            records
                .iter()
                .map(|r| (r["seq"].as_u64().unwrap_or_default(), r["body"].clone()))
                .collect(),
        );
    }
    Ok(out)
}
