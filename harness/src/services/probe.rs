//! Readiness probes: is a service up yet? (The one place that retries on a timer: an outside
//! process gives no event when it starts listening.)

use std::{future::Future, time::Duration};

use crate::scripts::Probe;

/// How often a failing probe is tried again.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(100);

/// How a service's wait for readiness ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Readiness {
    /// The probe succeeded this long after the first try.
    Ready(Duration),
    /// It was still failing at the deadline; its last error.
    TimedOut(String),
}

/// Tries `attempt` at once and every [`PROBE_EVERY`] until it succeeds or `timeout` has passed
/// (the attempt at the deadline is the last).
pub(super) async fn until_ready<F, Fut>(timeout: Duration, mut attempt: F) -> Readiness
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    // A slow attempt (an HTTP probe may take its 2 s timeout) is followed by one, not a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match attempt().await {
            Ok(()) => return Readiness::Ready(started.elapsed()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Readiness::TimedOut(e),
            Err(_) => {}
        }
    }
}

/// `$NAME` and `${NAME}` replaced from `env`.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (k, v) in env {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

pub(super) fn describe(probe: &Probe, env: &[(String, String)]) -> String {
    match probe {
        Probe::Http(url) => format!("http {}", expand(url, env)),
        Probe::Tcp(addr) => format!("tcp {}", expand(addr, env)),
        Probe::Run(cmd) => format!("run `{cmd}`"),
    }
}

pub(super) async fn probe_once(
    probe: &Probe,
    env: &[(String, String)],
    work: &std::path::Path,
) -> Result<(), String> {
    match probe {
        Probe::Http(url) => {
            let url = expand(url, env);
            let response = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().as_u16() < 400 {
                Ok(())
            } else {
                Err(format!("{url} answered {}", response.status()))
            }
        }
        Probe::Tcp(addr) => {
            let addr = expand(addr, env);
            tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map(|_| ())
            .map_err(|e| format!("{addr}: {e}"))
        }
        Probe::Run(cmd) => {
            let status = tokio::process::Command::new("bash")
                .args(["-c", cmd])
                .current_dir(work)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("`{cmd}` exited with {status}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_probe_is_tried_every_100ms_until_it_succeeds() {
        let tries = Cell::new(0);
        let readiness = until_ready(Duration::from_secs(10), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n < 4 {
                    Err(format!("try {n}"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(readiness, Readiness::Ready(Duration::from_millis(300)));
        assert_eq!(tries.get(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_still_failing_at_the_deadline_times_out_with_its_last_error() {
        let tries = Cell::new(0);
        let started = tokio::time::Instant::now();
        let readiness = until_ready(Duration::from_secs(1), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { Err(format!("refused ({n})")) }
        })
        .await;
        assert_eq!(readiness, Readiness::TimedOut("refused (11)".into()));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "no longer than the timeout"
        );
    }
}
