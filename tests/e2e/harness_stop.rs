//! Stopping `eventual serve` with SIGTERM while a run is running: the run's processes are ended
//! at once (not left to a later restart), the run ends `interrupted`, queued runs stay queued for
//! the next start, and open streams (the UI's events, a log follower) do not keep the server up.

use anyhow::ensure;

use crate::helpers::{EXIT_TIMEOUT, FIXTURE_TESTS, Launch, PROMPTLY, processes_in};

#[tokio::test]
async fn sigterm_ends_running_tests_marks_them_interrupted_and_exits_despite_open_streams()
-> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    server.create_run("ann", 1, &["hang.sh"]).await?;
    server.create_run("bob", 1, &["pass.sh"]).await?;
    server
        .follow_log(1)
        .await?
        .until_line(
            "hang.sh's first line",
            |l| l.ends_with(" out hanging"),
            PROMPTLY,
        )
        .await?;
    let work = data.path().join("runs/1/work");
    ensure!(!processes_in(&work).is_empty(), "hang.sh is running");
    // Streams a browser would hold open.
    let _events = server.sse("/api/events").await?;
    let _follower = server.follow_log(1).await?;
    let _queued_follower = server.follow_log(2).await?;

    server.signal("TERM")?;
    let status = server.wait_exit(EXIT_TIMEOUT).await?;
    ensure!(status.success(), "serve exits 0 on SIGTERM: {status}");
    let left = processes_in(&work);
    ensure!(
        left.is_empty(),
        "the test's processes outlived the server: {left:?}"
    );

    let server = Launch::serve(data.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    let run1 = server.run(1).await?;
    ensure!(run1["status"] == "interrupted", "{run1}");
    let (run2, _) = server.wait_run_finished(2).await?;
    ensure!(
        run2["status"] == "passed",
        "the queued run went on after the restart: {run2}"
    );
    Ok(())
}
