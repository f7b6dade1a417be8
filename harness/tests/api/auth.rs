//! With `--token`, every harness route needs `Authorization: Bearer <token>`.

use crate::helpers::{error_of, json_of, spawn_app};

#[tokio::test]
async fn with_a_token_every_route_needs_the_bearer_header() {
    let app = spawn_app(|c| c.token = Some("s3cret".into())).await;
    let routes = [
        ("GET", "/api/tests"),
        ("GET", "/api/tests/pass.sh"),
        ("POST", "/api/tests"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/1"),
        ("GET", "/api/runs/1/log"),
        ("GET", "/api/runs/1/events"),
        ("POST", "/api/runs/1/cancel"),
        ("POST", "/api/runs/1/rerun"),
        ("GET", "/api/envs"),
        ("POST", "/api/envs/1/pause"),
        ("POST", "/api/envs/1/resume"),
        ("GET", "/api/events"),
    ];
    for (method, path) in routes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cre"),
            Some("s3cret"),
        ] {
            let mut request = app
                .http
                .request(method.parse().expect("method"), app.url(path));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.expect("sent");
            error_of(response, 401, "unauthorized").await;
        }
    }
    let ok = app
        .http
        .get(app.url("/api/envs"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("sent");
    let envs = json_of(ok, 200).await;
    assert_eq!(envs.as_array().map(Vec::len), Some(4), "{envs}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app(|c| c.token = Some("s3cret".into())).await;
    for auth in ["bearer s3cret", "BEARER s3cret"] {
        let response = app
            .http
            .get(app.url("/api/envs"))
            .header("authorization", auth)
            .send()
            .await
            .expect("sent");
        json_of(response, 200).await;
    }
}

#[tokio::test]
async fn the_ui_cookie_changes_nothing_from_another_origin_but_reads_and_same_origin_changes_work()
{
    let app = spawn_app(|c| c.token = Some("s3cret".into())).await;
    let own = format!("http://{}", app.addr);
    let with_cookie = |method: reqwest::Method, path: &str| {
        app.http
            .request(method, app.url(path))
            .header("cookie", "eventual_token=s3cret")
    };
    // A page on another local port makes the browser send the cookie: refused, nothing paused.
    let forged = with_cookie(reqwest::Method::POST, "/api/envs/3/pause")
        .header("origin", "http://127.0.0.1:9999")
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .expect("sent");
    let body = error_of(forged, 403, "cross_site").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization: Bearer")),
        "{body}"
    );
    let envs = json_of(
        with_cookie(reqwest::Method::GET, "/api/envs")
            .send()
            .await
            .expect("sent"),
        200,
    )
    .await;
    assert_eq!(
        envs[2]["state"], "free",
        "the forged pause did nothing: {envs}"
    );
    // The UI itself (same origin) may change things with its cookie.
    let own_page = with_cookie(reqwest::Method::POST, "/api/envs/3/pause")
        .header("origin", own.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("sent");
    assert_eq!(json_of(own_page, 200).await["state"], "paused");
}
