//! Readiness probes: is a service up yet? (The one place that retries on a timer: an outside
//! process gives no event when it starts listening.)

use std::time::Duration;

use crate::scripts::Probe;

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
