"""The client against a real sink: waits answered on arrival, timeouts that explain themselves,
exact bytes, the harness's files and announce lines."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import eventual
from eventual import Client, SinkError


def in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Runs `call` on a thread now; the returned function joins it and gives its result."""
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except BaseException as e:  # handed to the test thread
            outcome.append(("error", e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(timeout=60)
        assert outcome, "the waiting thread did not finish"
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    return result


def test_wait_for_answers_the_moment_a_callback_lands(eventual_sink: Client,
                                                      callback_key: str) -> None:
    started = time.monotonic()
    waited = in_thread(lambda: eventual_sink.wait_for(callback_key, timeout=30))
    # Posted while the wait is under way (or just before it begins: either way it must answer).
    seq = eventual_sink.post(callback_key, {"status": "done", "total": 10.5})

    record = waited()

    assert (record["key"], record["seq"], record["method"]) == (callback_key, seq, "POST")
    assert record["body"] == {"status": "done", "total": 10.5}
    assert time.monotonic() - started < 10, "answered by the arrival, not by the 30 s timeout"


def test_wait_for_after_wants_a_newer_record(eventual_sink: Client, callback_key: str) -> None:
    first = eventual_sink.post(callback_key, "first")
    waited = in_thread(lambda: eventual_sink.wait_for(callback_key, timeout=30, after=first))
    eventual_sink.post(callback_key, "second")

    assert waited()["body"] == "second"


def test_wait_for_count_returns_every_record_oldest_first(eventual_sink: Client,
                                                          callback_key: str) -> None:
    eventual_sink.post(callback_key, {"attempt": 1})
    waited = in_thread(lambda: eventual_sink.wait_for_count(callback_key, 2, timeout=30))
    eventual_sink.post(callback_key, {"attempt": 2})

    records = waited()

    assert [r["seq"] for r in records] == [1, 2]
    assert [r["body"]["attempt"] for r in records] == [1, 2]


def test_watch_yields_past_then_live_records_under_a_prefix_and_resumes_after_an_id(
        eventual_sink: Client, callback_key: str) -> None:
    prefix = callback_key + "/"
    eventual_sink.post(prefix + "a", {"n": 1})
    eventual_sink.post(callback_key + "-elsewhere", {"n": 0})
    stream = eventual_sink.watch(prefix)
    first_id, first = next(stream)
    assert (first["key"], first["body"]) == (prefix + "a", {"n": 1})
    eventual_sink.post(prefix + "b", {"n": 2})  # live, after the stream began
    second_id, second = next(stream)
    assert (second["key"], second["body"]) == (prefix + "b", {"n": 2})
    assert second_id > first_id
    stream.close()

    resumed = eventual_sink.watch(prefix, after=first_id)
    assert next(resumed) == (second_id, second), "strictly after `after`: nothing missed or repeated"
    resumed.close()


def test_watch_without_a_usable_prefix_is_a_400_sink_error(eventual_sink: Client) -> None:
    with pytest.raises(SinkError) as caught:
        next(eventual_sink.watch("p" * 2000))
    assert (caught.value.status, caught.value.code) == (400, "invalid_prefix")


def test_wait_for_times_out_with_a_message_naming_the_key_and_the_url(
        eventual_sink: Client, callback_key: str) -> None:
    with pytest.raises(TimeoutError) as caught:
        eventual_sink.wait_for(callback_key, timeout=0.2)

    message = str(caught.value)
    assert repr(callback_key) in message
    assert "within 0.2s" in message
    assert eventual_sink.callback_url(callback_key) in message


def test_wait_for_count_times_out_saying_how_many_arrived(eventual_sink: Client,
                                                          callback_key: str) -> None:
    eventual_sink.post(callback_key, "only one")

    with pytest.raises(TimeoutError, match=r"only 1 of 3 callbacks for key '%s'" % callback_key):
        eventual_sink.wait_for_count(callback_key, 3, timeout=timedelta(milliseconds=200))


def test_raw_gives_the_exact_bytes_of_the_latest_or_a_given_record(eventual_sink: Client,
                                                                   callback_key: str) -> None:
    signed = b'{"b": 1,  "a": 2.50}\n'
    binary = bytes(range(256))
    eventual_sink.post(callback_key, signed, content_type="application/json")
    eventual_sink.post(callback_key, binary, content_type="application/octet-stream")

    assert eventual_sink.raw(callback_key) == binary
    assert eventual_sink.raw(callback_key, seq=1) == signed
    assert eventual.body(eventual_sink.latest(callback_key) or {}) == binary


def test_raw_of_a_missing_record_is_a_404_sink_error(eventual_sink: Client,
                                                     callback_key: str) -> None:
    with pytest.raises(SinkError) as caught:
        eventual_sink.raw(callback_key)

    assert caught.value.status == 404


def test_nothing_yet_is_none_and_an_empty_list(eventual_sink: Client, callback_key: str) -> None:
    assert eventual_sink.latest(callback_key) is None
    assert eventual_sink.all(callback_key) == []


def test_the_module_functions_use_the_sink_the_environment_names(eventual_sink: Client,
                                                                 callback_key: str) -> None:
    # The fixture's private sink is named by EVENTUAL_SINK_URL while the session runs.
    assert eventual.sink_url() == eventual_sink.url
    assert eventual.callback_url(callback_key) == eventual_sink.callback_url(callback_key)
    waited = in_thread(lambda: eventual.wait_for(callback_key, timeout=30))
    eventual_sink.post(callback_key, {"via": "module"})

    assert waited()["body"] == {"via": "module"}
    assert eventual.latest(callback_key)["seq"] == 1  # type: ignore[index]
    assert [r["seq"] for r in eventual.wait_for_count(callback_key, 1)] == [1]
    assert [r["seq"] for r in eventual.all(callback_key)] == [1]
    assert eventual.raw(callback_key) == b'{"via": "module"}'


def test_keys_carry_the_run_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTUAL_KEY_PREFIX", "run-7.")

    assert eventual.key("job-42") == "run-7.job-42"
    assert Client("http://sink.example").key("x") == "run-7.x"
    assert Client("http://sink.example", prefix="").key("x") == "x"
    assert Client("http://sink.example/").callback_url("a b/c") == \
        "http://sink.example/callbacks/a%20b%2Fc"


def test_a_sink_that_is_not_there_is_a_sink_error_saying_so() -> None:
    with pytest.raises(SinkError, match="cannot reach the sink at http://127.0.0.1:9"):
        Client("http://127.0.0.1:9").latest("k")


def test_callbacks_reads_the_file_the_harness_names(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    handed = {"run-7.job": [{"key": "run-7.job", "seq": 1, "body": {"status": "done"}}]}
    path = tmp_path / "callbacks.json"
    path.write_text(json.dumps(handed), encoding="utf-8")
    monkeypatch.setenv("EVENTUAL_CALLBACKS", str(path))

    assert eventual.callbacks() == handed
    assert Client("http://unused").callbacks() == handed

    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SinkError, match="cannot read EVENTUAL_CALLBACKS"):
        eventual.callbacks()

    monkeypatch.delenv("EVENTUAL_CALLBACKS")
    assert eventual.callbacks() == {}


def test_await_callback_prints_the_announce_line(monkeypatch: pytest.MonkeyPatch) -> None:
    printed: List[str] = []  # (on its way past pytest's capture: test_plugin.py shows it arrives)
    monkeypatch.setattr(eventual.client, "_print_uncaptured", printed.append)

    assert eventual.await_callback("run-7.job") == "::await-callback run-7.job"
    assert eventual.await_callback("k", count=2, timeout="2h") == \
        "::await-callback k count=2 timeout=2h"
    assert eventual.await_callback("k", timeout=timedelta(seconds=90)) == \
        "::await-callback k timeout=90s"
    assert eventual.await_callback("k", timeout=1.5) == "::await-callback k timeout=1500ms"
    bads: List[Dict[str, Any]] = [{"key": "a b"}, {"key": ""}, {"key": "k", "count": 0},
                                  {"key": "k", "count": True}, {"key": "k", "timeout": "1 h"}]
    for bad in bads:
        with pytest.raises(ValueError):
            eventual.await_callback(**bad)
    assert printed == ["::await-callback run-7.job", "::await-callback k count=2 timeout=2h",
                       "::await-callback k timeout=90s", "::await-callback k timeout=1500ms"]


def test_body_decodes_base64_records_and_passes_others() -> None:
    assert eventual.body({"body_base64": "AP8="}) == b"\x00\xff"
    assert eventual.body({"body": {"a": 1}}) == {"a": 1}
    assert eventual.body({}) is None


def test_stub_scripts_the_answers_by_seq_and_records_them(eventual_sink: Client,
                                                          callback_key: str) -> None:
    stub = eventual_sink.stub(callback_key, responses=[{"status": 503, "times": 2}, {}])
    assert (stub["id"], stub["key"], stub["then"], stub["hits"]) == (callback_key, callback_key,
                                                                      "last", 0)
    answers = []
    for n in range(3):
        try:
            eventual_sink.post(callback_key, {"n": n})
            answers.append(200)
        except SinkError as e:
            answers.append(e.status or 0)
    assert answers == [503, 503, 200]
    records = eventual_sink.all(callback_key)
    assert [r["response"]["status"] for r in records] == [503, 503, 200]
    assert records[0]["response"]["stub"] == callback_key
    info = eventual_sink.stub_info(callback_key)
    assert info is not None and info["hits"] == 3
    assert callback_key in [s["id"] for s in eventual_sink.stubs()]
    assert eventual_sink.delete_stub(callback_key) == [callback_key]
    assert eventual_sink.stub_info(callback_key) is None


def test_a_bad_stub_is_refused_listing_every_problem(eventual_sink: Client,
                                                     callback_key: str) -> None:
    with pytest.raises(SinkError) as refused:
        eventual_sink.stub(callback_key, status=42, times=1, delay="90s", then="forever")
    assert refused.value.status == 422 and refused.value.code == "invalid_fields"
    message = str(refused.value)
    for field in ("responses[0].status", "responses[0].delay", "then"):
        assert field in message, message


def test_verify_sets_a_verifier_and_records_say_whether_callbacks_are_signed(
        eventual_sink: Client, callback_key: str) -> None:
    import hashlib
    import hmac

    answer = eventual_sink.verify("py-" + callback_key, prefix=callback_key, scheme="github",
                                  secret="py-secret", reject=True)
    assert answer["secret"] == "***"
    body = b'{"ok": true}'
    sig = "sha256=" + hmac.new(b"py-secret", body, hashlib.sha256).hexdigest()
    eventual_sink.post(callback_key, body, content_type="application/json",
                       headers={"X-Hub-Signature-256": sig})
    record = eventual_sink.latest(callback_key)
    assert record is not None
    assert record["signature"] == {"verifier": "py-" + callback_key, "scheme": "github",
                                   "valid": True}
    with pytest.raises(SinkError) as refused:
        eventual_sink.post(callback_key, b'{"ok": false}', content_type="application/json",
                           headers={"X-Hub-Signature-256": sig})
    assert refused.value.status == 401
    assert len(eventual_sink.all(callback_key)) == 2, "the refused one is still recorded"


def test_verifiers_are_listed_redacted_and_deleted_by_id_or_prefix(eventual_sink: Client,
                                                                   callback_key: str) -> None:
    for name in ("a", "b"):
        eventual_sink.verify("%s-%s" % (name, callback_key), prefix="%s.%s." % (callback_key, name),
                             scheme="github", secret="secret-" + name)
    listed = {v["id"]: v for v in eventual.verifiers()}  # the module's, on the same sink
    assert listed["a-" + callback_key]["prefix"] == callback_key + ".a."
    assert {listed[i]["secret"] for i in ("a-" + callback_key, "b-" + callback_key)} == {"***"}

    assert eventual_sink.delete_verifier("a-" + callback_key) == ["a-" + callback_key]
    with pytest.raises(SinkError) as gone:
        eventual_sink.delete_verifier("a-" + callback_key)
    assert gone.value.status == 404
    assert eventual.delete_verifier(prefix=callback_key) == ["b-" + callback_key]
    assert not [v for v in eventual_sink.verifiers() if v["prefix"].startswith(callback_key)]
    with pytest.raises(ValueError):
        eventual_sink.delete_verifier()
    with pytest.raises(ValueError):
        eventual_sink.delete_verifier("x", prefix="y")
