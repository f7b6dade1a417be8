"""Eventual for Python tests: wait for callbacks at the sink, never sleep.

Standard library only. Under the harness (`eventual serve`) this package is on PYTHONPATH and its
pytest plugin is loaded for every test it runs, so a test just does `import eventual`. Anywhere
else: `pip install ./python` from the repository.

A test that starts a job and waits for its callback:

    import eventual

    def test_job_calls_back():
        k = eventual.key("job-42")                    # "run-7.job-42": private to this run
        start_job(callback_url=eventual.callback_url(k))
        record = eventual.wait_for(k, timeout=30)     # answered the moment the callback lands
        assert record["body"]["status"] == "done"

The same with the pytest plugin's fixtures (`eventual_sink`: a `Client` for the run's sink, or for a
private `eventual sink` the plugin starts under a plain local `pytest`; `callback_key`: a fresh key
per test):

    def test_job_calls_back(eventual_sink, callback_key):
        start_job(callback_url=eventual_sink.callback_url(callback_key))
        assert eventual_sink.wait_for(callback_key)["body"]["status"] == "done"

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

Environment (read at each call): `EVENTUAL_SINK_URL` (default http://127.0.0.1:7700),
`EVENTUAL_KEY_PREFIX` (the run's private key prefix, e.g. `run-7.`; empty outside the harness),
`EVENTUAL_CALLBACKS` (validation tests: the JSON file `{KEY: [records]}` of the awaited callbacks),
`EVENTUAL_TOKEN` (only if the sink was started with `--token`: sent as `Authorization: Bearer …`).

A record is the sink's JSON: `key, seq, received_at, method, path, query, headers, content_type,
size` and `body` (the JSON value as sent, or a string for UTF-8 text) or `body_base64` (anything
else; `eventual.body(record)` decodes either); `eventual.raw(key)` gives the exact bytes.

Errors: `TimeoutError` when a wait is over (its message names the key, how long it waited and how
many records arrived), `SinkError` when the sink cannot be reached or refuses a request.

Scripted answers (stubs): make the sink answer a key's callbacks as a failing receiver would, by
seq, and check how the system under test copes; every callback is still recorded, its record's
`"response"` saying how it was answered:

    eventual.stub(k, responses=[{"status": 503, "times": 2}, {"status": 200}])
    eventual.stub(k, drop=True)                  # close the connection without answering
    eventual.stub(k, status=200, delay="300ms")  # answer late

Signatures (verifiers): the sink checks the signature on every callback under a prefix against
the exact bytes sent; the record's `"signature"` gives the verdict (`reject=True` answers 401):

    eventual.verify(k, prefix=k, scheme="standard-webhooks", secret="whsec_…")
    assert eventual.wait_for(k)["signature"]["valid"]
    eventual.delete_verifier(k)
"""

from __future__ import annotations

from typing import Any, Dict, Generator, List, Mapping, Optional, Tuple, Union

from .client import (
    DEFAULT_SINK_URL,
    Client,
    Record,
    Response,
    Seconds,
    SinkError,
    Stub,
    await_callback,
    body,
    callbacks,
)

__version__ = "0.1.0"

# `all` is left out so that `from eventual import *` does not hide the builtin: use `eventual.all`.
__all__ = ["Client", "DEFAULT_SINK_URL", "Record", "Response", "Seconds", "SinkError", "Stub",
           "await_callback", "body", "callback_url", "callbacks", "delete_stub", "key", "latest",
           "raw", "sink_url", "stub", "stubs", "verifiers", "verify", "delete_verifier",
           "wait_for", "wait_for_count", "watch"]


def _client() -> Client:
    """The sink the environment names, as it names it now."""
    return Client()


def sink_url() -> str:
    """The sink's base URL: `EVENTUAL_SINK_URL`, default http://127.0.0.1:7700 (no trailing slash)."""
    return _client().url


def key(name: object) -> str:
    """`EVENTUAL_KEY_PREFIX` + name: a key no other run can see (the prefix is empty outside the
    harness)."""
    return _client().key(name)


def callback_url(key: str) -> str:
    """The URL a system under test should POST the callback for `key` to."""
    return _client().callback_url(key)


def latest(key: str) -> Optional[Record]:
    """The latest record for `key`, or None if there is none yet."""
    return _client().latest(key)


def all(key: str) -> List[Record]:  # noqa: A001 (the name matches the sink's route)
    """Every record for `key`, oldest first (an empty list if none)."""
    return _client().all(key)


def raw(key: str, seq: Optional[int] = None) -> bytes:
    """The exact body bytes of the latest record for `key` (or of record `seq`); SinkError with
    `status` 404 when there is no such record."""
    return _client().raw(key, seq)


def verify(verifier_id: str, *, prefix: str, scheme: str, secret: str,
           tolerance: Optional[str] = None, reject: bool = False) -> Dict[str, Any]:
    """Set a signature verifier for the keys under `prefix` (see `Client.verify`)."""
    return _client().verify(verifier_id, prefix=prefix, scheme=scheme, secret=secret,
                            tolerance=tolerance, reject=reject)


def verifiers() -> List[Dict[str, Any]]:
    """Every verifier on the sink, secrets redacted."""
    return _client().verifiers()


def delete_verifier(id: Optional[str] = None, *,  # noqa: A002 (the API's name)
                    prefix: Optional[str] = None) -> List[str]:
    """Delete verifier `id`, or every verifier under `prefix`; returns the ids deleted."""
    return _client().delete_verifier(id, prefix=prefix)


def watch(prefix: Optional[str] = None, after: Optional[int] = None) -> Generator[Tuple[int, Record], None, None]:
    """Every record under `prefix` (default `EVENTUAL_KEY_PREFIX`, the run's keys) as `(id, record)`,
    past then live, on one connection; `after=id` resumes strictly after an id (see `Client.watch`)."""
    return _client().watch(prefix, after=after)


def wait_for(key: str, timeout: Seconds = 30, after: Optional[int] = None) -> Record:
    """Wait until a record exists for `key` (newer than seq `after`, if given) and return it.

    Answered the moment the callback reaches the sink (a long-poll, in rounds of at most 60 s).
    Raises TimeoutError after `timeout` seconds, SinkError if the sink fails.
    """
    __tracebackhide__ = True  # pytest: show the failure at the caller, not in here
    return _client().wait_for(key, timeout=timeout, after=after)


def wait_for_count(key: str, count: int, timeout: Seconds = 30) -> List[Record]:
    """Wait until `key` has at least `count` records and return them all, oldest first.

    Raises TimeoutError (saying how many of `count` arrived) after `timeout` seconds.
    """
    __tracebackhide__ = True  # pytest: show the failure at the caller, not in here
    return _client().wait_for_count(key, count, timeout=timeout)



def stub(key: Optional[str] = None, *, prefix: Optional[str] = None, status: int = 200,
         times: int = 1, delay: Union[Seconds, str, None] = None, body: Any = None,
         headers: Optional[Mapping[str, str]] = None, drop: bool = False,
         responses: Optional[List[Response]] = None, then: str = "last",
         id: Optional[str] = None) -> Stub:  # noqa: A002 (the API's name)
    """Script the sink's answers to `key`'s callbacks (see `Client.stub`); returns the stub.

    `eventual.stub(k, responses=[{"status": 503, "times": 2}, {"status": 200}])`: the first two
    callbacks of `k` get 503, every later one 200. `body=None` keeps the sink's default body.
    """
    client = _client()
    if body is None:
        return client.stub(key, prefix=prefix, status=status, times=times, delay=delay,
                           headers=headers, drop=drop, responses=responses, then=then, id=id)
    return client.stub(key, prefix=prefix, status=status, times=times, delay=delay, body=body,
                       headers=headers, drop=drop, responses=responses, then=then, id=id)


def stubs() -> List[Stub]:
    """Every stub on the sink, each with its `hits`."""
    return _client().stubs()


def delete_stub(id: Optional[str] = None, *,  # noqa: A002 (the API's name)
                prefix: Optional[str] = None) -> List[str]:
    """Delete stub `id`, or every stub under `prefix`; returns the ids deleted."""
    return _client().delete_stub(id, prefix=prefix)
