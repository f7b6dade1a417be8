"""The pytest plugin in pytest sessions of their own (subprocesses, with their own environment)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from eventual import Client


def no_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment with no sink named and no `eventual` to start."""
    monkeypatch.delenv("EVENTUAL_SINK_URL", raising=False)
    monkeypatch.delenv("EVENTUAL_BIN", raising=False)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))


def test_under_the_harness_eventual_sink_is_the_sink_it_names(
        pytester: pytest.Pytester, eventual_sink: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    no_binary(monkeypatch)  # so nothing could be started
    monkeypatch.setenv("EVENTUAL_SINK_URL", eventual_sink.url)
    monkeypatch.setenv("EVENTUAL_KEY_PREFIX", "run-9.")
    pytester.makepyfile(test_inner="""
        import os

        def test_inner(eventual_sink, callback_key):
            assert eventual_sink.url == os.environ["EVENTUAL_SINK_URL"]
            assert callback_key.startswith("run-9.test_inner-"), callback_key
            eventual_sink.post(callback_key, "from the inner session")
            assert eventual_sink.wait_for(callback_key)["body"] == "from the inner session"
    """)

    result = pytester.runpytest_subprocess(timeout=60)

    result.assert_outcomes(passed=1)


def test_plain_pytest_starts_a_private_sink_and_stops_it_at_the_end(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        pytestconfig: pytest.Config) -> None:
    binary = os.environ.get("EVENTUAL_BIN")
    if not binary:
        pytest.skip("set EVENTUAL_BIN to the eventual binary (scripts/test.sh does)")
    monkeypatch.delenv("EVENTUAL_SINK_URL", raising=False)
    monkeypatch.delenv("EVENTUAL_KEY_PREFIX", raising=False)
    # pytester runs the inner session elsewhere: a relative EVENTUAL_BIN is from where we started.
    monkeypatch.setenv("EVENTUAL_BIN", str(pytestconfig.invocation_params.dir / binary))
    seen = tmp_path / "url.txt"
    pytester.makepyfile(test_inner="""
        import os
        import eventual

        def test_inner(eventual_sink, callback_key):
            assert os.environ["EVENTUAL_SINK_URL"] == eventual_sink.url
            assert eventual_sink.url.startswith("http://127.0.0.1:")
            assert callback_key.startswith("test_inner-")
            eventual_sink.post(callback_key, b"x")
            assert eventual.wait_for(callback_key)["seq"] == 1
            with open(%r, "w") as f:
                f.write(eventual_sink.url)
    """ % str(seen))

    result = pytester.runpytest_subprocess(timeout=60)

    result.assert_outcomes(passed=1)
    url = seen.read_text()
    with pytest.raises(urllib.error.URLError):  # the session's end stopped it
        urllib.request.urlopen(url + "/healthz", timeout=5)


def test_without_a_sink_or_a_binary_the_fixture_errors_saying_what_to_do(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    no_binary(monkeypatch)
    pytester.makepyfile(test_inner="""
        def test_inner(eventual_sink):
            pass
    """)

    result = pytester.runpytest_subprocess(timeout=60)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a sink*set EVENTUAL_BIN*"])


def test_a_session_that_does_not_ask_for_the_sink_needs_no_binary(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    no_binary(monkeypatch)
    pytester.makepyfile(test_inner="""
        def test_plain():
            assert True

        def test_key_only(callback_key):
            assert callback_key.startswith("test_key_only-")
    """)

    result = pytester.runpytest_subprocess(timeout=60)

    result.assert_outcomes(passed=2)


def test_the_announce_line_reaches_stdout_past_pytest_capture(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    no_binary(monkeypatch)
    pytester.makepyfile(test_inner="""
        import eventual

        def test_announces():
            eventual.await_callback("run-3.job", count=2, timeout="90s")
    """)

    result = pytester.runpytest_subprocess("-v", timeout=60)

    result.assert_outcomes(passed=1)
    assert "::await-callback run-3.job count=2 timeout=90s" in result.stdout.lines
