//! `eventual sink --database`: nodes of the real binary on one real PostgreSQL (started by the
//! test from the system's binaries; `SKIPPED` where none is installed and none is required, see
//! `sink/tests/cluster`).

use anyhow::ensure;
use serde_json::json;
use sink::TestPostgres;

use crate::helpers::{Launch, spawn_eventual};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_acknowledged_by_a_node_killed_with_9_are_read_from_another() -> anyhow::Result<()>
{
    let Some(pg) = TestPostgres::start_or_skip("kill -9 of a node") else {
        return Ok(());
    };
    let url = pg.fresh_database().await?;
    let mut a = spawn_eventual(&["sink", "--database", &url]).await?;
    let b = spawn_eventual(&["sink", "--database", &url]).await?;
    for n in 0..50 {
        let (status, ack) = a
            .post_json(&format!("job-{}", n % 5), &json!({"n": n}))
            .await?;
        ensure!(status == 200, "post {n}: {status} {ack}");
    }
    a.kill_9()?;
    for k in 0..5 {
        let records = b.all(&format!("job-{k}")).await?;
        let ns: Vec<_> = records.iter().map(|r| r["body"]["n"].clone()).collect();
        let expected: Vec<_> = (0..50).filter(|n| n % 5 == k).map(|n| json!(n)).collect();
        ensure!(ns == expected, "job-{k} on node B: {ns:?}");
    }
    // A node started afterwards continues every key's seq.
    let c = spawn_eventual(&["sink", "--database", &url]).await?;
    let (_, ack) = c.post_json("job-0", &json!({"n": 50})).await?;
    ensure!(ack["seq"] == 11, "seq goes on cluster-wide: {ack}");
    Ok(())
}

/// Starts `eventual ARGS…`, which must refuse to start; returns what it said on stderr.
async fn refused(args: &[&str]) -> anyhow::Result<String> {
    let out = Launch::new(args)
        .output(crate::helpers::EXIT_TIMEOUT)
        .await?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success(), "{args:?} started: {said}");
    Ok(said)
}

#[tokio::test]
async fn database_flags_that_cannot_work_are_refused_at_start_saying_why() -> anyhow::Result<()> {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().unwrap();
    let said = refused(&["serve", "--database", url, "--data-dir", data_dir]).await?;
    ensure!(said.contains("failed to open the database"), "{said}");
    ensure!(!said.contains("nobody@"), "the URL is not echoed: {said}");

    let said = refused(&["sink", "--database", url, "--data-dir", data_dir]).await?;
    ensure!(said.contains("give one of them"), "{said}");

    let said = refused(&["sink", "--database", url]).await?;
    ensure!(said.contains("failed to open the database"), "{said}");
    ensure!(
        said.matches("the database is unreachable").count() == 1,
        "the cause is said once: {said}"
    );
    ensure!(
        !said.contains("nobody@"),
        "the URL (it may hold a password) is not echoed: {said}"
    );
    Ok(())
}
