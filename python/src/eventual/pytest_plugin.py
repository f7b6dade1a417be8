"""Eventual's pytest plugin: the `eventual_sink` and `callback_key` fixtures.

Loaded by pytest through the `pytest11` entry point once the package is installed
(`pip install ./python`), and by the harness with `-p eventual.pytest_plugin` for every pytest test
it runs. Importing it starts nothing: a sink is only started when a test asks for `eventual_sink`.

`eventual_sink` (session-scoped) is an `eventual.Client`:

- under the harness (`EVENTUAL_SINK_URL` is set), for the run's sink;
- under a plain `pytest`, for a private `eventual sink --bind 127.0.0.1:0` started for the session
  and stopped at its end. The binary is `EVENTUAL_BIN`, else `eventual` on PATH; without one the
  tests asking for the fixture error, saying so. While it runs, `EVENTUAL_SINK_URL` names it, so the
  module-level functions (`eventual.wait_for`, …) and processes the tests start use it too.

`callback_key` is a key of its own per test: the run's prefix (`EVENTUAL_KEY_PREFIX`), the test's
name and a short random suffix, e.g. `run-7.test_job_calls_back-3f9a1c2e`.
"""

from __future__ import annotations

import os
import re
import secrets
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from typing import IO, Iterator, Optional

import pytest

from . import client as _client_module
from .client import Client

#: How long a private sink may take to print where it listens.
STARTUP_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def eventual_sink() -> Iterator[Client]:
    """A `Client` for the run's sink (under the harness) or for a private sink (plain pytest)."""
    url = os.environ.get("EVENTUAL_SINK_URL")
    if url:
        yield Client(url)
        return
    sink = PrivateSink.start()
    os.environ["EVENTUAL_SINK_URL"] = sink.url
    try:
        yield Client(sink.url)
    finally:
        os.environ.pop("EVENTUAL_SINK_URL", None)
        sink.stop()


@pytest.fixture
def callback_key(request: pytest.FixtureRequest) -> str:
    """A fresh key for this test under the run's prefix: `PREFIX` + test name + `-` + 8 hex."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:100] or "test"
    return Client().key("%s-%s" % (name, secrets.token_hex(4)))


class PrivateSink:
    """An `eventual sink` process of our own, on a free loopback port, in memory."""

    def __init__(self, process: "subprocess.Popen[bytes]", url: str, stderr: IO[bytes]) -> None:
        self.process = process
        self.url = url
        self._stderr = stderr

    @classmethod
    def start(cls, binary: Optional[str] = None) -> "PrivateSink":
        """Starts `BINARY sink --bind 127.0.0.1:0` and waits for its `listening on URL` line."""
        binary = binary or find_binary()
        # Its log goes to a file: shown if it fails to start, never filling a pipe nobody reads.
        stderr = tempfile.TemporaryFile()
        error: Optional[OSError] = None
        try:
            process = subprocess.Popen([binary, "sink", "--bind", "127.0.0.1:0"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=stderr)
        except OSError as e:
            error = e
        if error is not None:  # failed outside the `except`, so pytest shows no chained traceback
            stderr.close()
            pytest.fail("cannot start the sink %s: %s (EVENTUAL_BIN names the eventual binary)"
                        % (binary, error.strerror or error), pytrace=False)
        assert process.stdout is not None
        line = _first_line(process.stdout, STARTUP_TIMEOUT)
        if not line.startswith("listening on "):
            process.kill()
            process.wait()
            stderr.seek(0)
            log = stderr.read().decode("utf-8", "replace").strip()
            stderr.close()
            pytest.fail(
                "`%s sink --bind 127.0.0.1:0` did not say where it listens (first line %r, exit "
                "status %s)%s" % (binary, line, process.returncode,
                                  ":\n" + log if log else ""), pytrace=False)
        # Nothing else is expected on stdout; drain it anyway so the sink can never block on it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        return cls(process, line[len("listening on "):].strip().rstrip("/"), stderr)

    def stop(self) -> None:
        """SIGTERM (the sink stops gracefully), SIGKILL if it has not within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()


def find_binary() -> str:
    """`EVENTUAL_BIN`, else `eventual` on PATH; a test error saying what to do if neither."""
    configured = os.environ.get("EVENTUAL_BIN")
    if configured:
        return configured
    found = shutil.which("eventual")
    if found:
        return found
    pytest.fail(
        "the eventual_sink fixture needs a sink: no EVENTUAL_SINK_URL is set (it is under the "
        "harness) and there is no `eventual` binary to start one. Install it (`cargo install --path "
        ".` in the repository), set EVENTUAL_BIN to it (e.g. target/debug/eventual), or set "
        "EVENTUAL_SINK_URL to a running sink.", pytrace=False)


def _first_line(stream: IO[bytes], timeout: float) -> str:
    """The first line of `stream`, waiting at most `timeout` seconds ('' at EOF or timeout)."""
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")


@pytest.hookimpl(trylast=True)  # after the terminal reporter is registered
def pytest_configure(config: pytest.Config) -> None:
    # `eventual.await_callback` prints past pytest's capture; hand it pytest's own handles rather
    # than have it search for them.
    manager = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    _client_module._pytest_handles = _client_module._usable(manager, reporter)


def pytest_unconfigure(config: pytest.Config) -> None:
    _client_module._pytest_handles = None
