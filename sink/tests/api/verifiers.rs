//! Signature verifiers: every route, each bad input, redaction, `reject` → `401` (still
//! recorded), the token, and a restart keeping them.

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn put(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/verifiers/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_signed(
    app: &TestApp,
    key: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.sink.callback_url(key))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

async fn signature(app: &TestApp, key: &str) -> Value {
    let record: Value = app
        .get(&format!("/callbacks/{key}"))
        .await
        .json()
        .await
        .unwrap();
    record["signature"].clone()
}

#[tokio::test]
async fn every_route_answers_and_the_secret_is_never_shown() {
    let app = spawn_app().await;
    let gh = json!({"prefix": "run-7.", "scheme": "github", "secret": "hunter2-secret"});
    assert_eq!(put(&app, "gh", gh.clone()).await.status(), 201);
    let again = put(&app, "gh", gh).await;
    assert_eq!(again.status(), 200, "a second PUT replaces");
    let text = again.text().await.unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    put(
        &app,
        "other",
        json!({"prefix": "other.", "scheme": "shopify", "secret": "s2"}),
    )
    .await;

    let list = app.get("/verifiers").await.text().await.unwrap();
    assert!(!list.contains("hunter2"), "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["verifiers"].as_array().unwrap().len(), 2);
    assert_eq!(list["verifiers"][0]["id"], "gh");
    assert_eq!(list["verifiers"][0]["secret"], "***");
    let one: Value = app.get("/verifiers/gh").await.json().await.unwrap();
    assert_eq!(one["prefix"], "run-7.");
    assert_eq!(one["secret"], "***");
    let (code, _) = error_of(app.get("/verifiers/nope").await, 404).await;
    assert_eq!(code, "not_found");

    let del = |path: &str| app.http.delete(app.url(path)).send();
    assert_eq!(del("/verifiers/gh").await.unwrap().status(), 204);
    let (code, _) = error_of(del("/verifiers/gh").await.unwrap(), 404).await;
    assert_eq!(code, "not_found");
    let (code, _) = error_of(del("/verifiers").await.unwrap(), 400).await;
    assert_eq!(code, "missing_prefix");
    let removed: Value = del("/verifiers?prefix=oth")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["removed"], json!(["other"]));
    let list: Value = app.get("/verifiers").await.json().await.unwrap();
    assert_eq!(list["verifiers"], json!([]));
}

#[tokio::test]
async fn every_bad_field_is_listed_in_one_422() {
    let app = spawn_app().await;
    let response = put(
        &app,
        "bad",
        json!({"scheme": "hmac-sha256", "encoding": "hex2", "tolerance": "soon", "color": 1, "reject": "yes"}),
    )
    .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_fields");
    let fields = body["error"]["fields"].as_object().unwrap();
    for f in [
        "prefix",
        "secret",
        "header",
        "encoding",
        "tolerance",
        "color",
        "reject",
    ] {
        assert!(fields.contains_key(f), "{f} missing in {body}");
    }
    let body: Value = put(
        &app,
        "bad",
        json!({"prefix": "p", "scheme": "rot13", "secret": "s"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        body["error"]["fields"]["scheme"]
            .as_str()
            .unwrap()
            .contains("rot13")
    );
    let body: Value = put(
        &app,
        "bad",
        json!({"prefix": "p", "scheme": "standard-webhooks", "secret": "whsec_!!!"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(body["error"]["fields"]["secret"].is_string(), "{body}");
    let not_json = app
        .http
        .put(app.url("/verifiers/bad"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 422);
    let list: Value = app.get("/verifiers").await.json().await.unwrap();
    assert_eq!(list["verifiers"], json!([]), "nothing invalid was kept");
}

#[tokio::test]
async fn callbacks_are_verified_by_the_longest_prefix_and_reject_answers_401() {
    let app = spawn_app().await;
    put(
        &app,
        "broad",
        json!({"prefix": "run-", "scheme": "shopify", "secret": "wrong"}),
    )
    .await;
    put(
        &app,
        "gh",
        json!({"prefix": "run-7.", "scheme": "github", "secret": "s3"}),
    )
    .await;
    let body = br#"{"ok":true}"#;
    let sig = format!("sha256={}", hex(&hmac(b"s3", &[body])));
    let ok = post_signed(
        &app,
        "run-7.a",
        body,
        &[("x-hub-signature-256", sig.clone())],
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        signature(&app, "run-7.a").await,
        json!({"verifier": "gh", "scheme": "github", "valid": true})
    );
    let flipped = br#"{"ok":trUe}"#;
    post_signed(
        &app,
        "run-7.b",
        flipped,
        &[("x-hub-signature-256", sig.clone())],
    )
    .await;
    let s = signature(&app, "run-7.b").await;
    assert_eq!(s["valid"], false);
    assert!(s["reason"].as_str().unwrap().starts_with("mismatch"), "{s}");
    post_signed(&app, "run-7.c", body, &[]).await;
    let s = signature(&app, "run-7.c").await;
    assert!(
        s["reason"].as_str().unwrap().starts_with("missing header"),
        "{s}"
    );
    // The raw body is still exactly what was sent.
    let raw = app
        .get("/callbacks/run-7.b/raw")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&raw[..], flipped);
    // Keys no verifier covers carry no signature.
    post_signed(&app, "plain", body, &[]).await;
    assert_eq!(signature(&app, "plain").await, Value::Null);

    put(
        &app,
        "gh",
        json!({"prefix": "run-7.", "scheme": "github", "secret": "s3", "reject": true}),
    )
    .await;
    let refused = post_signed(
        &app,
        "run-7.d",
        flipped,
        &[("x-hub-signature-256", sig.clone())],
    )
    .await;
    let (code, _) = error_of(refused, 401).await;
    assert_eq!(code, "invalid_signature");
    assert_eq!(
        signature(&app, "run-7.d").await["valid"],
        false,
        "still recorded"
    );
    let fine = post_signed(&app, "run-7.e", body, &[("x-hub-signature-256", sig)]).await;
    assert_eq!(fine.status(), 200);
}

#[tokio::test]
async fn standard_webhooks_checks_the_timestamp() {
    let app = spawn_app().await;
    let key = b"a-32-byte-key-for-the-test-12345";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    put(&app, "sw", json!({"prefix": "sw.", "scheme": "standard-webhooks", "secret": secret, "tolerance": "1m"})).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = br#"{"n":1}"#;
    for (k, ts) in [("sw.fresh", now), ("sw.stale", now - 600)] {
        let ts = ts.to_string();
        let sig = hmac(key, &[b"msg_1.", ts.as_bytes(), b".", body]);
        let sig = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(sig)
        );
        post_signed(
            &app,
            k,
            body,
            &[
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", ts),
                ("webhook-signature", sig),
            ],
        )
        .await;
    }
    assert_eq!(signature(&app, "sw.fresh").await["valid"], true);
    let s = signature(&app, "sw.stale").await;
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .starts_with("timestamp outside tolerance"),
        "{s}"
    );
}

#[tokio::test]
async fn with_a_token_every_verifier_route_needs_it() {
    let app = spawn_app_with(Config {
        token: Some("tok".into()),
        ..Config::default()
    })
    .await;
    let v = json!({"prefix": "p", "scheme": "github", "secret": "s"});
    let (code, _) = error_of(put(&app, "x", v.clone()).await, 401).await;
    assert_eq!(code, "unauthorized");
    error_of(app.get("/verifiers").await, 401).await;
    let ok = app
        .http
        .put(app.url("/verifiers/x"))
        .bearer_auth("tok")
        .json(&v)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn verifiers_survive_a_restart_in_an_owner_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    {
        let app = spawn_app_with(config.clone()).await;
        put(
            &app,
            "gh",
            json!({"prefix": "k.", "scheme": "github", "secret": "s3"}),
        )
        .await;
        app.sink.stop().await;
    }
    // With a data directory they are in its file; in cluster mode in the database instead
    // (restarted, this app finds the same database again).
    #[cfg(unix)]
    if !crate::helpers::on_postgres() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("verifiers.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let app = spawn_app_with(config).await;
    let one: Value = app.get("/verifiers/gh").await.json().await.unwrap();
    assert_eq!(one["scheme"], "github");
    let body = b"{}";
    let sig = format!("sha256={}", hex(&hmac(b"s3", &[body])));
    post_signed(&app, "k.1", body, &[("x-hub-signature-256", sig)]).await;
    assert_eq!(
        signature(&app, "k.1").await["valid"],
        true,
        "the secret survived"
    );
}

#[tokio::test]
async fn the_rust_client_sets_and_removes_a_verifier() {
    let app = spawn_app().await;
    let client = sink::Client::new(app.sink.url());
    let v = sink::NewVerifier {
        prefix: "c.".into(),
        scheme: "github".into(),
        secret: "client-secret".into(),
        ..Default::default()
    };
    assert!(!format!("{v:?}").contains("client-secret"));
    client.verify("c", &v).await.unwrap();
    let one: Value = app.get("/verifiers/c").await.json().await.unwrap();
    assert_eq!(one["prefix"], "c.");
    let bad = sink::NewVerifier::default();
    assert!(client.verify("c", &bad).await.is_err());
    client.delete_verifier("c").await.unwrap();
    assert_eq!(app.get("/verifiers/c").await.status(), 404);
}
