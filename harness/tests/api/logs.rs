//! A run's log by parts: line ranges (`?offset=&limit=`, the tail with a negative offset), a
//! follow from a line, the raw file as a download, the test sections, search — and the `400`s
//! of bad parameters.

use crate::helpers::{error_of, header, id_of, json_of, spawn_app};

/// Runs `noisy.sh` (20,000 lines) and `fail.sh`; returns the app, the run id and the whole log.
async fn noisy_run() -> (crate::helpers::TestApp, i64, String) {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["noisy.sh", "fail.sh"]).await;
    let id = id_of(&run);
    app.wait_finished(id).await;
    let log = app.log(id).await;
    (app, id, log)
}

#[tokio::test]
async fn a_line_range_is_those_lines_of_the_whole_log_with_their_offset_and_the_total() {
    let (app, id, log) = noisy_run().await;
    let all: Vec<&str> = log.lines().collect();
    let total = all.len();
    assert!(total > 20_000, "{total} lines");
    for (query, first, count) in [
        ("offset=0&limit=3".to_owned(), 0, 3),
        ("offset=1023&limit=2".to_owned(), 1023, 2),
        ("offset=10000&limit=10000".to_owned(), 10_000, 10_000),
        // Negative: from the end — the page loads the tail first.
        ("offset=-5&limit=5".to_owned(), total - 5, 5),
        (format!("offset=-{}&limit=100", total + 50), 0, 100),
        // Past the end: nothing, and still the total.
        (format!("offset={}&limit=10", total + 7), total, 0),
        ("limit=4".to_owned(), 0, 4),
        ("offset=20000".to_owned(), 20_000, 1000.min(total - 20_000)),
    ] {
        let response = app.get(&format!("/api/runs/{id}/log?{query}")).await;
        assert_eq!(response.status(), 200, "{query}");
        assert_eq!(
            header(&response, "x-log-offset"),
            first.to_string(),
            "{query}"
        );
        assert_eq!(
            header(&response, "x-log-lines"),
            total.to_string(),
            "{query}"
        );
        let text = response.text().await.expect("text");
        let want: String = all[first..first + count]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(text, want, "{query}");
    }
}

#[tokio::test]
async fn bad_range_parameters_are_400_invalid_query_naming_the_parameter() {
    let (app, id, _) = noisy_run().await;
    for (query, names) in [
        ("offset=abc", "`offset`"),
        ("offset=1.5", "`offset`"),
        ("offset=", "`offset`"),
        ("limit=0", "`limit`"),
        ("limit=10001", "`limit`"),
        ("limit=-3", "`limit`"),
        ("offset=0&limit=x", "`limit`"),
        ("follow=true&limit=10", "`limit`"),
        ("download=yes", "`download`"),
        ("download=true&offset=5", "`download`"),
        ("offset=1&offset=2", "give each parameter once"),
    ] {
        let body = error_of(
            app.get(&format!("/api/runs/{id}/log?{query}")).await,
            400,
            "invalid_query",
        )
        .await;
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(names), "{query}: {body}");
    }
    for query in [
        "q=",
        "limit=5",
        "q=x&limit=0",
        "q=x&limit=lots",
        "q=x&ignore_case=yes",
    ] {
        error_of(
            app.get(&format!("/api/runs/{id}/log/search?{query}")).await,
            400,
            "invalid_query",
        )
        .await;
    }
    for path in [
        "/api/runs/999/log?offset=-10&limit=10",
        "/api/runs/999/log?download=true",
        "/api/runs/999/log/sections",
        "/api/runs/999/log/search?q=x",
    ] {
        error_of(app.get(path).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn the_download_is_the_exact_file_as_an_attachment() {
    let (app, id, log) = noisy_run().await;
    let response = app.get(&format!("/api/runs/{id}/log?download=true")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-disposition"),
        format!("attachment; filename=\"run-{id}.log\"")
    );
    let on_disk = std::fs::read(app.data_dir.join(format!("runs/{id}/log.txt"))).expect("log file");
    assert_eq!(
        header(&response, "content-length"),
        on_disk.len().to_string()
    );
    let body = response.bytes().await.expect("body");
    assert_eq!(&body[..], &on_disk[..]);
    assert_eq!(log.as_bytes(), &on_disk[..]);
}

#[tokio::test]
async fn following_from_a_line_streams_the_rest_of_the_log_to_the_end_of_the_run() {
    let app = spawn_app(|_| {}).await;
    app.post("/api/envs/2/pause").await;
    let run = app.create_run("bo", 2, &["slow_lines.sh"]).await;
    let id = id_of(&run);
    // Queued: there is no log yet, and a follow from line 0 waits for it.
    let response = app
        .get(&format!("/api/runs/{id}/log?follow=true&offset=0"))
        .await;
    assert_eq!(header(&response, "x-log-offset"), "0");
    app.post("/api/envs/2/resume").await;
    let followed = response.text().await.expect("text");
    let log = app.log(id).await;
    assert_eq!(followed, log);
    let lines: Vec<&str> = log.lines().collect();
    let response = app
        .get(&format!("/api/runs/{id}/log?follow=true&offset=2"))
        .await;
    assert_eq!(header(&response, "x-log-offset"), "2");
    let rest = response.text().await.expect("text");
    let want: String = lines[2..].iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(rest, want);
    let response = app
        .get(&format!("/api/runs/{id}/log?follow=true&offset=-1"))
        .await;
    assert_eq!(
        header(&response, "x-log-offset"),
        (lines.len() - 1).to_string()
    );
}

#[tokio::test]
async fn sections_give_each_test_its_lines_status_and_duration() {
    let (app, id, log) = noisy_run().await;
    let all: Vec<&str> = log.lines().collect();
    let body = json_of(app.get(&format!("/api/runs/{id}/log/sections")).await, 200).await;
    assert_eq!(body["lines"], all.len());
    let sections = body["sections"].as_array().expect("sections");
    assert_eq!(sections.len(), 2, "{body}");
    for (section, (path, status, exit)) in sections
        .iter()
        .zip([("noisy.sh", "passed", 0), ("fail.sh", "failed", 3)])
    {
        assert_eq!(section["kind"], "test");
        assert_eq!(section["path"], path);
        assert_eq!(section["status"], status);
        assert_eq!(section["exit_code"], exit);
        assert!(section["duration_s"].as_f64().is_some(), "{section}");
        let start = section["start"].as_u64().expect("start") as usize;
        let end = section["end"].as_u64().expect("end") as usize;
        assert!(
            all[start].contains(&format!(" --- start {path} (")),
            "{}",
            all[start]
        );
        assert!(
            all[end].contains(&format!(" --- end {path} {status} exit={exit} in ")),
            "{}",
            all[end]
        );
    }
}

#[tokio::test]
async fn search_lists_the_matching_lines_and_counts_them_all() {
    let (app, id, log) = noisy_run().await;
    let all: Vec<&str> = log.lines().collect();
    let body = json_of(
        app.get(&format!("/api/runs/{id}/log/search?q=line%2012345"))
            .await,
        200,
    )
    .await;
    let want: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].contains("line 12345"))
        .collect();
    assert_eq!(body["matches"], serde_json::json!(want), "{body}");
    assert_eq!(body["count"], want.len());
    assert_eq!(body["truncated"], false);
    let body = json_of(
        app.get(&format!("/api/runs/{id}/log/search?q=line&limit=10"))
            .await,
        200,
    )
    .await;
    assert_eq!(
        body["count"],
        all.iter().filter(|l| l.contains("line")).count()
    );
    assert_eq!(body["matches"].as_array().map(Vec::len), Some(10));
    assert_eq!(body["truncated"], true);
    let body = json_of(
        app.get(&format!("/api/runs/{id}/log/search?q=no%20such%20text"))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (
            body["count"].as_u64(),
            body["matches"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn search_ignoring_case_matches_every_casing_and_by_default_matches_bytes() {
    let (app, id, log) = noisy_run().await;
    let all: Vec<&str> = log.lines().collect();
    let search = |query: &'static str| {
        let app = &app;
        async move {
            json_of(
                app.get(&format!("/api/runs/{id}/log/search?{query}")).await,
                200,
            )
            .await
        }
    };
    let want: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].contains("line 12345"))
        .collect();
    assert!(!want.is_empty());
    for query in [
        "q=LINE%2012345&ignore_case=true",
        "q=LiNe%2012345&ignore_case=1",
        "q=line%2012345&ignore_case=true",
    ] {
        let body = search(query).await;
        assert_eq!(body["matches"], serde_json::json!(want), "{query}: {body}");
        assert_eq!(body["count"], want.len(), "{query}");
        assert_eq!(body["ignore_case"], true, "{query}");
    }
    // Case-sensitive unless asked: the log has no upper-case `LINE`.
    for query in ["q=LINE%2012345", "q=LINE%2012345&ignore_case=false"] {
        let body = search(query).await;
        assert_eq!(body["count"], 0, "{query}: {body}");
        assert_eq!(body["ignore_case"], false, "{query}");
    }
    // The harness's own lines too, in any case; the limit still lists the first ones.
    let body = search("q=NOISY.SH&ignore_case=true&limit=1").await;
    let want: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].to_lowercase().contains("noisy.sh"))
        .collect();
    assert_eq!(body["count"], want.len(), "{body}");
    assert_eq!(body["matches"], serde_json::json!(want[..1]));
    assert_eq!(body["truncated"], want.len() > 1);
}
