//! Cluster mode of the sink: several nodes (real servers on port 0) on one real PostgreSQL
//! server, started by each test from the system's binaries.
//!
//! Without PostgreSQL installed these tests say `SKIPPED` and pass, so the default build needs
//! none; `scripts/test.sh` installs it and sets `EVENTUAL_REQUIRE_POSTGRES=1`, which makes a
//! missing server a failure instead.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sink::{Config, Sink, TestPostgres, TestSink};
use tokio::sync::Notify;

/// A node on `url`. Its waiters never read again on their own (the safety net's interval is
/// an hour), so a wake-up in these tests can only come from a notification.
fn on(url: &str) -> Config {
    Config {
        database: Some(url.to_owned()),
        recheck_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

async fn node(url: &str) -> TestSink {
    TestSink::start_with(on(url)).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(node: &TestSink, key: &str, body: Value) -> reqwest::Response {
    http()
        .post(node.callback_url(key))
        .json(&body)
        .send()
        .await
        .expect("post reaches the node")
}

/// Polls a node's `/healthz` until `n` requests wait on it (bounded).
async fn until_waiting(node: &TestSink, n: u64) {
    until_json(node, "/healthz", |health| health["waiting"] == n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_posted_to_one_node_answers_a_long_poll_and_an_event_stream_on_another() {
    let Some(pg) = TestPostgres::start_or_skip("cross-node wake-up") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let (a, b) = (node(&url).await, node(&url).await);

    let poll = tokio::spawn({
        let at = format!("{}/callbacks/job-1?wait=20s", b.url());
        async move { http().get(at).send().await.unwrap() }
    });
    let events = http()
        .get(format!("{}/callbacks/job-1/events", b.url()))
        .send()
        .await
        .unwrap();
    until_waiting(&b, 2).await;

    let ack: Value = post(&a, "job-1", json!({"status": "done"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ack, json!({"key": "job-1", "seq": 1}));

    let answer = poll.await.unwrap();
    assert_eq!(answer.status(), 200);
    let record: Value = answer.json().await.unwrap();
    assert_eq!(record["body"]["status"], "done");
    assert_eq!(record["seq"], 1);

    let mut stream = events.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event on node B")
            .expect("stream open")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        seen.contains("event: callback") && seen.contains("id: 1"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_watch_on_one_node_gets_the_callbacks_posted_to_another_in_commit_order() {
    let Some(pg) = TestPostgres::start_or_skip("cross-node prefix watch") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let (a, b) = (node(&url).await, node(&url).await);
    assert_eq!(post(&a, "w/1", json!({"n": 1})).await.status(), 200);
    let response = http()
        .get(format!("{}/watch?prefix=w/", b.url()))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut parser = testkit::sse::SseParser::default();
    let mut events = Vec::new();
    while events.len() < 3 {
        if let Some(event) = parser.next_event() {
            events.push(event);
            if events.len() == 1 {
                // Live ones, through node A, and one under another prefix between them.
                assert_eq!(post(&a, "other", json!({})).await.status(), 200);
                assert_eq!(post(&a, "w/2", json!({"n": 2})).await.status(), 200);
                assert_eq!(post(&b, "w/1", json!({"n": 3})).await.status(), 200);
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event on node B (woken by a notification: no re-check here)")
            .expect("stream open")
            .unwrap();
        parser.push(&chunk);
    }
    let ns: Vec<Value> = events
        .iter()
        .map(|e| e.json()["body"]["n"].clone())
        .collect();
    assert_eq!(ns, [json!(1), json!(2), json!(3)]);
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_to_one_key_through_two_nodes_get_each_seq_exactly_once() {
    let Some(pg) = TestPostgres::start_or_skip("seq per key") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let nodes = Arc::new([node(&url).await, node(&url).await]);
    let posts = (0..400).map(|i| {
        let nodes = Arc::clone(&nodes);
        tokio::spawn(async move {
            let ack: Value = post(&nodes[i % 2], "one-key", json!({"i": i}))
                .await
                .json()
                .await
                .unwrap();
            ack["seq"].as_u64().unwrap()
        })
    });
    let seqs: BTreeSet<u64> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(seqs, (1..=400).collect::<BTreeSet<_>>());
    let all: Value = http()
        .get(format!("{}/callbacks/one-key/all", nodes[1].url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<u64> = all["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, (1..=400).collect::<Vec<_>>(), "in seq order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_cluster_wide() {
    let Some(pg) = TestPostgres::start_or_skip("capacity") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let capped = |url: &str| Config {
        max_callbacks: 3,
        ..on(url)
    };
    let a = TestSink::start_with(capped(&url)).await;
    let b = TestSink::start_with(capped(&url)).await;
    for (node, key) in [(&a, "x"), (&b, "y"), (&a, "z")] {
        assert_eq!(post(node, key, json!({})).await.status(), 200);
    }
    let full = post(&b, "w", json!({})).await;
    assert_eq!(full.status(), 507);
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["error"]["code"], "sink_full");
    // Deleting on one node makes room on the other.
    http()
        .delete(format!("{}/callbacks/x", a.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(post(&b, "w", json!({})).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_at_once_on_an_empty_database_migrate_once_and_all_come_up() {
    let Some(pg) = TestPostgres::start_or_skip("concurrent start") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let (a, b, c) = tokio::join!(
        Sink::open(on(&url)),
        Sink::open(on(&url)),
        Sink::open(on(&url))
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let applied: i64 = client
        .query_one("SELECT count(*) FROM eventual_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    let known = sink::schema_version();
    assert_eq!(applied, known, "each migration applied once");
    for sink in [a, b, c] {
        sink.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_newer_schema_is_refused_saying_so() {
    let Some(pg) = TestPostgres::start_or_skip("newer schema") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    Sink::open(on(&url)).await.unwrap().close().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO eventual_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'from_the_future', 'now', '0')",
        )
        .await
        .unwrap();
    let err = Sink::open(on(&url)).await.unwrap_err().to_string();
    assert!(
        err.contains("version 999") && err.contains("newer than this eventual knows"),
        "{err}"
    );
}

/// Posts numbered callbacks one after another until told to stop; answers what was
/// acknowledged and what was refused, and signals the first refusal.
async fn post_until(
    node: String,
    stop: Arc<Notify>,
    refused_once: Arc<Notify>,
) -> (Vec<u64>, usize) {
    let client = http();
    let (mut acked, mut refused) = (Vec::new(), 0);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    for n in 0u64.. {
        if futures_util::poll!(stopped.as_mut()).is_ready() {
            break;
        }
        let response = client
            .post(format!("{node}/callbacks/restart"))
            .json(&json!({"n": n}))
            .send()
            .await
            .expect("the node answers while its database restarts");
        match response.status().as_u16() {
            200 => acked.push(n),
            503 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
                refused += 1;
                refused_once.notify_one();
            }
            other => panic!("a post was answered {other}: only 200 or a clear 503 are acceptable"),
        }
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_nothing_acknowledged_and_nodes_reconnect_by_themselves()
 {
    let Some(pg) = TestPostgres::start_or_skip("database restart") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let (a, b) = (node(&url).await, node(&url).await);
    let (stop, refused_once) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let poster = tokio::spawn(post_until(
        a.url().to_owned(),
        Arc::clone(&stop),
        Arc::clone(&refused_once),
    ));

    // Some acknowledged before, the database goes away, posts are refused, it comes back.
    let first = b
        .client()
        .wait_for_count("restart", 20, Duration::from_secs(30))
        .await
        .expect("posts are acknowledged before the restart");
    assert!(first.len() >= 20);
    pg.stop().await.unwrap();
    refused_once.notified().await;
    pg.start_again().await.unwrap();

    // Both nodes reconnect without help: posts are acknowledged again, and a long-poll on B is
    // answered by a post on A (B's listener is back too).
    let before = b
        .client()
        .all("restart")
        .await
        .expect("node B reads again after the restart")
        .len();
    b.client()
        .wait_for_count("restart", before + 20, Duration::from_secs(30))
        .await
        .expect("posts are acknowledged after the restart");
    stop.notify_one();
    let (acked, refused) = poster.await.unwrap();
    assert!(refused > 0, "the restart was seen");

    let stored: BTreeSet<u64> = b
        .all("restart")
        .await
        .unwrap()
        .iter()
        .map(|r| r.body.as_ref().unwrap()["n"].as_u64().unwrap())
        .collect();
    let lost: Vec<_> = acked.iter().filter(|n| !stored.contains(n)).collect();
    eprintln!(
        "FIGURE database restart under load: {} acknowledged, {refused} refused (503), {} lost",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");

    let poll = tokio::spawn({
        let at = format!("{}/callbacks/after-restart?wait=20s", b.url());
        async move { http().get(at).send().await.unwrap() }
    });
    until_waiting(&b, 1).await;
    assert_eq!(post(&a, "after-restart", json!({})).await.status(), 200);
    assert_eq!(poll.await.unwrap().status(), 200);
}

/// Reads `GET {path}` on `node` until `done` says yes (bounded): what another node did reaches
/// this one by a notification, milliseconds after it was answered.
async fn until_json(node: &TestSink, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = http()
            .get(format!("{}{path}", node.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never got there: {body}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_set_through_one_node_answers_on_the_other_by_seq_and_a_delete_there_ends_it() {
    let Some(pg) = TestPostgres::start_or_skip("stubs across nodes") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let (a, b) = (node(&url).await, node(&url).await);
    let put = http()
        .put(format!("{}/stubs/flaky", a.url()))
        .json(&json!({"key": "job-1", "responses": [{"status": 503, "times": 2}, {"status": 200, "body": "{\"b\":1,\"a\":2}"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    until_json(&b, "/stubs", |s| {
        s["stubs"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    // Attempts alternate between the nodes; each seq gets its scripted answer.
    let mut answers = Vec::new();
    for n in 0..4 {
        let to = if n % 2 == 0 { &b } else { &a };
        let response = post(to, "job-1", json!({"n": n})).await;
        answers.push((response.status().as_u16(), response.text().await.unwrap()));
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [503, 503, 200, 200]);
    assert_eq!(answers[2].1, "{\"b\":1,\"a\":2}", "the body byte for byte");
    let deleted = http()
        .delete(format!("{}/stubs/flaky", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    until_json(&a, "/stubs", |s| {
        s["stubs"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    // A node started now finds the set as it is.
    let c = node(&url).await;
    let listed = until_json(&c, "/stubs", |_| true).await;
    assert_eq!(listed["stubs"], json!([]), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_set_through_one_node_checks_callbacks_on_another() {
    let Some(pg) = TestPostgres::start_or_skip("verifiers across nodes") else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let (a, b) = (node(&url).await, node(&url).await);
    let put = http()
        .put(format!("{}/verifiers/gh", a.url()))
        .json(&json!({"prefix": "k.", "scheme": "github", "secret": "s3", "reject": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let listed = until_json(&b, "/verifiers", |v| {
        v["verifiers"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    assert!(
        !listed.to_string().contains("s3\""),
        "the secret is not shown by the other node either: {listed}"
    );
    let unsigned = post(&b, "k.1", json!({})).await;
    assert_eq!(
        unsigned.status(),
        401,
        "node b rejects what a's verifier rejects"
    );
}
