"""``GET /metrics`` read as Prometheus reads it (issue 14 item 4).

A real ``eventual sink`` and ``eventual serve`` (the debug binary, ``EVENTUAL_BIN``) are given
callbacks of every answer (stored, too large, sink full) and runs of fixture tests; their scrapes,
asked for with the ``Accept`` header the Prometheus server sends, must parse with the official
Python client's OpenMetrics parser (``prometheus_client``, from PyPI) into the series the README
lists, named by Prometheus's rules, with the values the traffic implies. ``scripts/test.sh`` runs
this in its virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
EVENTUAL = os.environ.get("EVENTUAL_BIN", str(REPO / "target" / "debug" / "eventual"))
# What Prometheus 2.x/3.x sends when scraping.
ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class Server:
    """A running ``eventual`` server (``sink`` or ``serve``) on a free port."""

    def __init__(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTUAL_")}
        self.process = subprocess.Popen(
            [EVENTUAL, *args, "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().strip()
        assert first.startswith("listening on "), f"eventual printed {first!r}"
        self.url = "http://" + first.removeprefix("listening on http://")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    def post_callback(self, key: str, body: bytes) -> int:
        status, _ = self.request("POST", f"/callbacks/{key}", body,
                                 {"content-type": "application/json"})
        return status

    def run(self, env_id: int, test: str) -> dict[str, object]:
        """Submits a run of ``test`` and returns it once it has ended (its log followed to the end)."""
        status, answer = self.request(
            "POST", "/api/runs",
            json.dumps({"username": "metrics", "env_id": env_id, "tests": [test]}).encode(),
            {"content-type": "application/json"},
        )
        assert status == 201, answer
        run_id = json.loads(answer)["id"]
        status, _ = self.request("GET", f"/api/runs/{run_id}/log?follow=true")
        assert status == 200
        status, answer = self.request("GET", f"/api/runs/{run_id}")
        run: dict[str, object] = json.loads(answer)
        return run

    def scrape(self) -> dict[str, Metric]:
        request = urllib.request.Request(self.url + "/metrics", headers={"accept": ACCEPT})
        with urllib.request.urlopen(request, timeout=60) as answer:
            content_type = answer.headers["content-type"]
            text = answer.read().decode()
        assert content_type.startswith("application/openmetrics-text; version=1.0.0"), content_type
        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert families, text
        return families

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def value(family: Metric, sample: str, **labels: str) -> float:
    """The value of ``family``'s sample named ``sample`` with exactly ``labels``."""
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, f"{sample}{labels}: {family.samples}"
    return float(found[0])


def check_naming(families: dict[str, Metric]) -> None:
    """Prometheus's naming rules: the application prefix, `_total` counters, units in names."""
    for name, family in families.items():
        assert name.startswith("eventual_"), name
        if family.type == "counter":
            assert all(s.name == name + "_total" for s in family.samples), family.samples
        if family.unit:
            assert name.endswith("_" + family.unit), (name, family.unit)


@pytest.fixture(scope="module")
def serve() -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(["serve", "--data-dir", data_dir,
                         "--sample-tests", str(REPO / "fixtures" / "tests"), "--envs", "2",
                         "--max-body", "100", "--max-callbacks", "3",
                         "--test-timeout", "30s", "--kill-grace", "1s"])
        try:
            yield server
        finally:
            server.stop()


def test_sink_alone_serves_the_sink_series() -> None:
    server = Server(["sink", "--max-callbacks", "1"])
    try:
        assert server.post_callback("only", b"{}") == 200
        assert server.post_callback("one-too-many", b"{}") == 507
        families = server.scrape()
    finally:
        server.stop()
    check_naming(families)
    assert set(families) == {
        "eventual_callbacks_received", "eventual_callbacks_stored",
        "eventual_callbacks_capacity", "eventual_waiters",
    }
    received = families["eventual_callbacks_received"]
    assert received.type == "counter"
    assert value(received, "eventual_callbacks_received_total", status="200") == 1
    assert value(received, "eventual_callbacks_received_total", status="507") == 1
    assert value(families["eventual_callbacks_stored"], "eventual_callbacks_stored") == 1


def test_serve_adds_the_harness_series_with_the_values_of_its_traffic(serve: Server) -> None:
    for key in ("a", "b", "c"):
        assert serve.post_callback(key, b'{"ok": true}') == 200
    assert serve.post_callback("big", b'"' + b"x" * 200 + b'"') == 413
    assert serve.post_callback("d", b"{}") == 507
    assert serve.run(1, "pass.sh")["status"] == "passed"
    assert serve.run(2, "fail.sh")["status"] == "failed"

    families = serve.scrape()
    check_naming(families)
    types = {name: family.type for name, family in families.items()}
    assert types == {
        "eventual_callbacks_received": "counter",
        "eventual_callbacks_stored": "gauge",
        "eventual_callbacks_capacity": "gauge",
        "eventual_waiters": "gauge",
        "eventual_runs_finished": "counter",
        "eventual_run_duration_seconds": "histogram",
        "eventual_claim_wait_seconds": "histogram",
        "eventual_runs_queued": "gauge",
        "eventual_environments_busy": "gauge",
        "eventual_environments_paused": "gauge",
        "eventual_environments": "gauge",
    }

    received = families["eventual_callbacks_received"]
    for status, count in (("200", 3), ("413", 1), ("507", 1)):
        assert value(received, "eventual_callbacks_received_total", status=status) == count
    assert value(families["eventual_callbacks_stored"], "eventual_callbacks_stored") == 3
    assert value(families["eventual_waiters"], "eventual_waiters") == 0

    finished = families["eventual_runs_finished"]
    assert value(finished, "eventual_runs_finished_total", status="passed") == 1
    assert value(finished, "eventual_runs_finished_total", status="failed") == 1
    assert value(finished, "eventual_runs_finished_total", status="timed_out") == 0

    for name in ("eventual_run_duration_seconds", "eventual_claim_wait_seconds"):
        histogram = families[name]
        assert histogram.unit == "seconds"
        assert value(histogram, name + "_count") == 2
        assert value(histogram, name + "_bucket", le="+Inf") == 2
        assert value(histogram, name + "_sum") >= 0

    queued = families["eventual_runs_queued"]
    assert sorted(s.labels["env"] for s in queued.samples) == ["1", "2"]
    assert all(s.value == 0 for s in queued.samples)
    assert value(families["eventual_environments_busy"], "eventual_environments_busy") == 0
    assert value(families["eventual_environments"], "eventual_environments") == 2
