"""Signature verification against signatures made by each scheme's own library (issue 13 part 2).

A real ``eventual sink`` (the debug binary, ``EVENTUAL_BIN``) gets one verifier per scheme; the
callbacks are signed by ``standardwebhooks`` (Standard Webhooks' own package), ``slack_sdk``'s
``SignatureVerifier``, and for Stripe, GitHub and Shopify by their documented algorithms (Stripe's
library only verifies: the Stripe header made here is checked with ``stripe.WebhookSignature``
first). Valid ones pass; one flipped body byte fails with ``mismatch``; a stale timestamp fails
for stripe, slack and standard-webhooks; ``reject: true`` answers 401 and still records. The
server's log must never contain a secret. The demo SUT's ``--sign-secret`` callbacks pass both
the library and the sink. ``scripts/test.sh`` runs this in its virtualenv.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook

REPO = Path(__file__).resolve().parents[2]
EVENTUAL = os.environ.get("EVENTUAL_BIN", str(REPO / "target" / "debug" / "eventual"))

SW_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode()
STRIPE_SECRET = "whsec_stripe_test_secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
GITHUB_SECRET = "It's a Secret to Everybody"
SHOPIFY_SECRET = "shopify-test-secret"
SECRETS = [SW_SECRET, STRIPE_SECRET, SLACK_SECRET, GITHUB_SECRET, SHOPIFY_SECRET]


class Sink:
    """A running ``eventual sink`` on a free port, its log in a file."""

    def __init__(self, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTUAL_")}
        env["RUST_LOG"] = "debug"
        self.log = log
        self.process = subprocess.Popen(
            [EVENTUAL, "sink", "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=log.open("w"), env=env, text=True,
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

    def verifier(self, vid: str, **fields: object) -> None:
        status, answer = self.request("PUT", f"/verifiers/{vid}", json.dumps(fields).encode(),
                                      {"content-type": "application/json"})
        assert status in (200, 201), answer
        assert b"***" in answer

    def post(self, key: str, body: bytes, headers: dict[str, str]) -> int:
        status, _ = self.request("POST", f"/callbacks/{key}", body,
                                 {"content-type": "application/json", **headers})
        return status

    def signature(self, key: str) -> dict[str, object]:
        status, answer = self.request("GET", f"/callbacks/{key}")
        assert status == 200, answer
        sig: dict[str, object] = json.loads(answer)["signature"]
        return sig

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Sink(Path(tmp) / "stderr")
        server.verifier("sw", prefix="sw.", scheme="standard-webhooks", secret=SW_SECRET)
        server.verifier("stripe", prefix="stripe.", scheme="stripe", secret=STRIPE_SECRET)
        server.verifier("slack", prefix="slack.", scheme="slack", secret=SLACK_SECRET)
        server.verifier("github", prefix="github.", scheme="github", secret=GITHUB_SECRET)
        server.verifier("shopify", prefix="shopify.", scheme="shopify", secret=SHOPIFY_SECRET)
        server.verifier("strict", prefix="strict.", scheme="github", secret=GITHUB_SECRET,
                        reject=True)
        try:
            yield server
        finally:
            server.stop()
            log = server.log.read_text()
            for secret in SECRETS:
                assert secret not in log, "a secret is in the sink's log"


def standard_webhooks(body: bytes, ts: int) -> dict[str, str]:
    wh = Webhook(SW_SECRET)
    stamp = datetime.fromtimestamp(ts, tz=timezone.utc)
    sig = wh.sign("msg_1", stamp, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": sig}
    if ts > time.time() - 60:
        wh.verify(body.decode(), headers)  # the library agrees the fixture is valid
    return headers


def stripe_header(body: bytes, ts: int) -> dict[str, str]:
    # Stripe's documented scheme: v1 = hex HMAC-SHA256 of "{t}.{payload}".
    mac = hmac.new(STRIPE_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    header = f"t={ts},v1={mac}"
    stripe.WebhookSignature.verify_header(body.decode(), header, STRIPE_SECRET,
                                          tolerance=None)  # the library agrees
    return {"Stripe-Signature": header}


def slack(body: bytes, ts: int) -> dict[str, str]:
    verifier = SignatureVerifier(SLACK_SECRET)
    sig = verifier.generate_signature(timestamp=str(ts), body=body.decode())
    assert sig is not None
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig}


def github(body: bytes, _ts: int) -> dict[str, str]:
    mac = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + mac}


def shopify(body: bytes, _ts: int) -> dict[str, str]:
    mac = hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(mac).decode()}


SIGNERS: dict[str, Callable[[bytes, int], dict[str, str]]] = {
    "sw": standard_webhooks, "stripe": stripe_header, "slack": slack, "github": github,
    "shopify": shopify,
}
BODY = b'{"event": "done", "n": 1}'


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_a_library_signature_verifies_and_a_flipped_byte_does_not(sink: Sink, scheme: str) -> None:
    now = int(time.time())
    headers = SIGNERS[scheme](BODY, now)
    assert sink.post(f"{scheme}.valid", BODY, headers) == 200
    assert sink.signature(f"{scheme}.valid")["valid"] is True
    flipped = BODY.replace(b"1", b"2")
    assert sink.post(f"{scheme}.flipped", flipped, headers) == 200
    sig = sink.signature(f"{scheme}.flipped")
    assert sig["valid"] is False
    assert str(sig["reason"]).startswith("mismatch"), sig


@pytest.mark.parametrize("scheme", ["sw", "stripe", "slack"])
def test_a_stale_timestamp_is_outside_the_tolerance(sink: Sink, scheme: str) -> None:
    stale = int(time.time()) - 3600
    headers = SIGNERS[scheme](BODY, stale) if scheme != "stripe" else _stripe_unchecked(stale)
    assert sink.post(f"{scheme}.stale", BODY, headers) == 200
    sig = sink.signature(f"{scheme}.stale")
    assert sig["valid"] is False
    assert str(sig["reason"]).startswith("timestamp outside tolerance"), sig


def _stripe_unchecked(ts: int) -> dict[str, str]:
    mac = hmac.new(STRIPE_SECRET.encode(), f"{ts}.".encode() + BODY, hashlib.sha256).hexdigest()
    header = f"t={ts},v1={mac}"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(BODY.decode(), header, STRIPE_SECRET, tolerance=300)
    return {"Stripe-Signature": header}


def test_reject_answers_401_and_still_records(sink: Sink) -> None:
    headers = github(BODY, 0)
    assert sink.post("strict.bad", BODY + b" ", headers) == 401
    assert sink.signature("strict.bad")["valid"] is False
    assert sink.post("strict.good", BODY, headers) == 200


DEMO_SUT = REPO / "sample-tests" / "_lib" / "demo_sut.py"


def test_the_demo_suts_signed_callback_verifies_with_the_library_and_the_sink(sink: Sink) -> None:
    # The demo SUT started with --sign-secret signs its callbacks; the standardwebhooks library
    # accepts what arrived (the exact bytes and headers the sink recorded), and so does the sink.
    sut = subprocess.Popen([sys.executable, str(DEMO_SUT), "--port", "0", "--delay", "0",
                            "--sign-secret", SW_SECRET],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sut.stdout is not None
        first = sut.stdout.readline().strip()
        assert first.startswith("listening on "), f"the demo SUT printed {first!r}"
        job = json.dumps({"input": "sealed", "callback_url": sink.url + "/callbacks/sw.demo"})
        request = urllib.request.Request(first.removeprefix("listening on ") + "/jobs",
                                         data=job.encode(), method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            job_id = json.loads(answer.read())["job_id"]

        status, record = sink.request("GET", "/callbacks/sw.demo?wait=30s")
        assert status == 200, record
        headers = json.loads(record)["headers"]
        status, raw = sink.request("GET", "/callbacks/sw.demo/raw")
        assert status == 200, raw

        assert headers["webhook-id"] == "msg_" + job_id
        Webhook(SW_SECRET).verify(raw.decode(), {name: headers[name] for name in (
            "webhook-id", "webhook-timestamp", "webhook-signature")})
        assert sink.signature("sw.demo") == {"verifier": "sw", "scheme": "standard-webhooks",
                                             "valid": True}
    finally:
        sut.terminate()
        _, errors = sut.communicate(timeout=30)
    assert SW_SECRET not in errors, "the demo SUT logged its secret"
