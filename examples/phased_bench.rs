//! Phased-run benchmark: starts `eventual serve` (the release binary) on a fresh data dir with
//! `fixtures/` as its catalog, stands in for the system under test by posting the awaited
//! callbacks itself, and measures:
//!
//! - `latency`: 50 phased runs one after another on one environment
//!   (`bench/phased/preparation/announce.sh` announces `run-<id>.bench`, then
//!   `bench/phased/validation/stamp.sh` prints bash's `$EPOCHREALTIME` as its first act). Once the
//!   run is in phase `awaiting` (its `run` event on `GET /api/events`) and its wait is registered at
//!   the sink (`/healthz` `waiting` = 1, so the insert *wakes* it rather than finding the record
//!   on arrival), the benchmark POSTs the callback and notes the wall clock when it has read the
//!   `200` ("acked"). From that instant it reports, median / p99 / max:
//!   - `wake`: to the harness's `callback … arrived` log line (ms timestamps);
//!   - `start line`: to the harness's `start …stamp.sh` log line, written just before it spawns
//!     the test;
//!   - `test running`: to the validation test's own first timestamp — the most honest "the first
//!     validation test has started": it includes writing the callbacks file, recording the phase,
//!     fork/exec and bash's start-up, everything up to the test's first instruction. Goal ≤ 10 ms.
//!
//!   Both clocks are this machine's wall clock. Taking "acked" once the `200` has been read (not
//!   when it was sent) can only make the figures smaller by the local round trip, shown as `rtt`.
//! - `many_keys`: 100 runs on 100 environments, each announcing 10 keys
//!   (`bench/phased/preparation/announce10.sh`): once the sink counts 1,000 waiters, all 1,000 keys
//!   are posted (100 at a time); every run must pass (`bench/phased/validation/check10.sh` checks
//!   its ten keys) — a missed wake-up would leave its run waiting until the 60 s timeout and end it
//!   `timed_out`. Reports the time to post and the total until every run has finished.
//!
//! ```sh
//! cargo build --release --bins --examples && target/release/examples/phased_bench    # both
//! target/release/examples/phased_bench latency                                      # one
//! ```
//!
//! Run it from the repository root (it uses `target/release/eventual`, or `EVENTUAL_BIN`).

use std::{
    collections::HashSet,
    time::{Duration, Instant, SystemTime},
};

mod support;

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use support::{Server, start};

impl Server {
    /// POSTs a callback for `key`; returns the wall clock once the `200` has been read.
    async fn post(&self, key: &str) -> anyhow::Result<SystemTime> {
        let response = self
            .http
            .post(format!("{}/callbacks/{key}", self.url))
            .json(&json!({"status": "done"}))
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        let acked = SystemTime::now();
        ensure!(status == 200, "POST /callbacks/{key} answered {status}");
        Ok(acked)
    }

    /// Requests (and in-process waits) the sink holds right now.
    async fn sink_waiting(&self) -> anyhow::Result<u64> {
        let health: Value = self
            .http
            .get(format!("{}/healthz", self.url))
            .send()
            .await?
            .json()
            .await?;
        health["waiting"]
            .as_u64()
            .with_context(|| format!("no waiting count in {health}"))
    }

    /// Until the sink holds `n` waiters. There is no event for that, so this asks every
    /// millisecond — before the measured interval, never inside it.
    async fn until_waiting(&self, n: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while self.sink_waiting().await? < n {
            ensure!(
                Instant::now() < deadline,
                "the sink did not hold {n} waiters within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// `GET /api/events`, read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(server: &Server) -> anyhow::Result<Self> {
        let response = server
            .http
            .get(format!("{}/api/events", server.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(Self {
            response,
            buffer: String::new(),
        })
    }

    /// The next `run` event's run.
    async fn next_run(&mut self) -> anyhow::Result<Value> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if event == "run" {
                    return Ok(serde_json::from_str(&data)?);
                }
            }
            match self.response.chunk().await? {
                Some(chunk) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                None => bail!("/api/events ended"),
            }
        }
    }

    /// Until run `id` is in phase `awaiting`.
    async fn until_awaiting(&mut self, id: i64) -> anyhow::Result<()> {
        let wait = async {
            loop {
                let run = self.next_run().await?;
                if run["id"] == id && run["phase"] == "awaiting" {
                    return Ok::<_, anyhow::Error>(());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .with_context(|| format!("run {id} did not reach phase awaiting within 60 s"))?
    }
}

fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// The timestamp (ms since the epoch) of the first log line containing `needle`.
fn log_ms(log: &str, needle: &str) -> anyhow::Result<f64> {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .with_context(|| format!("no log line with {needle:?}:\n{log}"))?;
    let ts = line.split(' ').next().unwrap_or_default();
    Ok(epoch_ms(humantime::parse_rfc3339(ts)?))
}

struct Stats(Vec<f64>);

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: usize| v.get((v.len() * q / 100).min(v.len().saturating_sub(1)));
        match (at(50), at(99), v.last()) {
            (Some(m), Some(p), Some(x)) => {
                write!(f, "median {m:.2} ms, p99 {p:.2} ms, max {x:.2} ms")
            }
            _ => write!(f, "no samples"),
        }
    }
}

async fn latency() -> anyhow::Result<()> {
    const RUNS: usize = 50;
    const WARM_UP: usize = 3;
    const TESTS: [&str; 2] = [
        "bench/phased/preparation/announce.sh",
        "bench/phased/validation/stamp.sh",
    ];
    let server = start(1)?;
    let mut events = Events::open(&server).await?;
    let (mut rtt, mut wake, mut start_line, mut running) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in 0..WARM_UP + RUNS {
        let id = server.submit(1, &TESTS).await?;
        events.until_awaiting(id).await?;
        server.until_waiting(1, Duration::from_secs(10)).await?;
        let key = format!("run-{id}.bench");
        let sent = SystemTime::now();
        let acked = server.post(&key).await?;
        let (run, log) = server.finish(id).await?;
        ensure!(run["status"] == "passed", "run {id}: {run}\n{log}");
        if n < WARM_UP {
            continue;
        }
        let acked = epoch_ms(acked);
        rtt.push(acked - epoch_ms(sent));
        wake.push(log_ms(&log, &format!("--- callback {key} arrived"))? - acked);
        start_line.push(log_ms(&log, "--- start bench/phased/validation/stamp.sh")? - acked);
        let stamp: f64 = log
            .lines()
            .find_map(|l| l.split_once(" out started "))
            .and_then(|(_, s)| s.trim().parse().ok())
            .with_context(|| format!("stamp.sh printed no start time:\n{log}"))?;
        running.push(stamp * 1000.0 - acked);
    }
    println!(
        "latency: {RUNS} phased runs (after {WARM_UP} warm-up), from the callback's 200 read by the poster:"
    );
    println!(
        "  rtt           (POST sent -> 200 read)      {}",
        Stats(rtt)
    );
    println!(
        "  wake          (-> `callback … arrived`)    {}",
        Stats(wake)
    );
    println!(
        "  start line    (-> `start …stamp.sh`)       {}",
        Stats(start_line)
    );
    println!(
        "  test running  (-> stamp.sh's first act)    {}",
        Stats(running)
    );
    Ok(())
}

/// POSTs a callback for every key, 100 in flight; returns when each was acknowledged.
async fn post_all(server: &Server, keys: &[String]) -> anyhow::Result<Vec<SystemTime>> {
    futures_util::stream::iter(keys)
        .map(|key| server.post(key))
        .buffer_unordered(100)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

async fn many_keys() -> anyhow::Result<()> {
    const ENVS: u32 = 100;
    const KEYS: usize = 10;
    let server = start(ENVS)?;
    // The same 1,000 posts to keys nobody waits for: what posting costs on this machine by itself
    // (the benchmark's client shares the cores with the server).
    let baseline: Vec<String> = (0..ENVS as usize * KEYS)
        .map(|n| format!("baseline.k{n}"))
        .collect();
    let t = Instant::now();
    post_all(&server, &baseline).await?;
    let baseline_in = t.elapsed();
    let mut ids = Vec::new();
    for env in 1..=ENVS {
        ids.push(
            server
                .submit(
                    env,
                    &[
                        "bench/phased/preparation/announce10.sh",
                        "bench/phased/validation/check10.sh",
                    ],
                )
                .await?,
        );
    }
    let waiters = (ENVS as usize * KEYS) as u64;
    server
        .until_waiting(waiters, Duration::from_secs(120))
        .await?;
    let keys: Vec<String> = ids
        .iter()
        .flat_map(|id| (0..KEYS).map(move |k| format!("run-{id}.k{k}")))
        .collect();
    let posting = Instant::now();
    let posted_at = epoch_ms(SystemTime::now());
    let acked = post_all(&server, &keys).await?;
    let posted_in = posting.elapsed();
    let finished: Vec<anyhow::Result<(Value, String)>> =
        futures_util::future::join_all(ids.iter().map(|id| server.finish(*id))).await;
    let total = posting.elapsed();
    let mut passed = 0;
    let mut arrivals = 0;
    let mut failed = Vec::new();
    let mut last_finish = 0.0f64;
    let mut last_validation = 0.0f64;
    for (id, result) in ids.iter().zip(finished) {
        let (run, log) = result?;
        arrivals += log.matches("--- callback ").count();
        if run["status"] == "passed" {
            passed += 1;
        } else {
            failed.push(format!("run {id}: {}", run["status"]));
        }
        let finished_at =
            humantime::parse_rfc3339(run["finished_at"].as_str().unwrap_or_default())?;
        last_finish = last_finish.max(epoch_ms(finished_at));
        last_validation = last_validation.max(log_ms(
            &log,
            "--- start bench/phased/validation/check10.sh",
        )?);
    }
    let distinct: HashSet<&String> = keys.iter().collect();
    println!(
        "many_keys: {} keys awaited at once by {} runs on {ENVS} environments (sink waiters before posting: {waiters})",
        distinct.len(),
        ids.len()
    );
    println!(
        "  posted {} callbacks (100 in flight) in {:.0} ms (the same posts to keys nobody awaits: {:.0} ms); every run finished {:.0} ms after the first post \
         (last validation test started {:.0} ms, last run finished {:.0} ms after it, server clock)",
        acked.len(),
        posted_in.as_secs_f64() * 1000.0,
        baseline_in.as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
        last_validation - posted_at,
        last_finish - posted_at
    );
    println!(
        "  runs passed {passed}/{}, `callback … arrived` lines {arrivals}/{}, sink waiters left {}",
        ids.len(),
        keys.len(),
        server.sink_waiting().await?
    );
    ensure!(failed.is_empty(), "runs that did not pass: {failed:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    if want("latency") {
        latency().await?;
    }
    if want("many_keys") {
        many_keys().await?;
    }
    Ok(())
}
