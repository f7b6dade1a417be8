use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn post_answers_key_and_seq_and_the_record_has_the_full_envelope() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/callbacks/job%201?source=sut"))
        .header("content-type", "application/json")
        .header("x-signature", "abc")
        .body(r#"{"status":"done","amount":10.50}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"key":"job 1","seq":1})
    );

    let record: Value = app.get("/callbacks/job%201").await.json().await.unwrap();
    assert_eq!(record["key"], "job 1");
    assert_eq!(record["seq"], 1);
    assert_eq!(record["method"], "POST");
    assert_eq!(record["path"], "/callbacks/job%201");
    assert_eq!(record["query"], "source=sut");
    assert_eq!(record["headers"]["x-signature"], "abc");
    assert_eq!(record["content_type"], "application/json");
    assert_eq!(record["size"], 32);
    assert_eq!(record["body"]["status"], "done");
    let received_at = record["received_at"].as_str().unwrap();
    assert!(
        received_at.len() == 24 && received_at.ends_with('Z'),
        "RFC 3339 with ms: {received_at}"
    );
}

#[tokio::test]
async fn json_bodies_keep_key_order_and_number_formatting() {
    let app = spawn_app().await;
    app.http
        .post(app.sink.callback_url("k"))
        .header("content-type", "application/json")
        .body(r#"{"z":1,"a":1.50,"n":1e3}"#)
        .send()
        .await
        .unwrap();
    let text = app.get("/callbacks/k").await.text().await.unwrap();
    assert!(
        text.contains(r#""body":{"z":1,"a":1.50,"n":1e3}"#),
        "{text}"
    );
}

#[tokio::test]
async fn put_and_patch_record_too_and_seq_counts_per_key() {
    let app = spawn_app().await;
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::POST,
    ] {
        let r = app
            .http
            .request(method, app.sink.callback_url("k"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    app.post_json("other", json!({})).await;
    let all: Value = app.get("/callbacks/k/all").await.json().await.unwrap();
    let methods: Vec<_> = all["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["method"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        methods,
        vec![(1, "PUT".into()), (2, "PATCH".into()), (3, "POST".into())]
    );
}

#[tokio::test]
async fn text_and_binary_bodies_are_a_string_and_base64() {
    let app = spawn_app().await;
    app.http
        .post(app.sink.callback_url("t"))
        .header("content-type", "text/plain")
        .body("plain words")
        .send()
        .await
        .unwrap();
    app.http
        .post(app.sink.callback_url("b"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 0xff, 0x10])
        .send()
        .await
        .unwrap();
    let t: Value = app.get("/callbacks/t").await.json().await.unwrap();
    assert_eq!(t["body"], "plain words");
    let b: Value = app.get("/callbacks/b").await.json().await.unwrap();
    assert_eq!(b.get("body"), None);
    assert_eq!(b["body_base64"], "AP8Q");
    assert_eq!(b["size"], 3);
}

#[tokio::test]
async fn post_to_callbacks_takes_the_key_from_the_header_then_the_json_pointers() {
    let app = spawn_app().await;
    let by_header = app
        .http
        .post(app.url("/callbacks"))
        .header("X-Request-Id", "from-header")
        .json(&json!({"request_id": "ignored"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_header.json::<Value>().await.unwrap()["key"],
        "from-header"
    );
    for (body, key) in [
        (json!({"request_id": "a"}), "a"),
        (json!({"requestId": "b"}), "b"),
        (json!({"id": 42}), "42"),
    ] {
        let r = app
            .http
            .post(app.url("/callbacks"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["key"], key);
    }
}

#[tokio::test]
async fn a_numeric_key_in_the_body_is_the_number_as_it_was_written() {
    let app = spawn_app().await;
    for (body, key) in [
        (r#"{"id": 1e3}"#, "1e3"),
        (r#"{"id": 1.50}"#, "1.50"),
        (r#"{"id": -7}"#, "-7"),
        (r#"{"request_id": "x", "id": 1e3}"#, "x"),
        (r#"{"id": "a\/b"}"#, "a/b"),
    ] {
        let r = app
            .http
            .post(app.url("/callbacks"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["key"], key, "{body}");
    }
}

#[tokio::test]
async fn configured_key_headers_and_pointers_replace_the_defaults() {
    let app = spawn_app_with(Config {
        key_headers: vec!["X-Job".into()],
        key_pointers: vec!["/job/ref".into()],
        ..Config::default()
    })
    .await;
    let r = app
        .http
        .post(app.url("/callbacks"))
        .json(&json!({"job": {"ref": "deep"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["key"], "deep");
    let r = app
        .http
        .post(app.url("/callbacks"))
        .header("X-Request-Id", "default-header-no-longer-used")
        .json(&json!({"request_id": "nor-this"}))
        .send()
        .await
        .unwrap();
    let (code, message) = error_of(r, 400).await;
    assert_eq!(code, "missing_key");
    assert!(
        message.contains("X-Job") && message.contains("/job/ref"),
        "{message}"
    );
}

#[tokio::test]
async fn post_without_a_key_is_400_naming_where_it_looked_and_stores_nothing() {
    let app = spawn_app().await;
    let r = app
        .http
        .post(app.url("/callbacks"))
        .json(&json!({"other": 1}))
        .send()
        .await
        .unwrap();
    let (code, message) = error_of(r, 400).await;
    assert_eq!(code, "missing_key");
    for place in ["X-Request-Id", "/request_id", "/requestId", "/id"] {
        assert!(message.contains(place), "{message} should name {place}");
    }
    let list: Value = app.get("/callbacks?prefix=").await.json().await.unwrap();
    assert_eq!(list["keys"], json!([]));
}

#[tokio::test]
async fn bad_keys_are_400_invalid_key() {
    let app = spawn_app().await;
    let long = "k".repeat(2000);
    for path in [
        "/callbacks/".to_owned(),
        "/callbacks/%FF%FE".to_owned(),
        format!("/callbacks/{long}"),
    ] {
        let r = app
            .http
            .post(app.url(&path))
            .body("x")
            .send()
            .await
            .unwrap();
        let (code, _) = error_of(r, 400).await;
        assert_eq!(code, "invalid_key", "{}", &path[..path.len().min(40)]);
    }
    let r = app
        .http
        .post(app.url("/callbacks"))
        .header("X-Request-Id", "   ")
        .body("no key anywhere")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r, 400).await.0, "missing_key");
    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["callbacks"], 0);
}

#[tokio::test]
async fn a_body_over_max_body_is_413_and_nothing_is_stored() {
    let app = spawn_app_with(Config {
        max_body: 1024,
        ..Config::default()
    })
    .await;
    let r = app
        .http
        .post(app.sink.callback_url("big"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    let (code, message) = error_of(r, 413).await;
    assert_eq!(code, "body_too_large");
    assert!(message.contains("--max-body"), "{message}");
    assert_eq!(app.get("/callbacks/big").await.status(), 404);
    let ok = app
        .http
        .post(app.sink.callback_url("big"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_full_sink_refuses_with_507_and_evicts_nothing() {
    let app = spawn_app_with(Config {
        max_callbacks: 3,
        ..Config::default()
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            app.post_json(&format!("k{i}"), json!({})).await.status(),
            200
        );
    }
    let (code, message) = error_of(app.post_json("k3", json!({})).await, 507).await;
    assert_eq!(code, "sink_full");
    assert!(message.contains("--max-callbacks"), "{message}");
    for i in 0..3 {
        assert_eq!(app.get(&format!("/callbacks/k{i}")).await.status(), 200);
    }
    assert_eq!(app.get("/callbacks/k3").await.status(), 404);
    app.http
        .delete(app.sink.callback_url("k0"))
        .send()
        .await
        .unwrap();
    assert_eq!(app.post_json("k3", json!({})).await.status(), 200);
}

#[tokio::test]
async fn a_thousand_concurrent_posts_to_one_key_get_seqs_exactly_one_to_a_thousand() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let http = app.http.clone();
        let url = app.sink.callback_url("hot");
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&json!({"i": i})).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    let all: Value = app.get("/callbacks/hot/all").await.json().await.unwrap();
    let stored: Vec<u64> = all["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        stored,
        (1..=1000).collect::<Vec<u64>>(),
        "stored in seq order"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_json_and_wrong_methods_405_json() {
    let app = spawn_app().await;
    let (code, _) = error_of(app.get("/nowhere").await, 404).await;
    assert_eq!(code, "not_found");
    let r = app.http.put(app.url("/callbacks")).send().await.unwrap();
    assert_eq!(error_of(r, 405).await.0, "method_not_allowed");
    let r = app
        .http
        .post(app.url("/callbacks/k/all"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r, 405).await.0, "method_not_allowed");
}

#[tokio::test]
async fn with_a_token_reads_need_it_but_callbacks_do_not() {
    let app = spawn_app_with(Config {
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    assert_eq!(app.post_json("k", json!({"a": 1})).await.status(), 200);
    let (code, message) = error_of(app.get("/callbacks/k").await, 401).await;
    assert_eq!(code, "unauthorized");
    assert!(message.contains("Bearer"), "{message}");
    let wrong = app
        .http
        .get(app.url("/callbacks/k"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = app
        .http
        .get(app.url("/callbacks/k"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let by_cookie = app
        .http
        .get(app.url("/callbacks/k"))
        .header("cookie", "theme=dark; eventual_token=s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200, "the web UI's cookie works too");
    // …but a page on another origin cannot make the browser delete with it.
    let forged = app
        .http
        .delete(app.url("/callbacks/k"))
        .header("cookie", "eventual_token=s3cret")
        .header("origin", "http://127.0.0.1:9999")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(forged, 403).await.0, "cross_site");
    let lower = app
        .http
        .get(app.url("/callbacks/k"))
        .header("authorization", "bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200, "auth schemes are case-insensitive");
    let client = sink::Client::new(app.sink.url()).with_token("s3cret");
    assert_eq!(client.all("k").await.unwrap().len(), 1);
    assert_eq!(app.get("/healthz").await.status(), 200);
}
