"""Eventual's helper for Python test authors: wait for callbacks at the sink, never sleep.

Standard library only. Under the harness `sample-tests/_lib` is on PYTHONPATH, so a test just does
`import eventual`. Anywhere else, put this file's directory on the path first:

    import sys
    sys.path.insert(0, "/path/to/eventual/sample-tests/_lib")
    import eventual

(or run with `PYTHONPATH=sample-tests/_lib`).

A test that starts a job and waits for its callback:

    import eventual

    def test_job_calls_back():
        k = eventual.key("job-42")                    # "run-7.job-42": private to this run
        start_job(callback_url=eventual.callback_url(k))
        record = eventual.wait_for(k, timeout=30)     # answered the moment the callback lands
        assert record["body"]["status"] == "done"

A phased run (the harness waits between the phases, however long the job takes):

    # preparation/test_start.py
    def test_start():
        k = eventual.key("nightly-export")
        start_export(callback_url=eventual.callback_url(k))
        eventual.await_callback(k, timeout="2h")
        # prints `::await-callback run-7.nightly-export timeout=2h`: the harness waits for it

    # validation/test_check.py
    def test_check():
        [record] = eventual.callbacks()[eventual.key("nightly-export")]
        assert record["body"]["status"] == "done"

Environment: `EVENTUAL_SINK_URL` (default http://127.0.0.1:7700), `EVENTUAL_KEY_PREFIX` (the run's
private key prefix, e.g. `run-7.`; empty outside the harness), `EVENTUAL_CALLBACKS` (validation
tests: the JSON file `{KEY: [records]}` of the awaited callbacks), `EVENTUAL_TOKEN` (only if the sink
was started with `--token`: sent as `Authorization: Bearer …`).

A record is the sink's JSON: `key, seq, received_at, method, path, query, headers, content_type,
size` and `body` (the JSON value as sent, or a string for UTF-8 text) or `body_base64` (anything
else; `eventual.body(record)` decodes either).

Errors: `TimeoutError` when a wait is over (its message names the key, how long it waited and how
many records arrived), `SinkError` when the sink cannot be reached or refuses a request.
"""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# `all` is left out so that `from eventual import *` does not hide the builtin: use `eventual.all`.
__all__ = ["SinkError", "sink_url", "key", "callback_url", "latest", "wait_for", "wait_for_count",
           "await_callback", "callbacks", "body"]

DEFAULT_SINK_URL = "http://127.0.0.1:7700"
# The sink answers a long-poll after at most 5 minutes; longer waits are made of shorter ones.
_CHUNK = 60.0
# How much longer than the requested wait the socket may stay silent before we give up on it.
_SLACK = 15.0


class SinkError(RuntimeError):
    """The sink could not be reached, or answered with an error other than "nothing yet"."""

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status = status
        self.code = code


def sink_url():
    """The sink's base URL: `EVENTUAL_SINK_URL`, default http://127.0.0.1:7700 (no trailing slash)."""
    return (os.environ.get("EVENTUAL_SINK_URL") or DEFAULT_SINK_URL).rstrip("/")


def key(name):
    """`EVENTUAL_KEY_PREFIX` + name: a key no other run can see (the prefix is empty outside the harness)."""
    return os.environ.get("EVENTUAL_KEY_PREFIX", "") + str(name)


def callback_url(key):
    """The URL a system under test should POST the callback for `key` to."""
    return "%s/callbacks/%s" % (sink_url(), _quote(key))


def latest(key):
    """The latest record for `key`, or None if there is none yet."""
    status, answer = _get("/callbacks/%s" % _quote(key), missing_ok=True)
    return answer if status == 200 else None


def all(key):  # noqa: A001 (the name matches the sink's route)
    """Every record for `key`, oldest first (an empty list if none)."""
    return _get("/callbacks/%s/all" % _quote(key))[1]["callbacks"]


def wait_for(key, timeout=30, after=None):
    """Wait until a record exists for `key` (newer than seq `after`, if given) and return it.

    Answered the moment the callback reaches the sink (a long-poll, in rounds of at most 60 s).
    Raises TimeoutError after `timeout` seconds, SinkError if the sink fails.
    """
    __tracebackhide__ = True  # pytest: show the failure at the caller, not in here
    timeout = _seconds(timeout, "timeout")
    path = "/callbacks/%s" % _quote(key)
    extra = ""
    if after is not None:
        extra = "&after=%d" % int(after)
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        status, answer = _get("%s?wait=%.3f%s" % (path, min(left, _CHUNK), extra),
                              wait=min(left, _CHUNK), missing_ok=True)
        if status == 200:
            return answer
        if time.monotonic() >= deadline:
            newer = "" if after is None else " newer than seq %d" % int(after)
            raise TimeoutError(
                "no callback%s for key %r arrived at the sink within %s (sink %s). Did the system "
                "under test get the callback URL %s, and did it call back?"
                % (newer, key, _human(timeout), sink_url(), callback_url(key)))


def wait_for_count(key, count, timeout=30):
    """Wait until `key` has at least `count` records and return them all, oldest first.

    Raises TimeoutError (saying how many of `count` arrived) after `timeout` seconds.
    """
    __tracebackhide__ = True  # pytest: show the failure at the caller, not in here
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be a whole number >= 1, got %r" % (count,))
    timeout = _seconds(timeout, "timeout")
    path = "/callbacks/%s/all" % _quote(key)
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        status, answer = _get("%s?wait=%.3f&count=%d" % (path, min(left, _CHUNK), count),
                              wait=min(left, _CHUNK), missing_ok=True)
        if status == 200:
            return answer["callbacks"]
        if time.monotonic() >= deadline:
            arrived = len(all(key))
            raise TimeoutError(
                "only %d of %d callbacks for key %r arrived at the sink within %s (sink %s; the "
                "system under test should call %s)"
                % (arrived, count, key, _human(timeout), sink_url(), callback_url(key)))


def await_callback(key, count=1, timeout=None):
    """Tell the harness to wait for `key` before the validation phase: prints the announce line

        ::await-callback KEY [count=N] [timeout=DURATION]

    to stdout and flushes it (defaults are left out: count 1, the server's `--await-timeout`).
    `timeout` is seconds (a number or a timedelta) or a duration string such as "90s" or "2h".
    Works under pytest too: the line bypasses pytest's output capture. Returns the line.
    """
    key = str(key)
    if not key or any(c.isspace() for c in key):
        raise ValueError("an announced key must be non-empty and contain no whitespace: %r" % key)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be a whole number >= 1, got %r" % (count,))
    line = "::await-callback " + key
    if count != 1:
        line += " count=%d" % count
    if timeout is not None:
        line += " timeout=" + _duration(timeout)
    _print_uncaptured(line)
    return line


def callbacks():
    """The awaited callbacks handed to validation tests: `{KEY: [records]}` loaded from the JSON file
    named by `EVENTUAL_CALLBACKS` (`{}` when it is not set, e.g. outside a phased run)."""
    path = os.environ.get("EVENTUAL_CALLBACKS")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SinkError("cannot read EVENTUAL_CALLBACKS=%s: %s" % (path, e)) from e


def body(record):
    """A record's body: the JSON value or text as sent, or bytes for a `body_base64` record."""
    if "body_base64" in record:
        return base64.b64decode(record["body_base64"])
    return record.get("body")


# --- internals -------------------------------------------------------------------------------------


def _quote(key):
    return urllib.parse.quote(str(key), safe="")


def _seconds(value, name):
    if hasattr(value, "total_seconds"):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError("%s must be a number of seconds >= 0, got %r" % (name, value))
    return float(value)


def _human(secs):
    return ("%gs" % secs) if secs < 120 else ("%gm" % (secs / 60))


def _duration(timeout):
    """A humantime duration for the announce line."""
    if isinstance(timeout, str):
        text = timeout.strip()
        if not text or any(c.isspace() for c in text):
            raise ValueError("timeout must be a duration such as \"90s\" or \"2h\", got %r" % timeout)
        return text
    secs = _seconds(timeout, "timeout")
    if secs == int(secs):
        return "%ds" % secs
    return "%dms" % round(secs * 1000)


def _get(path, wait=0.0, missing_ok=False):
    """GET path on the sink → (status, JSON). A 404 `not_found`/`timeout` is returned when missing_ok."""
    url = sink_url() + path
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = os.environ.get("EVENTUAL_TOKEN")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=wait + _SLACK) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            error = json.loads(raw)["error"]
            code, message = error.get("code"), error.get("message")
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = None, raw.decode("utf-8", "replace").strip()
        if missing_ok and e.code == 404 and code in ("not_found", "timeout"):
            return e.code, None
        raise SinkError("the sink answered %d %s to GET %s: %s" % (e.code, code or "", url, message),
                        status=e.code, code=code) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SinkError("cannot reach the sink at %s (%s): is it running? (`eventual serve` or "
                        "`eventual sink`; EVENTUAL_SINK_URL says where it is)"
                        % (sink_url(), reason)) from None


def _print_uncaptured(line):
    """Print a line to the process's real stdout, even inside a pytest test capturing output."""
    try:
        manager, reporter = _pytest_capture()
        disabled = manager.global_and_fixture_disabled() if manager is not None else None
    except Exception:  # pytest internals changed: print normally rather than not at all
        manager = reporter = disabled = None
    if disabled is None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return
    with disabled:
        try:  # pytest may be midway through a line ("path/test_x.py " or progress dots)
            if reporter is not None:
                reporter.ensure_newline()
                writer = getattr(reporter, "_tw", None)
                if writer is not None and writer.width_of_current_line > 0:
                    writer.line()
        except Exception:
            pass
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _pytest_capture():
    """pytest's capture manager and terminal reporter, when running inside pytest (else None, None)."""
    capture = sys.modules.get("_pytest.capture")
    if capture is None or not hasattr(capture, "CaptureManager"):
        return None, None
    terminal = sys.modules.get("_pytest.terminal")
    import gc  # pytest keeps no global handle on them: find the live instances

    manager = reporter = None
    for obj in gc.get_objects():
        if manager is None and isinstance(obj, capture.CaptureManager):
            manager = obj
        elif reporter is None and terminal is not None and isinstance(obj, terminal.TerminalReporter):
            reporter = obj
        if manager is not None and (reporter is not None or terminal is None):
            break
    if manager is None or not hasattr(manager, "global_and_fixture_disabled"):
        return None, None
    if reporter is not None and not hasattr(reporter, "ensure_newline"):
        reporter = None
    return manager, reporter
