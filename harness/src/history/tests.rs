//! The same behaviour from each backend: every test runs on SQLite and, where PostgreSQL is
//! installed (always under `scripts/test.sh`), on a fresh database of a private server.

use super::*;
use crate::testing::fresh_database;

/// A history on each backend, with what keeps it alive. `node` names the PostgreSQL node.
struct Backends {
    histories: Vec<(&'static str, History)>,
    _dir: tempfile::TempDir,
    url: Option<String>,
}

async fn backends() -> Backends {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut histories = vec![(
        "sqlite",
        History::open_sqlite(&dir.path().join("history.db")).expect("open sqlite"),
    )];
    let mut url = None;
    if let Some(database) = fresh_database().await {
        histories.push((
            "postgres",
            History::open_postgres(&database, "node-a")
                .await
                .expect("open postgres"),
        ));
        url = Some(database);
    }
    Backends {
        histories,
        _dir: dir,
        url,
    }
}

fn ids(runs: &[Run]) -> Vec<i64> {
    runs.iter().map(|r| r.id).collect()
}

fn is_rfc3339_millis_utc(t: &str) -> bool {
    humantime::parse_rfc3339(t).is_ok() && t.len() == "2026-01-01T00:00:00.000Z".len()
}

#[tokio::test]
async fn a_run_is_stored_with_its_tests_and_read_back_as_written() {
    for (backend, h) in backends().await.histories {
        let run = h
            .insert_run("ann", 3, &["a.sh".into(), "b.py".into()], 1)
            .await
            .expect("insert");
        assert_eq!(run.status, RunStatus::Queued, "{backend}");
        assert!(
            is_rfc3339_millis_utc(&run.created_at),
            "{backend}: {}",
            run.created_at
        );
        assert_eq!(h.prep_count(run.id).await.expect("prep"), 1, "{backend}");

        h.set_run_status(run.id, RunStatus::Running)
            .await
            .expect("running");
        h.set_test(run.id, 0, TestStatus::Passed, Some(0), Some(1_234))
            .await
            .expect("test");
        let awaiting = vec![Awaiting {
            key: "order-1".into(),
            count: 2,
            arrived: 1,
            deadline: "2026-01-01T00:00:00.000Z".into(),
        }];
        h.set_phase(run.id, Phase::Awaiting, &awaiting)
            .await
            .expect("phase");
        h.set_run_status(run.id, RunStatus::Passed)
            .await
            .expect("passed");

        let read = h.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(read.id, run.id, "{backend}");
        assert_eq!(
            (read.username.as_str(), read.env_id),
            ("ann", 3),
            "{backend}"
        );
        assert_eq!(read.status, RunStatus::Passed, "{backend}");
        assert_eq!(read.created_at, run.created_at, "{backend}");
        let (started, finished) = (
            read.started_at.expect("started"),
            read.finished_at.expect("finished"),
        );
        assert!(
            is_rfc3339_millis_utc(&started) && is_rfc3339_millis_utc(&finished),
            "{backend}"
        );
        assert!(started <= finished, "{backend}: {started} > {finished}");
        assert_eq!(read.phase, Some(Phase::Awaiting), "{backend}");
        assert_eq!(read.awaiting, awaiting, "{backend}");
        let tests: Vec<_> = read
            .tests
            .iter()
            .map(|t| (t.path.as_str(), t.status, t.exit_code, t.duration_ms))
            .collect();
        assert_eq!(
            tests,
            vec![
                ("a.sh", TestStatus::Passed, Some(0), Some(1_234)),
                ("b.py", TestStatus::Pending, None, None)
            ],
            "{backend}"
        );
        assert!(
            h.get_run(run.id + 1_000).await.expect("get").is_none(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    for (backend, h) in backends().await.histories {
        let mut made = Vec::new();
        for i in 0..5u32 {
            let user = if i % 2 == 0 { "ann" } else { "bob" };
            let tests = [if i == 3 { "rare.sh" } else { "t.sh" }.to_owned()];
            made.push(
                h.insert_run(user, 1 + i % 2, &tests, 0)
                    .await
                    .expect("insert")
                    .id,
            );
        }
        h.set_run_status(made[1], RunStatus::Failed)
            .await
            .expect("status");
        let page = |filter: RunFilter| {
            let h = h.clone();
            async move { ids(&h.list_runs(&filter).await.expect("list")) }
        };
        let newest_first = |picks: &[usize]| picks.iter().map(|&i| made[i]).collect::<Vec<_>>();
        let limit = |limit| RunFilter {
            limit,
            ..RunFilter::default()
        };
        assert_eq!(page(limit(2)).await, newest_first(&[4, 3]), "{backend}");
        assert_eq!(
            page(RunFilter {
                before: Some(made[3]),
                ..limit(2)
            })
            .await,
            newest_first(&[2, 1]),
            "{backend}"
        );
        assert_eq!(
            page(RunFilter {
                username: Some("ann".into()),
                ..limit(50)
            })
            .await,
            newest_first(&[4, 2, 0]),
            "{backend}"
        );
        assert_eq!(
            page(RunFilter {
                env_id: Some(2),
                ..limit(50)
            })
            .await,
            newest_first(&[3, 1]),
            "{backend}"
        );
        assert_eq!(
            page(RunFilter {
                status: Some(RunStatus::Failed),
                ..limit(50)
            })
            .await,
            newest_first(&[1]),
            "{backend}"
        );
        assert_eq!(
            page(RunFilter {
                test: Some("rare.sh".into()),
                ..limit(50)
            })
            .await,
            newest_first(&[3]),
            "{backend}"
        );
        let listed = h.list_runs(&limit(1)).await.expect("list");
        assert_eq!(
            listed[0].tests.len(),
            1,
            "{backend}: a listed run carries its tests"
        );
    }
}

#[tokio::test]
async fn a_tests_history_lists_each_run_of_it_newest_first() {
    for (backend, h) in backends().await.histories {
        let first = h
            .insert_run("ann", 1, &["a.sh".into()], 0)
            .await
            .expect("insert");
        let other = h
            .insert_run("ann", 1, &["b.sh".into()], 0)
            .await
            .expect("insert");
        let second = h
            .insert_run("bob", 2, &["b.sh".into(), "a.sh".into()], 0)
            .await
            .expect("insert");
        h.set_test(first.id, 0, TestStatus::Failed, Some(1), Some(20))
            .await
            .expect("test");
        h.set_test(second.id, 1, TestStatus::Passed, Some(0), Some(10))
            .await
            .expect("test");
        let history = h.test_history("a.sh", 10).await.expect("history");
        let seen: Vec<_> = history
            .iter()
            .map(|t| {
                (
                    t.run_id,
                    t.status,
                    t.exit_code,
                    t.duration_ms,
                    t.env_id,
                    t.username.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (second.id, TestStatus::Passed, Some(0), Some(10), 2, "bob"),
                (first.id, TestStatus::Failed, Some(1), Some(20), 1, "ann"),
            ],
            "{backend}"
        );
        assert!(history.iter().all(|t| t.run_id != other.id), "{backend}");
        assert_eq!(
            h.test_history("a.sh", 1).await.expect("history").len(),
            1,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_restart_interrupts_the_runs_left_running_and_returns_queued_ones_oldest_first() {
    for (backend, h) in backends().await.histories {
        let running = h
            .insert_run("ann", 1, &["a.sh".into(), "b.sh".into()], 0)
            .await
            .expect("insert");
        h.set_run_status(running.id, RunStatus::Running)
            .await
            .expect("status");
        h.set_test(running.id, 0, TestStatus::Running, None, None)
            .await
            .expect("test");
        h.set_test_pgid(running.id, 0, 4242).await.expect("pgid");
        let queued: Vec<i64> = [
            h.insert_run("bob", 2, &["a.sh".into()], 0)
                .await
                .expect("insert")
                .id,
            h.insert_run("cid", 2, &["a.sh".into()], 0)
                .await
                .expect("insert")
                .id,
        ]
        .into();

        let (interrupted, waiting) = h.recover().await.expect("recover");
        assert_eq!(interrupted, vec![(running.id, Some(4242))], "{backend}");
        assert_eq!(ids(&waiting), queued, "{backend}");
        let run = h.get_run(running.id).await.expect("get").expect("exists");
        assert_eq!(run.status, RunStatus::Interrupted, "{backend}");
        assert!(run.finished_at.is_some(), "{backend}");
        let statuses: Vec<_> = run.tests.iter().map(|t| t.status).collect();
        assert_eq!(
            statuses,
            vec![TestStatus::Cancelled, TestStatus::Skipped],
            "{backend}"
        );
    }
}

/// Cluster mode: a node that restarts interrupts what *it* left running, and nothing another
/// node is running; both see every run.
#[tokio::test]
async fn a_restarting_node_interrupts_only_its_own_runs() {
    let backends = backends().await;
    let Some(url) = backends.url.clone() else {
        return;
    };
    let a = History::open_postgres(&url, "node-a")
        .await
        .expect("open a");
    let b = History::open_postgres(&url, "node-b")
        .await
        .expect("open b");
    let on_a = a
        .insert_run("ann", 1, &["a.sh".into()], 0)
        .await
        .expect("insert");
    let on_b = b
        .insert_run("bob", 2, &["a.sh".into()], 0)
        .await
        .expect("insert");
    a.set_run_status(on_a.id, RunStatus::Running)
        .await
        .expect("status");
    b.set_run_status(on_b.id, RunStatus::Running)
        .await
        .expect("status");

    let (interrupted, _) = a.recover().await.expect("recover a");
    assert_eq!(interrupted, vec![(on_a.id, None)]);
    let seen_by_b = b
        .get_run(on_a.id)
        .await
        .expect("get")
        .expect("b sees a's run");
    assert_eq!(seen_by_b.status, RunStatus::Interrupted);
    let other = a
        .get_run(on_b.id)
        .await
        .expect("get")
        .expect("a sees b's run");
    assert_eq!(
        other.status,
        RunStatus::Running,
        "node-a's restart left node-b's run alone"
    );
}

/// Nodes started at once on an empty database migrate it once and all come up; a database
/// whose harness schema is newer than this build is refused with a message saying what to do.
#[tokio::test]
async fn nodes_migrate_an_empty_database_together_and_refuse_a_newer_schema() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let opened = futures_util::future::join_all(
        (0..3).map(|i| History::open_postgres(&url, if i == 0 { "a" } else { "b" })),
    )
    .await;
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO eventual_harness_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'from_the_future', '', '0')",
        )
        .await
        .expect("pretend a newer node migrated");
    let refused = History::open_postgres(&url, "old")
        .await
        .expect_err("refused");
    let message = refused.to_string();
    assert!(
        message.contains("999") && message.contains("upgrade eventual"),
        "{message}"
    );
}
