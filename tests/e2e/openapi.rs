//! `GET /openapi.json` (issue 14): an OpenAPI 3.1 document of every route of the server that
//! answers — the sink's alone from `eventual sink`, the sink's and the harness's from
//! `eventual serve` — with the error body among its schemas.

use std::collections::BTreeSet;

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::helpers::{FIXTURE_TESTS, Launch, Running, spawn_eventual};

/// The sink router's paths (`sink/src/routes/mod.rs`) with their methods, as OpenAPI writes them.
/// `/callbacks/` (an empty key: `400 invalid_key` for any method) is a route only to name that
/// error, not an operation, and is not documented.
const SINK_PATHS: &[(&str, &[&str])] = &[
    ("/openapi.json", &["get"]),
    ("/healthz", &["get"]),
    ("/metrics", &["get"]),
    ("/callbacks", &["get", "delete", "post"]),
    (
        "/callbacks/{key}",
        &["get", "delete", "post", "put", "patch"],
    ),
    ("/callbacks/{key}/all", &["get"]),
    ("/callbacks/{key}/raw", &["get"]),
    ("/callbacks/{key}/events", &["get"]),
    ("/watch", &["get"]),
    ("/stubs", &["get", "delete"]),
    ("/stubs/{id}", &["put", "get", "delete"]),
    ("/verifiers", &["get", "delete"]),
    ("/verifiers/{id}", &["get", "put", "delete"]),
];

/// The harness router's paths (`harness/src/routes/mod.rs`); its `/api/tests/{*path}` wildcard
/// is two documented paths, the source and `…/history`.
const HARNESS_PATHS: &[(&str, &[&str])] = &[
    ("/api/tests", &["get", "post"]),
    ("/api/tests/{path}", &["get", "delete"]),
    ("/api/tests/{path}/history", &["get"]),
    ("/api/runs", &["get", "post"]),
    ("/api/runs/{id}", &["get"]),
    ("/api/runs/{id}/log", &["get"]),
    ("/api/runs/{id}/junit.xml", &["get"]),
    ("/api/runs/{id}/log/sections", &["get"]),
    ("/api/runs/{id}/log/search", &["get"]),
    ("/api/runs/{id}/events", &["get"]),
    ("/api/runs/{id}/cancel", &["post"]),
    ("/api/runs/{id}/rerun", &["post"]),
    ("/api/envs", &["get"]),
    ("/api/envs/{id}/pause", &["post"]),
    ("/api/envs/{id}/resume", &["post"]),
    ("/api/nodes", &["get"]),
    ("/api/events", &["get"]),
    ("/", &["get"]),
    ("/ui/{file}", &["get"]),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Fetches the document, checks it is OpenAPI 3.1.0 with the error body, and compares its
/// `path method` pairs with `expected`, both ways.
async fn check_document(server: &Running, expected: &[&[(&str, &[&str])]]) -> anyhow::Result<()> {
    let response = server.http().get(server.at("/openapi.json")).send().await?;
    ensure!(
        response.status() == 200,
        "GET /openapi.json answered {}",
        response.status()
    );
    let content_type = response.headers().get("content-type").cloned();
    ensure!(
        content_type.as_ref().and_then(|v| v.to_str().ok()) == Some("application/json"),
        "GET /openapi.json has content-type {content_type:?}"
    );
    let doc: Value = serde_json::from_slice(&response.bytes().await?)
        .context("GET /openapi.json is not JSON")?;
    ensure!(doc["openapi"] == "3.1.0", "openapi is {}", doc["openapi"]);
    let schemas = &doc["components"]["schemas"];
    for schema in ["ErrorBody", "ErrorDetail", "Record"] {
        ensure!(
            schemas.get(schema).is_some(),
            "no schema {schema} in {schemas}"
        );
    }
    let detail = &schemas["ErrorDetail"]["properties"];
    for field in ["code", "message", "fields", "problems"] {
        ensure!(
            detail.get(field).is_some(),
            "ErrorDetail has no {field}: {detail}"
        );
    }
    // A callback may come without a body: the document must not require one.
    let body = &doc["paths"]["/callbacks/{key}"]["post"]["requestBody"];
    ensure!(
        body["required"] == false,
        "POST /callbacks/{{key}} requires a body: {body}"
    );
    let paths = doc["paths"].as_object().context("no paths")?;
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                ensure!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents no response"
                );
                documented.insert(format!("{method} {path}"));
                // Every JSON answer says what it holds (only the document itself is any object).
                for (status, response) in op["responses"].as_object().into_iter().flatten() {
                    let schema = &response["content"]["application/json"]["schema"];
                    ensure!(
                        path == "/openapi.json"
                            || schema.is_null()
                            || schema.get("$ref").is_some()
                            || schema.get("properties").is_some()
                            || schema.get("items").is_some()
                            || schema.get("oneOf").is_some(),
                        "{method} {path} {status} answers an untyped object: {schema}"
                    );
                }
            }
        }
    }
    let wanted: BTreeSet<String> = expected
        .iter()
        .flat_map(|paths| paths.iter())
        .flat_map(|(path, methods)| methods.iter().map(move |m| format!("{m} {path}")))
        .collect();
    let missing: Vec<_> = wanted.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&wanted).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "routes not documented: {missing:?}; documented but not routes: {extra:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sink_documents_the_sink_routes() -> anyhow::Result<()> {
    let mut server = spawn_eventual(&["sink"]).await?;
    check_document(&server, &[SINK_PATHS]).await?;
    server.terminate().await?;
    Ok(())
}

#[tokio::test]
async fn serve_documents_sink_and_harness_routes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Launch::serve(dir.path(), FIXTURE_TESTS, &[])
        .spawn()
        .await?;
    check_document(&server, &[SINK_PATHS, HARNESS_PATHS]).await?;
    // Errors keep their documented shape: an unknown run is `404` with the error body.
    let (status, body) = server.get("/api/runs/999999").await?;
    ensure!(
        status == 404 && body["error"]["code"] == "not_found",
        "{status} {body}"
    );
    server.terminate().await?;
    Ok(())
}
