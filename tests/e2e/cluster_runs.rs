//! `eventual serve --database`: runs shared by nodes of the real binary on one real PostgreSQL
//! (started by the test from the system's binaries; `SKIPPED` where none is installed and none
//! is required). Every wait is on an event: the runs' changes on `GET /api/events`, a followed
//! log, a long-poll.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use sink::TestPostgres;

use crate::helpers::{FIXTURE_TESTS, Launch, Running, kill_processes_in};

/// `eventual serve` as node `name` of the cluster on `url`, its state in `dir`, with `extra`
/// flags last.
fn node(dir: &Path, catalog: &str, url: &str, name: &str, extra: &[&str]) -> Launch {
    let dir = dir.to_string_lossy();
    let mut args = vec![
        "serve",
        "--data-dir",
        &dir,
        "--sample-tests",
        catalog,
        "--database",
        url,
        "--node-name",
        name,
        "--test-timeout",
        "120s",
        "--kill-grace",
        "1s",
    ];
    args.extend_from_slice(extra);
    Launch::new(&args)
}

/// A fresh database of a private PostgreSQL (dropped with the returned server), or `None` where
/// PostgreSQL is not installed and not required: the test is skipped, saying `what` it needed.
async fn database(what: &str) -> anyhow::Result<Option<(TestPostgres, String)>> {
    let Some(pg) = TestPostgres::start_or_skip(what) else {
        return Ok(None);
    };
    let url = pg.fresh_database().await?;
    Ok(Some((pg, url)))
}

/// Follows run `id` (`hang.sh`) on `node` until its whole process tree exists.
async fn until_ready(node: &Running, id: i64) -> anyhow::Result<()> {
    node.follow_log(id)
        .await?
        .until_line(
            "hang.sh ready",
            |l| l.ends_with("out ready"),
            Duration::from_secs(30),
        )
        .await?;
    Ok(())
}

fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Every run the cluster knows, oldest first (paging through `GET /api/runs`).
async fn all_runs(node: &Running) -> anyhow::Result<Vec<Value>> {
    let mut runs = Vec::new();
    let mut before = String::new();
    loop {
        let (status, page) = node.get(&format!("/api/runs?limit=200{before}")).await?;
        ensure!(status == 200, "GET /api/runs answered {status}: {page}");
        let page = page["runs"].as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else { break };
        before = format!("&before={}", last["id"]);
        runs.extend(page);
    }
    runs.reverse();
    Ok(runs)
}

/// A small deterministic spread (no two clients alike): which node, which environment.
fn pick(client: u64, n: u64, modulo: u64) -> u64 {
    (client.wrapping_mul(6_364_136_223_846_793_005) ^ n.wrapping_mul(1_442_695_040_888_963_407))
        .rotate_left(17)
        % modulo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_runs_from_fifty_clients_on_three_nodes_never_overlap_and_start_in_id_order()
-> anyhow::Result<()> {
    let Some((_pg, url)) = database("runs across three nodes").await? else {
        return Ok(());
    };
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    // Started at the same moment on an empty database: the schema is migrated once, under the
    // advisory lock, and all three come up.
    let (a, b, c) = tokio::try_join!(
        node(dirs[0].path(), FIXTURE_TESTS, &url, "n1", &["--envs", "10"]).spawn(),
        node(dirs[1].path(), FIXTURE_TESTS, &url, "n2", &["--envs", "10"]).spawn(),
        node(dirs[2].path(), FIXTURE_TESTS, &url, "n3", &["--envs", "10"]).spawn(),
    )?;
    let nodes = [a, b, c];
    let migrations: usize = nodes
        .iter()
        .map(|n| {
            n.stderr()
                .lines()
                .filter(|l| {
                    l.contains("applied a database migration")
                        && l.contains("eventual_harness_schema_history")
                })
                .count()
        })
        .sum();
    let (_, schema) = nodes[0].get("/api/nodes").await?;
    ensure!(
        schema.as_array().map(Vec::len) == Some(3),
        "three nodes: {schema}"
    );
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/harness/migrations"))?
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".sql"))
        })
        .count();
    ensure!(
        migrations == known,
        "each of the harness's {known} migrations applied once in all: {migrations}"
    );

    const CLIENTS: u64 = 50;
    const PER_CLIENT: u64 = 20;
    let total = (CLIENTS * PER_CLIENT) as usize;
    let submitted = futures_util::future::try_join_all((0..CLIENTS).map(|client| {
        let nodes = &nodes;
        async move {
            let mut ids = Vec::new();
            for n in 0..PER_CLIENT {
                let to = &nodes[pick(client, n, 3) as usize];
                let env = pick(n, client, 10) as u32 + 1;
                let run = to
                    .create_run(&format!("client-{client}"), env, &["pass.sh"])
                    .await?;
                ids.push(run["id"].as_i64().context("run id")?);
            }
            anyhow::Ok(ids)
        }
    }))
    .await?;
    let submitted: HashSet<i64> = submitted.into_iter().flatten().collect();
    ensure!(
        submitted.len() == total,
        "{} distinct run ids",
        submitted.len()
    );

    // Queues are FIFO: once each environment's last run has ended, every run has. Followed
    // from a node that may not execute it.
    let runs = all_runs(&nodes[0]).await?;
    let mut last_per_env: BTreeMap<u64, i64> = BTreeMap::new();
    for run in &runs {
        last_per_env.insert(
            run["env_id"].as_u64().unwrap_or_default(),
            run["id"].as_i64().unwrap_or_default(),
        );
    }
    for (env, id) in &last_per_env {
        let reader = &nodes[(*env % 3) as usize];
        reader
            .follow_log(*id)
            .await?
            .until_end(Duration::from_secs(300))
            .await
            .with_context(|| format!("env {env}'s last run {id}"))?;
    }

    let runs = all_runs(&nodes[1]).await?;
    ensure!(runs.len() == total, "{} runs listed", runs.len());
    let mut by_env: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        ensure!(run["status"] == "passed", "every run passes: {run}");
        *by_node
            .entry(run["node"].as_str().unwrap_or("none").to_owned())
            .or_default() += 1;
        by_env
            .entry(run["env_id"].as_u64().unwrap_or_default())
            .or_default()
            .push(run);
    }
    ensure!(
        by_node.len() == 3 && by_node.values().all(|n| *n > 0),
        "the runs are spread over all three nodes: {by_node:?}"
    );
    for (env, runs) in &by_env {
        // In id order, each starts only once the one before has ended: no overlap, FIFO.
        for pair in runs.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            ensure!(
                after["started_at"].as_str() >= before["finished_at"].as_str(),
                "env {env}: run {} started before run {} ended: {before} / {after}",
                after["id"],
                before["id"]
            );
        }
    }
    // A log reads the same from any node.
    for run in runs.iter().step_by(97) {
        let id = run["id"].as_i64().unwrap_or_default();
        let reader = &nodes[pick(id as u64, 1, 3) as usize];
        let (_, log) = reader.wait_run_finished(id).await?;
        ensure!(
            log.contains(&format!("hello from {id} on env {}", run["env_id"]))
                && log.contains(&format!("run {id} passed")),
            "run {id}'s log on another node:\n{log}"
        );
    }
    eprintln!("runs per node: {by_node:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_9_has_its_run_interrupted_and_the_next_run_starts_on_another_node()
-> anyhow::Result<()> {
    let Some((_pg, url)) = database("kill -9 of a node executing a run").await? else {
        return Ok(());
    };
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let timeout = ["--node-timeout", "2s", "--envs", "2"];
    let mut a = node(dir_a.path(), FIXTURE_TESTS, &url, "node-a", &timeout)
        .spawn()
        .await?;
    // Alone, node a takes the run; then b joins.
    let hanging = a.create_run("ann", 1, &["hang.sh"]).await?;
    let hanging = hanging["id"].as_i64().context("id")?;
    until_ready(&a, hanging).await?;
    let b = node(dir_b.path(), FIXTURE_TESTS, &url, "node-b", &timeout)
        .spawn()
        .await?;
    let next = b.create_run("bob", 1, &["pass.sh"]).await?;
    let next = next["id"].as_i64().context("id")?;
    ensure!(
        b.run(next).await?["status"] == "queued",
        "env 1 is held by run {hanging} on node a"
    );
    for n in 0..20 {
        let (status, ack) = a
            .post_json(&format!("job-{}", n % 4), &json!({"n": n}))
            .await?;
        ensure!(status == 200, "post {n} to node a: {status} {ack}");
    }
    let follower = b.follow_log(hanging).await?;

    a.kill_9()?;
    let killed = Instant::now();
    let log = follower.until_end(Duration::from_secs(30)).await?;
    let noticed = killed.elapsed();
    let run = b.run(hanging).await?;
    ensure!(run["status"] == "interrupted", "{run}\n{log}");
    ensure!(
        log.contains("interrupted: node node-a stopped heartbeating"),
        "the log names the dead node:\n{log}"
    );
    ensure!(
        noticed < Duration::from_secs(2 + 10),
        "interrupted {noticed:?} after the kill (--node-timeout 2s)"
    );
    let (after, log) = b.wait_run_finished(next).await?;
    ensure!(
        after["status"] == "passed" && after["node"] == "node-b",
        "the next run went on on node b: {after}\n{log}"
    );
    // Nothing node a acknowledged is lost.
    for k in 0..4 {
        let records = b.all(&format!("job-{k}")).await?;
        let ns: Vec<_> = records.iter().map(|r| r["body"]["n"].clone()).collect();
        let expected: Vec<_> = (0..20).filter(|n| n % 4 == k).map(|n| json!(n)).collect();
        ensure!(ns == expected, "job-{k} on node b: {ns:?}");
    }
    let (_, nodes) = b.get("/api/nodes").await?;
    let dead = nodes
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "node-a"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        dead["state"] == "dead",
        "GET /api/nodes shows it dead: {nodes}"
    );
    // What the killed node left running is nobody's child now.
    kill_processes_in(dir_a.path(), Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_posted_to_node_a_answers_a_long_poll_on_b_and_releases_a_phased_run_on_c()
-> anyhow::Result<()> {
    let Some((_pg, url)) = database("callbacks and phased runs across nodes").await? else {
        return Ok(());
    };
    let catalog = tempfile::tempdir()?;
    let prep = catalog.path().join("job/preparation");
    let validation = catalog.path().join("job/validation");
    std::fs::create_dir_all(&prep)?;
    std::fs::create_dir_all(&validation)?;
    write_script(
        &prep.join("start.sh"),
        "#!/usr/bin/env bash\necho \"::await-callback job-$EVENTUAL_RUN_ID timeout=60s\"\n",
    )?;
    write_script(
        &validation.join("check.sh"),
        "#!/usr/bin/env bash\ngrep -q '\"result\":\"done\"' \"$EVENTUAL_CALLBACKS\" && echo \"checked the callback\"\n",
    )?;
    let catalog_dir = catalog.path().to_string_lossy().into_owned();
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    // Only node c executes runs.
    let (a, b, c) = tokio::try_join!(
        node(dirs[0].path(), &catalog_dir, &url, "a", &["--workers", "0"]).spawn(),
        node(dirs[1].path(), &catalog_dir, &url, "b", &["--workers", "0"]).spawn(),
        node(dirs[2].path(), &catalog_dir, &url, "c", &[]).spawn(),
    )?;
    let run = a
        .create_run(
            "ann",
            1,
            &["job/preparation/start.sh", "job/validation/check.sh"],
        )
        .await?;
    let id = run["id"].as_i64().context("id")?;
    let key = format!("job-{id}");
    b.follow_log(id)
        .await?
        .until_line(
            "the announce",
            |l| l.contains("will await 1 callback(s)"),
            Duration::from_secs(30),
        )
        .await?;
    let long_poll = {
        let http = b.http().clone();
        let at = b.at(&format!("/callbacks/{key}?wait=30s"));
        tokio::spawn(async move { crate::helpers::read(http.get(at).send().await?).await })
    };
    let (status, ack) = a.post_json(&key, &json!({"result": "done"})).await?;
    ensure!(status == 200, "{status} {ack}");
    let (status, record) = long_poll.await??;
    ensure!(
        status == 200 && record["body"]["result"] == "done",
        "node b's long-poll: {status} {record}"
    );
    let (run, log) = b.wait_run_finished(id).await?;
    ensure!(
        run["status"] == "passed" && run["node"] == "c",
        "the phased run on node c went on: {run}\n{log}"
    );
    ensure!(log.contains("checked the callback"), "{log}");

    // A test uploaded through node a is listed on b and runs on c.
    let file = catalog.path().join("uploaded.sh");
    write_script(&file, "#!/usr/bin/env bash\necho \"uploaded test runs\"\n")?;
    let uploaded = crate::helpers::cli(
        &a,
        &[
            "upload",
            file.to_str().unwrap_or_default(),
            "--dir",
            "shared",
        ],
    )
    .await?;
    ensure!(
        uploaded.status.success(),
        "{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    let run = b.create_run("bob", 2, &["shared/uploaded.sh"]).await?;
    let (run, log) = a
        .wait_run_finished(run["id"].as_i64().context("id")?)
        .await?;
    ensure!(
        run["status"] == "passed" && run["node"] == "c" && log.contains("uploaded test runs"),
        "{run}\n{log}"
    );
    // Stopped for maintenance, a node says so.
    let mut c = c;
    ensure!(c.terminate().await?.success(), "node c stops cleanly");
    let (_, nodes) = a.get("/api/nodes").await?;
    let state = |name: &str| {
        nodes
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == name))
            .map(|n| n["state"].clone())
    };
    ensure!(
        state("c") == Some(json!("stopped")) && state("a") == Some(json!("alive")),
        "GET /api/nodes after node c stopped: {nodes}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_while_the_database_is_down_is_interrupted_saying_so_and_the_queue_goes_on()
-> anyhow::Result<()> {
    let Some((pg, url)) = database("a database restart under a run").await? else {
        return Ok(());
    };
    let catalog = tempfile::tempdir()?;
    let flag = catalog.path().join("end-now");
    // Ends when the test says so: while the database is down.
    write_script(
        &catalog.path().join("wait.sh"),
        "#!/usr/bin/env bash\necho waiting\nuntil [ -e \"$END_FLAG\" ]; do sleep 0.02; done\necho ended\n",
    )?;
    write_script(
        &catalog.path().join("pass.sh"),
        "#!/usr/bin/env bash\necho passed\n",
    )?;
    let catalog_dir = catalog.path().to_string_lossy().into_owned();
    let dir = tempfile::tempdir()?;
    let a = node(
        dir.path(),
        &catalog_dir,
        &url,
        "a",
        &["--node-timeout", "3s"],
    )
    .env("END_FLAG", flag.to_str().unwrap_or_default())
    .spawn()
    .await?;
    let first = a.create_run("ann", 1, &["wait.sh"]).await?;
    let first = first["id"].as_i64().context("id")?;
    let next = a.create_run("bob", 1, &["pass.sh"]).await?;
    let next = next["id"].as_i64().context("id")?;
    a.follow_log(first)
        .await?
        .until_line(
            "wait.sh starts",
            |l| l.ends_with("out waiting"),
            Duration::from_secs(30),
        )
        .await?;

    pg.stop().await?;
    std::fs::write(&flag, "")?;
    a.wait_for_stderr("the run's end failing to be recorded", |l| {
        l.contains("run failed inside the harness")
    })
    .await?;
    let (status, refused) = a.post_json("job-1", &json!({"n": 1})).await?;
    ensure!(
        status == 503 && refused["error"]["code"] == "database_unavailable",
        "a callback while the database is down: {status} {refused}"
    );
    pg.start_again().await?;

    // The node reconnects by itself; the run it could not end is ended, saying why.
    let (run, log) = a.wait_run_finished(first).await?;
    ensure!(run["status"] == "interrupted", "{run}\n{log}");
    ensure!(
        log.contains("could not record the run's end"),
        "the log says why:\n{log}"
    );
    let (after, log) = a.wait_run_finished(next).await?;
    ensure!(
        after["status"] == "passed",
        "the queue goes on: {after}\n{log}"
    );
    let (status, ack) = a.post_json("job-1", &json!({"n": 2})).await?;
    ensure!(status == 200, "callbacks again: {status} {ack}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_name_kills_what_it_left_running_and_its_environment_goes_on()
-> anyhow::Result<()> {
    let Some((_pg, url)) = database("a node restarted after kill -9").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let launch = || node(dir.path(), FIXTURE_TESTS, &url, "node-a", &["--envs", "2"]);
    let mut a = launch().spawn().await?;
    let hanging = a.create_run("ann", 1, &["hang.sh"]).await?;
    let hanging = hanging["id"].as_i64().context("id")?;
    until_ready(&a, hanging).await?;
    let pids_file = dir.path().join(format!("runs/{hanging}/work/pids"));
    let pids: Vec<u32> = std::fs::read_to_string(&pids_file)?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let next = a.create_run("bob", 1, &["pass.sh"]).await?;
    let next = next["id"].as_i64().context("id")?;
    a.kill_9()?;
    ensure!(
        pids.iter().all(|p| testkit::procfs::alive(*p)),
        "hang.sh's tree outlives the killed node: {pids:?}"
    );

    // Back under its name, before anyone could declare it dead.
    let again = launch().spawn().await?;
    let (run, log) = again.wait_run_finished(hanging).await?;
    ensure!(run["status"] == "interrupted", "{run}\n{log}");
    ensure!(
        log.contains("interrupted: node node-a stopped while this run was running")
            && log.contains("killed 4 leftover process(es)"),
        "the log says what happened:\n{log}"
    );
    ensure!(
        pids.iter().all(|p| !testkit::procfs::alive(*p)),
        "what it left running is killed: {pids:?}"
    );
    let (after, log) = again.wait_run_finished(next).await?;
    ensure!(
        after["status"] == "passed",
        "the queue goes on: {after}\n{log}"
    );
    Ok(())
}
