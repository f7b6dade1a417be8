//! The report: a run's tests (and pytest's cases) as `<testcase>`s, statuses mapped as CI tools
//! expect, written with quick-xml.
//!
//! | test status | JUnit |
//! |---|---|
//! | `passed` | a plain `<testcase>` |
//! | `failed` | `<failure type="failed" message="exited with code N">` (the last log lines as text) |
//! | `timed_out` | `<error type="timed_out" message="timed out after …">` |
//! | `error` | `<error type="error" message="could not be started: …">` |
//! | `cancelled` | `<skipped message="cancelled while it ran …">` |
//! | `skipped` | `<skipped message="not run: …">` |
//! | `pending` / `running` | `<skipped message="not run yet …">` / `"still running …"` (a report taken before the run ended) |
//!
//! A pytest file whose XML pytest wrote becomes its cases (`path.py::test_name`) as pytest
//! reported them; the file itself is a case too when it did not pass although none of its cases
//! failed (a crash, no tests collected, a timeout). A run that ended `failed`, `timed_out`,
//! `error` or `interrupted` without any test failing (a missed callback, a failed script) gets a
//! case of its own, `eventual` / `run N`, with the run's own log lines, so CI sees it fail.

use std::{
    borrow::Cow,
    io::{self, BufReader},
    path::{Path, PathBuf},
};

use quick_xml::{
    Writer,
    events::{BytesDecl, BytesText, Event, attributes::Attribute},
};

use crate::model::{Run, RunStatus, RunTest, TestStatus};

use super::{
    pytest::{self, PytestCase},
    sections::{self, MAX_SECTION_BYTES, Section, Sections},
};

/// How many log lines a failure's text repeats from the end of the test's section.
const FAILURE_TAIL_LINES: usize = 20;

/// What a `<testcase>` holds besides its name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    /// `failure`, `error` or `skipped`.
    element: &'static str,
    kind: Option<String>,
    message: String,
    text: String,
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq)]
struct Case {
    classname: String,
    name: String,
    /// Seconds.
    time: Option<f64>,
    result: Option<Verdict>,
    system_out: String,
    system_err: String,
}

/// The run `run` as JUnit XML, from its log at `log` and the XML pytest wrote for test `i` at
/// `pytest_xml[i]` (if it did). Blocking: it reads files.
pub(crate) fn render(run: &Run, log: &Path, pytest_xml: &[PathBuf]) -> io::Result<String> {
    let paths = run.test_paths();
    let sections = match std::fs::File::open(log) {
        Ok(file) => sections::split(BufReader::new(file), &paths, MAX_SECTION_BYTES)?,
        // A run that has not written a line yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Sections {
            tests: vec![Section::default(); paths.len()],
            run: Section::default(),
        },
        Err(e) => return Err(e),
    };
    let pytest = pytest_xml
        .iter()
        .map(|path| match std::fs::read_to_string(path) {
            Ok(xml) => Some(pytest::parse(&xml).map_err(|e| e.to_string())),
            Err(_) => None,
        })
        .collect::<Vec<_>>();
    Ok(write(run, &cases(run, &sections, &pytest)))
}

/// `smoke/hello.sh` → `smoke.hello`: the dotted classname Jenkins groups by (as pytest and Java
/// name theirs).
fn classname(path: &str) -> String {
    let stem = match path.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') && !stem.is_empty() && !stem.ends_with('/') => stem,
        _ => path,
    };
    stem.replace('/', ".")
}

fn seconds(ms: Option<u64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1000.0)
}

/// The result of a whole test (a plain test, or a pytest file without its cases).
fn test_result(run: &Run, test: &RunTest, section: &Section) -> Option<Verdict> {
    let id = run.id;
    let (element, kind, message, text) = match test.status {
        TestStatus::Passed => return None,
        TestStatus::Failed => (
            "failure",
            "failed",
            match test.exit_code {
                Some(code) => format!("exited with code {code}"),
                None => "killed by a signal".to_owned(),
            },
            section.tail(FAILURE_TAIL_LINES),
        ),
        TestStatus::TimedOut => (
            "error",
            "timed_out",
            format!(
                "timed out after {:.3}s: ran past the server --test-timeout and was terminated",
                seconds(test.duration_ms).unwrap_or(0.0)
            ),
            section.tail(FAILURE_TAIL_LINES),
        ),
        TestStatus::Error => (
            "error",
            "error",
            format!(
                "could not be started: {}",
                section
                    .first_error
                    .as_deref()
                    .map_or("see the run log", |e| e.trim_start_matches("error: "))
            ),
            String::new(),
        ),
        TestStatus::Cancelled => (
            "skipped",
            "cancelled",
            if run.status == RunStatus::Interrupted {
                "cancelled while it ran: the server stopped".to_owned()
            } else {
                format!("cancelled while it ran: run {id} was cancelled")
            },
            String::new(),
        ),
        TestStatus::Skipped => (
            "skipped",
            "skipped",
            format!(
                "not run: run {id} ended {} before this test started",
                run.status.as_str()
            ),
            String::new(),
        ),
        TestStatus::Pending => (
            "skipped",
            "pending",
            format!(
                "not run yet: run {id} is {} (this report was taken before it ended)",
                run.status.as_str()
            ),
            String::new(),
        ),
        TestStatus::Running => (
            "skipped",
            "running",
            format!(
                "still running: run {id} was still running this test when the report was taken"
            ),
            String::new(),
        ),
    };
    Some(Verdict {
        element,
        kind: Some(kind.to_owned()),
        message,
        text,
    })
}

/// pytest's case as ours: named by the catalog path (`dir/test_x.py::Class::test_y[1]`), its
/// classname the file's dotted path and any classes.
fn pytest_case(test: &RunTest, case: PytestCase) -> Case {
    let file_class = classname(&test.path);
    // pytest's classname is `<module dotted from its rootdir>[.Class…]`; keep the classes.
    let stem = file_class.rsplit('.').next().unwrap_or_default();
    let parts: Vec<&str> = case.classname.split('.').collect();
    let classes: &[&str] = match parts.iter().rposition(|p| *p == stem) {
        Some(i) => &parts[i + 1..],
        None => &[],
    };
    let mut name = test.path.clone();
    for class in classes {
        name.push_str("::");
        name.push_str(class);
    }
    name.push_str("::");
    name.push_str(&case.name);
    let mut classname = file_class;
    for class in classes {
        classname.push('.');
        classname.push_str(class);
    }
    Case {
        classname,
        name,
        time: case.time,
        result: case.problem.map(|p| Verdict {
            element: p.element,
            kind: p.kind,
            message: p.message,
            text: p.text,
        }),
        system_out: case.system_out,
        system_err: case.system_err,
    }
}

fn cases(
    run: &Run,
    sections: &Sections,
    pytest: &[Option<Result<Vec<PytestCase>, String>>],
) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, test) in run.tests.iter().enumerate() {
        let section = &sections.tests[i];
        let whole = |note: Option<String>| {
            let mut system_out = section.text();
            if let Some(note) = note {
                system_out.push_str(&note);
            }
            Case {
                classname: classname(&test.path),
                name: test.path.clone(),
                time: seconds(test.duration_ms),
                result: test_result(run, test, section),
                system_out,
                system_err: String::new(),
            }
        };
        match pytest.get(i).cloned().flatten() {
            None => cases.push(whole(None)),
            Some(Err(why)) => cases.push(whole(Some(format!(
                "[pytest's JUnit XML for this file could not be read: {why}]\n"
            )))),
            Some(Ok(list)) => {
                let start = cases.len();
                cases.extend(list.into_iter().map(|c| pytest_case(test, c)));
                let any_failed = cases[start..]
                    .iter()
                    .any(|c| c.result.as_ref().is_some_and(|r| r.element != "skipped"));
                if cases.len() == start || (test.status != TestStatus::Passed && !any_failed) {
                    cases.push(whole(None));
                }
            }
        }
    }
    let any_failed = cases
        .iter()
        .any(|c| c.result.as_ref().is_some_and(|r| r.element != "skipped"));
    let failed_run = matches!(
        run.status,
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::Error | RunStatus::Interrupted
    );
    if failed_run && !any_failed {
        let why = sections
            .run
            .last_harness_line
            .as_deref()
            .map_or_else(String::new, |l| format!(": {l}"));
        cases.push(Case {
            classname: "eventual".to_owned(),
            name: format!("run {}", run.id),
            time: None,
            result: Some(Verdict {
                element: "error",
                kind: Some(run.status.as_str().to_owned()),
                message: format!(
                    "run {} ended {} although none of its tests failed{why}",
                    run.id,
                    run.status.as_str()
                ),
                text: String::new(),
            }),
            system_out: sections.run.text(),
            system_err: String::new(),
        });
    }
    cases
}

/// Seconds from `from` to `to` (RFC 3339), if both parse.
fn between(from: &str, to: &str) -> Option<f64> {
    let from = humantime::parse_rfc3339(from).ok()?;
    let to = humantime::parse_rfc3339(to).ok()?;
    Some(to.duration_since(from).ok()?.as_secs_f64())
}

/// `1.5` → `1.500` (JUnit's `SUREFIRE_TIME`: digits, at most three decimals, no sign — and an
/// empty sum of `f64`s is `-0.0`).
fn time_text(seconds: f64) -> String {
    format!("{:.3}", if seconds > 0.0 { seconds } else { 0.0 })
}

/// Whether XML 1.0 can carry `c` at all (even escaped).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with the characters XML 1.0 cannot carry (terminal escapes, NUL, …) spelled out as
/// `\x1b`, so the document stays well-formed and the reader still sees they were there.
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().all(xml_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if xml_char(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// An attribute whose value is escaped for XML, line breaks and tabs included (as character
/// references: a parser would turn them into spaces otherwise).
fn attribute<'a>(key: &'a str, value: &str) -> Attribute<'a> {
    let escaped = quick_xml::escape::escape(printable(value))
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;");
    Attribute {
        key: quick_xml::name::QName(key.as_bytes()),
        value: Cow::Owned(escaped.into_bytes()),
    }
}

fn write(run: &Run, cases: &[Case]) -> String {
    let count = |element: &str| {
        cases
            .iter()
            .filter(|c| c.result.as_ref().is_some_and(|r| r.element == element))
            .count()
            .to_string()
    };
    let (tests, failures, errors, skipped) = (
        cases.len().to_string(),
        count("failure"),
        count("error"),
        count("skipped"),
    );
    let now = crate::model::now_rfc3339();
    let time = run
        .started_at
        .as_deref()
        .and_then(|start| between(start, run.finished_at.as_deref().unwrap_or(&now)))
        .unwrap_or_else(|| cases.iter().filter_map(|c| c.time).sum());
    let time = time_text(time);
    let timestamp = run.started_at.as_deref().unwrap_or(&run.created_at);
    let suite_name = format!("eventual run {}", run.id);
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail; the results are only io::Result by type.
    let _ = write_document(
        &mut writer,
        run,
        cases,
        [
            &suite_name,
            &tests,
            &failures,
            &errors,
            &skipped,
            &time,
            timestamp,
        ],
    );
    let mut xml = String::from_utf8(writer.into_inner()).unwrap_or_default();
    xml.push('\n');
    xml
}

fn write_document(
    writer: &mut Writer<Vec<u8>>,
    run: &Run,
    cases: &[Case],
    [name, tests, failures, errors, skipped, time, timestamp]: [&str; 7],
) -> io::Result<()> {
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    writer
        .create_element("testsuites")
        .with_attributes([
            attribute("name", "eventual"),
            attribute("tests", tests),
            attribute("failures", failures),
            attribute("errors", errors),
            attribute("time", time),
        ])
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attributes([
                    attribute("name", name),
                    attribute("tests", tests),
                    attribute("failures", failures),
                    attribute("errors", errors),
                    attribute("skipped", skipped),
                    attribute("time", time),
                    attribute("timestamp", timestamp),
                ])
                .write_inner_content(|w| {
                    write_properties(w, run)?;
                    for case in cases {
                        write_case(w, case)?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    Ok(())
}

fn write_properties(w: &mut Writer<Vec<u8>>, run: &Run) -> io::Result<()> {
    let properties = [
        ("eventual.run_id", run.id.to_string()),
        ("eventual.status", run.status.as_str().to_owned()),
        ("eventual.username", run.username.clone()),
        ("eventual.env_id", run.env_id.to_string()),
    ];
    w.create_element("properties").write_inner_content(|w| {
        for (name, value) in &properties {
            w.create_element("property")
                .with_attributes([attribute("name", name), attribute("value", value)])
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn write_case(w: &mut Writer<Vec<u8>>, case: &Case) -> io::Result<()> {
    let mut attributes = vec![
        attribute("classname", &case.classname),
        attribute("name", &case.name),
    ];
    if let Some(time) = case.time {
        attributes.push(attribute("time", &time_text(time)));
    }
    let element = w.create_element("testcase").with_attributes(attributes);
    if case.result.is_none() && case.system_out.is_empty() && case.system_err.is_empty() {
        element.write_empty()?;
        return Ok(());
    }
    element.write_inner_content(|w| {
        if let Some(r) = &case.result {
            let mut attributes = vec![attribute("message", &r.message)];
            if let Some(kind) = &r.kind {
                attributes.push(attribute("type", kind));
            }
            let element = w.create_element(r.element).with_attributes(attributes);
            if r.text.is_empty() {
                element.write_empty()?;
            } else {
                element.write_text_content(BytesText::new(&printable(&r.text)))?;
            }
        }
        for (element, text) in [
            ("system-out", &case.system_out),
            ("system-err", &case.system_err),
        ] {
            if !text.is_empty() {
                w.create_element(element)
                    .write_text_content(BytesText::new(&printable(text)))?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus, tests: &[(&str, TestStatus, Option<i32>)]) -> Run {
        Run {
            id: 7,
            username: "ann".into(),
            env_id: 1,
            status,
            tests: tests
                .iter()
                .map(|(path, status, exit_code)| RunTest {
                    path: (*path).into(),
                    status: *status,
                    exit_code: *exit_code,
                    duration_ms: Some(1500),
                })
                .collect(),
            created_at: "2026-12-01T10:00:00.000Z".into(),
            started_at: Some("2026-12-01T10:00:00.000Z".into()),
            finished_at: Some("2026-12-01T10:00:02.250Z".into()),
            phase: None,
            awaiting: Vec::new(),
            scripts: Vec::new(),
            node: None,
        }
    }

    fn render_log(run: &Run, log: &str, pytest: &[Option<&str>]) -> String {
        let sections =
            sections::split(log.as_bytes(), &run.test_paths(), MAX_SECTION_BYTES).expect("split");
        let pytest: Vec<_> = pytest
            .iter()
            .map(|x| x.map(|x| pytest::parse(x).map_err(|e| e.to_string())))
            .collect();
        write(run, &cases(run, &sections, &pytest))
    }

    #[test]
    fn a_failed_test_is_a_failure_with_its_exit_code_and_its_own_log_lines() {
        let run = run(
            RunStatus::Failed,
            &[
                ("ok.sh", TestStatus::Passed, Some(0)),
                ("smoke/bad.sh", TestStatus::Failed, Some(3)),
            ],
        );
        let log = "T --- start ok.sh (1/2)\nT out fine\nT --- end ok.sh passed exit=0 in 1.5s\n\
                   T --- start smoke/bad.sh (2/2)\nT out about to <fail> & \x1b[31mred\nT --- end smoke/bad.sh failed exit=3 in 1.5s\n";
        let xml = render_log(&run, log, &[None, None]);
        assert!(
            xml.contains(r#"<testsuite name="eventual run 7" tests="2" failures="1" errors="0" skipped="0" time="2.250" timestamp="2026-12-01T10:00:00.000Z">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase classname="ok" name="ok.sh" time="1.500">"#),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>T out fine\n</system-out>"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="exited with code 3" type="failed">T out about to &lt;fail&gt; &amp; \x1b[31mred"#),
            "{xml}"
        );
        assert!(xml.contains(r#"classname="smoke.bad""#), "{xml}");
        assert!(!xml.contains("about to <fail>"), "{xml}");
    }

    #[test]
    fn timeouts_and_errors_are_errors_and_cancelled_skipped_or_pending_tests_are_skipped() {
        let r = run(
            RunStatus::Cancelled,
            &[
                ("a.sh", TestStatus::TimedOut, None),
                ("b.sh", TestStatus::Error, None),
                ("c.sh", TestStatus::Cancelled, None),
                ("d.sh", TestStatus::Skipped, None),
                ("e.sh", TestStatus::Pending, None),
            ],
        );
        let log = "T --- start b.sh (2/5)\nT --- error: python3 is not installed\nT --- end b.sh error exit=- in 0.000s\n";
        let xml = render_log(&r, log, &[None; 5]);
        assert!(
            xml.contains(r#"tests="5" failures="0" errors="2" skipped="3""#),
            "{xml}"
        );
        assert!(xml.contains(r#"<error message="timed out after 1.500s: ran past the server --test-timeout and was terminated" type="timed_out""#), "{xml}");
        assert!(
            xml.contains(
                r#"<error message="could not be started: python3 is not installed" type="error"/>"#
            ),
            "{xml}"
        );
        assert!(xml.contains(r#"<skipped message="cancelled while it ran: run 7 was cancelled" type="cancelled"/>"#), "{xml}");
        assert!(xml.contains(r#"<skipped message="not run: run 7 ended cancelled before this test started" type="skipped"/>"#), "{xml}");
        assert!(
            xml.contains(r#"<skipped message="not run yet: run 7 is cancelled"#),
            "{xml}"
        );
    }

    #[test]
    fn a_pytest_file_becomes_its_cases_named_by_the_catalog_path() {
        let r = run(
            RunStatus::Failed,
            &[("dir/test_x.py", TestStatus::Failed, Some(1))],
        );
        let pytest_xml = r#"<testsuites><testsuite name="pytest" tests="2" errors="0" failures="1"><testcase classname="work.dir.test_x" name="test_ok" time="0.010"/><testcase classname="test_x.TestGroup" name="test_bad[1]" time="0.020"><failure message="assert 1 == 2&#10;where">tb</failure><system-out>printed</system-out></testcase></testsuite></testsuites>"#;
        let xml = render_log(&r, "", &[Some(pytest_xml)]);
        assert!(
            xml.contains(
                r#"<testcase classname="dir.test_x" name="dir/test_x.py::test_ok" time="0.010"/>"#
            ),
            "{xml}"
        );
        assert!(xml.contains(r#"<testcase classname="dir.test_x.TestGroup" name="dir/test_x.py::TestGroup::test_bad[1]" time="0.020">"#), "{xml}");
        assert!(
            xml.contains(r#"<failure message="assert 1 == 2&#10;where">tb</failure>"#),
            "{xml}"
        );
        assert!(xml.contains("<system-out>printed\n</system-out>"), "{xml}");
        assert!(xml.contains(r#"tests="2" failures="1""#), "{xml}");
    }

    #[test]
    fn a_pytest_file_that_failed_without_a_failing_case_is_a_case_of_its_own() {
        let r = run(
            RunStatus::TimedOut,
            &[("test_x.py", TestStatus::TimedOut, None)],
        );
        let xml = render_log(
            &r,
            "",
            &[Some(
                "<testsuites><testsuite><testcase classname=\"test_x\" name=\"test_ok\"/></testsuite></testsuites>",
            )],
        );
        assert!(xml.contains(r#"name="test_x.py::test_ok""#), "{xml}");
        assert!(
            xml.contains(r#"<testcase classname="test_x" name="test_x.py" time="1.500">"#),
            "{xml}"
        );
        assert!(xml.contains(r#"type="timed_out""#), "{xml}");
    }

    #[test]
    fn a_run_that_failed_although_no_test_did_gets_a_case_saying_why() {
        let r = run(
            RunStatus::TimedOut,
            &[
                ("prep.sh", TestStatus::Passed, Some(0)),
                ("check.sh", TestStatus::Skipped, None),
            ],
        );
        let log = "T --- start prep.sh (1/2)\nT --- end prep.sh passed exit=0 in 0.1s\n\
                   T --- timed out waiting for callbacks: run-7.job (0 of 1 arrived)\nT --- run 7 timed_out\n";
        let xml = render_log(&r, log, &[None, None]);
        assert!(
            xml.contains(r#"<testcase classname="eventual" name="run 7">"#),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"run 7 ended timed_out although none of its tests failed: timed out waiting for callbacks: run-7.job (0 of 1 arrived)\""),
            "{xml}"
        );
        assert!(
            xml.contains(r#"tests="3" failures="0" errors="1" skipped="1""#),
            "{xml}"
        );
    }

    #[test]
    fn times_have_three_decimals_and_never_a_sign() {
        let none: [f64; 0] = [];
        assert_eq!(time_text(none.iter().sum()), "0.000");
        assert_eq!(time_text(-1.0), "0.000");
        assert_eq!(time_text(1234.5678), "1234.568");
    }

    #[test]
    fn characters_xml_cannot_carry_are_spelled_out() {
        assert_eq!(
            printable("a\u{1b}[0m\u{0}b\tc\u{FFFE}"),
            "a\\x1b[0m\\x00b\tc\\u{fffe}"
        );
        assert_eq!(classname("pass.sh"), "pass");
        assert_eq!(classname("a.b/c"), "a.b.c");
    }
}
