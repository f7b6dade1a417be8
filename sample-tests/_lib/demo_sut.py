#!/usr/bin/env python3
"""A small asynchronous job service: the demo "system under test" for Eventual.

It answers a job request at once with a job id and delivers the result later by calling back
(a webhook), which is exactly the kind of system Eventual's sink and phased runs are for.
Python 3 standard library only.

    python3 fixtures/demo_sut.py [--bind 127.0.0.1] [--port 0] [--delay 0.2] [--mode normal]
                                 [--late-delay 5] [--sign-secret whsec_BASE64]
    python3 fixtures/demo_sut.py --self-check      # exercise every route and mode, exit 0 if all good

The first stdout line is `listening on http://ADDR:PORT` (so `--port 0` picks a free port and a
script reads it back); everything else is logged to stderr. SIGTERM / SIGINT stop it cleanly
(jobs still waiting to call back are abandoned and counted in the last log line).

Routes (every error is JSON `{"error": {"code", "message"}}`):

    GET  /health              200 {"status": "ok"}
    POST /jobs                {"input": <any>, "callback_url": "<http(s) url>",
                               "mode": "<optional>", "delay": <optional seconds>,
                               "late_delay": <optional seconds, mode late>,
                               "sign_secret": <optional "whsec_<base64>">}
                              -> 202 {"job_id": "<uuid4 hex>"}; 400 on bad JSON / missing callback_url
    GET  /jobs/{id}           {"job_id", "status": "pending" | "called_back" | "failed_to_call_back",
                               "attempts", "mode", "last_error"}; 404 if unknown.
                              `?wait=SECONDS` (at most 60) answers as soon as the job is no longer
                              pending (or when the wait is over, with whatever it is then).

After `delay` seconds a background thread POSTs the result as JSON to `callback_url`, with the
header `X-Request-Id: <job_id>`:

    {"job_id": "…", "status": "done", "result": {"input": <input>, "length": len(str(input))}}

Signed callbacks (for every job with `--sign-secret`, or per job with "sign_secret"; the job's
wins): each attempt is signed the Standard Webhooks way (as Svix does), with the headers

    webhook-id: msg_<job_id>            the same for every attempt of a job (an idempotency key)
    webhook-timestamp: <unix seconds>   when this attempt was sent
    webhook-signature: v1,<base64 of HMAC-SHA256("<id>.<timestamp>.<body>") keyed by the secret>

where the secret is `whsec_` followed by the base64 of the key (the `whsec_` may be left out).
The secret is never logged nor shown in a job's state (`"signed": true` says a job is signed).

Modes (per job with "mode", or for every job with `--mode`), to misbehave on purpose:

    normal  call back once
    never   never call back (the job stays pending)
    twice   call back twice: the same body, the second with "attempt": 2
    late    call back after delay + late delay (`--late-delay`, default 5 s, or the job's "late_delay")
    error   call back once with {"job_id", "status": "failed",
                                 "error": {"code": "upstream_timeout", "message": "…"}}
    retry   call back once, but if the receiver answers 5xx or cannot be reached, try again after
            0.1, 0.2, 0.4, 0.8 s (5 attempts in all), logging every attempt to stderr

In every other mode one failed delivery (non-2xx answer or connection error) is final: the job
becomes `failed_to_call_back`.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("normal", "never", "twice", "late", "error", "retry")
RETRY_ATTEMPTS = 5
RETRY_FIRST_BACKOFF = 0.1
MAX_BODY = 1024 * 1024
MAX_JOB_WAIT = 60.0
MAX_DELAY = 24 * 3600.0
CALLBACK_TIMEOUT = 10.0

# The demo talks to local receivers: never send callbacks through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(message):
    sys.stderr.write("demo_sut: %s\n" % message)
    sys.stderr.flush()


class Service:
    """Jobs and their background delivery threads."""

    def __init__(self, delay=0.2, mode="normal", late_delay=5.0, sign_key=None):
        self.delay = delay
        self.mode = mode
        self.late_delay = late_delay
        self.sign_key = sign_key  # the Standard Webhooks key (bytes) every job signs with, or None
        self.changed = threading.Condition()
        self.jobs = {}
        # Set on shutdown: wakes every job thread that is still waiting so it gives up.
        self.stopping = threading.Event()

    def submit(self, request):
        """Validate a POST /jobs body; start the job. Returns (status, body)."""
        if not isinstance(request, dict):
            return 400, error("invalid_request", "the body must be a JSON object such as "
                              '{"input": 42, "callback_url": "http://127.0.0.1:7700/callbacks/k"}')
        url = request.get("callback_url")
        if url is None:
            return 400, error("missing_callback_url", "`callback_url` is required: the URL the "
                              "result is POSTed to, e.g. http://127.0.0.1:7700/callbacks/my-key")
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            return 400, error("invalid_callback_url",
                              "`callback_url` must be an http:// or https:// URL, got %s" % json.dumps(url))
        mode = request.get("mode", self.mode)
        if mode is None:
            mode = self.mode
        if mode not in MODES:
            return 400, error("invalid_mode", "`mode` must be one of %s, got %s"
                              % (", ".join(MODES), json.dumps(mode)))
        delay = seconds(request, "delay", self.delay)
        late_delay = seconds(request, "late_delay", self.late_delay)
        for name, value in (("delay", delay), ("late_delay", late_delay)):
            if value is None:
                return 400, error("invalid_" + name, "`%s` must be a number of seconds from 0 to %g, got %s"
                                  % (name, MAX_DELAY, json.dumps(request.get(name))))
        sign_key = self.sign_key
        if request.get("sign_secret") is not None:
            sign_key = signing_key(request["sign_secret"])
            if sign_key is None:
                return 400, error("invalid_sign_secret", "`sign_secret` must be a Standard Webhooks "
                                  "secret: whsec_ followed by base64, e.g. whsec_c2VjcmV0LWtleQ==")
        job_id = uuid.uuid4().hex
        job = {"job_id": job_id, "status": "pending", "attempts": 0, "mode": mode, "last_error": None,
               "signed": sign_key is not None}
        with self.changed:
            self.jobs[job_id] = job
        wait = delay + (late_delay if mode == "late" else 0.0)
        log("job %s accepted: mode %s, calling back%s in %gs to %s"
            % (job_id, mode, " signed" if sign_key else "", wait, url))
        thread = threading.Thread(target=self._run, name="job-" + job_id, daemon=True,
                                  args=(job_id, request.get("input"), url, mode, wait, sign_key))
        thread.start()
        return 202, {"job_id": job_id}

    def get(self, job_id, wait=0.0):
        """The job's state (a copy), waiting up to `wait` seconds for it to stop being pending."""
        with self.changed:
            self.changed.wait_for(
                lambda: job_id not in self.jobs or self.jobs[job_id]["status"] != "pending"
                or self.stopping.is_set(),
                timeout=wait)
            job = self.jobs.get(job_id)
            return dict(job) if job is not None else None

    def pending(self):
        with self.changed:
            return sum(1 for job in self.jobs.values() if job["status"] == "pending")

    def stop(self):
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()

    def _update(self, job_id, **fields):
        with self.changed:
            self.jobs[job_id].update(fields)
            self.changed.notify_all()

    def _run(self, job_id, job_input, url, mode, wait, sign_key=None):
        if self.stopping.wait(wait):
            return
        if mode == "never":
            log("job %s: mode never, not calling back" % job_id)
            return
        if mode == "error":
            body = {"job_id": job_id, "status": "failed",
                    "error": {"code": "upstream_timeout",
                              "message": "the upstream service did not answer within 30s"}}
        else:
            body = {"job_id": job_id, "status": "done",
                    "result": {"input": job_input, "length": len(str(job_input))}}
        if mode == "twice":
            ok = self._deliver(job_id, url, body, 1, 2, sign_key=sign_key)
            ok = self._deliver(job_id, url, dict(body, attempt=2), 2, 2, sign_key=sign_key) and ok
        elif mode == "retry":
            ok = False
            backoff = RETRY_FIRST_BACKOFF
            for attempt in range(1, RETRY_ATTEMPTS + 1):
                outcome = self._deliver(job_id, url, body, attempt, RETRY_ATTEMPTS, retryable=True,
                                        sign_key=sign_key)
                if outcome is not None:  # delivered, or a 4xx: retrying will not help
                    ok = outcome
                    break
                if attempt < RETRY_ATTEMPTS:
                    log("job %s: retrying in %gs" % (job_id, backoff))
                    if self.stopping.wait(backoff):
                        return
                    backoff *= 2
            else:
                log("job %s: giving up after %d attempts" % (job_id, RETRY_ATTEMPTS))
        else:
            ok = self._deliver(job_id, url, body, 1, 1, sign_key=sign_key)
        self._update(job_id, status="called_back" if ok else "failed_to_call_back")

    def _deliver(self, job_id, url, body, attempt, of, retryable=False, sign_key=None):
        """POST one callback. True if answered 2xx, False if it failed for good, None if worth a retry."""
        with self.changed:
            self.jobs[job_id]["attempts"] += 1
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-Request-Id": job_id}
        if sign_key is not None:
            headers.update(standard_webhooks_headers(sign_key, "msg_" + job_id, int(time.time()), data))
        request = urllib.request.Request(url, data=data, method="POST", headers=headers)
        try:
            with _OPENER.open(request, timeout=CALLBACK_TIMEOUT) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
            problem = "HTTP %d" % e.code
        except (urllib.error.URLError, OSError) as e:
            status = None
            problem = "cannot connect: %s" % getattr(e, "reason", e)
        if status is not None and 200 <= status < 300:
            log("job %s: callback attempt %d/%d to %s: HTTP %d" % (job_id, attempt, of, url, status))
            self._update(job_id, last_error=None)
            return True
        log("job %s: callback attempt %d/%d to %s failed: %s" % (job_id, attempt, of, url, problem))
        self._update(job_id, last_error=problem)
        if retryable and (status is None or status >= 500):
            return None
        return False


def seconds(request, name, default):
    """A non-negative number of seconds from the request, the default if absent, None if invalid."""
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY:
        return None
    return float(value)


def signing_key(secret):
    """The key of a Standard Webhooks secret (`whsec_` + base64; the prefix may be left out), or
    None if it is not one."""
    if not isinstance(secret, str):
        return None
    encoded = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key or None


def standard_webhooks_headers(key, msg_id, timestamp, data):
    """The three Standard Webhooks headers that sign `data` (bytes, sent as they are)."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, data)
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def error(code, message):
    return {"error": {"code": code, "message": message}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo_sut/1"

    @property
    def service(self):
        return self.server.service

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        if not getattr(self.server, "quiet", False):
            log("%s %s" % (self.address_string(), format % args))

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        path, _, query = self.path.partition("?")
        parts = [p for p in path.split("/") if p]
        return parts, urllib.parse.parse_qs(query)

    def do_GET(self):
        parts, query = self.route()
        if parts == ["health"]:
            return self.send_json(200, {"status": "ok"})
        if len(parts) == 2 and parts[0] == "jobs":
            wait = 0.0
            if "wait" in query:
                try:
                    wait = float(query["wait"][-1])
                    if not 0 <= wait <= MAX_JOB_WAIT:
                        raise ValueError
                except ValueError:
                    return self.send_json(400, error(
                        "invalid_wait", "`wait` is a number of seconds from 0 to %g" % MAX_JOB_WAIT))
            job = self.service.get(parts[1], wait)
            if job is None:
                return self.send_json(404, error("not_found", "no job %s" % json.dumps(parts[1])))
            return self.send_json(200, job)
        if parts == ["jobs"]:
            return self.not_allowed("POST")
        return self.not_found()

    def do_POST(self):
        parts, _ = self.route()
        if parts != ["jobs"]:
            if parts == ["health"] or (len(parts) == 2 and parts[0] == "jobs"):
                return self.not_allowed("GET")
            return self.not_found()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self.send_json(400, error("invalid_request", "invalid Content-Length"))
        if length > MAX_BODY:
            self.close_connection = True
            return self.send_json(413, error("body_too_large", "a job request is at most 1 MiB"))
        raw = self.rfile.read(length)
        try:
            request = json.loads(raw)
        except ValueError as e:
            return self.send_json(400, error(
                "invalid_json", "the body must be JSON (%s), e.g. "
                '{"input": 42, "callback_url": "http://127.0.0.1:7700/callbacks/k"}' % e))
        status, body = self.service.submit(request)
        self.send_json(status, body)

    def other(self):
        parts, _ = self.route()
        if parts in (["health"], ["jobs"]) or (len(parts) == 2 and parts[0] == "jobs"):
            return self.not_allowed("POST" if parts == ["jobs"] else "GET")
        self.not_found()

    do_PUT = do_PATCH = do_DELETE = other

    def not_found(self):
        self.send_json(404, error("not_found", "no route %s %s: try GET /health, POST /jobs, "
                                  "GET /jobs/{id}" % (self.command, self.path)))

    def not_allowed(self, allowed):
        self.send_json(405, error("method_not_allowed", "%s %s: use %s" % (self.command, self.path, allowed)))


class Server(ThreadingHTTPServer):
    daemon_threads = True


def make_server(bind, port, service):
    server_class = Server
    if ":" in bind:
        server_class = type("Server6", (Server,), {"address_family": socket.AF_INET6})
    server = server_class((bind, port), Handler)
    server.service = service
    return server


def server_url(server):
    host, port = server.server_address[:2]
    if ":" in host:
        host = "[%s]" % host
    return "http://%s:%d" % (host, port)


def serve(args):
    service = Service(delay=args.delay, mode=args.mode, late_delay=args.late_delay,
                      sign_key=args.sign_key)
    try:
        server = make_server(args.bind, args.port, service)
    except OSError as e:
        log("cannot listen on %s:%d: %s" % (args.bind, args.port, e))
        return 1
    stop = threading.Event()

    def on_signal(signum, _frame):
        log("got %s, stopping" % signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    sys.stdout.write("listening on %s\n" % server_url(server))
    sys.stdout.flush()
    log("mode %s, delay %gs, late delay %gs%s" % (args.mode, args.delay, args.late_delay,
                                                  ", signing callbacks" if args.sign_key else ""))
    while not stop.wait(3600):
        pass
    server.shutdown()
    service.stop()
    server.server_close()
    log("stopped (%d job(s) had not called back)" % service.pending())
    return 0


def self_check():
    """Start a server and a callback receiver in this process and check every route and mode."""
    import queue

    received = queue.Queue()
    fail_first = {"n": 0}
    delivered = []  # (headers, raw body) of every callback the receiver got, in order

    class Receiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            delivered.append((self.headers, body))
            status = 200
            if fail_first["n"] > 0:
                fail_first["n"] -= 1
                status = 503
            else:
                received.put((self.path, self.headers.get("X-Request-Id"), json.loads(body)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    receiver = Server(("127.0.0.1", 0), Receiver)
    service = Service(delay=0.05, late_delay=0.5)
    server = make_server("127.0.0.1", 0, service)
    server.quiet = True
    for s in (receiver, server):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    base, sink = server_url(server), server_url(receiver)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_url = "http://127.0.0.1:%d/cb" % dead.getsockname()[1]
    dead.close()  # nothing listens there: connections are refused
    checks = []

    def check(name, condition, detail=""):
        checks.append(condition)
        log("%s %s%s" % ("ok  " if condition else "FAIL", name, "" if condition else ": %s" % (detail,)))

    def call(method, path, body=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def job(mode, url=None, **extra):
        status, body = call("POST", "/jobs", dict({"input": "hello", "mode": mode,
                                                   "callback_url": url or sink + "/cb/" + mode}, **extra))
        check("POST /jobs mode %s -> 202" % mode, status == 202 and len(body.get("job_id", "")) == 32, body)
        return body.get("job_id")

    def next_callback(timeout=3):
        try:
            return received.get(timeout=timeout)
        except queue.Empty:
            return None

    check("GET /health", call("GET", "/health") == (200, {"status": "ok"}))
    for body, code in ((b"not json", "invalid_json"), ({"input": 1}, "missing_callback_url"),
                       ({"callback_url": "ftp://x"}, "invalid_callback_url"),
                       ({"callback_url": sink, "mode": "sometimes"}, "invalid_mode"),
                       ({"callback_url": sink, "delay": -1}, "invalid_delay"), ([1], "invalid_request")):
        status, answer = call("POST", "/jobs", body)
        check("POST /jobs %r -> 400 %s" % (body, code), status == 400 and answer["error"]["code"] == code,
              answer)
    check("GET /jobs/unknown -> 404", call("GET", "/jobs/nope")[0] == 404)
    check("unknown route -> 404", call("GET", "/nope")[0] == 404)
    check("DELETE /jobs -> 405", call("DELETE", "/jobs")[0] == 405)

    job_id = job("normal")
    got = next_callback()
    check("normal calls back", got == ("/cb/normal", job_id, {"job_id": job_id, "status": "done",
                                       "result": {"input": "hello", "length": 5}}), got)
    state = call("GET", "/jobs/%s?wait=5" % job_id)[1]
    check("normal -> called_back, 1 attempt",
          (state["status"], state["attempts"]) == ("called_back", 1), state)

    job_id = job("twice")
    first, second = next_callback(), next_callback()
    check("twice calls back twice", first and second and "attempt" not in first[2]
          and second[2] == dict(first[2], attempt=2), (first, second))

    job_id = job("error")
    got = next_callback()
    check("error calls back a failure", got and got[2]["status"] == "failed"
          and got[2]["error"]["code"] == "upstream_timeout", got)

    job_id = job("late")
    check("late has not called back after the delay", next_callback(0.3) is None)
    check("late calls back after the late delay", next_callback() is not None)

    job_id = job("never")
    check("never does not call back", next_callback(0.5) is None)
    check("never stays pending", call("GET", "/jobs/%s?wait=0.1" % job_id)[1]["status"] == "pending")

    fail_first["n"] = 2
    job_id = job("retry")
    got = next_callback()
    state = call("GET", "/jobs/%s?wait=5" % job_id)[1]
    check("retry delivers after two 503s", got is not None and state["status"] == "called_back"
          and state["attempts"] == 3, state)

    job_id = job("retry", url=dead_url)
    state = call("GET", "/jobs/%s?wait=10" % job_id)[1]
    check("retry gives up after 5 attempts", state["status"] == "failed_to_call_back"
          and state["attempts"] == 5, state)

    job_id = job("normal", url=dead_url)
    state = call("GET", "/jobs/%s?wait=5" % job_id)[1]
    check("normal does not retry", (state["status"], state["attempts"]) == ("failed_to_call_back", 1), state)

    # Signing. The function first, against the Standard Webhooks reference vector (the secret,
    # id, timestamp, payload and signature of the standardwebhooks libraries' own tests).
    vector = standard_webhooks_headers(signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                                       "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                       b'{"test": 2432232314}')
    check("the Standard Webhooks reference vector",
          vector["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", vector)
    check("a secret without whsec_ is the same key",
          signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == signing_key(
              "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    check("not base64 is no secret", signing_key("whsec_not base64!") is None
          and signing_key("whsec_") is None and signing_key(42) is None)

    def signed_correctly(key, headers, data):
        try:
            stamp = int(headers.get("webhook-timestamp"))
        except (TypeError, ValueError):
            return False
        expected = standard_webhooks_headers(key, headers.get("webhook-id") or "", stamp, data)
        return (headers.get("webhook-signature") == expected["webhook-signature"]
                and abs(time.time() - stamp) < 60)

    check("unsigned by default", delivered and "webhook-signature" not in delivered[-1][0],
          delivered[-1][0] if delivered else None)
    check("POST /jobs with a bad sign_secret -> 400 invalid_sign_secret",
          call("POST", "/jobs", {"callback_url": sink, "sign_secret": "whsec_%%%"})[1]
          .get("error", {}).get("code") == "invalid_sign_secret")
    job_secret = "whsec_" + base64.b64encode(b"the job's own signing key").decode()
    job_id = job("normal", sign_secret=job_secret)
    got = next_callback()
    headers, data = delivered[-1]
    check("sign_secret signs the callback", got is not None and headers.get("webhook-id")
          == "msg_" + job_id and signed_correctly(signing_key(job_secret), headers, data),
          dict(headers))
    state = call("GET", "/jobs/%s?wait=5" % job_id)[1]
    check("a signed job says so and never shows its secret",
          state.get("signed") is True and job_secret not in json.dumps(state), state)

    service.sign_key = signing_key("whsec_" + base64.b64encode(b"the service's key").decode())
    fail_first["n"] = 1
    job_id = job("retry")
    got = next_callback()
    (first, first_data), (second, second_data) = delivered[-2:]
    check("--sign-secret signs every attempt, with one webhook-id",
          got is not None and first.get("webhook-id") == second.get("webhook-id") == "msg_" + job_id
          and signed_correctly(service.sign_key, first, first_data)
          and signed_correctly(service.sign_key, second, second_data), (dict(first), dict(second)))
    job("normal", sign_secret=job_secret)
    next_callback()
    check("a job's sign_secret wins over --sign-secret",
          signed_correctly(signing_key(job_secret), *delivered[-1])
          and not signed_correctly(service.sign_key, *delivered[-1]), dict(delivered[-1][0]))
    service.sign_key = None

    service.stop()
    for s in (server, receiver):
        s.shutdown()
        s.server_close()
    failed = checks.count(False)
    print("self-check: %d checks, %d failed" % (len(checks), failed))
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="Demo asynchronous job service (calls back later).")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before calling back (0.2)")
    parser.add_argument("--mode", choices=MODES, default="normal", help="default mode for jobs")
    parser.add_argument("--late-delay", type=float, default=5.0, help="extra seconds in mode late (5)")
    parser.add_argument("--sign-secret", metavar="SECRET",
                        help="sign every callback the Standard Webhooks way with this secret "
                        "(whsec_<base64>); a job's own sign_secret wins")
    parser.add_argument("--self-check", action="store_true", help="test this script and exit")
    args = parser.parse_args(argv)
    if args.delay < 0 or args.late_delay < 0:
        parser.error("delays must be >= 0")
    args.sign_key = None
    if args.sign_secret is not None:
        args.sign_key = signing_key(args.sign_secret)
        if args.sign_key is None:
            parser.error("--sign-secret must be a Standard Webhooks secret: whsec_ followed by base64")
    return self_check() if args.self_check else serve(args)


if __name__ == "__main__":
    sys.exit(main())
