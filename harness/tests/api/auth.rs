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
