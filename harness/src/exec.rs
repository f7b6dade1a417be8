//! Supervised execution of one test: its own process group, output streamed line by line into
//! the run's log, `--test-timeout` and cancel ending the whole group (SIGTERM, then SIGKILL after
//! `--kill-grace`), and processes left in the group after the test reported and killed.
//!
//! # Design
//! - `process_group(0)` makes the test the leader of a new group whose id is its pid, so
//!   `killpg` reaches everything it started that did not deliberately leave the group (`setsid`).
//! - Two reader tasks (stdout, stderr) send lines into one bounded channel in arrival order; the
//!   supervisor writes them in batches. The bound applies back-pressure to a test that prints
//!   faster than the disk takes it, so memory stays flat.
//! - A line longer than [`MAX_LINE`] is cut into several, so no single line holds memory hostage.
//! - Leftovers are found by scanning `/proc` for the group id. They are not our children, so there
//!   is no exit event to wait on: after SIGTERM we re-scan on a short interval until they are
//!   gone or the grace period ends (a bounded poll, not a synchronisation sleep).

use std::{
    ffi::OsString,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{
    logs::{RunLog, Tag},
    model::TestStatus,
};

/// Longest line kept whole; longer output is split.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// What to run and how.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Program and arguments.
    pub(crate) argv: Vec<OsString>,
    /// Working directory.
    pub(crate) cwd: PathBuf,
    /// Extra environment variables.
    pub(crate) env: Vec<(String, String)>,
    /// Past this, the group is terminated and the test is `timed_out`.
    pub(crate) timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub(crate) kill_grace: Duration,
    /// Log tags for stdout and stderr in place of `out`/`err` (a script's `sut/out`).
    pub(crate) tags: Option<(String, String)>,
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Its status.
    pub(crate) status: TestStatus,
    /// Exit code, when it exited by itself.
    pub(crate) exit_code: Option<i32>,
    /// Wall time from spawn to end.
    pub(crate) duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// Runs `spec` to its end, logging everything to `log`.
pub(crate) async fn run(
    spec: &Spec,
    log: &RunLog,
    cancel: &CancellationToken,
    on_spawn: impl FnOnce(i32),
    on_stdout: &(dyn Fn(&str) + Send + Sync),
) -> Outcome {
    let started = Instant::now();
    let Some((program, args)) = spec.argv.split_first() else {
        log.line(Tag::Harness, "error: nothing to run");
        return error_outcome(started);
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let program = program.to_string_lossy();
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "error: {program} is not installed or not on PATH: install it (e.g. `apt-get install {}`) and rerun",
                    install_hint(&program)
                )
            } else {
                format!("error: failed to start {program}: {e}")
            };
            log.line(Tag::Harness, &hint);
            return error_outcome(started);
        }
    };
    let pgid = child.id().map(|id| id as i32);
    if let Some(pgid) = pgid {
        on_spawn(pgid);
    }
    let (tx, mut rx) = mpsc::channel::<(Stream, Vec<u8>)>(1024);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(out, Stream::Out, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, Stream::Err, tx.clone())));
    }
    drop(tx);

    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut ended_by: Option<TestStatus> = None;
    let mut exit = None;
    let mut open = true;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            got = rx.recv_many(&mut batch, 256), if open => {
                if got == 0 {
                    open = false;
                } else {
                    write_batch(log, &mut batch, on_stdout, spec.tags.as_ref());
                }
            }
            status = child.wait(), if exit.is_none() => {
                exit = Some(status);
                break;
            }
            () = tokio::time::sleep_until(deadline), if ended_by.is_none() => {
                log.line(Tag::Harness, &format!(
                    "timeout: still running after {}; terminating its process group",
                    humantime::format_duration(spec.timeout)
                ));
                ended_by = Some(TestStatus::TimedOut);
                exit = Some(terminate(&mut child, pgid, spec.kill_grace, log).await);
                break;
            }
            () = cancel.cancelled(), if ended_by.is_none() => {
                log.line(
                    Tag::Harness,
                    "stopping: SIGTERM to the process group (SIGKILL after the grace period)",
                );
                ended_by = Some(TestStatus::Cancelled);
                exit = Some(terminate(&mut child, pgid, spec.kill_grace, log).await);
                break;
            }
        }
    }
    // The leader is gone; anything still in its group is a leftover.
    if let Some(pgid) = pgid {
        kill_leftovers(pgid, spec.kill_grace, log).await;
    }
    // Drain what the test printed before it ended. A process that left the group (setsid) could
    // keep a pipe open forever: give the readers a bounded time, then stop listening.
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while open {
        tokio::select! {
            got = rx.recv_many(&mut batch, 256) => {
                if got == 0 { open = false } else { write_batch(log, &mut batch, on_stdout, spec.tags.as_ref()) }
            }
            () = tokio::time::sleep_until(drain_until) => {
                log.line(Tag::Harness, "output still open after the test ended (a process outside its group holds it); stopped reading");
                break;
            }
        }
    }
    for reader in readers {
        reader.abort();
    }
    let duration = started.elapsed();
    let exit_status = exit.and_then(Result::ok);
    let exit_code = exit_status.and_then(|s| s.code());
    let status = ended_by.unwrap_or(match exit_code {
        Some(0) => TestStatus::Passed,
        _ => TestStatus::Failed,
    });
    if exit_code.is_none() && ended_by.is_none() {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = exit_status.and_then(|s| s.signal()) {
            log.line(
                Tag::Harness,
                &format!("the test was killed by signal {sig}"),
            );
        }
    }
    Outcome {
        status,
        exit_code,
        duration,
    }
}

fn error_outcome(started: Instant) -> Outcome {
    Outcome {
        status: TestStatus::Error,
        exit_code: None,
        duration: started.elapsed(),
    }
}

fn install_hint(program: &str) -> &str {
    match program {
        "python3" => "python3",
        "bash" => "bash",
        other => other,
    }
}

fn write_batch(
    log: &RunLog,
    batch: &mut Vec<(Stream, Vec<u8>)>,
    on_stdout: &(dyn Fn(&str) + Send + Sync),
    tags: Option<&(String, String)>,
) {
    let texts: Vec<(Tag<'_>, String)> = batch
        .drain(..)
        .map(|(stream, bytes)| {
            let tag = match (stream, tags) {
                (Stream::Out, None) => Tag::Out,
                (Stream::Err, None) => Tag::Err,
                (Stream::Out, Some((out, _))) => Tag::Named(out),
                (Stream::Err, Some((_, err))) => Tag::Named(err),
            };
            (tag, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    log.lines(texts.iter().map(|(tag, text)| (*tag, text.as_str())));
    // After the lines are in the log, so a reaction (e.g. an announce error) follows its cause.
    for (tag, text) in &texts {
        if *tag == Tag::Out {
            on_stdout(text);
        }
    }
}

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    loop {
        let mut line = Vec::new();
        // Read up to MAX_LINE bytes or a newline, whichever comes first.
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(_) => return,
            };
            if buf.is_empty() {
                if !line.is_empty() {
                    let _ = tx.send((stream, line)).await;
                }
                return;
            }
            let room = MAX_LINE - line.len();
            let take = buf.iter().take(room).position(|b| *b == b'\n');
            let (n, complete) = match take {
                Some(i) => (i + 1, true),
                None => (
                    buf.len().min(room),
                    line.len() + buf.len().min(room) >= MAX_LINE,
                ),
            };
            line.extend_from_slice(&buf[..n]);
            reader.consume(n);
            if complete {
                break;
            }
        }
        if tx.send((stream, line)).await.is_err() {
            return;
        }
    }
}

/// SIGTERM to the group, SIGKILL after `grace` if the leader is still there; returns its exit.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: Option<i32>,
    grace: Duration,
    log: &RunLog,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pgid) = pgid {
        signal_group(pgid, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            log.line(
                Tag::Harness,
                &format!(
                    "still running {} after SIGTERM; sending SIGKILL",
                    humantime::format_duration(grace)
                ),
            );
            if let Some(pgid) = pgid {
                signal_group(pgid, Signal::SIGKILL);
            }
            child.kill().await.ok();
            child.wait().await
        }
    }
}

fn signal_group(pgid: i32, signal: Signal) {
    // ESRCH (nobody left in the group) is the expected, harmless case.
    let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), signal);
}

/// Every process id in `/proc`.
fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Live (non-zombie) processes whose process group is `pgid`: `(pid, command name)`.
pub(crate) fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let mut members = Vec::new();
    for pid in all_pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may contain spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            members.push((pid, comm));
        }
    }
    members.sort();
    members
}

/// Kills what a crashed server left running of run `run_id` (its tests and scripts, in any
/// process group): every process whose environment carries both this run's `EVENTUAL_RUN_ID` and
/// this server's `EVENTUAL_DATA_DIR`. Ids alone could have been reused (a reboot, a container
/// restart) or belong to another server; the markers cannot. Returns what was killed.
pub(crate) fn kill_run_processes(run_id: i64, data_dir: &str) -> Vec<(i32, String)> {
    let own = std::process::id() as i32;
    let run_marker = format!("EVENTUAL_RUN_ID={run_id}");
    let dir_marker = format!("EVENTUAL_DATA_DIR={data_dir}");
    let mut killed = Vec::new();
    for pid in all_pids() {
        if pid == own {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let has = |marker: &str| env.split(|b| *b == 0).any(|var| var == marker.as_bytes());
        if has(&run_marker) && has(&dir_marker) {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default();
            if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.push((pid, name));
            }
        }
    }
    killed.sort();
    killed
}

/// Kills whatever is left in the group and says so in the log.
async fn kill_leftovers(pgid: i32, grace: Duration, log: &RunLog) {
    let found = group_members(pgid);
    if found.is_empty() {
        return;
    }
    signal_group(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        interval.tick().await;
    }
    if !group_members(pgid).is_empty() {
        signal_group(pgid, Signal::SIGKILL);
    }
    let list = found
        .iter()
        .map(|(pid, name)| format!("{pid} {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    let noun = if found.len() == 1 {
        "process"
    } else {
        "processes"
    };
    log.line(
        Tag::Harness,
        &format!("killed {} leftover {noun}: {list}", found.len()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `read_lines` sends for `input`.
    async fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
        let (tx, mut rx) = mpsc::channel(1024);
        read_lines(input, Stream::Out, tx).await;
        let mut lines = Vec::new();
        while let Some((stream, line)) = rx.recv().await {
            assert_eq!(stream, Stream::Out);
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn lines_keep_their_newline_and_a_last_line_without_one_is_not_lost() {
        assert_eq!(
            lines_of(b"one\r\ntwo\n\nlast").await,
            [&b"one\r\n"[..], b"two\n", b"\n", b"last"]
        );
        assert!(lines_of(b"").await.is_empty(), "no output, no line");
    }

    #[tokio::test]
    async fn a_line_longer_than_max_line_is_cut_into_pieces_of_max_line() {
        let mut input = vec![b'x'; 2 * MAX_LINE + 10];
        input.push(b'\n');
        input.extend_from_slice(b"after\n");
        let lines = lines_of(&input).await;
        let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 11, 6]);
        assert_eq!(lines[3], b"after\n", "the next line starts clean");
    }
}
