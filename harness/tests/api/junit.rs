//! `GET /api/runs/{id}/junit.xml`: plain tests of every outcome (`fixtures/tests/`) as JUnit
//! testcases, a run that has not ended, unknown runs. (The pytest cases, the XSD and a consumer
//! parser are checked end to end: `tests/e2e/junit.rs`, `tests/junit/`.)

use std::time::Duration;

use quick_xml::{Reader, XmlVersion, events::Event};

use crate::helpers::{TestApp, error_of, header, id_of, json_of, spawn_app};

/// One `<testcase>` as a CI tool reads it.
#[derive(Debug, Default)]
struct Case {
    classname: String,
    name: String,
    /// `failure`, `error` or `skipped`, with its `message` and `type`.
    result: Option<(String, String, String)>,
    /// The escaped XML between `<system-out>` and `</system-out>`.
    system_out: String,
}

/// The `<testsuite>`'s counts and its cases.
#[derive(Debug, Default)]
struct Report {
    counts: [usize; 4],
    cases: Vec<Case>,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> String {
    e.try_get_attribute(name)
        .expect("well-formed attributes")
        .map(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .expect("an attribute value")
                .into_owned()
        })
        .unwrap_or_default()
}

fn parse(xml: &str) -> Report {
    let mut reader = Reader::from_str(xml);
    let mut report = Report::default();
    let mut in_out = false;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("well-formed XML ({e}):\n{xml}"));
        match event {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"testsuite" => {
                    let n = |a: &str| attr(&e, a).parse::<usize>().expect("a count");
                    report.counts = [n("tests"), n("failures"), n("errors"), n("skipped")];
                }
                b"testcase" => report.cases.push(Case {
                    classname: attr(&e, "classname"),
                    name: attr(&e, "name"),
                    ..Case::default()
                }),
                element @ (b"failure" | b"error" | b"skipped") => {
                    let case = report.cases.last_mut().expect("inside a testcase");
                    case.result = Some((
                        String::from_utf8_lossy(element).into_owned(),
                        attr(&e, "message"),
                        attr(&e, "type"),
                    ));
                }
                b"system-out" => in_out = true,
                _ => {}
            },
            Event::Text(t) if in_out => {
                let case = report.cases.last_mut().expect("inside a testcase");
                case.system_out
                    .push_str(&String::from_utf8_lossy(&t.into_inner()));
            }
            Event::GeneralRef(r) if in_out => {
                let case = report.cases.last_mut().expect("inside a testcase");
                case.system_out
                    .push_str(&format!("&{};", String::from_utf8_lossy(&r.into_inner())));
            }
            Event::End(e) if e.local_name().as_ref() == b"system-out" => in_out = false,
            _ => {}
        }
    }
    report
}

async fn junit(app: &TestApp, id: i64) -> Report {
    let response = app.get(&format!("/api/runs/{id}/junit.xml")).await;
    assert_eq!(response.status(), 200);
    assert!(
        header(&response, "content-type").starts_with("application/xml"),
        "{}",
        header(&response, "content-type")
    );
    let xml = response.text().await.expect("a body");
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    parse(&xml)
}

fn result(case: &Case) -> (&str, &str, &str) {
    case.result
        .as_ref()
        .map_or(("passed", "", ""), |(e, m, t)| {
            (e.as_str(), m.as_str(), t.as_str())
        })
}

#[tokio::test]
async fn each_test_is_a_testcase_and_a_failure_carries_its_exit_code_and_only_its_own_log_lines() {
    let app = spawn_app(|_| {}).await;
    let run = app.create_run("ann", 1, &["pass.sh", "fail.sh"]).await;
    let id = id_of(&run);
    app.wait_finished(id).await;

    let report = junit(&app, id).await;
    assert_eq!(report.counts, [2, 1, 0, 0], "{report:?}");
    let [pass, fail] = &report.cases[..] else {
        panic!("two testcases: {report:?}");
    };
    assert_eq!(
        (pass.classname.as_str(), pass.name.as_str()),
        ("pass", "pass.sh")
    );
    assert_eq!(result(pass), ("passed", "", ""));
    assert!(
        pass.system_out
            .contains(&format!(" out hello from {id} on env 1\n"))
            && pass.system_out.contains(" err a warning\n"),
        "{pass:?}"
    );
    assert!(
        !pass.system_out.contains("about to fail"),
        "only its own section: {pass:?}"
    );
    assert!(!pass.system_out.contains("--- start"), "{pass:?}");

    assert_eq!(result(fail), ("failure", "exited with code 3", "failed"));
    assert!(fail.system_out.contains(" out about to fail\n"), "{fail:?}");
    assert!(!fail.system_out.contains("hello from"), "{fail:?}");
}

#[tokio::test]
async fn a_timed_out_test_is_an_error_that_says_it_timed_out() {
    let app = spawn_app(|c| c.test_timeout = Duration::from_millis(1000)).await;
    let run = app.create_run("ann", 1, &["hang.sh"]).await;
    let id = id_of(&run);
    let run = app.wait_finished(id).await;
    assert_eq!(run["status"], "timed_out", "{run}");

    let report = junit(&app, id).await;
    assert_eq!(report.counts, [1, 0, 1, 0], "{report:?}");
    let (element, message, kind) = result(&report.cases[0]);
    assert_eq!((element, kind), ("error", "timed_out"), "{report:?}");
    assert!(
        message.starts_with("timed out after ") && message.contains("--test-timeout"),
        "{message}"
    );
    assert!(
        report.cases[0].system_out.contains(" out hanging\n"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_cancelled_run_reports_the_test_it_stopped_and_the_rest_as_skipped() {
    let app = spawn_app(|_| {}).await;
    let run = app
        .create_run("ann", 1, &["pass.sh", "hang.sh", "fail.sh"])
        .await;
    let id = id_of(&run);
    app.wait_for_log_line(id, " out ready").await;
    json_of(app.post(&format!("/api/runs/{id}/cancel")).await, 200).await;

    let report = junit(&app, id).await;
    assert_eq!(report.counts, [3, 0, 0, 2], "{report:?}");
    let statuses: Vec<(&str, &str, &str)> = report.cases.iter().map(result).collect();
    assert_eq!(
        statuses,
        [
            ("passed", "", ""),
            (
                "skipped",
                &*format!("cancelled while it ran: run {id} was cancelled"),
                "cancelled"
            ),
            (
                "skipped",
                &*format!("not run: run {id} ended cancelled before this test started"),
                "skipped"
            ),
        ]
    );
}

#[tokio::test]
async fn a_run_that_has_not_ended_is_reported_as_far_as_it_got() {
    let app = spawn_app(|_| {}).await;
    json_of(app.post("/api/envs/2/pause").await, 200).await;
    let run = app.create_run("ann", 2, &["pass.sh"]).await;
    let id = id_of(&run);

    let report = junit(&app, id).await;
    assert_eq!(report.counts, [1, 0, 0, 1], "{report:?}");
    let (element, message, kind) = result(&report.cases[0]);
    assert_eq!((element, kind), ("skipped", "pending"));
    assert_eq!(
        message,
        format!("not run yet: run {id} is queued (this report was taken before it ended)")
    );
}

#[tokio::test]
async fn the_report_of_an_unknown_run_is_404_with_the_json_error_body() {
    let app = spawn_app(|_| {}).await;
    error_of(app.get("/api/runs/999/junit.xml").await, 404, "not_found").await;
    error_of(app.get("/api/runs/abc/junit.xml").await, 404, "not_found").await;
    error_of(
        app.post("/api/runs/1/junit.xml").await,
        405,
        "method_not_allowed",
    )
    .await;
}
