"""`Client`: one Eventual sink at a known URL, and what a test does with it.

The module-level functions of `eventual` build a `Client` from the environment at each call
(`EVENTUAL_SINK_URL`, `EVENTUAL_KEY_PREFIX`, `EVENTUAL_TOKEN`), so they follow whatever the harness
or the pytest plugin set. A `Client` is for a sink chosen in code: the plugin's `eventual_sink`
fixture hands one out.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from typing import Any, Dict, Generator, List, Mapping, Optional, Tuple, Union

#: A record as the sink returns it: `key, seq, received_at, method, path, query, headers,
#: content_type, size` and `body` (JSON value or text) or `body_base64`.
Record = Dict[str, Any]
#: Seconds (int or float) or a `timedelta`.
Seconds = Union[int, float, timedelta]
#: A stub as the sink answers it: `id`, `key` or `prefix`, `responses`, `then`, `hits`.
Stub = Dict[str, Any]
#: One scripted response: `status`, `times`, `delay`, `body`, `headers`, `drop` (all optional).
Response = Dict[str, Any]

_NO_BODY: Any = object()

DEFAULT_SINK_URL = "http://127.0.0.1:7700"
# The sink answers a long-poll after at most 5 minutes; longer waits are made of shorter ones.
_CHUNK = 60.0
# How much longer than the requested wait the socket may stay silent before we give up on it.
_SLACK = 15.0


class SinkError(RuntimeError):
    """The sink could not be reached, or answered with an error other than "nothing yet".

    `status` is the HTTP status (None when the sink was not reached), `code` the sink's error code
    (`not_found`, `invalid_key`, …) when it gave one.
    """

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.code = code


class Client:
    """An Eventual sink at `url` (default: `EVENTUAL_SINK_URL`, else http://127.0.0.1:7700).

    `prefix` is put in front of names by `key()` (default: `EVENTUAL_KEY_PREFIX`, the run's private
    prefix under the harness, empty elsewhere); `token` is sent as `Authorization: Bearer …` when the
    sink was started with `--token` (default: `EVENTUAL_TOKEN`).
    """

    def __init__(self, url: Optional[str] = None, *, prefix: Optional[str] = None,
                 token: Optional[str] = None) -> None:
        self.url: str = (url or os.environ.get("EVENTUAL_SINK_URL") or DEFAULT_SINK_URL).rstrip("/")
        self.prefix: str = os.environ.get("EVENTUAL_KEY_PREFIX", "") if prefix is None else prefix
        self.token: Optional[str] = (os.environ.get("EVENTUAL_TOKEN") or None) if token is None else token

    def __repr__(self) -> str:
        return "eventual.Client(%r, prefix=%r)" % (self.url, self.prefix)

    def key(self, name: object) -> str:
        """`prefix` + name: a key no other run can see."""
        return self.prefix + str(name)

    def callback_url(self, key: str) -> str:
        """The URL a system under test should POST the callback for `key` to."""
        return "%s/callbacks/%s" % (self.url, _quote(key))

    def latest(self, key: str) -> Optional[Record]:
        """The latest record for `key`, or None if there is none yet."""
        status, answer = self._get_json("/callbacks/%s" % _quote(key), missing_ok=True)
        return answer if status == 200 else None

    def all(self, key: str) -> List[Record]:
        """Every record for `key`, oldest first (an empty list if none)."""
        answer = self._get_json("/callbacks/%s/all" % _quote(key))[1]
        return list(answer["callbacks"])

    def raw(self, key: str, seq: Optional[int] = None) -> bytes:
        """The exact body bytes of the latest record for `key` (or of record `seq`), e.g. to check
        a signature. Raises SinkError (`status` 404) when there is no such record."""
        path = "/callbacks/%s/raw" % _quote(key)
        if seq is not None:
            path += "?seq=%d" % _whole(seq, "seq")
        return self._request("GET", path, accept="*/*")[1]

    def post(self, key: str, body: Union[bytes, str, Any], *, content_type: Optional[str] = None,
             headers: Optional[Mapping[str, str]] = None, method: str = "POST") -> int:
        """Record a callback for `key` as a system under test would, and return its seq.

        `body` is sent as is when bytes or str, else as JSON (content type `application/json`
        unless `content_type` says otherwise). For tests that stand in for the SUT.
        """
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            data = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        sent = dict(headers or {})
        if content_type:
            sent["Content-Type"] = content_type
        answer = json.loads(self._request(method, "/callbacks/%s" % _quote(key), data=data,
                                          headers=sent)[1])
        return int(answer["seq"])

    def delete(self, key: Optional[str] = None, *, prefix: Optional[str] = None) -> None:
        """Forget one key, or every key under `prefix` (`prefix=""` is everything)."""
        if (key is None) == (prefix is None):
            raise ValueError("give either a key or prefix=…")
        if key is not None:
            self._request("DELETE", "/callbacks/%s" % _quote(key))
        else:
            self._request("DELETE", "/callbacks?prefix=%s" % _quote(prefix or ""))

    def verify(self, verifier_id: str, *, prefix: str, scheme: str, secret: str,
               tolerance: Optional[str] = None, reject: bool = False,
               header: Optional[str] = None, encoding: Optional[str] = None,
               signature_prefix: Optional[str] = None) -> Dict[str, Any]:
        """Set verifier `verifier_id` (PUT /verifiers/{id}): callbacks under `prefix` get a
        `signature` in their record, checked with `scheme` and `secret`; the answer shows the
        verifier with its secret redacted (`"***"`)."""
        body: Dict[str, Any] = {"prefix": prefix, "scheme": scheme, "secret": secret,
                                "reject": reject}
        for name, value in (("tolerance", tolerance), ("header", header),
                            ("encoding", encoding), ("signature_prefix", signature_prefix)):
            if value is not None:
                body[name] = value
        raw = self._request("PUT", "/verifiers/%s" % _quote(verifier_id),
                            data=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})[1]
        answer: Dict[str, Any] = json.loads(raw)
        return answer

    def verifiers(self) -> List[Dict[str, Any]]:
        """Every verifier on the sink, by id, secrets redacted (`"***"`)."""
        return list(self._get_json("/verifiers")[1]["verifiers"])

    def delete_verifier(self, id: Optional[str] = None, *,  # noqa: A002 (the API's name)
                        prefix: Optional[str] = None) -> List[str]:
        """Delete verifier `id`, or every verifier whose prefix starts with `prefix`; returns
        the ids deleted."""
        if (id is None) == (prefix is None):
            raise ValueError("give either an id or prefix=…")
        if id is not None:
            self._request("DELETE", "/verifiers/%s" % _quote(id))
            return [id]
        answer = self._request("DELETE", "/verifiers?prefix=%s" % _quote(prefix or ""))[1]
        return list(json.loads(answer)["removed"])

    def wait_for(self, key: str, timeout: Seconds = 30, after: Optional[int] = None) -> Record:
        """Wait until a record exists for `key` (newer than seq `after`, if given) and return it.

        Answered the moment the callback reaches the sink (a long-poll, in rounds of at most 60 s).
        Raises TimeoutError after `timeout` seconds, SinkError if the sink fails.
        """
        __tracebackhide__ = True  # pytest: show the failure at the caller, not in here
        secs = _seconds(timeout, "timeout")
        path = "/callbacks/%s" % _quote(key)
        extra = "" if after is None else "&after=%d" % _whole(after, "after", minimum=0)
        deadline = time.monotonic() + secs
        while True:
            left = min(max(0.0, deadline - time.monotonic()), _CHUNK)
            status, answer = self._get_json("%s?wait=%.3f%s" % (path, left, extra), wait=left,
                                            missing_ok=True)
            if status == 200:
                return dict(answer)
            if time.monotonic() >= deadline:
                newer = "" if after is None else " newer than seq %d" % int(after)
                raise TimeoutError(
                    "no callback%s for key %r arrived at the sink within %s (sink %s). Did the "
                    "system under test get the callback URL %s, and did it call back?"
                    % (newer, key, _human(secs), self.url, self.callback_url(key)))

    def wait_for_count(self, key: str, count: int, timeout: Seconds = 30) -> List[Record]:
        """Wait until `key` has at least `count` records and return them all, oldest first.

        Raises TimeoutError (saying how many of `count` arrived) after `timeout` seconds.
        """
        __tracebackhide__ = True  # pytest: show the failure at the caller, not in here
        count = _whole(count, "count")
        secs = _seconds(timeout, "timeout")
        path = "/callbacks/%s/all" % _quote(key)
        deadline = time.monotonic() + secs
        while True:
            left = min(max(0.0, deadline - time.monotonic()), _CHUNK)
            status, answer = self._get_json("%s?wait=%.3f&count=%d" % (path, left, count),
                                            wait=left, missing_ok=True)
            if status == 200:
                return list(answer["callbacks"])
            if time.monotonic() >= deadline:
                arrived = len(self.all(key))
                raise TimeoutError(
                    "only %d of %d callbacks for key %r arrived at the sink within %s (sink %s; "
                    "the system under test should call %s)"
                    % (arrived, count, key, _human(secs), self.url, self.callback_url(key)))

    def stub(self, key: Optional[str] = None, *, prefix: Optional[str] = None,
             status: int = 200, times: int = 1, delay: Union[Seconds, str, None] = None,
             body: Any = _NO_BODY, headers: Optional[Mapping[str, str]] = None,
             drop: bool = False, responses: Optional[List[Response]] = None,
             then: str = "last", id: Optional[str] = None) -> Stub:  # noqa: A002 (the API's name)
        """Script the sink's answers to the callbacks of `key` (or of every key under `prefix`),
        by seq: `PUT /stubs/{id}`. Returns the stub as the sink stored it.

        One response from `status`, `times`, `delay` (seconds or "300ms", at most 60 s), `body`
        (a str is sent as text, anything else as JSON), `headers` and `drop` (close the connection
        without answering); or several as `responses=[{"status": 503, "times": 2}, {}]`. Past the
        end `then` decides: "last" (again), "cycle" (from the first) or "default" (no stub).
        `id` defaults to the key (or the prefix). Every callback is still recorded, with
        `"response"` saying how it was answered. SinkError (`status` 422) lists every problem.
        """
        if (key is None) == (prefix is None):
            raise ValueError("give either a key or prefix=…")
        if responses is None:
            one: Response = {"times": _whole(times, "times")}
            if drop:
                one["drop"] = True
            else:
                one["status"] = status
            if delay is not None:
                one["delay"] = delay if isinstance(delay, str) else "%g" % _seconds(delay, "delay")
            if body is not _NO_BODY:
                one["body"] = body
            if headers:
                one["headers"] = dict(headers)
            responses = [one]
        stub: Dict[str, Any] = {"responses": list(responses), "then": then}
        if key is not None:
            stub["key"] = key
        else:
            stub["prefix"] = prefix
        stub_id = id if id is not None else str(key if key is not None else prefix)
        answer = self._request("PUT", "/stubs/%s" % _quote(stub_id),
                               data=json.dumps(stub).encode("utf-8"),
                               headers={"Content-Type": "application/json"})[1]
        return dict(json.loads(answer))

    def stub_info(self, id: str) -> Optional[Stub]:  # noqa: A002 (the API's name)
        """Stub `id` with its `hits` (callbacks it answered), or None if there is none."""
        status, answer = self._get_json("/stubs/%s" % _quote(id), missing_ok=True)
        return dict(answer) if status == 200 else None

    def stubs(self) -> List[Stub]:
        """Every stub on the sink, by id."""
        return list(self._get_json("/stubs")[1]["stubs"])

    def delete_stub(self, id: Optional[str] = None, *,  # noqa: A002 (the API's name)
                    prefix: Optional[str] = None) -> List[str]:
        """Delete stub `id`, or every stub whose key or prefix starts with `prefix`; returns the
        ids deleted."""
        if (id is None) == (prefix is None):
            raise ValueError("give either an id or prefix=…")
        if id is not None:
            self._request("DELETE", "/stubs/%s" % _quote(id))
            return [id]
        answer = self._request("DELETE", "/stubs?prefix=%s" % _quote(prefix or ""))[1]
        return list(json.loads(answer)["deleted"])

    def watch(self, prefix: Optional[str] = None,
              after: Optional[int] = None) -> Generator[Tuple[int, Record], None, None]:
        """Every record under `prefix` (default: this client's `prefix`, the run's keys), as
        `(id, record)`: those stored already, then each new one as it arrives (`GET /watch`, one
        connection for any number of keys). `id` is the record's place in the sink-wide sequence:
        a new `watch(prefix, after=id)` resumes strictly after it, missing and repeating nothing.

        The generator ends when the sink closes the stream (it is shutting down); stop reading
        (`break`, or `close()`) to disconnect. Raises SinkError if the sink refuses or fails.
        """
        prefix = self.prefix if prefix is None else prefix
        url = "%s/watch?prefix=%s" % (self.url, _quote(prefix))
        request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
        if after is not None:
            request.add_header("Last-Event-ID", str(_whole(after, "after", minimum=0)))
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            # The sink sends a keep-alive comment every 15 s: a minute of silence is a dead link.
            response = urllib.request.urlopen(request, timeout=_CHUNK)
        except (urllib.error.URLError, OSError) as e:
            raise self._error(e, "GET", url) from None
        with response:
            event: str = "message"
            event_id: Optional[str] = None
            data: List[str] = []
            try:
                for raw in response:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event = value
                        elif name == "id":
                            event_id = value
                        elif name == "data":
                            data.append(value)
                        continue
                    if event == "callback" and event_id is not None and data:
                        yield int(event_id), dict(json.loads("\n".join(data)))
                    event, event_id, data = "message", None, []
            except OSError as e:
                raise self._error(e, "GET", url) from None

    def await_callback(self, key: str, count: int = 1,
                       timeout: Union[Seconds, str, None] = None) -> str:
        """`eventual.await_callback`: announce `key` to the harness (it is not about this sink)."""
        return await_callback(key, count=count, timeout=timeout)

    def callbacks(self) -> Dict[str, List[Record]]:
        """`eventual.callbacks`: the awaited callbacks the harness handed this validation test."""
        return callbacks()

    # --- HTTP ---------------------------------------------------------------------------------

    def _get_json(self, path: str, wait: float = 0.0,
                  missing_ok: bool = False) -> Tuple[int, Any]:
        """GET path → (status, JSON). A 404 `not_found`/`timeout` gives (404, None) if missing_ok."""
        try:
            status, raw = self._request("GET", path, wait=wait)
        except SinkError as e:
            if missing_ok and e.status == 404 and e.code in ("not_found", "timeout"):
                return 404, None
            raise
        return status, json.loads(raw)

    def _request(self, method: str, path: str, *, data: Optional[bytes] = None,
                 headers: Optional[Mapping[str, str]] = None, wait: float = 0.0,
                 accept: str = "application/json") -> Tuple[int, bytes]:
        url = self.url + path
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Accept": accept, **(headers or {})})
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=wait + _SLACK) as response:
                return int(response.status), bytes(response.read())
        except (urllib.error.URLError, OSError) as e:
            raise self._error(e, method, url) from None

    def _error(self, e: OSError, method: str, url: str) -> SinkError:
        """The SinkError for what urllib raised: the sink's error body, or why it was not reached."""
        if isinstance(e, urllib.error.HTTPError):
            raw = e.read()
            code: Optional[str]
            try:
                error = json.loads(raw)["error"]
                code, message = error.get("code"), error.get("message")
            except (ValueError, KeyError, TypeError, AttributeError):
                code, message = None, raw.decode("utf-8", "replace").strip()
            return SinkError("the sink answered %d %s to %s %s: %s"
                             % (e.code, code or "", method, url, message),
                             status=e.code, code=code)
        reason = getattr(e, "reason", e)
        return SinkError("cannot reach the sink at %s (%s): is it running? (`eventual serve` or "
                         "`eventual sink`; EVENTUAL_SINK_URL says where it is)"
                         % (self.url, reason))


def await_callback(key: str, count: int = 1, timeout: Union[Seconds, str, None] = None) -> str:
    """Tell the harness to wait for `key` before the validation phase: prints the announce line

        ::await-callback KEY [count=N] [timeout=DURATION]

    to stdout and flushes it (defaults are left out: count 1, the server's `--await-timeout`).
    `timeout` is seconds (a number or a timedelta) or a duration string such as "90s" or "2h".
    Works under pytest too: the line bypasses pytest's output capture. Returns the line.
    """
    key = str(key)
    if not key or any(c.isspace() for c in key):
        raise ValueError("an announced key must be non-empty and contain no whitespace: %r" % key)
    count = _whole(count, "count")
    line = "::await-callback " + key
    if count != 1:
        line += " count=%d" % count
    if timeout is not None:
        line += " timeout=" + _duration(timeout)
    _print_uncaptured(line)
    return line


def callbacks() -> Dict[str, List[Record]]:
    """The awaited callbacks handed to validation tests: `{KEY: [records]}` loaded from the JSON
    file named by `EVENTUAL_CALLBACKS` (`{}` when it is not set, e.g. outside a phased run)."""
    path = os.environ.get("EVENTUAL_CALLBACKS")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
    except (OSError, ValueError) as e:
        raise SinkError("cannot read EVENTUAL_CALLBACKS=%s: %s" % (path, e)) from e
    if not isinstance(loaded, dict):
        raise SinkError("EVENTUAL_CALLBACKS=%s holds no {KEY: [records]} object" % path)
    return loaded


def body(record: Mapping[str, Any]) -> Any:
    """A record's body: the JSON value or text as sent, or bytes for a `body_base64` record."""
    if "body_base64" in record:
        return base64.b64decode(record["body_base64"])
    return record.get("body")


# --- internals -----------------------------------------------------------------------------------


def _quote(key: object) -> str:
    return urllib.parse.quote(str(key), safe="")


def _whole(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError("%s must be a whole number >= %d, got %r" % (name, minimum, value))
    return value


def _seconds(value: object, name: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value < float("inf"):
        raise ValueError("%s must be a number of seconds >= 0, got %r" % (name, value))
    return float(value)


def _human(secs: float) -> str:
    return ("%gs" % secs) if secs < 120 else ("%gm" % (secs / 60))


def _duration(timeout: Union[Seconds, str]) -> str:
    """A humantime duration for the announce line."""
    if isinstance(timeout, str):
        text = timeout.strip()
        if not text or any(c.isspace() for c in text):
            raise ValueError("timeout must be a duration such as \"90s\" or \"2h\", got %r"
                             % timeout)
        return text
    secs = _seconds(timeout, "timeout")
    if secs == int(secs):
        return "%ds" % secs
    return "%dms" % round(secs * 1000)


# pytest's capture manager and terminal reporter, set by the plugin (`pytest_plugin.py`) while a
# session runs; without the plugin they are looked for among live objects.
_pytest_handles: Optional[Tuple[Any, Any]] = None


def _print_uncaptured(line: str) -> None:
    """Print a line to the process's real stdout, even inside a pytest test capturing output."""
    try:
        manager, reporter = _pytest_handles or _find_pytest_capture()
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


def _find_pytest_capture() -> Tuple[Any, Any]:
    """pytest's capture manager and terminal reporter, when running inside pytest (else None)."""
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
    return _usable(manager, reporter)


def _usable(manager: Any, reporter: Any) -> Tuple[Any, Any]:
    if manager is None or not hasattr(manager, "global_and_fixture_disabled"):
        return None, None
    if reporter is not None and not hasattr(reporter, "ensure_newline"):
        reporter = None
    return manager, reporter
