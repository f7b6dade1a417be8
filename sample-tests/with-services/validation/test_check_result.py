# eventual: tags=demo
"""Phase 3 of a phased run: check the result the demo SUT called back with.

Runs after the harness has seen the callback announced by preparation/test_start_job.py arrive;
the records are in the JSON file named by EVENTUAL_CALLBACKS (`eventual.callbacks()`), so this test
neither waits nor talks to the sink.
"""

import os

import eventual

KEY_NAME = "phased-job"
INPUT = {"report": "monthly", "month": "2026-11"}


def test_job_result():
    k = eventual.key(KEY_NAME)
    received = eventual.callbacks()
    holds = ("it holds %s" % (sorted(received) or "no keys")) if os.environ.get("EVENTUAL_CALLBACKS") \
        else "EVENTUAL_CALLBACKS is not set"
    assert k in received, (
        "no callback for key %r (%s). Run this test in one phased run together with "
        "phased/preparation/test_start_job.py, which starts the job and announces the key."
        % (k, holds))
    records = received[k]
    assert len(records) == 1, "expected one callback for %r, got %d" % (k, len(records))
    body = records[0]["body"]
    assert body["status"] == "done", "the job did not succeed: %s" % body
    assert body["result"] == {"input": INPUT, "length": len(str(INPUT))}
