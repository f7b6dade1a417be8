use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn long_poll_answers_at_once_when_a_record_exists() {
    let app = spawn_app().await;
    app.post_json("ready", json!({"ok": true})).await;
    let r = app.get("/callbacks/ready?wait=5m").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn long_poll_is_woken_by_the_post_it_waits_for() {
    let app = spawn_app().await;
    let waiter = {
        let http = app.http.clone();
        let url = app.url("/callbacks/later?wait=30s");
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    wait_until_waiting(&app, 1).await;
    app.post_json("later", json!({"done": 1})).await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["body"]["done"], 1);
}

#[tokio::test]
async fn long_poll_times_out_with_404_timeout() {
    let app = spawn_app().await;
    let (code, message) = error_of(app.get("/callbacks/never?wait=50ms").await, 404).await;
    assert_eq!(code, "timeout");
    assert!(
        message.contains("never") && message.contains("50ms"),
        "{message}"
    );
}

#[tokio::test]
async fn after_waits_for_a_record_newer_than_seq() {
    let app = spawn_app().await;
    app.post_json("k", json!({"n": 1})).await;
    let (code, _) = error_of(app.get("/callbacks/k?after=1&wait=20ms").await, 404).await;
    assert_eq!(code, "timeout");
    let waiter = {
        let http = app.http.clone();
        let url = app.url("/callbacks/k?after=1&wait=30s");
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    app.post_json("k", json!({"n": 2})).await;
    let r: Value = waiter.await.unwrap().json().await.unwrap();
    assert_eq!(r["seq"], 2);
    let r: Value = app.get("/callbacks/k?after=1").await.json().await.unwrap();
    assert_eq!(r["seq"], 2, "after without wait answers at once");
}

#[tokio::test]
async fn all_with_count_waits_until_that_many_exist_and_says_how_many_came_on_timeout() {
    let app = spawn_app().await;
    app.post_json("k", json!({})).await;
    let (code, message) = error_of(app.get("/callbacks/k/all?wait=30ms&count=3").await, 404).await;
    assert_eq!(code, "timeout");
    assert!(message.contains("1 of 3"), "{message}");
    let waiter = {
        let http = app.http.clone();
        let url = app.url("/callbacks/k/all?wait=30s&count=3");
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    app.post_json("k", json!({})).await;
    app.post_json("k", json!({})).await;
    let r: Value = waiter.await.unwrap().json().await.unwrap();
    assert_eq!(r["callbacks"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn malformed_wait_after_and_count_are_400_with_the_accepted_form() {
    let app = spawn_app().await;
    for (path, code, hint) in [
        ("/callbacks/k?wait=soon", "invalid_wait", "10s"),
        ("/callbacks/k?wait=-3", "invalid_wait", "10s"),
        ("/callbacks/k?wait=6m", "invalid_wait", "at most 5m"),
        ("/callbacks/k?wait=1h", "invalid_wait", "at most 5m"),
        ("/callbacks/k?after=one", "invalid_after", "whole number"),
        ("/callbacks/k?after=-1", "invalid_after", "whole number"),
        (
            "/callbacks/k/all?wait=1s&count=many",
            "invalid_count",
            "whole number",
        ),
        (
            "/callbacks/k/all?wait=1s&count=0",
            "invalid_count",
            "1 or more",
        ),
    ] {
        let (got, message) = error_of(app.get(path).await, 400).await;
        assert_eq!(got, code, "{path}");
        assert!(message.contains(hint), "{path}: {message}");
    }
}

#[tokio::test]
async fn post_versus_wait_never_misses_a_wake_up() {
    let app = spawn_app().await;
    let rounds = 2000;
    let mut tasks = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let http = app.http.clone();
        let wait_url = app.url(&format!("/callbacks/race-{i}?wait=20s"));
        let post_url = app.sink.callback_url(&format!("race-{i}"));
        tasks.push(tokio::spawn(async move {
            let (waited, posted) = tokio::join!(
                http.get(wait_url).send(),
                http.post(post_url).body("x").send()
            );
            assert_eq!(posted.unwrap().status(), 200);
            waited.unwrap().status().as_u16()
        }));
    }
    let mut missed = 0;
    for t in tasks {
        if t.await.unwrap() != 200 {
            missed += 1;
        }
    }
    assert_eq!(missed, 0, "waiters that missed their callback");
}

#[tokio::test]
async fn shutdown_answers_waiters_503_shutting_down() {
    let app = spawn_app().await;
    let waiter = {
        let http = app.http.clone();
        let url = app.url("/callbacks/k?wait=60s");
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    wait_until_waiting(&app, 1).await;
    let started = std::time::Instant::now();
    app.sink.stop().await;
    let r = waiter.await.unwrap();
    let (code, _) = error_of(r, 503).await;
    assert_eq!(code, "shutting_down");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn client_wait_for_returns_the_record_or_a_timeout_saying_how_many_arrived() {
    let app = spawn_app().await;
    let client = app.sink.client().clone();
    let err = client
        .wait_for_count("slow", 2, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            sink::ClientError::Timeout {
                arrived: 0,
                wanted: 2,
                ..
            }
        ),
        "{err}"
    );
    let poster = {
        let client = client.clone();
        tokio::spawn(async move { client.post("slow", &json!({"n": 1})).await.unwrap() })
    };
    let record = client
        .wait_for("slow", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(record.body.unwrap()["n"], 1);
    assert_eq!(poster.await.unwrap().seq, 1);
    assert_eq!(client.latest("slow").await.unwrap().unwrap().seq, 1);
    assert!(client.latest("none").await.unwrap().is_none());
}

/// The seed-002 flow done right: a fake system under test (played by wiremock, standing in for
/// the outside system) accepts a job and calls back the sink; the test waits instead of sleeping.
#[tokio::test]
async fn test_sink_receives_the_callback_of_a_wiremock_driven_fake_sut() {
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

    struct AcceptAndCallBack;
    impl Respond for AcceptAndCallBack {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let job: Value = serde_json::from_slice(&request.body).unwrap();
            let callback_url = job["callback_url"].as_str().unwrap().to_owned();
            let job_id = "job-7".to_owned();
            let result = json!({"job_id": job_id, "result": job["input"].as_i64().unwrap() * 2});
            // The SUT calls back later, from its own thread.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    reqwest::Client::new()
                        .post(callback_url)
                        .json(&result)
                        .send()
                        .await
                        .unwrap();
                });
            });
            ResponseTemplate::new(202).set_body_json(json!({"job_id": "job-7"}))
        }
    }

    let sut = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/jobs"))
        .respond_with(AcceptAndCallBack)
        .expect(1)
        .mount(&sut)
        .await;
    let sink = TestSink::start().await;
    let accepted: Value = reqwest::Client::new()
        .post(format!("{}/jobs", sut.uri()))
        .json(&json!({"input": 21, "callback_url": sink.callback_url("job-7")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();
    let record = sink
        .wait_for(job_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(record.body.unwrap()["result"], 42);
    sink.reset().await;
    assert!(
        sink.all(job_id).await.unwrap().is_empty(),
        "reset forgets everything"
    );
}

/// Polls `/healthz` until `n` requests are waiting (bounded: fails after 10 s).
pub(crate) async fn wait_until_waiting(app: &TestApp, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health: Value = app.get("/healthz").await.json().await.unwrap();
        if health["waiting"] == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw {n} waiting: {health}"
        );
        tokio::task::yield_now().await;
    }
}
