//! `GET /metrics`: what posted callbacks were answered, counted whichever route and layer
//! answered; reads and unknown routes not counted; gauges read from the store at the scrape.
//! Each test has its own sink, and so its own registry: the values are exact.

use serde_json::json;

use crate::{helpers::*, waiting::wait_until_waiting};

/// The scrape's sample lines (comments left out), which must be answered in OpenMetrics text.
async fn scrape(app: &TestApp) -> Vec<String> {
    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.expect("metrics body");
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn assert_sample(samples: &[String], line: &str) {
    assert!(
        samples.iter().any(|s| s == line),
        "no {line:?} in {samples:#?}"
    );
}

#[tokio::test]
async fn every_route_that_records_counts_its_answer_and_nothing_else_does() {
    let app = spawn_app().await;
    app.post_json("k-1", json!({})).await;
    let put = app.http.put(app.url("/callbacks/k-1")).body("{}");
    assert_eq!(put.send().await.expect("put").status(), 200);
    let by_header = app
        .http
        .post(app.url("/callbacks"))
        .header("x-request-id", "k-2")
        .body("{}");
    assert_eq!(by_header.send().await.expect("post").status(), 200);
    let no_key = app.http.post(app.url("/callbacks")).body("no key here");
    assert_eq!(no_key.send().await.expect("post").status(), 400);
    // Neither reads, nor a method a read route does not take, nor unknown paths count.
    app.get("/callbacks/k-1").await;
    app.get("/callbacks?prefix=k-").await;
    let wrong_method = app.http.post(app.url("/callbacks/k-1/all")).body("{}");
    assert_eq!(wrong_method.send().await.expect("post").status(), 405);
    let unknown = app.http.post(app.url("/elsewhere")).body("{}");
    assert_eq!(unknown.send().await.expect("post").status(), 404);

    let samples = scrape(&app).await;
    assert_sample(
        &samples,
        "eventual_callbacks_received_total{status=\"200\"} 3",
    );
    assert_sample(
        &samples,
        "eventual_callbacks_received_total{status=\"400\"} 1",
    );
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.starts_with("eventual_callbacks_received_total"))
            .count(),
        2,
        "only 200 and 400 were answered to posted callbacks: {samples:#?}"
    );
    assert_sample(&samples, "eventual_callbacks_stored 3");
    assert_sample(&samples, "eventual_callbacks_capacity 1000000");
}

/// The `eventual_callbacks_received_total` samples of a scrape, as `(status, count)`.
async fn received(app: &TestApp) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = scrape(app)
        .await
        .iter()
        .filter_map(|s| s.strip_prefix("eventual_callbacks_received_total{status=\""))
        .filter_map(|s| s.split_once("\"} "))
        .map(|(status, n)| (status.to_owned(), n.to_owned()))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn refusals_before_the_handler_and_scripted_answers_are_counted_too() {
    let app = spawn_app_with(Config {
        max_body: 64,
        max_callbacks: 2,
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    // The key extractor's refusal (a key over 1024 bytes) and the body limit's.
    let long = format!("/callbacks/{}", "k".repeat(1025));
    let (code, _) = error_of(
        app.http
            .post(app.url(&long))
            .body("{}")
            .send()
            .await
            .expect("post"),
        400,
    )
    .await;
    assert_eq!(code, "invalid_key");
    let big = app
        .http
        .post(app.url("/callbacks/big"))
        .body(vec![b'x'; 65]);
    assert_eq!(big.send().await.expect("post").status(), 413);
    // A method the keyless route does not take is an answer to a posted callback as well.
    let put = app.http.put(app.url("/callbacks")).body("{}");
    assert_eq!(put.send().await.expect("put").status(), 405);
    // A stub's status is what the sink answered; then the sink fills up (no token needed to post).
    let stub = app
        .http
        .put(app.url("/stubs/s"))
        .bearer_auth("s3cret")
        .json(&json!({"key": "stubbed", "responses": [{"status": 503}]}));
    assert!(stub.send().await.expect("stub").status().is_success());
    assert_eq!(app.post_json("stubbed", json!({})).await.status(), 503);
    assert_eq!(app.post_json("plain", json!({})).await.status(), 200);
    assert_eq!(app.post_json("full", json!({})).await.status(), 507);

    let counted = received(&app).await;
    let expected: Vec<(String, String)> = [
        ("200", "1"),
        ("400", "1"),
        ("405", "1"),
        ("413", "1"),
        ("503", "1"),
        ("507", "1"),
    ]
    .iter()
    .map(|(s, n)| ((*s).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(counted, expected);
}

#[tokio::test]
async fn waiters_are_counted_while_they_wait() {
    let app = spawn_app().await;
    let waiter = {
        let http = app.http.clone();
        let url = app.url("/callbacks/later?wait=30s");
        tokio::spawn(async move { http.get(url).send().await.expect("long-poll") })
    };
    wait_until_waiting(&app, 1).await;
    assert_sample(&scrape(&app).await, "eventual_waiters 1");
    app.post_json("later", json!({})).await;
    assert_eq!(waiter.await.expect("join").status(), 200);
    wait_until_waiting(&app, 0).await;
    assert_sample(&scrape(&app).await, "eventual_waiters 0");
}

#[tokio::test]
async fn with_a_token_a_scrape_needs_it() {
    let app = spawn_app_with(Config {
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    let (code, _) = error_of(app.get("/metrics").await, 401).await;
    assert_eq!(code, "unauthorized");
    let scrape = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("scrape");
    assert_eq!(scrape.status(), 200);
}
