//! The catalog: listing, reading and uploading tests, and every way an upload can be refused
//! without leaving anything behind.

use std::{collections::BTreeSet, path::Path};

use serde_json::Value;

use crate::helpers::{Part, TestApp, error_of, fixtures, header, id_of, json_of, spawn_app};

fn listed<'a>(list: &'a Value, path: &str) -> Option<&'a Value> {
    list["tests"]
        .as_array()
        .expect("tests is a list")
        .iter()
        .find(|t| t["path"] == path)
}

/// Every file and directory under the uploads root, relative to it.
fn uploads_tree(app: &TestApp) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir)
            .expect("readable uploads dir")
            .flatten()
        {
            let path = entry.path();
            out.insert(
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let root = app.data_dir.join("tests");
    let mut out = BTreeSet::new();
    walk(&root, &root, &mut out);
    out
}

#[tokio::test]
async fn the_list_shows_every_bundled_fixture_with_its_dir_size_tags_and_origin() {
    let app = spawn_app(|_| {}).await;
    let list = app.get_json("/api/tests").await;
    for name in [
        "pass.sh", "fail.sh", "hang.sh", "noisy.sh", "leak.sh", "env.sh",
    ] {
        let test = listed(&list, name).unwrap_or_else(|| panic!("{name} is listed: {list}"));
        let size = std::fs::metadata(fixtures().join(name))
            .expect("fixture")
            .len();
        assert_eq!(test["dir"], "", "{test}");
        assert_eq!(test["size"], size, "{test}");
        assert_eq!(test["tags"], serde_json::json!([]), "{test}");
        assert_eq!(test["uploaded"], false, "{test}");
    }
    let paths: Vec<&str> = list["tests"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["path"].as_str())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted, "the list is sorted by path");
}

#[tokio::test]
async fn a_test_source_is_served_as_text_and_an_unknown_one_is_404() {
    let app = spawn_app(|_| {}).await;
    let response = app.get("/api/tests/pass.sh").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/plain"));
    let expected = std::fs::read_to_string(fixtures().join("pass.sh")).expect("fixture");
    assert_eq!(response.text().await.expect("text"), expected);

    error_of(app.get("/api/tests/nope.sh").await, 404, "not_found").await;
    error_of(
        app.get("/api/tests/deep/er/nope.sh").await,
        404,
        "not_found",
    )
    .await;
    // An encoded `..` reaches the route as `../`: refused by name, nothing read.
    error_of(
        app.get("/api/tests/..%2F..%2F..%2Fetc%2Fpasswd").await,
        422,
        "invalid_path",
    )
    .await;
}

#[tokio::test]
async fn an_upload_into_a_new_nested_dir_is_listed_served_and_runnable() {
    let app = spawn_app(|_| {}).await;
    let source = b"#!/usr/bin/env bash\n# eventual: tags=smoke, quick\necho uploaded ok\n";
    let response = app
        .upload(&[
            Part::Text("dir", "team/smoke/deep"),
            Part::File("up.sh", source),
        ])
        .await;
    let created = json_of(response, 201).await;
    assert_eq!(
        created,
        serde_json::json!({ "path": "team/smoke/deep/up.sh" })
    );

    let list = app.get_json("/api/tests").await;
    let test = listed(&list, "team/smoke/deep/up.sh").expect("the upload is listed");
    assert_eq!(test["dir"], "team/smoke/deep");
    assert_eq!(test["size"], source.len());
    assert_eq!(test["tags"], serde_json::json!(["quick", "smoke"]));
    assert_eq!(test["uploaded"], true);

    let text = app
        .get("/api/tests/team/smoke/deep/up.sh")
        .await
        .text()
        .await
        .expect("source");
    assert_eq!(text.as_bytes(), source);

    let run = app.create_run("ann", 1, &["team/smoke/deep/up.sh"]).await;
    let run = app.wait_finished(id_of(&run)).await;
    assert_eq!(run["status"], "passed", "{run}");
    let log = app.log(id_of(&run)).await;
    assert!(log.contains(" out uploaded ok\n"), "{log}");
}

#[tokio::test]
async fn an_existing_path_is_409_unless_overwrite_is_true() {
    let app = spawn_app(|_| {}).await;
    let first = app
        .upload(&[Part::Text("dir", "mine"), Part::File("t.sh", b"echo one\n")])
        .await;
    json_of(first, 201).await;

    let again = app
        .upload(&[Part::Text("dir", "mine"), Part::File("t.sh", b"echo two\n")])
        .await;
    error_of(again, 409, "conflict").await;
    let text = app
        .get("/api/tests/mine/t.sh")
        .await
        .text()
        .await
        .expect("source");
    assert_eq!(text, "echo one\n", "a refused upload changes nothing");

    // A bundled test counts as existing too.
    let bundled = app.upload(&[Part::File("pass.sh", b"exit 1\n")]).await;
    error_of(bundled, 409, "conflict").await;

    let replaced = app
        .upload(&[
            Part::Text("dir", "mine"),
            Part::Text("overwrite", "true"),
            Part::File("t.sh", b"echo two\n"),
        ])
        .await;
    assert_eq!(
        json_of(replaced, 201).await,
        serde_json::json!({ "path": "mine/t.sh" })
    );
    let text = app
        .get("/api/tests/mine/t.sh")
        .await
        .text()
        .await
        .expect("source");
    assert_eq!(text, "echo two\n");
}

#[tokio::test]
async fn an_upload_over_max_upload_is_413_and_stores_nothing() {
    let app = spawn_app(|c| c.max_upload = 1024).await;
    let before = app.get_json("/api/tests").await;
    let tree = uploads_tree(&app);

    let just_over = vec![b'#'; 1025];
    let response = app
        .upload(&[Part::Text("dir", "big"), Part::File("big.sh", &just_over)])
        .await;
    error_of(response, 413, "too_large").await;

    // Far past the body limit too (the server stops reading, still answers 413).
    let huge = vec![b'#'; 512 * 1024];
    let response = app
        .upload(&[Part::Text("dir", "big"), Part::File("huge.sh", &huge)])
        .await;
    error_of(response, 413, "too_large").await;

    assert_eq!(app.get_json("/api/tests").await, before);
    assert_eq!(uploads_tree(&app), tree);

    let at_limit = vec![b'#'; 1024];
    let response = app
        .upload(&[Part::Text("dir", "big"), Part::File("ok.sh", &at_limit)])
        .await;
    json_of(response, 201).await;
}

#[tokio::test]
async fn an_unsupported_kind_is_415() {
    let app = spawn_app(|_| {}).await;
    let before = app.get_json("/api/tests").await;
    let tree = uploads_tree(&app);
    for name in ["notes.txt", "script", "x.sh.bak"] {
        let response = app
            .upload(&[Part::Text("dir", "new"), Part::File(name, b"echo hi\n")])
            .await;
        error_of(response, 415, "unsupported_kind").await;
    }
    assert_eq!(app.get_json("/api/tests").await, before);
    assert_eq!(uploads_tree(&app), tree);
}

#[tokio::test]
async fn traversal_hidden_and_control_character_names_are_422_and_store_nothing() {
    let app = spawn_app(|_| {}).await;
    let before = app.get_json("/api/tests").await;
    let tree = uploads_tree(&app);
    let cases: &[(&str, &str)] = &[
        ("../x", "t.sh"),
        ("a/../../x", "t.sh"),
        ("..", "t.sh"),
        ("ok", "../t.sh"),
        ("ok", "sub/t.sh"),
        ("", ".x.sh"),
        (".hidden", "t.sh"),
        ("a/.git", "t.sh"),
        ("a\u{1}b", "t.sh"),
        ("a\u{7f}b", "t.sh"),
        ("ok", "t\tab.sh"),
        ("a//b", "t.sh"),
        ("a\\b", "t.sh"),
    ];
    for (dir, name) in cases {
        let response = app
            .upload(&[Part::Text("dir", dir), Part::File(name, b"echo hi\n")])
            .await;
        let status = response.status();
        let body = error_of(response, 422, "invalid_path").await;
        assert_eq!(status, 422, "dir {dir:?} name {name:?}: {body}");
    }
    assert_eq!(app.get_json("/api/tests").await, before);
    assert_eq!(uploads_tree(&app), tree);
    let parent = app.data_dir.join("x");
    assert!(
        !parent.exists(),
        "nothing was written outside the uploads root"
    );
}

#[tokio::test]
async fn an_absolute_dir_is_422_and_stores_nothing() {
    let app = spawn_app(|_| {}).await;
    let tree = uploads_tree(&app);
    for dir in ["/etc", "/", "//tmp/x"] {
        let response = app
            .upload(&[Part::Text("dir", dir), Part::File("abs.sh", b"echo hi\n")])
            .await;
        error_of(response, 422, "invalid_path").await;
    }
    assert_eq!(uploads_tree(&app), tree);
}

#[tokio::test]
async fn a_multipart_body_without_a_file_or_with_an_empty_one_is_422() {
    let app = spawn_app(|_| {}).await;
    let before = app.get_json("/api/tests").await;
    let tree = uploads_tree(&app);

    let missing = app.upload(&[Part::Text("dir", "x")]).await;
    let body = error_of(missing, 422, "invalid_fields").await;
    assert!(body["error"]["fields"]["file"].is_string(), "{body}");

    let empty = app
        .upload(&[Part::Text("dir", "x"), Part::File("e.sh", b"")])
        .await;
    let body = error_of(empty, 422, "invalid_fields").await;
    assert!(body["error"]["fields"]["file"].is_string(), "{body}");

    assert_eq!(app.get_json("/api/tests").await, before);
    assert_eq!(uploads_tree(&app), tree);
}

#[tokio::test]
async fn a_body_that_is_not_multipart_is_refused_with_the_error_body() {
    let app = spawn_app(|_| {}).await;
    let response = app
        .post_json("/api/tests", &serde_json::json!({ "file": "x" }))
        .await;
    error_of(response, 400, "invalid_multipart").await;
}

fn supported(list: &Value, path: &str) -> Option<Value> {
    list["support"]
        .as_array()
        .expect("support is a list")
        .iter()
        .find(|t| t["path"] == path)
        .cloned()
}

#[tokio::test]
async fn wrong_methods_answer_405_with_the_json_error_body() {
    let app = spawn_app(|_| {}).await;
    for (method, path) in [
        (reqwest::Method::PUT, "/api/tests/pass.sh"),
        (reqwest::Method::PATCH, "/api/runs"),
        (reqwest::Method::DELETE, "/api/envs"),
        (reqwest::Method::PUT, "/api/runs/1/cancel"),
        (reqwest::Method::POST, "/api/events"),
    ] {
        let body = error_of(
            app.request(method.clone(), path).await,
            405,
            "method_not_allowed",
        )
        .await;
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(method.as_str()) && message.contains(path),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn an_upload_can_be_deleted_and_the_directories_it_leaves_empty_go_with_it() {
    let app = spawn_app(|_| {}).await;
    json_of(
        app.upload(&[
            Part::Text("dir", "team-a/smoke"),
            Part::File("t.sh", b"exit 0\n"),
        ])
        .await,
        201,
    )
    .await;
    json_of(
        app.upload(&[
            Part::Text("dir", "team-a"),
            Part::File("keep.sh", b"exit 0\n"),
        ])
        .await,
        201,
    )
    .await;
    let response = app.delete("/api/tests/team-a/smoke/t.sh").await;
    assert_eq!(response.status(), 204);
    let list = app.get_json("/api/tests").await;
    assert!(listed(&list, "team-a/smoke/t.sh").is_none(), "{list}");
    assert!(listed(&list, "team-a/keep.sh").is_some(), "{list}");
    assert_eq!(
        uploads_tree(&app),
        BTreeSet::from(["team-a".to_owned(), "team-a/keep.sh".to_owned()]),
        "the emptied directory is gone, its non-empty parent stays"
    );
    error_of(
        app.get("/api/tests/team-a/smoke/t.sh").await,
        404,
        "not_found",
    )
    .await;
    error_of(
        app.delete("/api/tests/team-a/smoke/t.sh").await,
        404,
        "not_found",
    )
    .await;
    error_of(
        app.delete("/api/tests/a/.hidden.sh").await,
        422,
        "invalid_path",
    )
    .await;
}

#[tokio::test]
async fn a_bundled_test_cannot_be_deleted_but_an_upload_shadowing_it_can() {
    let app = spawn_app(|_| {}).await;
    let refused = error_of(app.delete("/api/tests/pass.sh").await, 409, "conflict").await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bundled")),
        "{refused}"
    );
    assert!(
        fixtures().join("pass.sh").is_file(),
        "the bundled file stays"
    );
    json_of(
        app.upload(&[
            Part::Text("overwrite", "true"),
            Part::File("pass.sh", b"exit 3\n"),
        ])
        .await,
        201,
    )
    .await;
    let list = app.get_json("/api/tests").await;
    assert_eq!(listed(&list, "pass.sh").expect("listed")["uploaded"], true);
    assert_eq!(app.delete("/api/tests/pass.sh").await.status(), 204);
    let list = app.get_json("/api/tests").await;
    assert_eq!(
        listed(&list, "pass.sh").expect("the bundled test shows again")["uploaded"],
        false
    );
}

#[tokio::test]
async fn an_upload_named_by_a_queued_or_running_run_is_kept_until_the_run_ends() {
    let app = spawn_app(|_| {}).await;
    json_of(
        app.upload(&[Part::Text("dir", "mine"), Part::File("t.sh", b"exit 0\n")])
            .await,
        201,
    )
    .await;
    json_of(app.post("/api/envs/2/pause").await, 200).await;
    let run = app.create_run("ann", 2, &["mine/t.sh"]).await;
    let id = id_of(&run);
    assert_eq!(run["status"], "queued");
    let refused = error_of(app.delete("/api/tests/mine/t.sh").await, 409, "conflict").await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("run(s) {id}"))),
        "names the run: {refused}"
    );
    assert!(app.data_dir.join("tests/mine/t.sh").is_file());
    json_of(app.post(&format!("/api/runs/{id}/cancel")).await, 200).await;
    assert_eq!(app.delete("/api/tests/mine/t.sh").await.status(), 204);
    assert!(!app.data_dir.join("tests/mine/t.sh").exists());
}

#[tokio::test]
async fn support_files_are_uploaded_listed_apart_and_refused_as_tests() {
    let app = spawn_app(|_| {}).await;
    for (dir, name, body) in [
        (
            "team",
            "_helpers.py",
            &b"def answer():\n    return 42\n"[..],
        ),
        ("team/_data", "payload.json", b"{\"n\": 1}\n"),
        ("team", "conftest.py", b"import pytest\n"),
    ] {
        let stored = json_of(
            app.upload(&[Part::Text("dir", dir), Part::File(name, body)])
                .await,
            201,
        )
        .await;
        assert_eq!(stored["path"], format!("{dir}/{name}"));
    }
    let list = app.get_json("/api/tests").await;
    for path in [
        "team/_helpers.py",
        "team/_data/payload.json",
        "team/conftest.py",
    ] {
        assert!(
            listed(&list, path).is_none(),
            "{path} is not a test: {list}"
        );
        let support = supported(&list, path).unwrap_or_else(|| panic!("{path} is support: {list}"));
        assert_eq!(support["uploaded"], true);
        assert_eq!(support["dir"], path.rsplit_once('/').expect("dir").0);
        assert_eq!(app.get(&format!("/api/tests/{path}")).await.status(), 200);
    }
    let refused = error_of(
        app.post_json(
            "/api/runs",
            &serde_json::json!({"username": "ann", "env_id": 1,
                "tests": ["team/_helpers.py", "team/conftest.py"]}),
        )
        .await,
        422,
        "invalid_fields",
    )
    .await;
    let why = refused["error"]["fields"]["tests"].as_str().expect("tests");
    assert!(
        why.contains("team/_helpers.py is a support file")
            && why.contains("team/conftest.py is a support file"),
        "{refused}"
    );
    // Other kinds are still refused outside support paths.
    error_of(
        app.upload(&[Part::Text("dir", "team"), Part::File("payload.json", b"{}")])
            .await,
        415,
        "unsupported_kind",
    )
    .await;
}
