//! `eventual run --junit FILE` against a real `eventual serve` (whose catalog is `fixtures/`):
//! the report is written when the run ends, passed or not, with one `<testcase>` per pytest case
//! of `fixtures/junit/test_cases.py` and one per plain test; the exit code is the run's; a path
//! that cannot be written is refused before any run is submitted. (Schema validation and a
//! consumer parser: `tests/junit/`, run by `scripts/test.sh`.)

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::helpers::{Launch, Running};

const CLI_TIMEOUT: Duration = Duration::from_secs(120);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn run_with_report(
    server: &Running,
    report: &std::path::Path,
    tests: &[&str],
) -> anyhow::Result<std::process::Output> {
    let report = report.to_string_lossy();
    let mut args = vec!["run", "--user", "ci", "--env", "1", "--junit", &report];
    args.extend_from_slice(tests);
    args.extend_from_slice(&["--url", &server.url]);
    Launch::client(&args).output(CLI_TIMEOUT).await
}

/// The `name` attributes of the report's testcases, in order.
fn case_names(xml: &str) -> Vec<&str> {
    xml.split("<testcase ")
        .skip(1)
        .filter_map(|case| case.split_once(" name=\"")?.1.split_once('"'))
        .map(|(name, _)| name)
        .collect()
}

#[tokio::test]
async fn run_with_junit_writes_a_testcase_per_pytest_case_and_keeps_the_exit_code()
-> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURES, &[]).spawn().await?;
    let out = tempfile::tempdir()?;
    let report = out.path().join("report.xml");

    let failed =
        run_with_report(&server, &report, &["junit/test_cases.py", "tests/pass.sh"]).await?;
    ensure!(
        failed.status.code() == Some(1),
        "a run with a failing case exits 1 as without --junit: {:?}\n{}\n{}",
        failed.status,
        text(&failed.stdout),
        text(&failed.stderr)
    );
    ensure!(
        text(&failed.stderr).contains(&format!(
            "JUnit report of run 1 written to {}",
            report.display()
        )),
        "{}",
        text(&failed.stderr)
    );
    let xml = std::fs::read_to_string(&report).context("the report is written")?;
    ensure!(
        case_names(&xml)
            == [
                "junit/test_cases.py::test_passes",
                "junit/test_cases.py::test_fails",
                "junit/test_cases.py::test_skipped",
                "junit/test_cases.py::TestGroup::test_in_a_class",
                "tests/pass.sh",
            ],
        "one testcase per pytest case, then the plain test: {:?}\n{xml}",
        case_names(&xml)
    );
    ensure!(
        xml.contains(r#"tests="5" failures="1" errors="0" skipped="1""#),
        "{xml}"
    );
    ensure!(
        xml.contains(r#"<failure message="AssertionError: arithmetic is broken"#),
        "pytest's failure message: {xml}"
    );
    ensure!(
        xml.contains(r#"<skipped message="skipped on purpose" type="pytest.skip""#),
        "{xml}"
    );
    ensure!(
        xml.contains("printed before the failing assert"),
        "the case's own output: {xml}"
    );

    // The same file again, for a run that passes: replaced, exit 0.
    let passed = run_with_report(&server, &report, &["tests/pass.sh"]).await?;
    ensure!(passed.status.code() == Some(0), "{:?}", passed.status);
    let xml = std::fs::read_to_string(&report)?;
    ensure!(case_names(&xml) == ["tests/pass.sh"], "{xml}");
    ensure!(xml.contains(r#"failures="0" errors="0""#), "{xml}");
    Ok(())
}

#[tokio::test]
async fn run_with_junit_to_a_path_that_cannot_be_written_fails_before_submitting_a_run()
-> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = Launch::serve(data.path(), FIXTURES, &[]).spawn().await?;
    let out = tempfile::tempdir()?;
    let report = out.path().join("no-such-dir/report.xml");

    let refused = run_with_report(&server, &report, &["tests/pass.sh"]).await?;
    let err = text(&refused.stderr);
    ensure!(
        refused.status.code() == Some(2),
        "{:?}\n{err}",
        refused.status
    );
    ensure!(
        err.starts_with(&format!(
            "error: cannot write the JUnit report to {}: ",
            report.display()
        )) && err.lines().count() == 1,
        "one line saying what and where: {err}"
    );
    let runs: Value = server
        .http()
        .get(server.at("/api/runs"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        runs["runs"] == serde_json::json!([]),
        "no run was submitted: {runs}"
    );
    Ok(())
}
