//! Stubs (`/stubs`): scripted answers by seq, matching, bodies, delays, dropped connections,
//! persistence, auth, hits — and that every stubbed callback is still recorded.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;

impl TestApp {
    async fn put_stub(&self, id: &str, stub: Value) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/stubs/{id}")))
            .json(&stub)
            .send()
            .await
            .expect("put reaches the sink")
    }

    /// Puts a stub that must be accepted.
    async fn stub(&self, id: &str, stub: Value) {
        let response = self.put_stub(id, stub).await;
        assert!(
            response.status().is_success(),
            "stub {id}: {}",
            response.text().await.unwrap()
        );
    }

    /// Posts `{}` to `key` and answers (status, body as JSON or text).
    async fn call(&self, key: &str) -> (u16, Value) {
        let response = self.post_json(key, json!({})).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("answer body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("JSON")
    }
}

fn statuses(script: &[(u16, u64)]) -> Value {
    Value::Array(
        script
            .iter()
            .map(|(status, times)| json!({"status": status, "times": times}))
            .collect(),
    )
}

#[tokio::test]
async fn a_stub_answers_by_seq_and_every_callback_is_still_recorded() {
    let app = spawn_app().await;
    app.stub(
        "flaky",
        json!({"key": "job-42", "responses": [{"status": 503, "times": 2}, {"status": 200}]}),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(app.call("job-42").await.0);
    }
    assert_eq!(got, [503, 503, 200, 200], "then defaults to last");

    let records = app
        .sink
        .wait_for_count("job-42", 4, Duration::from_secs(5))
        .await
        .unwrap();
    let responded: Vec<_> = records
        .iter()
        .map(|r| {
            let r = r.response.as_ref().expect("a stubbed record says so");
            (r.status, r.stub.as_str(), r.dropped, r.delay_ms)
        })
        .collect();
    assert_eq!(
        responded,
        [
            (Some(503), "flaky", false, 0),
            (Some(503), "flaky", false, 0),
            (Some(200), "flaky", false, 0),
            (Some(200), "flaky", false, 0),
        ]
    );
    let raw = app.json("/callbacks/job-42").await;
    assert_eq!(
        raw["response"],
        json!({"status": 200, "delay_ms": 0, "stub": "flaky", "dropped": false})
    );
    // An unstubbed key's record has no `response` at all.
    app.call("other").await;
    assert!(app.json("/callbacks/other").await.get("response").is_none());
}

#[tokio::test]
async fn put_get_list_and_delete_stubs() {
    let app = spawn_app().await;
    let stub = json!({"prefix": "run-7.", "responses": [{"status": 503, "delay": "300ms"}]});
    let created = app.put_stub("a", stub.clone()).await;
    assert_eq!(created.status(), 201);
    let info: Value = created.json().await.unwrap();
    assert_eq!(
        info,
        json!({"id": "a", "prefix": "run-7.", "then": "last", "hits": 0,
               "responses": [{"status": 503, "times": 1, "delay": "300ms"}]})
    );
    assert_eq!(app.put_stub("a", stub).await.status(), 200, "replaced");
    app.stub("b", json!({"key": "job-1", "responses": [{}]}))
        .await;
    app.stub("c", json!({"key": "other", "responses": [{}]}))
        .await;

    assert_eq!(app.json("/stubs/a").await, info);
    let ids: Vec<_> = app.json("/stubs").await["stubs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);

    let deleted = app.http.delete(app.url("/stubs/b")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let (code, _) = error_of(app.get("/stubs/b").await, 404).await;
    assert_eq!(code, "not_found");
    let again = app.http.delete(app.url("/stubs/b")).send().await.unwrap();
    assert_eq!(error_of(again, 404).await.0, "not_found");

    let by_prefix = app
        .http
        .delete(app.url("/stubs?prefix=run-"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_prefix.status(), 200);
    assert_eq!(
        by_prefix.json::<Value>().await.unwrap(),
        json!({"deleted": ["a"]})
    );
    let missing = app.http.delete(app.url("/stubs")).send().await.unwrap();
    assert_eq!(error_of(missing, 400).await.0, "missing_prefix");
    assert_eq!(
        app.json("/stubs").await["stubs"].as_array().unwrap().len(),
        1
    );
    let everything = app
        .http
        .delete(app.url("/stubs?prefix="))
        .send()
        .await
        .unwrap();
    assert_eq!(
        everything.json::<Value>().await.unwrap(),
        json!({"deleted": ["c"]})
    );
    assert_eq!(app.call("other").await.0, 200, "the usual answer again");
}

#[tokio::test]
async fn a_bad_stub_is_refused_with_every_problem_listed() {
    let app = spawn_app().await;
    let response = app
        .put_stub(
            "bad",
            json!({"key": "k", "prefix": "p", "then": "forever", "colour": "red",
                   "responses": [{"status": 42, "times": 0, "delay": "90s"}, {"drop": "yes"}]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_fields");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_object()
        .expect("fields")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "colour",
            "prefix",
            "responses[0].status",
            "responses[0].times",
            "responses[0].delay",
            "responses[1].drop",
            "then"
        ]
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("100 to 599") && message.contains("60s"),
        "{message}"
    );

    let neither = app.put_stub("bad", json!({"responses": [{}]})).await;
    let body: Value = neither.json().await.unwrap();
    assert_eq!(body["error"]["fields"].as_object().unwrap().len(), 1);
    assert!(body["error"]["fields"]["key"].is_string());

    let not_json = app
        .http
        .put(app.url("/stubs/bad"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(not_json, 400).await.0, "invalid_body");
    assert_eq!(
        error_of(app.put_stub("bad", json!([])).await, 422).await.0,
        "invalid_fields"
    );
    let long_id = format!("/stubs/{}", "i".repeat(257));
    assert_eq!(error_of(app.get(&long_id).await, 400).await.0, "invalid_id");
    assert_eq!(
        app.json("/stubs").await,
        json!({"stubs": []}),
        "nothing was stored"
    );
}

#[tokio::test]
async fn an_exact_key_beats_prefixes_and_the_longest_prefix_wins() {
    let app = spawn_app().await;
    app.stub(
        "short",
        json!({"prefix": "run-", "responses": [{"status": 501}]}),
    )
    .await;
    app.stub(
        "long",
        json!({"prefix": "run-7.", "responses": [{"status": 502}]}),
    )
    .await;
    app.stub(
        "exact",
        json!({"key": "run-7.a", "responses": [{"status": 503}]}),
    )
    .await;
    assert_eq!(app.call("run-7.a").await.0, 503);
    assert_eq!(app.call("run-7.b").await.0, 502);
    assert_eq!(app.call("run-8").await.0, 501);
    assert_eq!(app.call("walk").await.0, 200);
    let record = app.json("/callbacks/run-7.b").await;
    assert_eq!(record["response"]["stub"], "long");
}

#[tokio::test]
async fn then_decides_past_the_end_of_the_script() {
    let app = spawn_app().await;
    for then in ["last", "cycle", "default"] {
        app.stub(
            then,
            json!({"key": then, "then": then, "responses": [{"status": 500}, {"status": 202}]}),
        )
        .await;
    }
    let mut answers = BTreeMap::new();
    for then in ["last", "cycle", "default"] {
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(app.call(then).await.0);
        }
        answers.insert(then, got);
    }
    assert_eq!(answers["last"], [500, 202, 202, 202, 202]);
    assert_eq!(answers["cycle"], [500, 202, 500, 202, 500]);
    assert_eq!(answers["default"], [500, 202, 200, 200, 200]);
    let records = app.sink.all("default").await.unwrap();
    assert_eq!(records.len(), 5);
    assert!(records[1].response.is_some());
    assert!(
        records[2].response.is_none(),
        "answered as if no stub existed"
    );
    assert_eq!(app.json("/stubs/default").await["hits"], 2);
    assert_eq!(app.json("/stubs/cycle").await["hits"], 5);
}

#[tokio::test]
async fn bodies_headers_and_default_bodies() {
    let app = spawn_app().await;
    app.stub(
        "bodies",
        json!({"key": "b", "responses": [
            {"status": 201},
            {"status": 503},
            {"status": 200, "body": {"accepted": false, "n": [1, "two"]}},
            {"status": 429, "body": "slow down", "headers": {"Retry-After": "1", "x-stub": "yes"}},
            {"status": 200, "body": "<ok/>", "headers": {"content-type": "application/xml"}},
        ]}),
    )
    .await;
    let answers = {
        let mut answers = Vec::new();
        for _ in 0..5 {
            let r = app.post_json("b", json!({})).await;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            answers.push((status, headers, r.text().await.unwrap()));
        }
        answers
    };
    let content_type = |i: usize| answers[i].1["content-type"].to_str().unwrap().to_owned();
    assert_eq!(answers[0].0, 201);
    assert_eq!(
        serde_json::from_str::<Value>(&answers[0].2).unwrap(),
        json!({"key": "b", "seq": 1})
    );
    assert_eq!(content_type(0), "application/json");
    assert_eq!(answers[1].0, 503);
    let error: Value = serde_json::from_str(&answers[1].2).unwrap();
    assert_eq!(error["error"]["code"], "stubbed");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bodies")
    );
    assert_eq!(answers[2].2, r#"{"accepted":false,"n":[1,"two"]}"#);
    assert_eq!(content_type(2), "application/json");
    assert_eq!(answers[3].0, 429);
    assert_eq!(answers[3].2, "slow down");
    assert_eq!(content_type(3), "text/plain; charset=utf-8");
    assert_eq!(answers[3].1["retry-after"], "1");
    assert_eq!(answers[3].1["x-stub"], "yes");
    assert_eq!(answers[4].2, "<ok/>");
    assert_eq!(
        content_type(4),
        "application/xml",
        "a scripted content type wins"
    );
}

#[tokio::test]
async fn a_delayed_answer_comes_after_the_delay_with_the_record_already_readable() {
    let app = spawn_app().await;
    let delay = Duration::from_millis(1500);
    app.stub(
        "slow",
        json!({"key": "slow", "responses": [{"status": 200, "delay": "1500ms"}]}),
    )
    .await;
    let started = Instant::now();
    let post = {
        let (http, url) = (app.http.clone(), app.sink.callback_url("slow"));
        tokio::spawn(async move {
            let response = http.post(url).json(&json!({})).send().await.unwrap();
            (response.status().as_u16(), Instant::now())
        })
    };
    // While the answer is held: the record is stored and readable, and other requests answered.
    let record = app
        .sink
        .wait_for("slow", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(record.response.as_ref().unwrap().delay_ms, 1500);
    assert_eq!(app.call("fast").await.0, 200);
    let meanwhile = Instant::now();
    let (status, answered) = post.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        answered.duration_since(started) >= delay,
        "answered after {:?}, before the {delay:?} delay",
        answered.duration_since(started)
    );
    assert!(
        answered >= meanwhile,
        "the other requests were answered while it was held"
    );
}

#[tokio::test]
async fn a_dropped_connection_gets_no_response_and_the_callback_is_recorded() {
    let app = spawn_app().await;
    app.stub(
        "dead",
        json!({"key": "dead", "responses": [{"drop": true}, {"status": 200}]}),
    )
    .await;
    let addr = app.sink.url().trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"POST /callbacks/dead HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the connection is closed, not left open");
    match read {
        Ok(_) => assert!(
            answer.is_empty(),
            "no response at all, got {:?}",
            String::from_utf8_lossy(&answer)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // The script goes on: seq 2 is answered.
    let err = app
        .http
        .post(app.sink.callback_url("dead"))
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(
        err.map(|r| r.status().as_u16()).ok(),
        Some(200),
        "seq 2 is answered"
    );

    let records = app.sink.all("dead").await.unwrap();
    assert_eq!(records.len(), 2);
    let dropped = records[0].response.as_ref().unwrap();
    assert!(dropped.dropped);
    assert_eq!(dropped.status, None);
    assert!(!records[1].response.as_ref().unwrap().dropped);
}

#[tokio::test]
async fn a_client_of_a_dropping_stub_sees_an_error_not_a_status() {
    let app = spawn_app().await;
    app.stub("dead", json!({"prefix": "", "responses": [{"drop": true}]}))
        .await;
    let sent = app
        .http
        .post(app.sink.callback_url("any"))
        .json(&json!({}))
        .send()
        .await;
    let err = sent.expect_err("no response");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(app.sink.all("any").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_posters_each_get_the_answer_of_their_seq() {
    let app = spawn_app().await;
    let script = [(201, 40), (202, 60), (203, 50), (200, 1)];
    app.stub(
        "many",
        json!({"key": "hot", "responses": statuses(&script)}),
    )
    .await;
    let expected = |seq: u64| -> u16 {
        let mut end = 0;
        for (status, times) in script {
            end += times;
            if seq <= end {
                return status;
            }
        }
        200
    };
    let posts: Vec<_> = (0..200)
        .map(|_| {
            let (http, url) = (app.http.clone(), app.sink.callback_url("hot"));
            tokio::spawn(async move {
                let response = http.post(url).json(&json!({})).send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (
                    body["seq"].as_u64().expect("2xx default bodies carry seq"),
                    status,
                )
            })
        })
        .collect();
    let mut answered = Vec::new();
    for post in posts {
        answered.push(post.await.unwrap());
    }
    answered.sort_unstable();
    let seqs: Vec<u64> = answered.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<_>>(),
        "every seq answered once"
    );
    for (seq, status) in &answered {
        assert_eq!(*status, expected(*seq), "the answer to seq {seq}");
    }
    let records = app.sink.all("hot").await.unwrap();
    let recorded: Vec<(u64, u16)> = records
        .iter()
        .map(|r| (r.seq, r.response.as_ref().unwrap().status.unwrap()))
        .collect();
    assert_eq!(
        recorded, answered,
        "each record says what its poster was answered"
    );
    assert_eq!(app.json("/stubs/many").await["hits"], 200);
}

#[tokio::test]
async fn stubs_and_stubbed_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        fsync: sink::FsyncPolicy::Always,
        ..Config::default()
    };
    {
        let app = spawn_app_with(config.clone()).await;
        app.stub(
            "kept",
            json!({"key": "k", "then": "cycle", "responses": [{"status": 503}, {"status": 201}]}),
        )
        .await;
        app.stub("gone", json!({"key": "g", "responses": [{"status": 500}]}))
            .await;
        assert_eq!(app.call("k").await.0, 503);
        app.http
            .delete(app.url("/stubs/gone"))
            .send()
            .await
            .unwrap();
        app.sink.stop().await;
    }
    let app = spawn_app_with(config).await;
    let kept = app.json("/stubs/kept").await;
    assert_eq!(kept["then"], "cycle");
    assert_eq!(kept["hits"], 0, "hits are counted since the start");
    assert_eq!(app.get("/stubs/gone").await.status(), 404);
    assert_eq!(app.call("k").await.0, 201, "seq 2 after the restart");
    assert_eq!(app.call("g").await.0, 200);
    let records = app.sink.all("k").await.unwrap();
    let statuses: Vec<_> = records
        .iter()
        .map(|r| r.response.as_ref().map(|r| r.status))
        .collect();
    assert_eq!(
        statuses,
        [Some(Some(503)), Some(Some(201))],
        "the replayed record kept its response"
    );
}

#[tokio::test]
async fn with_a_token_the_stub_routes_need_it_and_callbacks_do_not() {
    let app = spawn_app_with(Config {
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    let stub = json!({"key": "k", "responses": [{"status": 503}]});
    assert_eq!(
        error_of(app.put_stub("s", stub.clone()).await, 401).await.0,
        "unauthorized"
    );
    assert_eq!(app.get("/stubs").await.status(), 401);
    assert_eq!(app.get("/stubs/s").await.status(), 401);
    let delete = app.http.delete(app.url("/stubs/s")).send().await.unwrap();
    assert_eq!(delete.status(), 401);
    let put = app
        .http
        .put(app.url("/stubs/s"))
        .bearer_auth("s3cret")
        .json(&stub)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        app.call("k").await.0,
        503,
        "posting a callback needs no token"
    );
    let listed = app
        .http
        .get(app.url("/stubs"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.json::<Value>().await.unwrap()["stubs"][0]["hits"], 1);
}

#[tokio::test]
async fn hits_count_the_callbacks_a_stub_answered_and_restart_when_it_is_put_again() {
    let app = spawn_app().await;
    let stub = json!({"prefix": "h-", "responses": [{"status": 204}]});
    app.stub("h", stub.clone()).await;
    for key in ["h-1", "h-2", "h-1", "x"] {
        app.call(key).await;
    }
    assert_eq!(app.json("/stubs/h").await["hits"], 3);
    app.stub("h", stub).await;
    assert_eq!(app.json("/stubs/h").await["hits"], 0);
}

/// Benchmark, not a test: `cargo test -p sink --test api --release -- --ignored --nocapture
/// thousand`. 1,000 callbacks held 1 s each at once: how long until all are answered, and how
/// much the process's resident memory grew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it by name"]
async fn thousand_delayed_answers_at_once() {
    let app = spawn_app().await;
    app.stub(
        "held",
        json!({"prefix": "held-", "responses": [{"status": 200, "delay": "1s"}]}),
    )
    .await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let rss_before = rss_kib();
    let started = Instant::now();
    let posts: Vec<_> = (0..1000)
        .map(|i| {
            let (http, url) = (http.clone(), app.sink.callback_url(&format!("held-{i}")));
            tokio::spawn(async move { http.post(url).body("{}").send().await.map(|r| r.status()) })
        })
        .collect();
    // Measuring, not synchronising: sample the memory while the answers are held.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let peak = rss_kib();
    let mut ok = 0;
    for post in posts {
        if post.await.unwrap().is_ok_and(|s| s == 200) {
            ok += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "1000 posts held 1s: {ok} answered 200 in {took:?}; RSS {} KiB before, {} KiB while held (+{} KiB, client included)",
        rss_before,
        peak,
        peak.saturating_sub(rss_before)
    );
    assert_eq!(ok, 1000);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn the_rust_client_puts_lists_and_deletes_stubs() {
    use sink::{Stub, StubResponse, Then};
    let app = spawn_app().await;
    let client = app.sink.client();
    let stub = Stub::for_key(
        "job-42",
        [
            StubResponse::status(503).times(2),
            StubResponse::status(200).delay(Duration::from_millis(10)),
        ],
    )
    .then(Then::Cycle);
    let info = client.stub("flaky", &stub).await.unwrap();
    assert_eq!(
        (info.id.as_str(), &info.stub, info.hits),
        ("flaky", &stub, 0)
    );
    assert_eq!(app.call("job-42").await.0, 503);
    let listed = client.stubs().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].hits, 1);
    let bad = Stub::for_key("k", [StubResponse::status(42).times(0)]);
    match client.stub("bad", &bad).await {
        Err(sink::ClientError::Api {
            status,
            code,
            message,
        }) => {
            assert_eq!((status, code.as_str()), (422, "invalid_fields"));
            assert!(
                message.contains("status") && message.contains("times"),
                "{message}"
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    client.delete_stub("flaky").await.unwrap();
    assert!(client.stub_info("flaky").await.unwrap().is_none());
    assert!(client.delete_stub("flaky").await.is_err());
}
