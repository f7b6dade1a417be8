//! History survives a restart of the harness on the same data directory.

use crate::helpers::{id_of, spawn_app_in, test_statuses};

#[tokio::test]
async fn a_new_harness_on_the_same_data_dir_shows_the_finished_runs_with_their_tests_and_logs() {
    let dir = tempfile::tempdir().expect("data dir");
    let first = spawn_app_in(dir.path(), |_| {}).await;
    let passed = id_of(&first.create_run("ann", 1, &["pass.sh", "fail.sh"]).await);
    let passed = first.wait_finished(passed).await;
    let log = first.log(id_of(&passed)).await;
    first.stop().await;

    let second = spawn_app_in(dir.path(), |_| {}).await;
    let runs = second.get_json("/api/runs").await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs["runs"][0], passed, "the run is as it was");
    assert_eq!(test_statuses(&runs["runs"][0]), ["passed", "failed"]);
    assert_eq!(second.log(id_of(&passed)).await, log, "the log is kept");
    assert_eq!(
        second.follow_log(id_of(&passed)).await,
        log,
        "following a finished run's log ends at once"
    );

    // New runs carry on after the old ids.
    let next = second.create_run("bob", 1, &["pass.sh"]).await;
    assert!(id_of(&next) > id_of(&passed), "{next}");
    assert_eq!(second.wait_finished(id_of(&next)).await["status"], "passed");
}
