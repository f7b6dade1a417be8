//! A server killed with `kill -9` while a run's services and test run: the restart kills what
//! the dead server left running (the test *and* the services, found by the run's markers in their
//! environment) and runs the run's `ignore_abort` cleanup.

use std::time::Duration;

use anyhow::ensure;

use crate::helpers::{Launch, PROMPTLY, kill_processes_in, processes_in};

const SERVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/services");

#[tokio::test]
async fn kill_9_during_a_run_with_services_leaves_nothing_running_after_the_restart()
-> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let work = data.path().join("runs/1/work");
    let mut server = Launch::serve(data.path(), SERVICES, &[]).spawn().await?;
    server.create_run("ann", 1, &["basic/hang.sh"]).await?;
    server
        .follow_log(1)
        .await?
        .until_line(
            "the test waiting",
            |l| l.ends_with(" out waiting"),
            PROMPTLY,
        )
        .await?;
    let before = processes_in(&work);
    ensure!(
        before.iter().any(|(_, name)| name.starts_with("python3")),
        "the sut service runs beside the test: {before:?}"
    );
    server.kill_9()?;
    let checked = async {
        let server = Launch::serve(data.path(), SERVICES, &[]).spawn().await?;
        let run = server.run(1).await?;
        ensure!(run["status"] == "interrupted", "{run}");
        // The cleanup (ignore_abort) runs in the background after the restart, in the run's
        // working directory; the log shows when it has ended (polled with a deadline: the run
        // itself is over, so its log is not followed live).
        let deadline = tokio::time::Instant::now() + PROMPTLY;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let log = server
                .http()
                .get(server.at("/api/runs/1/log"))
                .send()
                .await?
                .text()
                .await?;
            if log.contains("--- script cleanup passed") {
                ensure!(log.contains("cleanup/out cleaning up"), "{log}");
                // The same start and end lines as a script of a live run (the log viewer's
                // section of it).
                ensure!(log.contains("--- script cleanup starts: "), "{log}");
                ensure!(
                    log.lines()
                        .any(|l| l.contains("--- script cleanup passed exit=0 in ")),
                    "{log}"
                );
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no cleanup after the restart:\n{log}"
            );
            tick.tick().await;
        }
        let left = processes_in(&work);
        ensure!(left.is_empty(), "the restart left these running: {left:?}");
        Ok(server)
    }
    .await;
    // Clean up by hand before reporting, so a failure leaves nothing behind either.
    kill_processes_in(&work, Duration::from_secs(10)).await?;
    checked.map(|_| ())
}
