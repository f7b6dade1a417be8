use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn latest_is_404_not_found_until_something_arrives() {
    let app = spawn_app().await;
    let (code, message) = error_of(app.get("/callbacks/nothing").await, 404).await;
    assert_eq!(code, "not_found");
    assert!(message.contains("wait="), "suggests waiting: {message}");
    app.post_json("nothing", json!({"n": 1})).await;
    app.post_json("nothing", json!({"n": 2})).await;
    let latest: Value = app.get("/callbacks/nothing").await.json().await.unwrap();
    assert_eq!(
        (latest["seq"].clone(), latest["body"]["n"].clone()),
        (json!(2), json!(2))
    );
}

#[tokio::test]
async fn all_lists_records_in_arrival_order_and_is_empty_for_unknown_keys() {
    let app = spawn_app().await;
    let empty: Value = app.get("/callbacks/none/all").await.json().await.unwrap();
    assert_eq!(empty, json!({"key": "none", "callbacks": []}));
    for n in 1..=3 {
        app.post_json("k", json!({"n": n})).await;
    }
    let all: Value = app.get("/callbacks/k/all").await.json().await.unwrap();
    let ns: Vec<_> = all["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(1), json!(2), json!(3)]);
}

#[tokio::test]
async fn raw_returns_the_exact_body_bytes_and_content_type() {
    let app = spawn_app().await;
    let signed = "{\"amount\": 10.50,\n \"ccy\":\"EUR\"}\n";
    app.http
        .post(app.sink.callback_url("sig"))
        .header("content-type", "application/json; charset=utf-8")
        .body(signed)
        .send()
        .await
        .unwrap();
    app.http
        .post(app.sink.callback_url("sig"))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8, 2, 255])
        .send()
        .await
        .unwrap();
    let first = app.get("/callbacks/sig/raw?seq=1").await;
    assert_eq!(
        first.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(first.text().await.unwrap(), signed);
    let latest = app.get("/callbacks/sig/raw").await;
    assert_eq!(latest.headers()["content-type"], "application/octet-stream");
    assert_eq!(latest.bytes().await.unwrap().as_ref(), &[1u8, 2, 255]);
    assert_eq!(
        error_of(app.get("/callbacks/sig/raw?seq=9").await, 404)
            .await
            .0,
        "not_found"
    );
    assert_eq!(
        error_of(app.get("/callbacks/sig/raw?seq=x").await, 400)
            .await
            .0,
        "invalid_seq"
    );
}

#[tokio::test]
async fn listing_by_prefix_is_sorted_counted_and_pages_with_after() {
    let app = spawn_app().await;
    for key in ["run-2/b", "run-1/b", "run-1/a", "run-10/a", "other"] {
        app.post_json(key, json!({})).await;
    }
    app.post_json("run-1/a", json!({})).await;
    let list: Value = app
        .get("/callbacks?prefix=run-1%2F")
        .await
        .json()
        .await
        .unwrap();
    let keys: Vec<_> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![("run-1/a".to_owned(), 2), ("run-1/b".to_owned(), 1)]
    );
    assert!(
        list["keys"][0]["last_received_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let page1: Value = app
        .get("/callbacks?prefix=run-&limit=2")
        .await
        .json()
        .await
        .unwrap();
    let page1_keys: Vec<_> = page1["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].clone())
        .collect();
    assert_eq!(page1_keys, vec![json!("run-1/a"), json!("run-1/b")]);
    assert_eq!(page1["next_after"], "run-1/b");
    let page2: Value = app
        .get("/callbacks?prefix=run-&limit=2&after=run-1%2Fb")
        .await
        .json()
        .await
        .unwrap();
    let page2_keys: Vec<_> = page2["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].clone())
        .collect();
    assert_eq!(page2_keys, vec![json!("run-10/a"), json!("run-2/b")]);
    assert_eq!(
        error_of(app.get("/callbacks?limit=0").await, 400).await.0,
        "invalid_limit"
    );
}

#[tokio::test]
async fn delete_forgets_one_key_or_one_prefix_and_nothing_else() {
    let app = spawn_app().await;
    for key in ["a/1", "a/2", "ab", "b/1"] {
        app.post_json(key, json!({})).await;
    }
    let r = app
        .http
        .delete(app.sink.callback_url("ab"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .http
        .delete(app.url("/callbacks?prefix=a%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let list: Value = app.get("/callbacks?prefix=").await.json().await.unwrap();
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["keys"][0]["key"], "b/1");
    let r = app.http.delete(app.url("/callbacks")).send().await.unwrap();
    assert_eq!(error_of(r, 400).await.0, "missing_prefix");
    // A forgotten key starts again at seq 1.
    let again: Value = app.post_json("ab", json!({})).await.json().await.unwrap();
    assert_eq!(again["seq"], 1);
}

#[tokio::test]
async fn events_stream_past_records_then_live_ones_and_resume_after_last_event_id() {
    let app = spawn_app().await;
    app.post_json("ev", json!({"n": 1})).await;
    app.post_json("ev", json!({"n": 2})).await;
    let response = app.get("/callbacks/ev/events").await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    let mut posted_live = false;
    while seen.matches("event: callback").count() < 3 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10s")
            .expect("stream open")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
        if !posted_live && seen.matches("event: callback").count() == 2 {
            posted_live = true;
            app.post_json("ev", json!({"n": 3})).await;
        }
    }
    let events = parse_sse(&seen);
    assert_eq!(
        events.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    assert_eq!(events[2].1["body"]["n"], 3);

    let resumed = app
        .http
        .get(app.url("/callbacks/ev/events"))
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    let mut stream = resumed.bytes_stream();
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let events = parse_sse(std::str::from_utf8(&chunk).unwrap());
    assert_eq!(events[0].0, "3", "resumes after Last-Event-ID");
}

/// `(id, data)` of each complete event in an SSE text.
fn parse_sse(text: &str) -> Vec<(String, Value)> {
    testkit::sse::SseParser::parse_all(text)
        .into_iter()
        .filter(|e| e.event == "callback")
        .map(|e| (e.id.clone().expect("a callback event has an id"), e.json()))
        .collect()
}
