//! Phased runs (SPEC "Phased runs"): preparation tests announce the callbacks they started with
//! `::await-callback KEY [count=N] [timeout=DURATION]` on stdout; after them the run waits until
//! every announced key has its count of records at the sink — woken by the sink itself when it
//! runs in this process, by long-polling when `--sink-url` names another — and hands the records
//! to the remaining tests in a JSON file named by `EVENTUAL_CALLBACKS`.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    error::HarnessError,
    logs::{RunLog, Tag},
    model::{Awaiting, Phase},
};

/// Longest wait a test may ask for; longer asks are cut to it, with a log line.
pub(crate) const MAX_AWAIT: Duration = Duration::from_secs(24 * 3600);

/// One key a preparation test asked the run to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announce {
    pub(crate) key: String,
    pub(crate) count: usize,
    pub(crate) timeout: Option<Duration>,
}

/// Parses one stdout line: `None` if it is not an announce line, `Some(Err(why))` if it is one
/// that does not parse.
pub(crate) fn parse_announce(line: &str) -> Option<Result<Announce, String>> {
    let rest = line.trim().strip_prefix("::await-callback")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let form = "expected `::await-callback KEY [count=N] [timeout=DURATION]`";
    let mut words = rest.split_whitespace();
    let Some(key) = words.next() else {
        return Some(Err(format!("no key given; {form}")));
    };
    let mut announce = Announce {
        key: key.to_owned(),
        count: 1,
        timeout: None,
    };
    for word in words {
        if let Some(n) = word.strip_prefix("count=") {
            match n.parse::<usize>() {
                Ok(0) => {
                    return Some(Err(
                        "count=0 would not wait for anything; use count=1 or more".into(),
                    ));
                }
                Ok(n) if n > 100_000 => {
                    return Some(Err(format!("count={n} is more than 100000 callbacks")));
                }
                Ok(n) => announce.count = n,
                Err(_) => return Some(Err(format!("count={n} is not a whole number; {form}"))),
            }
        } else if let Some(d) = word.strip_prefix("timeout=") {
            match sink::parse_duration(d) {
                Ok(t) if t.is_zero() => {
                    return Some(Err(
                        "timeout=0 would give up at once; use e.g. timeout=30s".into()
                    ));
                }
                Ok(t) => announce.timeout = Some(t),
                Err(_) => {
                    return Some(Err(format!(
                        "timeout={d} is not a duration such as 30s, 5m or 30 (seconds); {form}"
                    )));
                }
            }
        } else {
            return Some(Err(format!("unexpected `{word}`; {form}")));
        }
    }
    Some(Ok(announce))
}

/// The announcements of one run. A key announced twice keeps the larger count and the longer
/// timeout (so two preparation tests that each start one job under the same key should say
/// `count=2`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Announcements(Arc<Mutex<Vec<Announce>>>);

impl Announcements {
    pub(crate) fn add(&self, a: Announce) {
        let mut list = self.0.lock();
        match list.iter_mut().find(|x| x.key == a.key) {
            Some(x) => {
                x.count = x.count.max(a.count);
                x.timeout = match (x.timeout, a.timeout) {
                    (Some(p), Some(q)) => Some(p.max(q)),
                    (p, q) => p.or(q),
                };
            }
            None => list.push(a),
        }
    }

    pub(crate) fn take(&self) -> Vec<Announce> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// Where the callbacks are.
#[derive(Debug, Clone)]
pub enum SinkAccess {
    /// The sink in this process: waits are woken by its inserts.
    Local(sink::Store),
    /// Another sink (`--sink-url`): waits long-poll it.
    Remote(sink::Client),
}

/// How one key's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyWait {
    Arrived(usize),
    TimedOut(usize),
    Cancelled,
}

impl SinkAccess {
    /// Waits for `count` records under `key` until `deadline` or `cancel`.
    pub(crate) async fn wait(
        &self,
        key: &str,
        count: usize,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
        on_error: &(dyn Fn(String) + Send + Sync),
    ) -> KeyWait {
        match self {
            Self::Local(store) => match store.wait_for_count(key, count, deadline, cancel).await {
                sink::CountWait::Reached(n) => KeyWait::Arrived(n),
                sink::CountWait::TimedOut(n) => KeyWait::TimedOut(n),
                sink::CountWait::Cancelled(_) => KeyWait::Cancelled,
            },
            Self::Remote(client) => {
                let mut reported = false;
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let attempt = tokio::select! {
                        r = client.wait_for_count(key, count, left) => r,
                        () = cancel.cancelled() => return KeyWait::Cancelled,
                    };
                    match attempt {
                        Ok(records) => return KeyWait::Arrived(records.len()),
                        Err(sink::ClientError::Timeout { arrived, .. }) => {
                            return KeyWait::TimedOut(arrived);
                        }
                        Err(e) => {
                            if !reported {
                                on_error(format!(
                                    "the sink at {} failed ({e}); retrying until the deadline",
                                    client.base_url()
                                ));
                                reported = true;
                            }
                            if tokio::time::Instant::now() >= deadline {
                                return KeyWait::TimedOut(0);
                            }
                            // Back-off before asking an unreachable sink again (a retry, not a
                            // wait for an event: there is nothing to be woken by).
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                                () = cancel.cancelled() => return KeyWait::Cancelled,
                            }
                        }
                    }
                }
            }
        }
    }

    /// The records of `key` as JSON values' text, oldest first.
    pub(crate) async fn records(&self, key: &str) -> Result<Vec<Bytes>, String> {
        match self {
            Self::Local(store) => Ok(store.records_json(key)),
            Self::Remote(client) => client
                .all(key)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| {
                    serde_json::to_vec(r)
                        .map(Bytes::from)
                        .map_err(|e| e.to_string())
                })
                .collect(),
        }
    }
}

/// Writes `{KEY: [records]}` for the tests after the wait.
pub(crate) fn callbacks_json(records: &[(String, Vec<Bytes>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (key, list)) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
        out.extend_from_slice(b":[");
        for (j, r) in list.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// How an await phase ended.
#[derive(Debug)]
pub(crate) enum AwaitEnd {
    /// Everything arrived; the callbacks file's path.
    Arrived(String),
    /// A key missed its deadline (the log names every missing key).
    TimedOut,
    /// The run was cancelled meanwhile.
    Cancelled,
}

/// Where the await phase reports to (the runner, for one run).
pub(crate) trait PhaseHost: Sync {
    /// Records the run's phase and its keys' progress, and tells followers.
    fn report(
        &self,
        phase: Phase,
        awaiting: &[Awaiting],
    ) -> impl Future<Output = Result<(), HarnessError>> + Send;
}

/// What the await phase needs to know and to tell.
pub(crate) struct AwaitPhase<'a, H> {
    /// Where the callbacks are (`None`: this server has none to wait on).
    pub(crate) sink: Option<&'a SinkAccess>,
    /// The wait for a key that announced no `timeout=` (`--await-timeout`).
    pub(crate) default_timeout: Duration,
    /// The run's log.
    pub(crate) log: &'a RunLog,
    /// Cancelled when the run is.
    pub(crate) cancel: &'a CancellationToken,
    /// The run's working directory, where the callbacks file is written.
    pub(crate) work: &'a Path,
    /// Told the phase and the keys' progress at every change.
    pub(crate) host: &'a H,
}

/// The await phase: waits for every announced key, then writes the callbacks file.
pub(crate) async fn await_phase<H: PhaseHost>(
    p: AwaitPhase<'_, H>,
    announcements: &Announcements,
) -> Result<AwaitEnd, HarnessError> {
    let AwaitPhase {
        sink,
        default_timeout,
        log,
        cancel,
        work,
        host,
    } = p;
    let wanted = announcements.take();
    let started = tokio::time::Instant::now();
    let started_wall = std::time::SystemTime::now();
    let limits: Vec<Duration> = wanted
        .iter()
        .map(|a| await_limit(a, default_timeout, log))
        .collect();
    let mut awaiting: Vec<Awaiting> = wanted
        .iter()
        .zip(&limits)
        .map(|(a, t)| Awaiting {
            key: a.key.clone(),
            count: a.count,
            arrived: 0,
            deadline: humantime::format_rfc3339_millis(started_wall + *t).to_string(),
        })
        .collect();
    // Logged first: the line's time is when the wait (and every deadline) starts, however long
    // recording the phase takes.
    if wanted.is_empty() {
        log.line(Tag::Harness, "phase awaiting: no callbacks were announced");
    } else {
        log.line(
            Tag::Harness,
            &format!("phase awaiting: {} key(s)", wanted.len()),
        );
    }
    host.report(Phase::Awaiting, &awaiting).await?;
    let Some(sink) = sink else {
        log.line(Tag::Harness, "error: this server has no sink to wait on");
        return Ok(AwaitEnd::TimedOut);
    };
    let on_error = |m: String| log.line(Tag::Harness, &m);
    let deadlines: Vec<_> = limits.iter().map(|t| started + *t).collect();
    // Each key is awaited one record at a time (at least `arrived + 1`, not `count`), so the
    // run JSON, its events and the run page follow every arrival, not only the last one.
    let wait_next = |n: usize, arrived: usize| {
        let (on_error, key) = (&on_error, &wanted[n].key);
        let deadline = deadlines[n];
        async move {
            let end = sink.wait(key, arrived + 1, deadline, cancel, on_error);
            (n, end.await)
        }
    };
    let mut waits = futures_util::stream::FuturesUnordered::new();
    for n in 0..wanted.len() {
        waits.push(wait_next(n, 0));
    }
    let mut missing = Vec::new();
    while let Some((n, end)) = futures_util::StreamExt::next(&mut waits).await {
        let a = &wanted[n];
        match end {
            KeyWait::Arrived(count) => {
                awaiting[n].arrived = count;
                log.line(
                    Tag::Harness,
                    &format!(
                        "callback {} arrived ({}/{}) after {:.3}s",
                        a.key,
                        count.min(a.count),
                        a.count,
                        started.elapsed().as_secs_f64()
                    ),
                );
                if count < a.count {
                    waits.push(wait_next(n, count));
                }
            }
            KeyWait::TimedOut(count) => {
                awaiting[n].arrived = count;
                missing.push(format!("{} ({count} of {} arrived)", a.key, a.count));
            }
            KeyWait::Cancelled => return Ok(AwaitEnd::Cancelled),
        }
        host.report(Phase::Awaiting, &awaiting).await?;
    }
    if !missing.is_empty() {
        log.line(
            Tag::Harness,
            &format!("timed out waiting for callbacks: {}", missing.join(", ")),
        );
        return Ok(AwaitEnd::TimedOut);
    }
    let mut records = Vec::with_capacity(wanted.len());
    for a in &wanted {
        let list = sink.records(&a.key).await.unwrap_or_else(|e| {
            log.line(
                Tag::Harness,
                &format!("failed to read the callbacks of {}: {e}", a.key),
            );
            Vec::new()
        });
        records.push((a.key.clone(), list));
    }
    let file = work.join("callbacks.json");
    std::fs::write(&file, callbacks_json(&records))?;
    host.report(Phase::Validation, &awaiting).await?;
    log.line(
        Tag::Harness,
        &format!(
            "phase validation: callbacks in {} (EVENTUAL_CALLBACKS)",
            file.display()
        ),
    );
    Ok(AwaitEnd::Arrived(file.display().to_string()))
}

/// How long to wait for one announced key.
fn await_limit(a: &Announce, default_timeout: Duration, log: &RunLog) -> Duration {
    match a.timeout {
        Some(t) if t > MAX_AWAIT => {
            log.line(
                Tag::Harness,
                &format!(
                    "timeout={} for {} is longer than {}; waiting {} instead",
                    humantime::format_duration(t),
                    a.key,
                    humantime::format_duration(MAX_AWAIT),
                    humantime::format_duration(MAX_AWAIT)
                ),
            );
            MAX_AWAIT
        }
        Some(t) => t,
        None => default_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_lines_parse_with_defaults_and_options() {
        assert_eq!(parse_announce("collected 3 items"), None);
        assert_eq!(parse_announce("::await-callbackx k"), None);
        let a =
            parse_announce("  ::await-callback run-1.job count=2 timeout=30s").and_then(Result::ok);
        assert_eq!(
            a,
            Some(Announce {
                key: "run-1.job".into(),
                count: 2,
                timeout: Some(Duration::from_secs(30))
            })
        );
        let plain = parse_announce("::await-callback k").and_then(Result::ok);
        assert_eq!(plain.map(|a| (a.count, a.timeout)), Some((1, None)));
        // A bare number is seconds, as for every other duration of Eventual.
        let bare = parse_announce("::await-callback k timeout=45").and_then(Result::ok);
        assert_eq!(bare.and_then(|a| a.timeout), Some(Duration::from_secs(45)));
    }

    #[test]
    fn malformed_announce_lines_say_what_is_wrong() {
        for (line, hint) in [
            ("::await-callback", "no key"),
            ("::await-callback k count=0", "count=0"),
            ("::await-callback k count=two", "whole number"),
            ("::await-callback k timeout=soon", "duration"),
            ("::await-callback k timeout=0s", "at once"),
            ("::await-callback k colour=red", "unexpected"),
        ] {
            let err = parse_announce(line)
                .and_then(Result::err)
                .unwrap_or_default();
            assert!(err.contains(hint), "{line}: {err}");
        }
    }

    #[test]
    fn a_key_announced_twice_keeps_the_larger_count_and_longer_timeout() {
        let all = Announcements::default();
        all.add(Announce {
            key: "k".into(),
            count: 1,
            timeout: Some(Duration::from_secs(5)),
        });
        all.add(Announce {
            key: "k".into(),
            count: 3,
            timeout: None,
        });
        all.add(Announce {
            key: "j".into(),
            count: 1,
            timeout: None,
        });
        let list = all.take();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].count, list[0].timeout),
            (3, Some(Duration::from_secs(5)))
        );
    }

    #[test]
    fn the_callbacks_file_maps_keys_to_record_lists() {
        let json = callbacks_json(&[
            ("a".into(), vec![Bytes::from_static(b"{\"seq\":1}")]),
            ("b\"".into(), vec![]),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
        assert_eq!(v["a"][0]["seq"], 1);
        assert_eq!(v["b\""], serde_json::json!([]));
    }
}
