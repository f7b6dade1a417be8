# eventual: tags=demo,misbehaving
"""Expected to FAIL: the demo SUT calls back on time, but with a failure (mode `error`).

The callback arrives, so the wait succeeds at once; the assertion on its body fails and shows
what the SUT reported:

    AssertionError: the job failed: upstream_timeout: the upstream service did not answer within 30s
    (callback seq 1 for key 'run-7.error-…')

This is the case a sleep-then-check script cannot tell from a missing callback.
"""

import uuid

import demo
import eventual


def test_job_succeeds():
    k = eventual.key("error-" + uuid.uuid4().hex)
    demo.start_job(eventual.callback_url(k), input="doomed", mode="error")

    record = eventual.wait_for(k, timeout=30)

    body = record["body"]
    error = body.get("error") or {}
    assert body["status"] == "done", "the job failed: %s: %s\n(callback seq %d for key %r)" % (
        error.get("code"), error.get("message"), record["seq"], k)
