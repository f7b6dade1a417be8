//! Harness benchmark: starts `eventual serve` (the release binary) on a fresh data dir with
//! `fixtures/` as its catalog and measures, from the run timestamps the harness records:
//!
//! - `handoff`: 200 trivial runs queued on one environment — from one run's `finished_at` to the
//!   next one's `started_at` (the release → start path), median and p99;
//! - `overhead`: a trivial test's duration inside the harness vs spawning the same script directly;
//! - `drain`: 100 environments × 10 queued runs each — total time, and overlaps (must be zero);
//! - `scripts`: a run with 20 scripts in a diamond vs the same trivial test alone, and from a
//!   script's end to its dependants' start;
//! - `big_log`: one test printing 1 GiB — log throughput and the server's peak RSS (VmHWM).
//!
//! ```sh
//! cargo build --release && cargo run --release --example harness_bench            # all
//! cargo run --release --example harness_bench -- handoff overhead                 # some
//! ```

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use serde_json::Value;

mod support;

use support::{median, ms, p99, start};

/// The timestamp (ms since the epoch) of the first log line containing `needle`.
fn line_ms(log: &str, needle: &str) -> Option<f64> {
    log.lines()
        .find(|l| l.contains(needle))
        .map(|l| ms(&Value::String(l[..24].to_owned())))
}

async fn handoff() -> anyhow::Result<()> {
    let server = start(1)?;
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(server.submit(1, &["tests/pass.sh"]).await?);
    }
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(server.finish(*id).await?.0);
    }
    let mut gaps: Vec<f64> = runs
        .windows(2)
        .map(|w| ms(&w[1]["started_at"]) - ms(&w[0]["finished_at"]))
        .collect();
    let ordered = runs
        .windows(2)
        .all(|w| ms(&w[1]["started_at"]) >= ms(&w[0]["finished_at"]));
    println!(
        "handoff: runs=200 release->next start median={:.1}ms p99={:.1}ms in_order_no_overlap={ordered}",
        median(&mut gaps),
        p99(&mut gaps)
    );
    Ok(())
}

async fn overhead() -> anyhow::Result<()> {
    let server = start(1)?;
    let mut inside = Vec::new();
    for _ in 0..50 {
        let id = server.submit(1, &["tests/pass.sh"]).await?;
        let (run, _) = server.finish(id).await?;
        inside.push(ms(&run["finished_at"]) - ms(&run["started_at"]));
    }
    let mut direct = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        Command::new("bash")
            .arg("fixtures/tests/pass.sh")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (i, d) = (median(&mut inside), median(&mut direct));
    println!(
        "overhead: trivial test median inside the harness={i:.1}ms (run started->finished), direct spawn={d:.1}ms, overhead={:.1}ms",
        i - d
    );
    Ok(())
}

async fn drain() -> anyhow::Result<()> {
    let server = start(100)?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for _round in 0..10 {
        for env in 1..=100 {
            ids.push((env, server.submit(env, &["tests/pass.sh"]).await?));
        }
    }
    let submitted_in = started.elapsed();
    let mut by_env: std::collections::BTreeMap<u32, Vec<(f64, f64, i64)>> = Default::default();
    for (env, id) in &ids {
        let (run, _) = server.finish(*id).await?;
        by_env.entry(*env).or_default().push((
            ms(&run["started_at"]),
            ms(&run["finished_at"]),
            *id,
        ));
    }
    let total = started.elapsed();
    let first_start = by_env
        .values()
        .flatten()
        .map(|r| r.0)
        .fold(f64::INFINITY, f64::min);
    let last_end = by_env.values().flatten().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "drain: first start to last finish (server timestamps) {:.2}s",
        (last_end - first_start) / 1000.0
    );
    let mut overlaps = 0;
    let mut out_of_order = 0;
    for runs in by_env.values_mut() {
        let submitted: Vec<i64> = runs.iter().map(|r| r.2).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        if runs.iter().map(|r| r.2).collect::<Vec<_>>() != submitted {
            out_of_order += 1;
        }
        overlaps += runs.windows(2).filter(|w| w[1].0 < w[0].1).count();
    }
    println!(
        "drain: 100 envs x 10 runs = 1000 runs in {:.2}s (submitting took {:.2}s), overlaps={overlaps}, envs out of submission order={out_of_order}",
        total.as_secs_f64(),
        submitted_in.as_secs_f64()
    );
    Ok(())
}

/// 20 scripts in a diamond around a trivial test vs the same test alone; and from each script's
/// end to its dependants' start, from the log's timestamps.
async fn scripts() -> anyhow::Result<()> {
    let server = start(1)?;
    let mut with = Vec::new();
    let mut alone = Vec::new();
    let mut handoffs = Vec::new();
    let mut chain = Vec::new();
    for _ in 0..10 {
        let id = server.submit(1, &["bench/diamond/trivial.sh"]).await?;
        let (run, log) = server.finish(id).await?;
        with.push(ms(&run["finished_at"]) - ms(&run["started_at"]));
        let at = |needle: &str| line_ms(&log, needle);
        if let Some(top_done) = at("--- script top passed") {
            for i in 1..=18 {
                if let Some(start) = at(&format!("--- script mid{i:02} starts")) {
                    handoffs.push(start - top_done);
                }
            }
        }
        let id = server.submit(1, &["bench/trivial_alone.sh"]).await?;
        let (run, _) = server.finish(id).await?;
        alone.push(ms(&run["finished_at"]) - ms(&run["started_at"]));
        // A chain: each script has exactly one dependant.
        let id = server.submit(1, &["bench/chain/trivial.sh"]).await?;
        let (_, log) = server.finish(id).await?;
        let at = |needle: &str| line_ms(&log, needle);
        for i in 1..10 {
            if let (Some(done), Some(next)) = (
                at(&format!("--- script s{i:02} passed")),
                at(&format!("--- script s{:02} starts", i + 1)),
            ) {
                chain.push(next - done);
            }
        }
    }
    let (w, a) = (median(&mut with), median(&mut alone));
    println!(
        "scripts: diamond of 20 scripts + trivial test median={w:.0}ms, test alone={a:.0}ms, added={:.0}ms; script end -> its 18 dependants' start median={:.1}ms p99={:.1}ms; in a chain (one dependant) median={:.1}ms p99={:.1}ms (log timestamps, ms resolution)",
        w - a,
        median(&mut handoffs),
        p99(&mut handoffs),
        median(&mut chain),
        p99(&mut chain)
    );
    Ok(())
}

async fn big_log() -> anyhow::Result<()> {
    let server = start(1)?;
    let pid = server.child.id();
    let id = server.submit(1, &["bench/print_1gb.sh"]).await?;
    let t = Instant::now();
    let (run, _) = server.finish(id).await?;
    let wall = t.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let test_ms = run["tests"][0]["duration_ms"].as_f64().unwrap_or(f64::NAN);
    println!(
        "big_log: 1 GiB printed, status={} test duration={:.1}s ({:.0} MB/s), wall incl. follow={:.1}s, server peak RSS (VmHWM)={}, RSS now={}",
        run["status"],
        test_ms / 1000.0,
        1073.741824 / (test_ms / 1000.0),
        wall.as_secs_f64(),
        field("VmHWM:"),
        field("VmRSS:"),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    if want("handoff") {
        handoff().await?;
    }
    if want("overhead") {
        overhead().await?;
    }
    if want("drain") {
        drain().await?;
    }
    if want("scripts") {
        scripts().await?;
    }
    if want("big_log") {
        big_log().await?;
    }
    Ok(())
}
