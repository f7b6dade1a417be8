//! Services in a run: `eventual.toml` scripts around the tests, against real processes.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

fn services() -> std::path::PathBuf {
    fixtures().parent().expect("fixtures dir").join("services")
}

async fn spawn_services() -> TestApp {
    spawn_app(|c| {
        c.sample_tests = Some(services());
        c.kill_grace = Duration::from_millis(500);
    })
    .await
}

fn script<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["scripts"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_spec_example_runs_build_then_service_then_tests_then_stops_it_and_cleans_up() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["basic/check_sut.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(done["status"], "passed", "{done}\n{}", app.log(id).await);
    for (name, state) in [
        ("build", "passed"),
        ("sut", "passed"),
        ("tests", "passed"),
        ("cleanup", "passed"),
        ("notify", "passed"),
    ] {
        assert_eq!(script(&done, name)["state"], state, "{name}: {done}");
    }
    assert!(script(&done, "sut")["started_at"].is_string());
    let log = app.log(id).await;
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in log:\n{log}"))
    };
    assert!(pos("script build passed") < pos("script sut starts"));
    assert!(pos("script sut is ready") < pos("--- start basic/check_sut.sh"));
    assert!(pos("stopping sut: the tests have ended") < pos("script cleanup starts"));
    assert!(
        log.contains(" build/out building"),
        "script lines are tagged by name:\n{log}"
    );
    assert!(log.contains(" cleanup/out cleaning up"));
    assert!(log.contains(" ports: SUT_PORT="));
}

#[tokio::test]
async fn each_script_has_its_own_log_section_and_a_service_holds_the_tests_sections() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["basic/check_sut.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(done["status"], "passed", "{done}");
    let log = app.log(id).await;
    let all: Vec<&str> = log.lines().collect();
    let body = json_of(app.get(&format!("/api/runs/{id}/log/sections")).await, 200).await;
    let sections = body["sections"].as_array().expect("sections");
    let of = |kind: &str, path: &str| {
        sections
            .iter()
            .find(|s| s["kind"] == kind && s["path"] == path)
            .unwrap_or_else(|| panic!("no {kind} section {path}: {body}"))
    };
    for name in ["build", "sut", "cleanup", "notify"] {
        let s = of("script", name);
        assert_eq!(s["status"], "passed", "{s}");
        assert!(s["duration_s"].as_f64().is_some(), "{s}");
        let start = s["start"].as_u64().expect("start") as usize;
        let end = s["end"].as_u64().expect("end") as usize;
        assert!(
            all[start].contains(&format!(" --- script {name} starts: ")),
            "{}",
            all[start]
        );
        assert!(
            all[end].contains(&format!(" --- script {name} passed exit=")),
            "{}",
            all[end]
        );
        // A script's own lines are inside its section.
        for (i, line) in all.iter().enumerate() {
            if line.contains(&format!(" {name}/out ")) {
                assert!((start..end).contains(&i), "{name}: line {i} {line}");
            }
        }
    }
    assert_eq!(of("script", "build")["exit_code"], 0);
    let test = of("test", "basic/check_sut.sh");
    assert_eq!(test["status"], "passed");
    // The service runs beside the test: its section holds the test's.
    let (sut, test) = (of("script", "sut"), test);
    assert!(sut["start"].as_u64() < test["start"].as_u64(), "{body}");
    assert!(sut["end"].as_u64() > test["end"].as_u64(), "{body}");
    // In the order they started.
    let starts: Vec<u64> = sections
        .iter()
        .filter_map(|s| s["start"].as_u64())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{body}");
    assert_eq!(sections.len(), 5, "{body}");
}

#[tokio::test]
async fn a_service_that_never_becomes_ready_times_out_skips_the_tests_and_cleanup_still_runs() {
    let app = spawn_services().await;
    let started = Instant::now();
    let run = app.create_run("ann", 1, &["never_ready/pass.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(done["status"], "timed_out", "{done}");
    assert_eq!(done["tests"][0]["status"], "skipped");
    assert_eq!(script(&done, "sut")["state"], "timed_out");
    assert_eq!(script(&done, "tests")["state"], "skipped");
    assert_eq!(script(&done, "cleanup")["state"], "passed");
    let log = app.log(id).await;
    assert!(
        log.contains("script sut not ready within 500ms: probe tcp 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("last error:"), "{log}");
}

#[tokio::test]
async fn a_service_that_crashes_while_tests_run_fails_the_run_naming_it() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["crash/wait_for_crash.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(script(&done, "sut")["state"], "failed");
    assert_eq!(script(&done, "sut")["exit_code"], 3);
    let log = app.log(id).await;
    assert!(
        log.contains("service sut died while the tests were running (exit=3)"),
        "{log}"
    );
}

#[tokio::test]
async fn a_service_that_ignores_sigterm_is_killed_and_nothing_of_it_survives() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["stubborn/quick.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(done["status"], "passed", "{done}");
    assert_eq!(
        script(&done, "svc")["state"],
        "passed",
        "stopped after the tests: passed"
    );
    let pid: i32 = std::fs::read_to_string(app.data_dir.join(format!("runs/{id}/work/svc.pid")))
        .expect("svc.pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(!alive(pid), "the service {pid} survived");
    assert!(app.log(id).await.contains("sending SIGKILL"));
}

#[tokio::test]
async fn cancel_during_tests_runs_only_ignore_abort_cleanup() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["basic/hang.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    app.wait_for_log_line(id, " out waiting").await;
    let cancelled: Value = app
        .post(&format!("/api/runs/{id}/cancel"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(script(&cancelled, "sut")["state"], "cancelled");
    assert_eq!(
        script(&cancelled, "cleanup")["state"],
        "passed",
        "ignore_abort cleanup ran"
    );
    assert_eq!(
        script(&cancelled, "notify")["state"],
        "cancelled",
        "not ignore_abort"
    );
}

#[tokio::test]
async fn two_runs_on_different_environments_get_their_own_ports() {
    let app = spawn_services().await;
    let a = app.create_run("ann", 1, &["basic/check_sut.sh"]).await["id"]
        .as_i64()
        .expect("id");
    let b = app.create_run("bob", 2, &["basic/check_sut.sh"]).await["id"]
        .as_i64()
        .expect("id");
    assert_eq!(app.wait_finished(a).await["status"], "passed");
    assert_eq!(app.wait_finished(b).await["status"], "passed");
    let port = |log: String| {
        log.lines()
            .find_map(|l| l.split("SUT_PORT=").nth(1).map(str::to_owned))
            .expect("port line")
    };
    assert_ne!(port(app.log(a).await), port(app.log(b).await));
}

#[tokio::test]
async fn uploads_of_invalid_configs_are_refused_listing_every_problem() {
    let app = spawn_services().await;
    for (text, hints) in [
        (
            "[scripts.a]\nrun = \"true\"\nafter = { ghost = [\"passed\"] }\ncolour = 1\n",
            vec!["`ghost`", "unknown key `colour`"],
        ),
        (
            "[scripts.a]\nrun = \"true\"\nafter = { b = [\"passed\"] }\n[scripts.b]\nrun = \"true\"\nafter = { a = [\"passed\"] }\n",
            vec!["cycle"],
        ),
        (
            "ports = [\"1BAD\"]\n[scripts.a]\nrun = \"true\"\ntimeout = \"later\"\n",
            vec!["1BAD", "\"later\""],
        ),
        ("[scripts.a\nrun = 1\n", vec!["line 1"]),
    ] {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
                    .file_name("eventual.toml"),
            )
            .text("dir", "team/x");
        let response = app
            .http
            .post(app.url("/api/tests"))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_config");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        for hint in hints {
            assert!(message.contains(hint), "{hint} missing from {message}");
        }
    }
    let ok = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"[scripts.a]\nrun = \"true\"\n".to_vec())
                .file_name("eventual.toml"),
        )
        .text("dir", "team/x");
    let response = app
        .http
        .post(app.url("/api/tests"))
        .multipart(ok)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let listed = app.get_json("/api/tests").await;
    let configs = listed["configs"].as_array().expect("configs");
    assert!(
        configs
            .iter()
            .any(|c| c["dir"] == "team/x" && c["scripts"] == serde_json::json!(["a"])),
        "{listed}"
    );
}

#[tokio::test]
async fn a_dependency_on_running_starts_before_the_probe_passes_and_on_ready_after_it() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["deps/pass.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(done["status"], "passed", "{done}\n{}", app.log(id).await);
    assert_eq!(script(&done, "early")["state"], "passed");
    assert_eq!(script(&done, "late")["state"], "passed");
    let log = app.log(id).await;
    assert!(
        log.contains("early/out started while sut was not ready"),
        "{log}"
    );
    assert!(log.contains("late/out started once sut was ready"), "{log}");
}

#[tokio::test]
async fn a_cleanup_that_hangs_is_ended_by_its_timeout_and_the_run_still_ends() {
    let app = spawn_services().await;
    let run = app.create_run("ann", 1, &["slow_cleanup/pass.sh"]).await;
    let id = run["id"].as_i64().expect("id");
    let done = app.wait_finished(id).await;
    assert_eq!(script(&done, "cleanup")["state"], "timed_out", "{done}");
    assert_eq!(done["tests"][0]["status"], "passed");
    assert_eq!(
        done["status"], "timed_out",
        "a timed-out script gives the run its status"
    );
}
