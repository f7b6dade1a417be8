//! `GET /metrics`: what posted callbacks were answered, counted whichever route and layer
//! answered; reads and unknown routes not counted; gauges read from the store at the scrape.
//! Each test has its own sink, and so its own registry: the values are exact.

use serde_json::json;

use crate::{helpers::*, waiting::wait_until_waiting};

/// The scrape's sample lines (comments left out), which must be answered in OpenMetrics text.
async fn scrape(app: &TestApp) -> Vec<String> {
    let response = app.get("/metrics").await;
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
