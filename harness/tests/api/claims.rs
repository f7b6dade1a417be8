//! The claim under stress: many runs submitted at once from many tasks never share an
//! environment, and each environment serves its runs in the order they were submitted.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::{StreamExt, stream};

use crate::{
    envs::times,
    helpers::{TestApp, id_of, parse_log_line, spawn_app},
};

const ENVS: u32 = 10;
const TASKS: usize = 30;
const RUNS_PER_TASK: usize = 10;

/// Per environment, the runs that executed there as `(run id, start ns, end ns)` in start order.
type Served = BTreeMap<u32, Vec<(i64, u128, u128)>>;

/// Submits `TASKS * RUNS_PER_TASK` runs of `times.sh` from `TASKS` concurrent tasks over `ENVS`
/// environments (each task submitting one after another), waits for them all, and returns what
/// each environment served.
async fn stress() -> (Arc<TestApp>, Served) {
    let app = Arc::new(
        spawn_app(|c| {
            c.envs = ENVS;
            c.workers = ENVS as usize;
            c.test_timeout = Duration::from_secs(30);
        })
        .await,
    );
    let submitters: Vec<_> = (0..TASKS)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..RUNS_PER_TASK {
                    let env = ((task * RUNS_PER_TASK + i) as u32 % ENVS) + 1;
                    let run = app
                        .create_run(&format!("user{task}"), env, &["times.sh"])
                        .await;
                    ids.push(id_of(&run));
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for submitter in submitters {
        ids.extend(submitter.await.expect("submitter"));
    }
    assert_eq!(ids.len(), TASKS * RUNS_PER_TASK);

    let app_ref: &TestApp = &app;
    let statuses: Vec<(i64, String)> = stream::iter(ids.iter().copied())
        .map(|id| async move {
            let run = app_ref.wait_finished(id).await;
            (id, run["status"].as_str().unwrap_or("?").to_owned())
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let failed: Vec<_> = statuses.iter().filter(|(_, s)| s != "passed").collect();
    assert!(failed.is_empty(), "every run passed: {failed:?}");

    let recorded = times(&app);
    assert_eq!(recorded.len(), ids.len(), "every run recorded its times");
    let mut served = Served::new();
    for (env, run, start, end) in recorded {
        served.entry(env).or_default().push((run, start, end));
    }
    assert_eq!(served.len(), ENVS as usize);
    for runs in served.values_mut() {
        runs.sort_by_key(|r| r.1);
    }
    app.wait_json("/api/envs", |envs| {
        envs.as_array()
            .is_some_and(|l| l.iter().all(|e| e["state"] == "free"))
    })
    .await;
    (app, served)
}

/// The run a queued run waited behind, from its log's `queued on env N behind run M` line.
async fn queued_behind(app: &TestApp, id: i64) -> Option<i64> {
    let log = app.log(id).await;
    log.lines()
        .map(parse_log_line)
        .find_map(|(tag, text)| {
            (tag == "---")
                .then(|| text.strip_prefix("queued on env"))
                .flatten()
        })
        .map(|rest| {
            rest.split_once(" behind run ")
                .and_then(|(_, r)| r.split_whitespace().next())
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("run {id} says whom it queued behind:\n{log}"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_never_overlap_on_an_env_and_each_queue_is_served_in_order() {
    let (app, served) = stress().await;
    let overlaps: usize = served
        .values()
        .map(|runs| runs.windows(2).filter(|p| p[0].2 > p[1].1).count())
        .sum();
    eprintln!(
        "FIGURE claim race: {} runs submitted by {TASKS} concurrent clients over {ENVS} environments: {overlaps} overlapping",
        TASKS * RUNS_PER_TASK
    );
    for (env, runs) in &served {
        for pair in runs.windows(2) {
            let ((a, _, a_end), (b, b_start, _)) = (pair[0], pair[1]);
            assert!(
                a_end <= b_start,
                "env {env}: run {b} started before run {a} ended"
            );
            // A run that had to queue starts right after the run it queued behind.
            if let Some(behind) = queued_behind(&app, b).await {
                assert_eq!(
                    behind, a,
                    "env {env}: run {b} queued behind run {behind} but started after run {a}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_on_an_env_start_in_run_id_order() {
    let (_app, served) = stress().await;
    for (env, runs) in &served {
        let order: Vec<i64> = runs.iter().map(|r| r.0).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "env {env} started its runs in id order");
    }
}
