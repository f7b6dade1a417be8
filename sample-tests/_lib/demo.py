"""A tiny client for the demo SUT (`fixtures/demo_sut.py`) used by the sample tests.

The demo SUT's address comes from `DEMO_SUT_URL` (default http://127.0.0.1:7701). If it does not
answer, every call raises AssertionError saying how to start it, so the test fails with that message.
"""

import json
import os
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:7701"

# The demo SUT and the sink are local: keep an http_proxy from the environment out of the way.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def url():
    """The demo SUT's base URL: `DEMO_SUT_URL`; else, inside `with-services/` (whose
    eventual.toml starts the SUT on an allocated port), `SUT_PORT`; else http://127.0.0.1:7701."""
    if os.environ.get("DEMO_SUT_URL"):
        return os.environ["DEMO_SUT_URL"].rstrip("/")
    if os.environ.get("SUT_PORT"):
        return "http://127.0.0.1:%s" % os.environ["SUT_PORT"]
    return DEFAULT_URL


def _unreachable(reason):
    return AssertionError(
        "the demo SUT does not answer at %s (%s). Start it with\n"
        "    python3 fixtures/demo_sut.py --port 7701\n"
        "and start Eventual so that tests can reach it, e.g.\n"
        "    DEMO_SUT_URL=http://127.0.0.1:7701 eventual serve\n"
        "(or set DEMO_SUT_URL to where your demo SUT listens)." % (url(), reason))


def _call(method, path, body=None, timeout=10.0):
    __tracebackhide__ = True
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url() + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, OSError) as e:
        raise _unreachable(getattr(e, "reason", e)) from None


def health():
    """GET /health → the JSON answer (fails the test if the SUT is down)."""
    __tracebackhide__ = True
    status, answer = _call("GET", "/health")
    assert status == 200, "GET %s/health answered %d: %s" % (url(), status, answer)
    return answer


def start_job(callback_url, input=None, mode=None, delay=None, **extra):  # noqa: A002
    """POST /jobs → the job id. The SUT will POST the result to `callback_url` later."""
    __tracebackhide__ = True
    request = dict({"input": input, "callback_url": callback_url}, **extra)
    if mode is not None:
        request["mode"] = mode
    if delay is not None:
        request["delay"] = delay
    status, answer = _call("POST", "/jobs", request)
    assert status == 202, "POST %s/jobs answered %d: %s" % (url(), status, answer)
    return answer["job_id"]


def job(job_id, wait=None):
    """GET /jobs/{id} → the job's state; with `wait` (seconds), once it is no longer pending."""
    __tracebackhide__ = True
    path = "/jobs/" + job_id
    if wait is not None:
        path += "?wait=%g" % wait
    status, answer = _call("GET", path, timeout=(wait or 0) + 10.0)
    assert status == 200, "GET %s%s answered %d: %s" % (url(), path, status, answer)
    return answer


# The phased pair (phased/ and with-services/) share these: the preparation test starts one job and
# announces its key; the validation test checks what came back. The key is derived from
# EVENTUAL_KEY_PREFIX, so the two agree without shared state and runs never see each other's jobs.
PHASED_KEY = "phased-job"
PHASED_INPUT = {"report": "monthly", "month": "2026-11"}


def start_phased_job():
    """Starts the phased job in the demo SUT and prints the announce line for the harness."""
    import eventual

    k = eventual.key(PHASED_KEY)
    start_job(eventual.callback_url(k), input=PHASED_INPUT, mode="normal")
    eventual.await_callback(k, timeout="30s")


def check_phased_result():
    """Asserts the phased job's callback (from EVENTUAL_CALLBACKS) says done with the result."""
    import eventual

    k = eventual.key(PHASED_KEY)
    received = eventual.callbacks()
    holds = ("it holds %s" % (sorted(received) or "no keys")) if os.environ.get("EVENTUAL_CALLBACKS") \
        else "EVENTUAL_CALLBACKS is not set"
    assert k in received, (
        "no callback for key %r (%s). Run this test in one phased run together with the "
        "preparation test beside it, which starts the job and announces the key." % (k, holds))
    records = received[k]
    assert len(records) == 1, "expected one callback for %r, got %d" % (k, len(records))
    body = records[0]["body"]
    assert body["status"] == "done", "the job did not succeed: %s" % body
    assert body["result"] == {"input": PHASED_INPUT, "length": len(str(PHASED_INPUT))}
