//! Measures what holding many long-poll waiters costs the sink: starts `eventual sink` (the
//! release binary), opens N connections that each wait on their own key (`?wait=60s`), reads the
//! server's RSS before and after, then posts every key and checks each waiter is answered `200`.
//!
//! ```sh
//! cargo build --release && cargo run --release --example hold_waiters -- 10000
//! ```
//! Needs `ulimit -n` above N (the client holds N sockets too).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let bin = std::env::var("EVENTUAL_BIN").unwrap_or_else(|_| "target/release/eventual".into());
    let mut child = Command::new(&bin)
        .args(["sink", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| anyhow::anyhow!("unexpected first line {line:?}"))?
        .to_owned();
    let pid = child.id();
    let http = reqwest::Client::new();
    // Warm up allocator and runtime with a few callbacks, as a running sink would be.
    for i in 0..100 {
        http.post(format!("http://{url}/callbacks/warm-{i}"))
            .body("{}")
            .send()
            .await?;
    }
    let base = rss_kib(pid);
    let started = Instant::now();
    let mut waiters = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect(&url).await?;
        let request = format!(
            "GET /callbacks/w-{i}?wait=60s HTTP/1.1\r\nhost: {url}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        waiters.push(stream);
    }
    // Every request is registered once /healthz counts it.
    loop {
        let health: serde_json::Value = http
            .get(format!("http://{url}/healthz"))
            .send()
            .await?
            .json()
            .await?;
        if health["waiting"].as_u64() == Some(n as u64) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {n} waiters registered",
            health["waiting"]
        );
        tokio::task::yield_now().await;
    }
    let held = rss_kib(pid);
    let opened_in = started.elapsed();
    let answered = {
        let mut tasks = Vec::with_capacity(n);
        for (i, mut stream) in waiters.into_iter().enumerate() {
            let http = http.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                http.post(format!("http://{url}/callbacks/w-{i}"))
                    .body("{}")
                    .send()
                    .await
                    .ok()?;
                let mut buf = vec![0u8; 12];
                stream.read_exact(&mut buf).await.ok()?;
                Some(buf.starts_with(b"HTTP/1.1 200"))
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await? == Some(true) {
                ok += 1;
            }
        }
        ok
    };
    let _ = child.kill();
    println!(
        "waiters={n} rss_before_kib={base} rss_holding_kib={held} extra_mib={:.1} per_waiter_bytes={} opened_in_ms={} answered_200={answered}",
        (held.saturating_sub(base)) as f64 / 1024.0,
        held.saturating_sub(base) * 1024 / n as u64,
        opened_in.as_millis(),
    );
    anyhow::ensure!(
        answered == n,
        "{} waiters were not answered 200",
        n - answered
    );
    Ok(())
}
