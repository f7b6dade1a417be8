//! What the benchmark examples share: starting the release binary as `eventual serve` on a
//! fresh data directory with `fixtures/` as its catalog, submitting runs, waiting for them, and
//! simple statistics.
// Each example uses its own subset of these helpers.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::Context as _;
use serde_json::{Value, json};

pub(crate) struct Server {
    pub(crate) child: std::process::Child,
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(envs: u32) -> anyhow::Result<Server> {
    let bin = std::env::var("EVENTUAL_BIN").unwrap_or_else(|_| "target/release/eventual".into());
    let data = tempfile::tempdir()?;
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--sample-tests",
            "fixtures",
        ])
        .args(["--envs", &envs.to_string(), "--test-timeout", "10m"])
        .arg("--data-dir")
        .arg(data.path())
        .env("EVENTUAL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {bin} (run `cargo build --release` first)"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout is piped")?).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_owned();
    Ok(Server {
        child,
        url,
        http: reqwest::Client::new(),
        _data: data,
    })
}

impl Server {
    pub(crate) async fn submit(&self, env: u32, tests: &[&str]) -> anyhow::Result<i64> {
        let run: Value = self
            .http
            .post(format!("{}/api/runs", self.url))
            .json(&json!({"username": "bench", "env_id": env, "tests": tests}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        run["id"]
            .as_i64()
            .with_context(|| format!("no id in {run}"))
    }

    /// Reads the run's log until it ends (the stream closes when the run has its final status);
    /// returns the run and its log.
    pub(crate) async fn finish(&self, id: i64) -> anyhow::Result<(Value, String)> {
        let log = self
            .http
            .get(format!("{}/api/runs/{id}/log?follow=true", self.url))
            .send()
            .await?
            .text()
            .await?;
        let run = self
            .http
            .get(format!("{}/api/runs/{id}", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok((run, log))
    }
}

pub(crate) fn ms(ts: &Value) -> f64 {
    let t =
        humantime::parse_rfc3339(ts.as_str().unwrap_or_default()).unwrap_or(SystemTime::UNIX_EPOCH);
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() * 99 / 100).copied().unwrap_or(f64::NAN)
}
