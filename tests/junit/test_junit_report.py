"""JUnit reports of real runs, read by the tools CI systems read them with (issue 14 item 3).

A real ``eventual serve`` (the debug binary, ``EVENTUAL_BIN``) runs tests of every outcome from
``fixtures/``; its reports — written by ``eventual run --junit FILE`` and answered by
``GET /api/runs/{id}/junit.xml`` — must validate against the Jenkins xunit plugin's JUnit schema
(``fixtures/junit/junit-10.xsd``, with ``xmlschema``) and parse back with ``junitparser`` into the
counts, names and results a CI test report shows. ``scripts/test.sh`` runs this in a fresh
virtualenv with both installed from PyPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import junitparser
import pytest
import xmlschema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = xmlschema.XMLSchema(str(REPO / "fixtures" / "junit" / "junit-10.xsd"))
EVENTUAL = os.environ.get("EVENTUAL_BIN", str(REPO / "target" / "debug" / "eventual"))


class Server:
    """A running ``eventual serve`` with ``fixtures/`` as its catalog."""

    def __init__(self, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTUAL_")}
        self.process = subprocess.Popen(
            [EVENTUAL, "serve", "--bind", "127.0.0.1:0", "--data-dir", str(data_dir),
             "--sample-tests", str(REPO / "fixtures"), "--envs", "2",
             "--test-timeout", "2s", "--kill-grace", "1s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().strip()
        assert first.startswith("listening on "), f"eventual serve printed {first!r}"
        self.url = "http://" + first.removeprefix("listening on http://")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=60) as answer:
            body: bytes = answer.read()
            return body

    def post(self, path: str, body: object | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as data_dir:
        running = Server(Path(data_dir))
        try:
            yield running
        finally:
            running.stop()


def parse_valid(xml_path: Path) -> junitparser.TestSuite:
    """Validates the report against the schema and returns its one testsuite."""
    SCHEMA.validate(str(xml_path))
    report = junitparser.JUnitXml.fromfile(str(xml_path))
    suites = list(report)
    assert len(suites) == 1, f"one testsuite, got {len(suites)}"
    suite = suites[0]
    assert isinstance(suite, junitparser.TestSuite)
    return suite


def outcomes(suite: junitparser.TestSuite) -> list[tuple[str, str, str | None]]:
    """``(name, result kind, message)`` for every testcase, in order."""
    rows: list[tuple[str, str, str | None]] = []
    for case in suite:
        results = list(case.result)
        assert len(results) <= 1, f"{case.name}: one result at most, got {results}"
        kind = type(results[0]).__name__.lower() if results else "passed"
        rows.append((case.name, kind, results[0].message if results else None))
    return rows


def test_a_run_of_every_outcome_validates_against_the_junit_schema_and_parses_back(
    server: Server, tmp_path: Path
) -> None:
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [EVENTUAL, "run", "--user", "ci", "--env", "1", "--junit", str(report),
         "--url", server.url,
         "junit/test_cases.py", "tests/pass.sh", "tests/fail.sh", "tests/hang.sh"],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("EVENTUAL_")},
    )
    assert run.returncode == 1, f"a failed run exits 1 with --junit too:\n{run.stderr}"

    suite = parse_valid(report)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (7, 2, 1, 1)
    rows = outcomes(suite)
    assert [(name, kind) for name, kind, _ in rows] == [
        ("junit/test_cases.py::test_passes", "passed"),
        ("junit/test_cases.py::test_fails", "failure"),
        ("junit/test_cases.py::test_skipped", "skipped"),
        ("junit/test_cases.py::TestGroup::test_in_a_class", "passed"),
        ("tests/pass.sh", "passed"),
        ("tests/fail.sh", "failure"),
        ("tests/hang.sh", "error"),
    ]
    messages = {name: message for name, _, message in rows}
    assert (messages["junit/test_cases.py::test_fails"] or "").startswith(
        "AssertionError: arithmetic is broken\n"
    )
    assert messages["junit/test_cases.py::test_skipped"] == "skipped on purpose"
    assert messages["tests/fail.sh"] == "exited with code 3"
    assert (messages["tests/hang.sh"] or "").startswith("timed out after ")

    cases = {case.name: case for case in suite}
    assert cases["tests/pass.sh"].classname == "tests.pass"
    assert "out hello from" in (cases["tests/pass.sh"].system_out or "")
    assert "about to fail" not in (cases["tests/pass.sh"].system_out or "")
    passing = cases["junit/test_cases.py::test_passes"].system_out or ""
    assert 'printed by a passing case: <tag> & "quotes"' in passing, passing

    # The API answers the same document for the finished run.
    run_id = int(next(p.value for p in suite.properties() if p.name == "eventual.run_id"))
    assert server.get(f"/api/runs/{run_id}/junit.xml") == report.read_bytes()


def test_a_queued_run_and_a_cancelled_one_validate_and_parse_back(
    server: Server, tmp_path: Path
) -> None:
    server.post("/api/envs/2/pause")
    run = server.post("/api/runs", {"username": "ci", "env_id": 2, "tests": ["tests/pass.sh"]})
    assert isinstance(run, dict)
    queued = tmp_path / "queued.xml"
    queued.write_bytes(server.get(f"/api/runs/{run['id']}/junit.xml"))
    suite = parse_valid(queued)
    assert outcomes(suite) == [
        ("tests/pass.sh", "skipped",
         f"not run yet: run {run['id']} is queued (this report was taken before it ended)"),
    ]

    server.post(f"/api/runs/{run['id']}/cancel")
    cancelled = tmp_path / "cancelled.xml"
    cancelled.write_bytes(server.get(f"/api/runs/{run['id']}/junit.xml"))
    suite = parse_valid(cancelled)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (1, 0, 0, 1)
    assert outcomes(suite)[0][1] == "skipped"


def test_a_report_that_breaks_the_schema_is_caught(tmp_path: Path) -> None:
    """The check itself: what the schema refuses (an undeclared element) fails validation."""
    bad = tmp_path / "bad.xml"
    bad.write_text(
        '<testsuites><testsuite name="x" tests="1" failures="0" errors="0">'
        '<testcase name="t"><oops/></testcase></testsuite></testsuites>'
    )
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(str(bad))
