//! Runs: creating (and every way to be refused), executing in order, logs, listing, rerun,
//! and what a test process is told.

use serde_json::{Value, json};

use crate::helpers::{
    PATIENCE, Part, SINK_URL, error_of, header, id_of, json_of, parse_log_line, spawn_app,
    test_statuses,
};

#[tokio::test]
async fn a_created_run_is_201_queued_or_running_and_then_passes() {
    let app = spawn_app(|_| {}).await;
    let response = app
        .post_json(
            "/api/runs",
            &json!({ "username": "ann", "env_id": 2, "tests": ["pass.sh"] }),
        )
        .await;
    assert!(header(&response, "content-type").starts_with("application/json"));
    let run = json_of(response, 201).await;
    assert!(
        matches!(run["status"].as_str(), Some("queued" | "running")),
        "{run}"
    );
    assert_eq!(run["username"], "ann");
    assert_eq!(run["env_id"], 2);
    assert_eq!(run["tests"][0]["path"], "pass.sh");
    assert!(
        run["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{run}"
    );
    assert!(run["finished_at"].is_null(), "{run}");

    let run = app.wait_finished(id_of(&run)).await;
    assert_eq!(run["status"], "passed", "{run}");
    assert_eq!(
        run["tests"],
        json!([{ "path": "pass.sh", "status": "passed", "exit_code": 0,
                 "duration_ms": run["tests"][0]["duration_ms"] }])
    );
    assert!(run["tests"][0]["duration_ms"].is_u64(), "{run}");
    assert!(run["started_at"].is_string(), "{run}");
    assert!(run["finished_at"].is_string(), "{run}");
    let get = app.run(id_of(&run)).await;
    assert_eq!(get, run, "GET /api/runs/{{id}} shows the same run");
}

#[tokio::test]
async fn the_log_has_timestamped_tagged_lines_with_start_and_end_lines() {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["pass.sh", "fail.sh"]).await;
    let id = id_of(&run);
    app.wait_finished(id).await;

    let response = app.get(&format!("/api/runs/{id}/log")).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/plain"));
    let log = response.text().await.expect("log");
    assert!(log.ends_with('\n'), "{log}");
    let lines: Vec<(&str, &str)> = log.lines().map(parse_log_line).collect();

    let position = |tag: &str, text: &str| {
        lines
            .iter()
            .position(|l| *l == (tag, text))
            .unwrap_or_else(|| panic!("no `{tag} {text}` line in:\n{log}"))
    };
    let start_pass = position("---", "start pass.sh (1/2)");
    let hello = position("out", &format!("hello from {id} on env 1"));
    let warning = position("err", "a warning");
    let end_pass = lines
        .iter()
        .position(|(tag, text)| {
            *tag == "---"
                && text.starts_with("end pass.sh passed exit=0 in ")
                && text.ends_with('s')
        })
        .unwrap_or_else(|| panic!("no end line for pass.sh:\n{log}"));
    let start_fail = position("---", "start fail.sh (2/2)");
    let about = position("out", "about to fail");
    let end_fail = lines
        .iter()
        .position(|(tag, text)| *tag == "---" && text.starts_with("end fail.sh failed exit=3 in "))
        .unwrap_or_else(|| panic!("no end line for fail.sh:\n{log}"));
    assert!(
        start_pass < hello && hello < warning && warning < end_pass,
        "{log}"
    );
    assert!(
        end_pass < start_fail && start_fail < about && about < end_fail,
        "{log}"
    );

    // The duration is seconds with milliseconds: `in 0.012s`.
    let (_, end) = lines[end_pass];
    let secs = end
        .rsplit_once(" in ")
        .and_then(|(_, d)| d.strip_suffix('s'))
        .expect("a duration");
    let (whole, frac) = secs.split_once('.').expect("a decimal duration");
    assert!(whole.parse::<u64>().is_ok() && frac.len() == 3, "{end}");
}

#[tokio::test]
async fn a_failing_test_fails_the_run_with_its_exit_code_and_later_tests_still_run() {
    let app = spawn_app(|_| {}).await;
    let run = app
        .create_run("ann", 1, &["pass.sh", "fail.sh", "env.sh"])
        .await;
    let run = app.wait_finished(id_of(&run)).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(test_statuses(&run), ["passed", "failed", "passed"]);
    let codes: Vec<&Value> = run["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| &t["exit_code"])
        .collect();
    assert_eq!(codes, [&json!(0), &json!(3), &json!(0)]);
}

#[tokio::test]
async fn a_run_takes_the_status_of_its_first_test_that_did_not_pass() {
    let app = spawn_app(|c| c.test_timeout = std::time::Duration::from_millis(500)).await;
    let run = app
        .create_run("ann", 1, &["pass.sh", "hang.sh", "fail.sh"])
        .await;
    let run = app.wait_finished(id_of(&run)).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(test_statuses(&run), ["passed", "timed_out", "failed"]);

    let run = app.create_run("ann", 2, &["fail.sh", "hang.sh"]).await;
    let run = app.wait_finished(id_of(&run)).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(test_statuses(&run), ["failed", "timed_out"]);
}

#[tokio::test]
async fn every_invalid_field_is_listed_at_once_with_422() {
    let app = spawn_app(|c| c.envs = 4).await;
    let body = json!({ "username": "", "env_id": "1", "tests": [] });
    let error = error_of(
        app.post_json("/api/runs", &body).await,
        422,
        "invalid_fields",
    )
    .await;
    let fields = error["error"]["fields"].as_object().expect("fields");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["env_id", "tests", "username"], "{error}");
    for name in names {
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(name)),
            "the message names {name}: {error}"
        );
    }

    let nothing = error_of(
        app.post_json("/api/runs", &json!({})).await,
        422,
        "invalid_fields",
    )
    .await;
    assert_eq!(
        nothing["error"]["fields"].as_object().map(|f| f.len()),
        Some(3),
        "{nothing}"
    );
    assert_eq!(
        app.get_json("/api/runs").await,
        json!({ "runs": [] }),
        "nothing was created"
    );
}

#[tokio::test]
async fn each_bad_field_value_is_422_naming_that_field() {
    let app = spawn_app(|c| c.envs = 4).await;
    let good = || json!({ "username": "ann", "env_id": 1, "tests": ["pass.sh"] });
    let cases: Vec<(&str, Value)> = vec![
        ("username", json!("")),
        ("username", json!("   ")),
        ("username", json!("x".repeat(65))),
        ("username", json!("ann\u{7}")),
        ("username", json!("ann\nbob")),
        ("username", json!(42)),
        ("env_id", json!("1")),
        ("env_id", json!(-1)),
        ("env_id", json!(0)),
        ("env_id", json!(5)),
        ("env_id", json!(1.5)),
        ("env_id", json!(null)),
        ("tests", json!([])),
        ("tests", json!(["nope.sh"])),
        ("tests", json!(["pass.sh", "pass.sh"])),
        ("tests", json!(["pass.sh", "../fixtures/tests/pass.sh"])),
        ("tests", json!(["/etc/passwd"])),
        ("tests", json!([1])),
        ("tests", json!("pass.sh")),
    ];
    for (field, value) in cases {
        let mut body = good();
        body[field] = value.clone();
        let error = error_of(
            app.post_json("/api/runs", &body).await,
            422,
            "invalid_fields",
        )
        .await;
        let fields = error["error"]["fields"].as_object().expect("fields");
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            [field],
            "{field} = {value}: {error}"
        );
    }
    // The longest allowed username is fine.
    let mut body = good();
    body["username"] = json!("x".repeat(64));
    json_of(app.post_json("/api/runs", &body).await, 201).await;
    let listed = app.get_json("/api/runs").await;
    assert_eq!(listed["runs"].as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn malformed_json_is_400_and_a_wrong_content_type_is_415() {
    let app = spawn_app(|_| {}).await;
    let malformed = app
        .http
        .post(app.url("/api/runs"))
        .header("content-type", "application/json")
        .body("{\"username\": \"ann\", ")
        .send()
        .await
        .expect("sent");
    error_of(malformed, 400, "invalid_json").await;

    let not_json = app
        .http
        .post(app.url("/api/runs"))
        .header("content-type", "text/plain")
        .body(r#"{"username": "ann", "env_id": 1, "tests": ["pass.sh"]}"#)
        .send()
        .await
        .expect("sent");
    error_of(not_json, 415, "unsupported_kind").await;

    let none = app
        .http
        .post(app.url("/api/runs"))
        .body(r#"{"username": "ann", "env_id": 1, "tests": ["pass.sh"]}"#)
        .send()
        .await
        .expect("sent");
    error_of(none, 415, "unsupported_kind").await;
    assert_eq!(app.get_json("/api/runs").await, json!({ "runs": [] }));
}

#[tokio::test]
async fn the_list_is_newest_first_and_filters_by_env_username_status_limit_and_before() {
    let app = spawn_app(|_| {}).await;
    let plan = [
        ("ann", 1, "pass.sh"),
        ("bob", 2, "fail.sh"),
        ("ann", 2, "pass.sh"),
        ("cid", 1, "fail.sh"),
        ("ann", 3, "pass.sh"),
    ];
    let mut ids = Vec::new();
    for (user, env, test) in plan {
        let run = app.create_run(user, env, &[test]).await;
        ids.push(id_of(&run));
    }
    for id in &ids {
        app.wait_finished(*id).await;
    }
    let list = |query: &'static str| {
        let app = &app;
        async move {
            let body = app.get_json(&format!("/api/runs{query}")).await;
            body["runs"]
                .as_array()
                .unwrap_or_else(|| panic!("runs list: {body}"))
                .iter()
                .map(id_of)
                .collect::<Vec<_>>()
        }
    };
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(list("").await, newest_first);
    assert_eq!(list("?env_id=1").await, [ids[3], ids[0]]);
    assert_eq!(list("?username=ann").await, [ids[4], ids[2], ids[0]]);
    assert_eq!(list("?status=failed").await, [ids[3], ids[1]]);
    assert_eq!(list("?status=passed&env_id=2").await, [ids[2]]);
    assert_eq!(list("?limit=2").await, [ids[4], ids[3]]);
    let before = format!("?limit=2&before={}", ids[3]);
    let body = app.get_json(&format!("/api/runs{before}")).await;
    let page: Vec<i64> = body["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(page, [ids[2], ids[1]]);
    assert_eq!(list("?username=nobody").await, Vec::<i64>::new());

    // Each listed run is the full run, tests included.
    let body = app.get_json("/api/runs?limit=1").await;
    assert_eq!(body["runs"][0], app.run(ids[4]).await);

    for bad in [
        "?env_id=x",
        "?status=bogus",
        "?limit=0",
        "?limit=x",
        "?before=x",
    ] {
        error_of(
            app.get(&format!("/api/runs{bad}")).await,
            400,
            "invalid_query",
        )
        .await;
    }
}

#[tokio::test]
async fn a_malformed_or_repeated_query_parameter_is_400_with_the_json_error_body() {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["pass.sh"]).await;
    let id = id_of(&run);
    app.wait_finished(id).await;
    for path in [
        format!("/api/runs/{id}/log?follow=null&follow=null"),
        "/api/runs?limit=1&limit=2".to_owned(),
    ] {
        let body = error_of(app.get(&path).await, 400, "invalid_query").await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("give each parameter once")),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn an_unknown_run_is_404_everywhere() {
    let app = spawn_app(|_| {}).await;
    for path in [
        "/api/runs/999",
        "/api/runs/abc",
        "/api/runs/999/log",
        "/api/runs/999/log?follow=true",
        "/api/runs/999/events",
    ] {
        error_of(app.get(path).await, 404, "not_found").await;
    }
    error_of(app.post("/api/runs/999/rerun").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_rerun_is_a_new_run_with_the_same_username_env_and_tests() {
    let app = spawn_app(|_| {}).await;
    let first = app.create_run("dora", 3, &["fail.sh", "pass.sh"]).await;
    let first = app.wait_finished(id_of(&first)).await;
    let response = app
        .post(&format!("/api/runs/{}/rerun", id_of(&first)))
        .await;
    let second = json_of(response, 201).await;
    assert!(id_of(&second) > id_of(&first), "{second}");
    assert_eq!(second["username"], "dora");
    assert_eq!(second["env_id"], 3);
    let paths: Vec<&Value> = second["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| &t["path"])
        .collect();
    assert_eq!(paths, [&json!("fail.sh"), &json!("pass.sh")]);
    let second = app.wait_finished(id_of(&second)).await;
    assert_eq!(second["status"], "failed");
    assert_eq!(test_statuses(&second), ["failed", "passed"]);
}

#[tokio::test]
async fn a_test_gets_its_run_env_user_sink_and_a_private_key_prefix() {
    let app = spawn_app(|_| {}).await;
    let mut prefixes = Vec::new();
    for (user, env) in [("eve", 4), ("fay", 2)] {
        let run = app.create_run(user, env, &["env.sh"]).await;
        let id = id_of(&run);
        app.wait_finished(id).await;
        let log = app.log(id).await;
        let line = log
            .lines()
            .map(parse_log_line)
            .find(|(tag, _)| *tag == "out")
            .map(|(_, text)| text.to_owned())
            .unwrap_or_else(|| panic!("env.sh printed a line:\n{log}"));
        let expected = format!("run={id} env={env} user={user} sink={SINK_URL} prefix=");
        let prefix = line
            .strip_prefix(&expected)
            .unwrap_or_else(|| panic!("{line:?} starts with {expected:?}"));
        assert!(!prefix.is_empty(), "the key prefix is set: {line}");
        prefixes.push(prefix.to_owned());
    }
    assert_ne!(prefixes[0], prefixes[1], "each run has its own key prefix");
}

#[tokio::test]
async fn an_oversized_run_request_is_413_and_creates_nothing() {
    let app = spawn_app(|_| {}).await;
    let huge = "x".repeat(3 << 20);
    let body = error_of(
        app.post_json(
            "/api/runs",
            &serde_json::json!({"username": huge, "env_id": 1, "tests": ["pass.sh"]}),
        )
        .await,
        413,
        "too_large",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("name the tests by path")),
        "{body}"
    );
    let runs = app.get_json("/api/runs").await;
    assert_eq!(runs["runs"], serde_json::json!([]), "nothing was created");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_with_expect_continue_is_413_before_the_body() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let app = spawn_app(|_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/runs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n",
        app.addr
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send headers");
    // No body is sent: the answer must not be `100 Continue` but the refusal.
    let mut reader = tokio::io::BufReader::new(stream);
    let mut status = String::new();
    tokio::time::timeout(PATIENCE, reader.read_line(&mut status))
        .await
        .expect("an answer without the body")
        .expect("read");
    assert!(status.starts_with("HTTP/1.1 413"), "{status:?}");
}

fn paths(run: &Value) -> Vec<String> {
    run["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter_map(|t| t["path"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_run_may_name_a_directory_or_a_tag_and_stores_the_tests_they_resolve_to() {
    let app = spawn_app(|_| {}).await;
    for (dir, name, body) in [
        ("team/smoke", "b.sh", "# eventual: tags=quick\nexit 0\n"),
        ("team/smoke", "a.sh", "exit 0\n"),
        (
            "team/slow",
            "c.sh",
            "# eventual: tags=quick, slow\nexit 0\n",
        ),
    ] {
        json_of(
            app.upload(&[Part::Text("dir", dir), Part::File(name, body.as_bytes())])
                .await,
            201,
        )
        .await;
    }
    let run = app
        .create_run("ann", 1, &["team/smoke/", "tag:quick", "pass.sh"])
        .await;
    assert_eq!(
        paths(&run),
        [
            "team/smoke/a.sh",
            "team/smoke/b.sh",
            "team/slow/c.sh",
            "pass.sh"
        ],
        "directory first in catalog order, then the tag's tests not already named, then the file"
    );
    assert_eq!(app.wait_finished(id_of(&run)).await["status"], "passed");
    let body = error_of(
        app.post_json(
            "/api/runs",
            &json!({"username": "ann", "env_id": 1, "tests": ["nowhere/", "tag:none"]}),
        )
        .await,
        422,
        "invalid_fields",
    )
    .await;
    let why = body["error"]["fields"]["tests"].as_str().expect("tests");
    assert!(
        why.contains("there is no test under nowhere/")
            && why.contains("no test is tagged \"none\""),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_field_in_a_run_request_is_422_naming_it() {
    let app = spawn_app(|_| {}).await;
    let body = error_of(
        app.post_json(
            "/api/runs",
            &json!({"username": "ann", "env_id": 1, "tests": ["pass.sh"], "env": 2}),
        )
        .await,
        422,
        "invalid_fields",
    )
    .await;
    assert!(body["error"]["fields"]["env"].is_string(), "{body}");
    assert_eq!(app.get_json("/api/runs").await["runs"], json!([]));
}

#[tokio::test]
async fn env_id_any_takes_a_free_environment_and_never_a_paused_one() {
    let app = spawn_app(|_| {}).await;
    for env in [1, 2] {
        json_of(app.post(&format!("/api/envs/{env}/pause")).await, 200).await;
    }
    let run = json_of(
        app.post_json(
            "/api/runs",
            &json!({"username": "ann", "env_id": "any", "tests": ["pass.sh"]}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        run["env_id"], 3,
        "the first free one that is not paused: {run}"
    );
    app.wait_finished(id_of(&run)).await;
    for env in [3, 4] {
        json_of(app.post(&format!("/api/envs/{env}/pause")).await, 200).await;
    }
    let body = error_of(
        app.post_json(
            "/api/runs",
            &json!({"username": "ann", "env_id": "any", "tests": ["pass.sh"]}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("every environment is paused")),
        "{body}"
    );
}

#[tokio::test]
async fn rerun_with_only_failed_reruns_just_the_tests_that_did_not_pass() {
    let app = spawn_app(|_| {}).await;
    let run = app
        .create_run("ann", 1, &["pass.sh", "fail.sh", "env.sh"])
        .await;
    let id = id_of(&run);
    app.wait_finished(id).await;
    let rerun = |body: Value| {
        let app = &app;
        async move {
            app.http
                .post(app.url(&format!("/api/runs/{id}/rerun")))
                .json(&body)
                .send()
                .await
                .expect("rerun")
        }
    };
    let again = json_of(rerun(json!({"only": "failed"})).await, 201).await;
    assert_eq!(paths(&again), ["fail.sh"]);
    assert_eq!(again["username"], "ann");
    assert_eq!(again["env_id"], 1);
    let all = json_of(app.post(&format!("/api/runs/{id}/rerun")).await, 201).await;
    assert_eq!(
        paths(&all),
        ["pass.sh", "fail.sh", "env.sh"],
        "no body: every test"
    );
    error_of(rerun(json!({"only": "slow"})).await, 422, "invalid_fields").await;
    error_of(
        rerun(json!({"onyl": "failed"})).await,
        422,
        "invalid_fields",
    )
    .await;
    let passed = app.create_run("ann", 2, &["pass.sh"]).await;
    app.wait_finished(id_of(&passed)).await;
    let body = error_of(
        app.http
            .post(app.url(&format!("/api/runs/{}/rerun", id_of(&passed))))
            .json(&json!({"only": "failed"}))
            .send()
            .await
            .expect("rerun"),
        422,
        "invalid_fields",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing to rerun")),
        "{body}"
    );
}

#[tokio::test]
async fn a_tests_history_lists_its_runs_newest_first_with_its_pass_rate() {
    let app = spawn_app(|_| {}).await;
    let first = app.create_run("ann", 1, &["pass.sh", "fail.sh"]).await;
    app.wait_finished(id_of(&first)).await;
    let second = app.create_run("bob", 2, &["pass.sh"]).await;
    app.wait_finished(id_of(&second)).await;

    let history = app.get_json("/api/tests/pass.sh/history").await;
    assert_eq!(history["path"], "pass.sh");
    let runs: Vec<i64> = history["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_i64().expect("run_id"))
        .collect();
    assert_eq!(runs, [id_of(&second), id_of(&first)], "newest first");
    assert_eq!(history["runs"][0]["username"], "bob");
    assert_eq!(history["runs"][0]["env_id"], 2);
    assert_eq!(history["runs"][0]["status"], "passed");
    assert!(history["runs"][0]["duration_ms"].is_u64(), "{history}");
    assert_eq!(history["pass_rate"], 1.0);
    let failing = app.get_json("/api/tests/fail.sh/history").await;
    assert_eq!(failing["passed"], 0);
    assert_eq!(failing["pass_rate"], 0.0);
    let one = app.get_json("/api/tests/pass.sh/history?limit=1").await;
    assert_eq!(one["runs"].as_array().map(Vec::len), Some(1));

    // The runs of one test.
    let of_fail = app.get_json("/api/runs?test=fail.sh").await;
    let ids: Vec<i64> = of_fail["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, [id_of(&first)]);

    error_of(
        app.get("/api/tests/nope.sh/history").await,
        404,
        "not_found",
    )
    .await;
    error_of(
        app.get("/api/tests/pass.sh/history?limit=0").await,
        400,
        "invalid_query",
    )
    .await;
    // The source is still served at the test's own path.
    assert_eq!(app.get("/api/tests/pass.sh").await.status(), 200);
}
