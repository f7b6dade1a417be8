# eventual: tags=demo,misbehaving
"""Expected to FAIL: the demo SUT calls back twice for one job (mode `twice`).

The test takes the first callback, then gives a duplicate 2 s to show up (by waiting for a second
record, not by sleeping). What you see:

    AssertionError: the SUT called back 2 times for one job (key 'run-7.twice-…'):
      seq 1 at 2026-…Z: {"job_id": "…", "status": "done", "result": {…}}
      seq 2 at 2026-…Z: {"job_id": "…", "status": "done", "result": {…}, "attempt": 2}

A consumer that is not idempotent would process this job twice.
"""

import json
import uuid

import demo
import eventual


def test_job_calls_back_exactly_once():
    k = eventual.key("twice-" + uuid.uuid4().hex)
    demo.start_job(eventual.callback_url(k), input="once please", mode="twice")

    first = eventual.wait_for(k, timeout=30)
    assert first["body"]["status"] == "done"
    try:
        records = eventual.wait_for_count(k, 2, timeout=2)  # any duplicate within 2 s?
    except TimeoutError:
        records = [first]

    assert len(records) == 1, "the SUT called back %d times for one job (key %r):\n%s" % (
        len(records), k, "\n".join("  seq %d at %s: %s" % (r["seq"], r["received_at"], json.dumps(r["body"]))
                                   for r in records))
